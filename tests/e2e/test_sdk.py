"""The Python SDK end to end: real API server, real S3 server, the real operator process.

Every Client call is exercised on the happy path and on its error paths (missing Model, no storage,
no credentials, RBAC refusals, not found, timeout, blocked). Artifacts are checked byte for byte
in the S3 server; nothing is faked.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from modelreg.api.models import Phase, Stage
from modelreg.sdk import errors
from modelreg.sdk.client import Client
from tests.e2e.helpers import S3, Kubectl, OperatorProcess
from tests.e2e.test_sdk_helpers import (
    MODELREG_RULES,
    apply_model,
    service_account_kubeconfig,
    storage,
)

MIB = 1024 * 1024


def client_for(kubeconfig: str, namespace: str, s3: S3, **kw: object) -> Client:
    return Client(kubeconfig=kubeconfig, namespace=namespace, env={}, poll_interval=0.25, **kw)  # type: ignore[arg-type]


def artifact(tmp_path: Path, name: str = "model.onnx", size: int = 4096) -> Path:
    p = tmp_path / name
    p.write_bytes(os.urandom(size))
    return p


def key_of(uri: str, s3: S3) -> str:
    assert uri.startswith(f"s3://{s3.bucket}/")
    return uri.removeprefix(f"s3://{s3.bucket}/")


def test_register_promote_rollback_history_compare_verify(
    kubeconfig: str,
    kubectl: Kubectl,
    namespace: str,
    s3: S3,
    s3_secret: str,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    apply_model(
        kubectl,
        namespace,
        "credit",
        storage_spec=storage(s3, namespace, "credit", s3_secret),
        gates=[{"metric": "auc", "min": 0.8}],
    )
    client = client_for(kubeconfig, namespace, s3, part_bytes=5 * MIB, concurrency=3)

    # A multipart upload (3 parts) with progress, checked byte for byte in the store.
    big = artifact(tmp_path, size=12 * MIB + 7)
    seen: list[tuple[int, int]] = []
    v1 = client.register(
        "credit",
        big,
        metrics={"auc": 0.85, "latency_p99_ms": 30},
        params={"C": 1.0},
        lineage={"run": "r1", "gitCommit": "abc"},
        framework="sklearn",
        progress=lambda sent, total: seen.append((sent, total)),
    )
    assert v1.metadata.name == "credit-v1"
    assert v1.spec.artifact.uri == f"s3://{s3.bucket}/{namespace}/credit/1/model.onnx"
    data = big.read_bytes()
    assert v1.spec.artifact.sha256 == hashlib.sha256(data).hexdigest()
    assert s3.get(key_of(v1.spec.artifact.uri, s3)) == data
    assert seen[-1] == (len(data), len(data))
    verified = client.wait("credit-v1", condition="ArtifactVerified", timeout=60)
    assert verified.status.artifact is not None
    assert verified.status.artifact.size_bytes == len(data)

    v2 = client.register("credit", artifact(tmp_path), metrics={"auc": 0.91, "latency_p99_ms": 20})
    assert v2.spec.version == 2

    r = client.promote("credit", 1, archive_previous=True, wait=True, timeout=120)
    assert r.version.status.phase == Phase.SERVING
    assert r.archived == []

    r = client.promote("credit-v2", archive_previous=True, wait=True, timeout=120)
    assert r.version.status.phase == Phase.SERVING
    assert r.version.status.stage == Stage.PRODUCTION
    assert r.archived == ["credit-v1"]
    assert client.get("credit", 1).spec.stage == Stage.ARCHIVED
    assert client.get_model("credit").status.production_version == 2

    assert [mv.metadata.name for mv in client.list("credit")] == ["credit-v1", "credit-v2"]
    assert [m.metadata.name for m in client.list_models()] == ["credit"]
    cmp = client.compare("credit")
    assert cmp.table == {"auc": {1: 0.85, 2: 0.91}, "latency_p99_ms": {1: 30.0, 2: 20.0}}

    # Rollback: nobody else asks for Production, so the previous production version is asked again.
    rb = client.rollback("credit", wait=True, timeout=120)
    assert (rb.archived, rb.target) == ("credit-v2", "credit-v1")
    assert rb.version.status.phase == Phase.SERVING
    assert client.get("credit-v2").spec.stage == Stage.ARCHIVED
    history = client.history("credit")
    in_production = [h.version for h in history if h.stage == Stage.PRODUCTION]
    assert sorted(set(in_production)) == [1, 2]
    assert in_production.count(1) == 2  # promoted, then rolled back to
    assert [h.stage for h in client.history("credit", 2)][-1] == Stage.ARCHIVED

    report = client.verify("credit", 2)
    assert report.ok
    s3.client().put_object(Bucket=s3.bucket, Key=key_of(v2.spec.artifact.uri, s3), Body=b"tampered")
    report = client.verify("credit", 2)
    assert not report.ok
    assert report.actual_sha256 == hashlib.sha256(b"tampered").hexdigest()


def test_gate_failure_blocks_promotion(
    kubeconfig: str,
    kubectl: Kubectl,
    namespace: str,
    s3: S3,
    s3_secret: str,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    apply_model(
        kubectl,
        namespace,
        "credit",
        storage_spec=storage(s3, namespace, "credit", s3_secret),
        gates=[{"metric": "auc", "min": 0.8}],
    )
    client = client_for(kubeconfig, namespace, s3)
    client.register("credit", artifact(tmp_path), metrics={"auc": 0.5})
    with pytest.raises(errors.VersionBlocked, match="auc") as e:
        client.promote("credit-v1", wait=True, timeout=60)
    assert e.value.exit_code == errors.EXIT_PRECONDITION
    assert client.get("credit-v1").status.phase == Phase.BLOCKED


def test_errors_without_operator(
    kubeconfig: str, kubectl: Kubectl, namespace: str, s3: S3, s3_secret: str, tmp_path: Path
) -> None:
    client = client_for(kubeconfig, namespace, s3)
    path = artifact(tmp_path)
    with pytest.raises(errors.ModelNotFound, match=f"'ghost' not found in namespace '{namespace}'"):
        client.register("ghost", path)
    apply_model(kubectl, namespace, "bare", storage_spec=None)
    with pytest.raises(errors.NoStorageConfigured):
        client.register("bare", path)
    apply_model(
        kubectl, namespace, "nosecret", storage_spec=storage(s3, namespace, "nosecret", "missing")
    )
    with pytest.raises(errors.NoCredentials, match="cannot read Secret 'missing'"):
        client.register("nosecret", path)
    with pytest.raises(errors.VersionNotFound):
        client.get("credit", 1)
    with pytest.raises(errors.VersionNotFound):
        client.promote("credit-v1")
    with pytest.raises(errors.ModelNotFound):
        client.rollback("ghost")

    # Wrong credentials in the Secret: the store refuses, typed.
    kubectl("-n", namespace, "create", "secret", "generic", "wrong",
            "--from-literal=AWS_ACCESS_KEY_ID=nobody", "--from-literal=AWS_SECRET_ACCESS_KEY=nothing")  # fmt: skip
    apply_model(
        kubectl, namespace, "wrongcreds", storage_spec=storage(s3, namespace, "wrongcreds", "wrong")
    )
    with pytest.raises(errors.PermissionDenied, match="access denied"):
        client.register("wrongcreds", path)

    # No operator runs in this test: the version never gets a status, so wait times out.
    apply_model(
        kubectl, namespace, "credit", storage_spec=storage(s3, namespace, "credit", s3_secret)
    )
    client.register("credit", path)
    with pytest.raises(errors.Timeout, match="not reported on it yet"):
        client.wait("credit-v1", phase="Ready", timeout=2)
    with pytest.raises(errors.AlreadyExists):
        client.register("credit", path, version=1)

    # An unreachable store is a typed, retryable error.
    down = Client(
        kubeconfig=kubeconfig, namespace=namespace, env={}, s3_endpoint="http://127.0.0.1:9"
    )
    with pytest.raises(errors.Unavailable):
        down.register("credit", path)


def test_rbac_refusals_and_credential_fallback(
    kubeconfig: str, kubectl: Kubectl, namespace: str, s3: S3, s3_secret: str, tmp_path: Path
) -> None:
    apply_model(
        kubectl, namespace, "credit", storage_spec=storage(s3, namespace, "credit", s3_secret)
    )
    # A data scientist who may create versions but neither read Secrets nor change stages.
    cfg = service_account_kubeconfig(
        kubectl, namespace, "scientist", MODELREG_RULES, tmp_path / "scientist.kubeconfig"
    )
    path = artifact(tmp_path)
    limited = Client(kubeconfig=str(cfg), env={})
    assert limited.namespace == namespace  # from the kubeconfig context
    with pytest.raises(errors.NoCredentials, match="forbidden"):
        limited.register("credit", path)
    with_env = Client(
        kubeconfig=str(cfg),
        env={"AWS_ACCESS_KEY_ID": s3.access_key_id, "AWS_SECRET_ACCESS_KEY": s3.secret_access_key},
    )
    mv = with_env.register("credit", path)
    assert s3.get(key_of(mv.spec.artifact.uri, s3)) == path.read_bytes()
    with pytest.raises(errors.PermissionDenied) as e:
        with_env.promote("credit-v1")
    assert e.value.exit_code == errors.EXIT_FORBIDDEN


def test_concurrent_registrations_get_distinct_versions(
    kubeconfig: str, kubectl: Kubectl, namespace: str, s3: S3, s3_secret: str, tmp_path: Path
) -> None:
    apply_model(
        kubectl, namespace, "credit", storage_spec=storage(s3, namespace, "credit", s3_secret)
    )
    paths = []
    for i in range(4):
        d = tmp_path / f"w{i}"
        d.mkdir()
        paths.append(artifact(d, "model.onnx", size=6 * MIB + i))  # same file name: same keys
    results: dict[int, str] = {}
    failures: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            c = client_for(kubeconfig, namespace, s3, part_bytes=5 * MIB)
            mv = c.register("credit", paths[i])
            results[i] = mv.metadata.name
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures
    assert sorted(results.values()) == ["credit-v1", "credit-v2", "credit-v3", "credit-v4"]
    client = client_for(kubeconfig, namespace, s3)
    for i, name in results.items():
        mv = client.get(name)
        stored = s3.get(key_of(mv.spec.artifact.uri, s3))
        assert stored == paths[i].read_bytes(), f"{name} holds another registration's bytes"
        assert mv.spec.artifact.sha256 == hashlib.sha256(stored).hexdigest()
