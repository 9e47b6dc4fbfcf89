"""Impersonation on the wire: the headers the SDK and CLI really send, seen by a loopback HTTP
server standing in for the API server (tests/e2e/test_impersonation.py asks the real one who we
are). The kubeconfig's `as`/`as-groups`/`as-uid`/`as-user-extra` are honoured, flags override
them, and each group is its own Impersonate-Group header line (a comma-joined value would be a
single group to the API server)."""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelreg.adapters import kube as k
from modelreg.adapters.impersonation import Impersonation, ImpersonationError
from modelreg.cli.main import run
from modelreg.sdk.client import Client
from modelreg.sdk.errors import ConfigurationError

Seen = list[list[tuple[str, str]]]


class _Recorder(BaseHTTPRequestHandler):
    seen: Seen

    def do_GET(self) -> None:
        self.seen.append([(k, v) for k, v in self.headers.items()])
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, Seen]]:
    seen: Seen = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


def kubeconfig(tmp_path: Path, url: str, **user: Any) -> str:
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": url}}],
        "users": [
            {"name": "admin", "user": {"token": "t0ken", **user}},
            {"name": "plain", "user": {"token": "t0ken"}},
        ],
        "contexts": [
            {"name": "as", "context": {"cluster": "c", "user": "admin", "namespace": "risk"}},
            {"name": "plain", "context": {"cluster": "c", "user": "plain", "namespace": "risk"}},
        ],
        "current-context": "as",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def impersonation(lines: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(n, v) for n, v in lines if n.lower().startswith("impersonate-")]


def test_kubeconfig_as_fields_are_sent_one_group_per_header_line(
    server: tuple[str, Seen], tmp_path: Path
) -> None:
    url, seen = server
    path = kubeconfig(
        tmp_path,
        url,
        **{
            "as": "alice",
            "as-groups": ["team-a", "team-b"],
            "as-uid": "u-1",
            "as-user-extra": {"reason": ["on call", "ticket 7"], "acme.com/scope": ["x"]},
        },
    )
    Client(kubeconfig=path).list_models()
    (lines,) = seen
    assert impersonation(lines) == [
        ("Impersonate-User", "alice"),
        ("Impersonate-Group", "team-a"),
        ("Impersonate-Group", "team-b"),
        ("Impersonate-Uid", "u-1"),
        ("Impersonate-Extra-acme.com%2Fscope", "x"),
        ("Impersonate-Extra-reason", "on call"),
        ("Impersonate-Extra-reason", "ticket 7"),
    ]
    assert ("authorization", "Bearer t0ken") in [(n.lower(), v) for n, v in lines], (
        "still authenticated as the kubeconfig's own user"
    )


def test_sdk_arguments_override_the_kubeconfig(server: tuple[str, Seen], tmp_path: Path) -> None:
    url, seen = server
    path = kubeconfig(tmp_path, url, **{"as": "alice", "as-groups": ["team-a"]})
    Client(kubeconfig=path, as_user="bob", as_groups=["approvers"]).list_models()
    Client(kubeconfig=path, as_groups=["g1", "g2"]).list_models()  # the kubeconfig's user stays
    first, second = seen
    assert impersonation(first) == [
        ("Impersonate-User", "bob"),
        ("Impersonate-Group", "approvers"),
    ]
    assert impersonation(second) == [
        ("Impersonate-User", "alice"),
        ("Impersonate-Group", "g1"),
        ("Impersonate-Group", "g2"),
    ]


def test_no_impersonation_sends_no_header(server: tuple[str, Seen], tmp_path: Path) -> None:
    url, seen = server
    path = kubeconfig(tmp_path, url, **{"as": "alice"})
    Client(kubeconfig=path, context="plain").list_models()
    (lines,) = seen
    assert impersonation(lines) == [], "the chosen context's user impersonates nobody"


def test_cli_flags_like_kubectl(server: tuple[str, Seen], tmp_path: Path) -> None:
    url, seen = server
    path = kubeconfig(tmp_path, url)
    out, err = io.StringIO(), io.StringIO()
    code = run(
        [
            "--kubeconfig", path, "--as", "carol", "--as-group", "g1",
            "list", "--as-group", "g2", "-o", "json",
        ],
        out=out,
        err=err,
    )  # fmt: skip
    assert code == 0, err.getvalue()
    assert seen
    for lines in seen:
        assert impersonation(lines) == [
            ("Impersonate-User", "carol"),
            ("Impersonate-Group", "g2"),
        ], "a flag after the command replaces the one before it, as for every option"


def test_groups_without_a_user_are_refused_before_any_request(
    server: tuple[str, Seen], tmp_path: Path
) -> None:
    url, seen = server
    path = kubeconfig(tmp_path, url)
    with pytest.raises(ConfigurationError, match="needs a user to impersonate"):
        Client(kubeconfig=path, as_groups=["g1"])
    out, err = io.StringIO(), io.StringIO()
    code = run(["--kubeconfig", path, "--as-group", "g1", "list"], out=out, err=err)
    assert code != 0
    assert "error: impersonating groups" in err.getvalue()
    assert "Traceback" not in err.getvalue()
    assert seen == []


@pytest.mark.parametrize("bad", ["", "a\r\nX-Injected: 1", "é"])
def test_values_that_cannot_be_a_header_are_refused(bad: str) -> None:
    with pytest.raises(ImpersonationError):
        Impersonation(user="alice", groups=(bad,)).headers()


def test_api_client_maps_impersonation_errors_to_config_errors(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, "http://127.0.0.1:9", **{"as-groups": ["g"]})
    with pytest.raises(k.ConfigError, match="needs a user to impersonate"):
        k.api_client(path)


def test_no_kubeconfig_file_impersonates_nobody(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a pod there is no kubeconfig, only the service account: the operator's start-up check
    must find nobody impersonated instead of failing on the missing file."""
    from modelreg.adapters import impersonation

    missing = tmp_path / "none"
    monkeypatch.setattr(
        impersonation, "KUBE_CONFIG_DEFAULT_LOCATION", f"{missing}{os.pathsep}{missing}-2"
    )
    assert not impersonation.from_kubeconfig(None, None)
    assert not impersonation.from_kubeconfig(str(missing), None)
