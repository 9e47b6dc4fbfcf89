"""Trust (issue 11, items 12, 13, 14 and 16): the operator lends no credentials and reaches no
endpoint it was not allowed, never trusts a verdict it did not seal, and confirms an artifact
before it enters Staging or Production. Real API server, real S3 server (versitygw), one operator
process per test watching only the test's namespace.

Traffic goes to loopback only: the refused endpoint is a loopback port this test listens on, and
the test proves nothing ever connected to it. Link-local and metadata addresses are refused by
`adapters.endpoints`, tested with a resolver stub in tests/unit/test_endpoints.py.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.helpers import S3, Kubectl, OperatorProcess, wait_for
from tests.e2e.registry import Registry


def _operator(
    kubeconfig: str, namespace: str, tmp_path: Path, **env: str
) -> Iterator[OperatorProcess]:
    op = OperatorProcess(
        kubeconfig=kubeconfig,
        namespaces=[namespace],
        log_path=tmp_path / "operator.log",
        extra_env=env,
    ).start()
    yield op
    op.stop()
    print(f"--- operator log ---\n{op.log()[-20000:]}")


def _reg(kubectl: Kubectl, namespace: str, s3: S3, secret: str) -> Registry:
    return Registry(kubectl=kubectl, namespace=namespace, s3=s3, secret=secret)


def _ambient(s3: S3) -> dict[str, str]:
    """The operator's own credentials: what IRSA or instance metadata would give it."""
    return {"AWS_ACCESS_KEY_ID": s3.access_key_id, "AWS_SECRET_ACCESS_KEY": s3.secret_access_key}


def _no_secret_storage(reg: Registry, model: str) -> dict[str, Any]:
    return {"uri": reg.prefix(model), "endpoint": reg.s3.endpoint, "region": reg.s3.region}


def _ready(reg: Registry, model: str, n: int) -> dict[str, Any]:
    return reg.condition(model, n, "Ready")


# -- 12. no ambient credentials -------------------------------------------------------------------


@pytest.fixture
def ambient_operator(
    kubeconfig: str, namespace: str, tmp_path: Path, s3: S3
) -> Iterator[OperatorProcess]:
    """An operator that has credentials of its own for the store, and lends them to nobody."""
    yield from _operator(kubeconfig, namespace, tmp_path, **_ambient(s3))


def test_a_model_without_secret_ref_is_not_verified_with_the_operators_credentials(
    kubectl: Kubectl, namespace: str, s3: S3, s3_secret: str, ambient_operator: OperatorProcess
) -> None:
    reg = _reg(kubectl, namespace, s3, s3_secret)
    reg.model("borrow", storage=_no_secret_storage(reg, "borrow"))
    reg.version("borrow", 1, "Staging")
    st = reg.wait_phase("borrow", 1, "Blocked")
    ready = _ready(reg, "borrow", 1)
    assert ready["reason"] == "CredentialsRequired", st
    assert "spec.storage.secretRef" in ready["message"]
    assert "MODELREG_ALLOW_AMBIENT_CREDENTIALS" in ready["message"]
    assert st.get("stage") in (None, "None")
    # The same artifact under a Model that names its Secret verifies: only the lending is refused.
    reg.model("named")
    reg.version("named", 1, "Staging")
    reg.wait_phase("named", 1, "Ready")


@pytest.fixture
def lending_operator(
    kubeconfig: str, namespace: str, tmp_path: Path, s3: S3
) -> Iterator[OperatorProcess]:
    yield from _operator(
        kubeconfig,
        namespace,
        tmp_path,
        MODELREG_ALLOW_AMBIENT_CREDENTIALS="true",
        **_ambient(s3),
    )


def test_ambient_credentials_are_used_only_when_the_platform_allows_them(
    kubectl: Kubectl, namespace: str, s3: S3, s3_secret: str, lending_operator: OperatorProcess
) -> None:
    reg = _reg(kubectl, namespace, s3, s3_secret)
    reg.model("ambient", storage=_no_secret_storage(reg, "ambient"))
    reg.version("ambient", 1, "Staging")
    reg.wait_phase("ambient", 1, "Ready")
    assert reg.status("ambient", 1)["artifact"]["verified"] is True


# -- 13. endpoint policy --------------------------------------------------------------------------


@pytest.fixture
def trap() -> Iterator[tuple[int, list[str]]]:
    """A loopback port that records every connection made to it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    seen: list[str] = []

    def accepted() -> list[str]:
        while True:
            try:
                conn, peer = sock.accept()
            except BlockingIOError:
                return seen
            seen.append(f"{peer[0]}:{peer[1]}")
            conn.close()

    yield sock.getsockname()[1], seen
    accepted()
    sock.close()
    assert seen == [], f"something connected to the refused endpoint: {seen}"


@pytest.fixture
def allow_listed_operator(
    kubeconfig: str, namespace: str, tmp_path: Path, s3: S3
) -> Iterator[OperatorProcess]:
    store = urlsplit(s3.endpoint)
    allowed = json.dumps([f"{store.hostname}:{store.port}"])
    yield from _operator(kubeconfig, namespace, tmp_path, MODELREG_ALLOWED_ENDPOINT_HOSTS=allowed)


def test_an_endpoint_off_the_allow_list_is_refused_before_any_connection(
    kubectl: Kubectl,
    namespace: str,
    s3: S3,
    s3_secret: str,
    trap: tuple[int, list[str]],
    allow_listed_operator: OperatorProcess,
) -> None:
    port, seen = trap
    reg = _reg(kubectl, namespace, s3, s3_secret)
    reg.model(
        "elsewhere",
        storage={
            "uri": reg.prefix("elsewhere"),
            "endpoint": f"http://127.0.0.1:{port}",
            "region": s3.region,
            "secretRef": {"name": s3_secret},
        },
    )
    reg.version("elsewhere", 1, "Staging")
    reg.wait_phase("elsewhere", 1, "Blocked")
    ready = _ready(reg, "elsewhere", 1)
    assert ready["reason"] == "EndpointNotAllowed", ready
    assert f"127.0.0.1:{port}" in ready["message"]
    assert "allowed endpoint hosts" in ready["message"]
    # The allow-listed store still works under the same operator.
    reg.model("listed")
    reg.version("listed", 1, "Staging")
    reg.wait_phase("listed", 1, "Ready")
    time.sleep(1)  # a late connection attempt would show in the trap's check
    assert seen == []


# -- 14. a forged verdict is never trusted ----------------------------------------------------------


def _patch_status(kubectl: Kubectl, namespace: str, name: str, status: dict[str, Any]) -> None:
    kubectl(
        "-n", namespace, "patch", "mv", name, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


def test_a_forged_verified_status_is_verified_again(
    kubectl: Kubectl,
    namespace: str,
    s3: S3,
    s3_secret: str,
    operator: OperatorProcess,
) -> None:
    """status.artifact says verified, but not with the operator's seal (written by a hand that
    got past the status policy, or copied from another version): the artifact is hashed again,
    and the forged verdict never lets a mismatching artifact into Staging."""
    reg = _reg(kubectl, namespace, s3, s3_secret)
    reg.model("forged")
    uri, _ = reg.artifact("forged", 1, b"the real bytes")
    claimed = "ab" * 32
    reg.version("forged", 1, "None", uri=uri, sha256=claimed)
    reg.wait_phase("forged", 1, "Blocked")
    assert _ready(reg, "forged", 1)["reason"] == "DigestMismatch"
    # A second, honest version: its sealed verdict is what a forger would copy.
    reg.version("forged", 2, "None")
    honest = reg.wait_phase("forged", 2, "Ready")["artifact"]
    assert honest.get("seal"), honest

    operator.stop()
    forged = {
        "verified": True,
        "uri": uri,
        "sha256": claimed,
        "sizeBytes": 14,
        "etag": "",
        "seal": honest["seal"],
    }
    _patch_status(kubectl, namespace, "forged-v1", {"artifact": forged, "phase": "Ready"})
    assert reg.status("forged", 1)["artifact"]["verified"] is True
    reg.stage("forged", 1, "Staging")
    operator.start()

    def verdict() -> dict[str, Any] | None:
        st = reg.status("forged", 1)
        art = st.get("artifact") or {}
        return st if art.get("verified") is False and st.get("phase") == "Blocked" else None

    st = wait_for(verdict, timeout=60, what="the forged verdict replaced by a real check")
    assert _ready(reg, "forged", 1)["reason"] == "DigestMismatch"
    assert st.get("stage") != "Staging"
    # The honest version's own seal is still trusted after the restart (same key): not re-read.
    assert reg.status("forged", 2)["artifact"]["seal"] == honest["seal"]


# -- 16. confirm before Staging and Production; confirmations expire --------------------------------


def _overwrite(reg: Registry, uri: str, data: bytes) -> None:
    reg.s3.put(uri.removeprefix(f"s3://{reg.s3.bucket}/"), data)


@pytest.mark.parametrize("stage", ["Staging", "Production"])
def test_an_artifact_overwritten_after_verification_is_not_promoted(
    kubectl: Kubectl,
    namespace: str,
    s3: S3,
    s3_secret: str,
    operator: OperatorProcess,
    stage: str,
) -> None:
    reg = _reg(kubectl, namespace, s3, s3_secret)
    reg.model("swap")
    uri, sha = reg.artifact("swap", 1, b"verified bytes")
    reg.version("swap", 1, "None", uri=uri, sha256=sha)
    reg.wait_phase("swap", 1, "Ready")
    # Verified in this operator process; then the object is replaced in the bucket.
    _overwrite(reg, uri, b"other bytes, same key")
    reg.stage("swap", 1, stage)
    st = reg.wait_phase("swap", 1, "Blocked")
    ready = _ready(reg, "swap", 1)
    assert ready["reason"] == "DigestMismatch", st
    assert st.get("stage") in (None, "None")
    assert "swap-v1" not in reg.deployments("swap")
    reasons = [h.get("reason", "") for h in st.get("history", [])]
    assert not any(r in ("Staged", "Serving") for r in reasons), st["history"]


@pytest.fixture
def short_confirmations(
    kubeconfig: str, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    yield from _operator(kubeconfig, namespace, tmp_path, MODELREG_ARTIFACT_CONFIRM_SECONDS="2")


def test_confirmations_expire(
    kubectl: Kubectl,
    namespace: str,
    s3: S3,
    s3_secret: str,
    short_confirmations: OperatorProcess,
) -> None:
    """A staged version whose object changes is found out within the confirmation interval,
    without any change to the version or its Model."""
    reg = _reg(kubectl, namespace, s3, s3_secret)
    reg.model("aging")
    reg.version("aging", 1, "Staging")
    reg.wait_phase("aging", 1, "Ready")
    uri = reg.status("aging", 1)["artifact"]["uri"]
    _overwrite(reg, uri, b"replaced")
    st = reg.wait_phase("aging", 1, "Blocked", timeout=30)
    assert _ready(reg, "aging", 1)["reason"] == "DigestMismatch", st
