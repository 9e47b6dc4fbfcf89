"""Start-up of the data plane: download through the object-store adapter with the digest checked,
retries on transient store errors, refusal before any byte when the format is unsafe, and
readiness held at 503 until the model is verified and loaded.

The fake replaces `ObjectStore` at the adapter boundary; it keeps the adapter's contract (write
`dest` only when the sha256 matches, raise DigestMismatch otherwise). The real adapter against a
real S3 server is exercised in tests/e2e.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelreg.adapters.objectstore import (
    Digest,
    DigestMismatch,
    ObjectNotFound,
    StoreConfig,
    StoreError,
    StoreUnavailable,
)
from modelreg.runtime import dataplane as dataplane_module
from modelreg.runtime.dataplane import DataPlane, State
from modelreg.runtime.errors import ModelLoadError
from modelreg.runtime.settings import RuntimeSettings
from tests.unit.runtime.conftest import Artifacts, serve, wait_for

URI = "s3://models/iris/3/model.onnx"


class FakeStore:
    """Stands in for modelreg.adapters.objectstore.ObjectStore."""

    objects: dict[str, bytes] = {}
    failures: list[StoreError] = []
    configs: list[StoreConfig] = []
    downloads: list[str] = []
    gate: threading.Event | None = None
    closed = 0

    def __init__(self, config: StoreConfig, **kwargs: Any) -> None:
        FakeStore.configs.append(config)

    async def download(
        self, uri: str, dest: Path, expected_sha256: str, version_id: str | None = None
    ) -> Digest:
        FakeStore.downloads.append(uri if version_id is None else f"{uri}?versionId={version_id}")
        if FakeStore.gate is not None:
            await asyncio.to_thread(FakeStore.gate.wait, 20)
        if FakeStore.failures:
            raise FakeStore.failures.pop(0)
        if uri not in FakeStore.objects:
            raise ObjectNotFound(f"get {uri}: no such object (NoSuchKey: missing)")
        data = FakeStore.objects[uri]
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256:
            raise DigestMismatch(uri, expected_sha256, actual)
        await asyncio.to_thread(_write, dest, data)
        return Digest(sha256=actual, size=len(data), etag="e")

    def close(self) -> None:
        FakeStore.closed += 1


def _write(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)


@pytest.fixture(autouse=True)
def fake_store(monkeypatch: pytest.MonkeyPatch) -> type[FakeStore]:
    FakeStore.objects = {}
    FakeStore.failures = []
    FakeStore.configs = []
    FakeStore.downloads = []
    FakeStore.gate = None
    FakeStore.closed = 0
    monkeypatch.setattr(dataplane_module, "ObjectStore", FakeStore)
    return FakeStore


def _settings(artifacts: Artifacts, tmp_path: Path, **overrides: Any) -> RuntimeSettings:
    values: dict[str, Any] = {
        "model_name": "iris",
        "model_version": 3,
        "artifact_uri": URI,
        "artifact_sha256": artifacts["onnx"].sha256,
        "artifact_format": "onnx",
        "model_dir": tmp_path / "models",
        "s3_endpoint": "http://127.0.0.1:9000",
        "aws_region": "us-east-1",
        "aws_access_key_id": "AKIDEXAMPLE",
        "aws_secret_access_key": "very-secret",
        "http_host": "127.0.0.1",
        "http_port": 0,
        "grpc_port": 0,  # off: not 9000, which another server here may hold
        "termination_log": None,
        "exit_on_load_failure": False,
    }
    values.update(overrides)
    return RuntimeSettings(**values)


def test_download_verify_load(artifacts: Artifacts, tmp_path: Path) -> None:
    FakeStore.objects[URI] = artifacts["onnx"].path.read_bytes()
    plane = DataPlane(_settings(artifacts, tmp_path))
    asyncio.run(plane.load())
    assert plane.state is State.READY
    assert (tmp_path / "models" / "iris-v3.onnx").read_bytes() == FakeStore.objects[URI]
    (config,) = FakeStore.configs
    assert config == StoreConfig(
        endpoint="http://127.0.0.1:9000",
        region="us-east-1",
        access_key_id="AKIDEXAMPLE",
        secret_access_key="very-secret",
    )
    assert FakeStore.closed == 1


def test_digest_mismatch_is_never_loaded(artifacts: Artifacts, tmp_path: Path) -> None:
    FakeStore.objects[URI] = b"someone replaced the artifact"
    plane = DataPlane(_settings(artifacts, tmp_path))
    with pytest.raises(ModelLoadError, match="refusing to load") as info:
        asyncio.run(plane.load())
    assert "changed after it was registered" in str(info.value)
    assert plane.state is State.FAILED
    assert plane.model is None
    assert not (tmp_path / "models" / "iris-v3.onnx").exists()


def test_transient_store_errors_are_retried_with_backoff(
    artifacts: Artifacts, tmp_path: Path
) -> None:
    FakeStore.objects[URI] = artifacts["onnx"].path.read_bytes()
    FakeStore.failures = [StoreUnavailable("connection refused"), StoreUnavailable("SlowDown")]
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    plane = DataPlane(_settings(artifacts, tmp_path), sleep=sleep)
    asyncio.run(plane.load())
    assert plane.state is State.READY
    assert sleeps == [1.0, 2.0]
    assert len(FakeStore.downloads) == 3


def test_missing_object_is_fatal(artifacts: Artifacts, tmp_path: Path) -> None:
    plane = DataPlane(_settings(artifacts, tmp_path))
    with pytest.raises(ModelLoadError, match=r"cannot download the artifact: .*no such object"):
        asyncio.run(plane.load())
    assert plane.state is State.FAILED


def test_verified_file_from_a_previous_start_is_reused(
    artifacts: Artifacts, tmp_path: Path
) -> None:
    dest = tmp_path / "models" / "iris-v3.onnx"
    dest.parent.mkdir()
    dest.write_bytes(artifacts["onnx"].path.read_bytes())
    plane = DataPlane(_settings(artifacts, tmp_path))
    asyncio.run(plane.load())
    assert plane.state is State.READY
    assert FakeStore.downloads == []


def test_stale_file_is_downloaded_again(artifacts: Artifacts, tmp_path: Path) -> None:
    dest = tmp_path / "models" / "iris-v3.onnx"
    dest.parent.mkdir()
    dest.write_bytes(b"stale")
    FakeStore.objects[URI] = artifacts["onnx"].path.read_bytes()
    plane = DataPlane(_settings(artifacts, tmp_path))
    asyncio.run(plane.load())
    assert FakeStore.downloads == [URI]
    assert dest.read_bytes() == FakeStore.objects[URI]


def test_pickle_is_refused_before_any_download(artifacts: Artifacts, tmp_path: Path) -> None:
    FakeStore.objects[URI] = artifacts["sklearn"].path.read_bytes()
    settings = _settings(
        artifacts, tmp_path, artifact_format="sklearn", artifact_sha256=artifacts["sklearn"].sha256
    )
    with pytest.raises(ModelLoadError, match="MODELREG_ALLOW_PICKLE"):
        asyncio.run(DataPlane(settings).load())
    assert FakeStore.downloads == []


def test_pickle_with_opt_in_is_served(artifacts: Artifacts, tmp_path: Path) -> None:
    FakeStore.objects[URI] = artifacts["sklearn"].path.read_bytes()
    settings = _settings(
        artifacts,
        tmp_path,
        artifact_format="sklearn",
        artifact_sha256=artifacts["sklearn"].sha256,
        allow_pickle=True,
    )
    plane = DataPlane(settings)
    asyncio.run(plane.load())
    assert plane.state is State.READY


def test_readiness_is_503_until_verified_and_loaded(artifacts: Artifacts, tmp_path: Path) -> None:
    FakeStore.objects[URI] = artifacts["onnx"].path.read_bytes()
    FakeStore.gate = threading.Event()
    with serve(_settings(artifacts, tmp_path), wait_ready=False) as running:
        url = running.url
        wait_for(lambda: bool(FakeStore.downloads), what="the download to start")
        assert httpx.get(url + "/v2/health/live").status_code == 200
        for method, path in [
            ("GET", "/v2/health/ready"),
            ("GET", "/v2/models/iris"),
            ("GET", "/v2/models/iris/ready"),
            ("POST", "/v2/models/iris/infer"),
        ]:
            resp = httpx.request(method, url + path, json={"inputs": []})
            assert resp.status_code == 503, (path, resp.text)
            assert "not ready" in resp.json()["error"]
        assert (
            'modelreg_runtime_model_ready{model="iris",version="3"} 0.0'
            in httpx.get(url + "/metrics").text
        )
        FakeStore.gate.set()
        wait_for(
            lambda: httpx.get(url + "/v2/health/ready").status_code == 200,
            what="readiness after the load",
        )
        assert httpx.get(url + "/v2/models/iris/ready").json() == {"name": "iris", "ready": True}
