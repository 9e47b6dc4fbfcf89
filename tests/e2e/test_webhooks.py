"""Webhooks on transitions, end to end: the real operator process sends CloudEvents to a real
receiver on 127.0.0.1, which parses every request with the CloudEvents SDK and checks the HMAC
with the key of a real Secret; the real API server stores what status.notifications says.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http_event

from tests.e2e.helpers import S3, Kubectl, OperatorProcess, wait_for
from tests.e2e.test_cli import Cli, cli, model_file
from tests.e2e.test_sdk_helpers import storage

__all__ = ["cli"]  # the fixture, re-exported so pytest finds it here

TYPE = "dev.modelreg.modelversion."


@dataclass
class Got:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    event: Any  # the SDK's CloudEvent
    signature_ok: bool | None  # None: no key to check with


@dataclass
class Receiver:
    """A webhook receiver in a thread. `script[path]` are the statuses of the next requests to
    that path (then 200); `key` checks X-Modelreg-Signature."""

    key: bytes | None = None
    script: dict[str, list[int]] = field(default_factory=dict)
    got: list[Got] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    event = from_http_event(HTTPMessage(headers=headers, body=body))
                except Exception as e:
                    with outer.lock:
                        outer.errors.append(f"{self.path}: not a CloudEvent: {e}")
                    self.answer(400)
                    return
                ok = None
                if outer.key is not None:
                    message = f"{headers.get('ce-id')}.{headers.get('ce-time')}.".encode() + body
                    want = "sha256=" + hmac.new(outer.key, message, hashlib.sha256).hexdigest()
                    ok = hmac.compare_digest(headers.get("x-modelreg-signature", ""), want)
                with outer.lock:
                    outer.got.append(Got(self.path, headers, body, event, ok))
                    script = outer.script.get(self.path) or []
                    status = script.pop(0) if script else 200
                self.answer(status)

            def answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Got]:
        with self.lock:
            return [g for g in self.got if g.path == path]


@pytest.fixture
def hmac_key(kubectl: Kubectl, namespace: str) -> bytes:
    key = secrets.token_hex(32)
    kubectl("-n", namespace, "create", "secret", "generic", "hook-key",
            f"--from-literal=hmac-key={key}")  # fmt: skip
    return key.encode()


@pytest.fixture
def receiver(hmac_key: bytes) -> Iterator[Receiver]:
    rx = Receiver(key=hmac_key).start()
    yield rx
    rx.stop()
    assert rx.errors == [], rx.errors


@pytest.fixture
def trap() -> Iterator[Receiver]:
    """A receiver on a port the allow-list does not name: nothing may reach it."""
    rx = Receiver().start()
    yield rx
    rx.stop()
    assert rx.got == [], [g.event for g in rx.got]


@pytest.fixture
def webhook_operator(
    kubeconfig: str, namespace: str, tmp_path: Path, receiver: Receiver
) -> Iterator[OperatorProcess]:
    op = OperatorProcess(
        kubeconfig=kubeconfig,
        namespaces=[namespace],
        log_path=tmp_path / "operator.log",
        extra_env={
            "MODELREG_NOTIFICATION_ALLOWED_HOSTS": json.dumps([f"127.0.0.1:{receiver.port}"]),
            # An archived serving version leaves production at once (no grace period to wait).
            "MODELREG_WITHDRAW_GRACE_SECONDS": "0",
        },
    ).start()
    yield op
    op.stop()
    print(f"--- operator log ---\n{op.log()[-20000:]}")


def _model(
    kubectl: Kubectl, namespace: str, s3: S3, secret: str, notifications: list[dict[str, Any]]
) -> None:
    kubectl.apply(
        {
            "apiVersion": "modelreg.dev/v1alpha1",
            "kind": "Model",
            "metadata": {"name": "iris", "namespace": namespace},
            "spec": {
                "storage": storage(s3, namespace, "iris", secret),
                "serving": {"replicas": 1},
                "notifications": notifications,
            },
        }
    )


def _deliveries(kubectl: Kubectl, namespace: str) -> dict[str, dict[str, Any]]:
    st = (kubectl.get("model", "iris", namespace) or {}).get("status") or {}
    return {d["url"]: d for d in st.get("notifications") or []}


def _phase(kubectl: Kubectl, namespace: str, name: str) -> str:
    return str(((kubectl.get("mv", name, namespace) or {}).get("status") or {}).get("phase"))


def test_transitions_arrive_as_signed_cloudevents_in_order(
    cli: Cli,
    kubectl: Kubectl,
    namespace: str,
    s3: S3,
    s3_secret: str,
    receiver: Receiver,
    trap: Receiver,
    webhook_operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    hook, refused = receiver.url("/hook"), "http://example.com/hook"
    _model(kubectl, namespace, s3, s3_secret, [
        {"url": hook, "secretRef": {"name": "hook-key"}},
        {"url": refused},
        {"url": trap.url("/hook")},
    ])  # fmt: skip

    r = cli("register", "iris", str(model_file(tmp_path, "m1.onnx")), "--wait", "--timeout",
            "60", "--no-progress")  # fmt: skip
    assert r.code == 0, r.err
    r = cli("promote", "iris", "1", "--timeout", "120")
    assert r.code == 0, (r.out, r.err)
    r = cli("archive", "iris", "1")
    assert r.code == 0, r.err
    wait_for(lambda: _phase(kubectl, namespace, "iris-v1") == "Archived", timeout=60,
             what="iris-v1 Archived")  # fmt: skip

    expected = ["created", "verified", "promoted", "serving", "archived"]
    wait_for(
        lambda: len(receiver.at("/hook")) >= len(expected),
        timeout=60,
        what="five events at the receiver",
    )
    got = receiver.at("/hook")
    assert [g.event.get_type() for g in got] == [TYPE + e for e in expected]
    ids = [g.event.get_id() for g in got]
    assert len(set(ids)) == len(ids), ids
    assert all(g.signature_ok for g in got), [g.headers for g in got]
    uid = kubectl.get("mv", "iris-v1", namespace)["metadata"]["uid"]  # type: ignore[index]
    for g, kind in zip(got, expected, strict=True):
        ce = g.event
        assert ce.get_id().startswith(f"{uid}:{kind}:")
        assert ce.get_source() == f"/apis/modelreg.dev/v1alpha1/namespaces/{namespace}/models/iris"
        assert ce.get_subject() == "iris-v1"
        data = ce.get_data()
        assert (data["model"], data["version"], data["event"]) == ("iris", 1, kind)
        assert data["artifact"]["uri"].endswith("/m1.onnx")
        assert len(data["artifact"]["sha256"]) == 64
    phases = [g.event.get_data()["phase"] for g in got]
    # The first status is the check's verdict when it came within verify_hold_seconds.
    assert phases[0] in ("Pending", "Verifying", "Ready")
    assert phases[1:] == ["Ready", "Serving", "Serving", "Archived"]

    def settled() -> dict[str, dict[str, Any]] | None:
        d = _deliveries(kubectl, namespace)
        ok = d.get(hook, {}).get("delivered") == 5 and d.get(hook, {}).get("pending") == 0
        return d if ok else None

    d = wait_for(settled, timeout=30, what="status.notifications to show five deliveries")
    assert list(d) == [hook, refused, trap.url("/hook")]  # one entry per URL, in spec order
    assert d[hook]["failed"] == 0
    assert d[hook]["lastEvent"] == ids[-1]
    assert d[hook]["lastSuccess"]
    assert "lastError" not in d[hook]
    for url in (refused, trap.url("/hook")):
        assert d[url]["delivered"] == d[url]["failed"] == 0
        assert d[url]["lastError"].startswith("not allowed: http://"), d[url]
        assert "notificationAllowedHosts" in d[url]["lastError"]
    assert len(receiver.at("/hook")) == 5  # no duplicates either


def test_a_receiver_that_fails_then_recovers_gets_the_events(
    cli: Cli,
    kubectl: Kubectl,
    namespace: str,
    s3: S3,
    s3_secret: str,
    receiver: Receiver,
    webhook_operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    flaky, reject = receiver.url("/flaky"), receiver.url("/reject")
    receiver.script["/flaky"] = [500, 500]  # then 200
    receiver.script["/reject"] = [400] * 10  # never accepts: no retry, each event fails
    _model(kubectl, namespace, s3, s3_secret, [
        {"url": flaky, "secretRef": {"name": "hook-key"}, "events": ["created", "verified"]},
        {"url": reject, "events": ["created", "verified"]},
    ])  # fmt: skip
    r = cli("register", "iris", str(model_file(tmp_path, "m1.onnx")), "--wait", "--timeout",
            "60", "--no-progress")  # fmt: skip
    assert r.code == 0, r.err

    def counted() -> dict[str, dict[str, Any]] | None:
        d = _deliveries(kubectl, namespace)
        done = d.get(flaky, {}).get("delivered") == 2 and d.get(reject, {}).get("failed") == 2
        return d if done else None

    d = wait_for(counted, timeout=90, what="two delivered to /flaky, two failed at /reject")
    got = receiver.at("/flaky")
    # created was tried three times (500, 500, 200) under one id, then verified once.
    ids = [g.event.get_id() for g in got]
    assert [g.event.get_type() for g in got] == [TYPE + "created"] * 3 + [TYPE + "verified"]
    assert len(set(ids[:3])) == 1
    assert ids[3] != ids[0]
    assert all(g.signature_ok for g in got)
    assert (d[flaky]["failed"], d[flaky]["pending"]) == (0, 0)
    assert "HTTP 500 (attempt 2 of 6; retrying)" in d[flaky]["lastError"]  # the last failure
    assert d[flaky]["lastEvent"] == ids[3]
    assert [g.event.get_type() for g in receiver.at("/reject")] == [
        TYPE + "created", TYPE + "verified"
    ]  # each tried once: a 400 is not retried  # fmt: skip
    assert d[reject]["delivered"] == 0
    assert "HTTP 400 (attempt 1 of 6; dropped)" in d[reject]["lastError"]
    # No secretRef: unsigned.
    assert all("x-modelreg-signature" not in g.headers for g in receiver.at("/reject"))
