"""`modelreg ui`: loopback only in local mode, who it acts as, a clean exit on Ctrl-C."""

from __future__ import annotations

import argparse
import io
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from modelreg.cli.main import run
from modelreg.sdk.errors import InvalidArgument
from modelreg.ui import command
from tests.unit.ui.browser import banner, launch_ui

REPO = Path(__file__).resolve().parents[3]


def args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {
        "address": None,
        "port": 8765,
        "in_cluster": False,
        "as_user": None,
        "as_groups": None,
        "as_uid": None,
        "kubeconfig": None,
        "context": None,
    }
    return argparse.Namespace(**{**base, **kw})


def test_local_mode_binds_loopback_only() -> None:
    assert command.check_address(args()) == "127.0.0.1"
    assert command.check_address(args(address="::1")) == "::1"
    assert command.check_address(args(address="localhost")) == "localhost"
    with pytest.raises(InvalidArgument, match="binds loopback only"):
        command.check_address(args(address="0.0.0.0"))  # noqa: S104
    with pytest.raises(InvalidArgument, match="binds loopback only"):
        command.check_address(args(address="10.1.2.3"))
    assert command.check_address(args(address="0.0.0.0", in_cluster=True)) == "0.0.0.0"  # noqa: S104
    with pytest.raises(InvalidArgument, match="--as is not allowed"):
        command.check_address(args(in_cluster=True, as_user="bob"))


def test_the_cli_refuses_a_public_address_with_a_message() -> None:
    err = io.StringIO()
    code = run(["ui", "--address", "0.0.0.0"], err=err, out=io.StringIO())  # noqa: S104
    assert code == 2
    assert "refusing to serve on 0.0.0.0" in err.getvalue()


def kubeconfig(tmp_path: Path, **user: object) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "dev-user", "user": {"token": "t", **user}}],
                "contexts": [
                    {
                        "name": "ctx",
                        "context": {"cluster": "c", "user": "dev-user", "namespace": "team-a"},
                    }
                ],
                "current-context": "ctx",
            }
        )
    )
    return str(path)


def test_identity_names_the_impersonated_user_else_the_kubeconfig_user(tmp_path: Path) -> None:
    kc = kubeconfig(tmp_path)
    assert command.identity(args(kubeconfig=kc)) == "kubeconfig user dev-user"
    assert command.identity(args(kubeconfig=kc, as_user="alice", as_groups=["g1", "g2"])) == (
        "alice (groups g1, g2), impersonated"
    )
    kc = kubeconfig(tmp_path, **{"as": "carol"})
    assert command.identity(args(kubeconfig=kc)) == "carol, impersonated"
    assert command.identity(args(in_cluster=True)) == "its read-only ServiceAccount"


def test_modelreg_ui_serves_says_where_and_exits_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    """The real command in a process: the banner, pages (the API server here is unreachable, so
    a 503 page, not a traceback), then SIGINT -> exit 130 and SIGTERM -> exit 0."""
    kc = kubeconfig(tmp_path)
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 0)):
        proc = launch_ui(kc, "--as", "alice")
        try:
            line = banner(proc)
            assert line.startswith("modelreg ui: serving http://127.0.0.1:"), line
            assert line.rstrip().endswith("(namespace team-a, as alice, impersonated)")
            url = line.split()[3]
            with urllib.request.urlopen(url + "healthz", timeout=10) as r:  # noqa: S310
                assert r.read() == b"ok\n"
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(url, timeout=30)  # noqa: S310
            assert e.value.code == 503
            page = e.value.read().decode()
            assert "cannot reach the Kubernetes API server" in page
            proc.send_signal(sig)
            assert proc.wait(timeout=20) == code
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        _, stderr = proc.communicate()
        assert "Traceback" not in stderr
