"""The process contract: the environment the operator writes, `python -m modelreg.runtime` exit
codes and messages, the Kubernetes termination log, and a graceful shutdown that finishes the
requests in flight."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from pydantic import ValidationError

from modelreg.runtime.server import describe_errors, main
from modelreg.runtime.settings import RuntimeSettings
from tests.unit.runtime.conftest import Artifacts, wait_for

REPO = Path(__file__).resolve().parents[3]

CONTRACT_ENV = {
    "MODELREG_MODEL_NAME": "credit-scoring",
    "MODELREG_MODEL_VERSION": "3",
    "MODELREG_ARTIFACT_URI": "s3://models/credit-scoring/3/model.onnx",
    "MODELREG_ARTIFACT_SHA256": "AB" * 32,
    "MODELREG_ARTIFACT_FORMAT": "onnx",
    "MODELREG_S3_ENDPOINT": "http://minio.storage:9000",
    "AWS_REGION": "eu-west-1",
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI-secret",
    "MODELREG_HTTP_PORT": "9090",
    "MODELREG_MODEL_DIR": "/models",
    "MODELREG_ALLOW_PICKLE": "false",
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith(("MODELREG_", "AWS_")):
            monkeypatch.delenv(key)
    return monkeypatch


def test_settings_read_the_operator_contract(clean_env: pytest.MonkeyPatch) -> None:
    for k, v in CONTRACT_ENV.items():
        clean_env.setenv(k, v)
    s = RuntimeSettings()  # type: ignore[call-arg]
    assert s.model_name == "credit-scoring"
    assert s.model_version == 3
    assert s.artifact_uri == "s3://models/credit-scoring/3/model.onnx"
    assert s.expected_sha256 == "ab" * 32
    assert s.artifact_format == "onnx"
    assert s.s3_endpoint == "http://minio.storage:9000"
    assert s.aws_region == "eu-west-1"
    assert s.aws_access_key_id is not None
    assert s.aws_access_key_id.get_secret_value() == "AKIDEXAMPLE"
    assert s.aws_secret_access_key is not None
    assert s.aws_secret_access_key.get_secret_value() == "wJalrXUtnFEMI-secret"
    assert (s.http_host, s.http_port) == ("0.0.0.0", 9090)  # noqa: S104 - the pod default
    assert s.model_dir == Path("/models")
    assert s.allow_pickle is False
    assert s.max_request_bytes == 16 * 1024 * 1024
    assert "wJalrXUtnFEMI-secret" not in repr(s)
    assert "AKIDEXAMPLE" not in repr(s)


def test_empty_optional_variables_mean_unset(clean_env: pytest.MonkeyPatch) -> None:
    for k, v in CONTRACT_ENV.items():
        clean_env.setenv(k, v)
    for k in ("MODELREG_S3_ENDPOINT", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        clean_env.setenv(k, "")
    s = RuntimeSettings()  # type: ignore[call-arg]
    assert s.s3_endpoint is None
    assert s.aws_region is None
    assert s.aws_access_key_id is None


@pytest.mark.parametrize(
    ("drop", "change", "fragment"),
    [
        ("MODELREG_MODEL_NAME", {}, "MODELREG_MODEL_NAME: Field required"),
        ("MODELREG_ARTIFACT_SHA256", {}, "never loads an artifact it has not verified"),
        ("MODELREG_ARTIFACT_URI", {}, "MODELREG_ARTIFACT_URI (or a local"),
        (None, {"MODELREG_ARTIFACT_FORMAT": "custom"}, "MODELREG_ARTIFACT_FORMAT"),
        (None, {"MODELREG_ARTIFACT_SHA256": "xyz"}, "64 hexadecimal"),
        (None, {"MODELREG_MODEL_VERSION": "three"}, "MODELREG_MODEL_VERSION"),
        (None, {"MODELREG_HTTP_PORT": "99999"}, "MODELREG_HTTP_PORT"),
    ],
)
def test_bad_configuration_exits_2_with_the_variable_named(
    clean_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    drop: str | None,
    change: dict[str, str],
    fragment: str,
) -> None:
    env = {**CONTRACT_ENV, **change}
    if drop:
        env.pop(drop)
    for k, v in env.items():
        clean_env.setenv(k, v)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert "Traceback" not in err
    assert "wJalrXUtnFEMI-secret" not in err


def test_flags_override_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    from modelreg.runtime.server import load_settings

    for k, v in CONTRACT_ENV.items():
        clean_env.setenv(k, v)
    s = load_settings(["--port", "7000", "--model-name", "other"])
    assert (s.http_port, s.model_name) == (7000, "other")


def test_describe_errors_maps_aws_fields() -> None:
    with pytest.raises(ValidationError) as info:
        RuntimeSettings(model_name="m", artifact_format="onnx", artifact_path="x", aws_region=5)  # type: ignore[arg-type]
    assert "AWS_REGION" in describe_errors(info.value)


# ------------------------------------------------------------------------------------------------
# Real processes: `python -m modelreg.runtime`


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _process_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELREG_", "AWS_"))}
    env["PYTHONPATH"] = str(REPO / "operator")
    env["MODELREG_GRPC_PORT"] = "0"  # not 9000: other runtimes may run on this machine
    env.update(extra)
    return env


def test_refused_artifact_exits_1_and_writes_the_termination_log(
    artifacts: Artifacts, tmp_path: Path
) -> None:
    art = artifacts["sklearn"]
    log = tmp_path / "termination-log"
    env = _process_env(
        MODELREG_MODEL_NAME="iris",
        MODELREG_ARTIFACT_PATH=str(art.path),
        MODELREG_ARTIFACT_SHA256=art.sha256,
        MODELREG_ARTIFACT_FORMAT="sklearn",
        MODELREG_HTTP_HOST="127.0.0.1",
        MODELREG_HTTP_PORT=str(_free_port()),
        MODELREG_TERMINATION_LOG=str(log),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "modelreg.runtime"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "MODELREG_ALLOW_PICKLE" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "MODELREG_ALLOW_PICKLE" in log.read_text()


def test_graceful_shutdown_finishes_the_request_in_flight(
    artifacts: Artifacts, tmp_path: Path
) -> None:
    art = artifacts["onnx"]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = _process_env(
        MODELREG_MODEL_NAME="iris",
        MODELREG_ARTIFACT_PATH=str(art.path),
        MODELREG_ARTIFACT_SHA256=art.sha256,
        MODELREG_ARTIFACT_FORMAT="onnx",
        MODELREG_HTTP_HOST="127.0.0.1",
        MODELREG_HTTP_PORT=str(port),
        MODELREG_TERMINATION_LOG=str(tmp_path / "tl"),
        MODELREG_INLINE_MAX_ELEMENTS="0",  # predict in a thread: the loop sees the signal
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelreg.runtime"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def ready() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                return httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, timeout=60, what="the runtime to become ready")
        rows = np.tile(artifacts.X.astype(np.float32), (2000, 1))  # 300k rows: long enough
        body = orjson.dumps(
            {
                "inputs": [
                    {"name": "X", "shape": list(rows.shape), "datatype": "FP32", "data": rows}
                ]
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        result: dict[str, Any] = {}

        def send() -> None:
            try:
                r = httpx.post(url + "/v2/models/iris/infer", content=body, timeout=60)
                result["status"] = r.status_code
                result["rows"] = r.json()["outputs"][0]["shape"][0]
            except Exception as e:  # reported by the assertion below
                result["error"] = repr(e)

        sender = threading.Thread(target=send)
        sender.start()

        def in_flight() -> bool:
            text = httpx.get(url + "/metrics", timeout=5).text
            return 'modelreg_runtime_requests_in_flight{model="iris",version="1"} 1.0' in text

        wait_for(in_flight, timeout=30, what="the request to be in flight")
        proc.send_signal(signal.SIGTERM)
        sender.join(60)
        assert result == {"status": 200, "rows": rows.shape[0]}
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    # After shutdown nothing listens any more.
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/v2/health/live", timeout=2)
