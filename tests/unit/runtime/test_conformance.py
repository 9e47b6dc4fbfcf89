"""Conformance with v2 clients and schemas that modelreg did not write.

- tritonclient.http (in the project venv, extra `conformance`): JSON tensors (binary_data=False),
  binary tensors both ways, compressed requests, errors surfaced as InferenceServerException.
- KServe's Python client with protocol v2 (in .dev/venv-kserve, see clientenv.py), run as a
  separate process against the real server.
- MLServer's `mlserver.types` (in .dev/venv-mlserver): every kind of response this server sends is
  validated against its pydantic models, and inference outputs are decoded with its NumpyCodec.

Predictions are compared with the same model run directly in the test.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.unit.runtime import clientenv
from tests.unit.runtime.conftest import Artifacts, Running, serve, settings_for

CLIENTS = Path(__file__).parent / "clients"


def _x(artifacts: Artifacts) -> np.ndarray[Any, Any]:
    return np.asarray(artifacts.X[::15], dtype=np.float32)  # 10 rows, all classes


def _reference(artifacts: Artifacts, x: np.ndarray[Any, Any]) -> tuple[Any, Any]:
    sess = ort.InferenceSession(str(artifacts["onnx"].path), providers=["CPUExecutionProvider"])
    label, proba = sess.run(None, {"X": x})
    return label, proba


def _triton(running: Running) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(running.url.removeprefix("http://"), network_timeout=30)


# ------------------------------------------------------------------------------------------------
# tritonclient


def test_triton_health_and_metadata(onnx_server: Running) -> None:
    client = _triton(onnx_server)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("iris")
        assert client.is_model_ready("iris", "3")
        assert not client.is_model_ready("iris", "4")
        assert not client.is_model_ready("other")
        server = client.get_server_metadata()
        assert "binary_tensor_data" in server["extensions"]
        meta = client.get_model_metadata("iris", "3")
        assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
        assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]
    finally:
        client.close()


@pytest.mark.parametrize(
    ("binary_in", "binary_out", "compression"),
    [
        (False, False, None),
        (True, True, None),
        (True, False, None),
        (False, True, None),
        (False, False, "gzip"),
        (True, True, "deflate"),
    ],
)
def test_triton_infer_matches_onnxruntime(
    onnx_server: Running,
    artifacts: Artifacts,
    binary_in: bool,
    binary_out: bool,
    compression: str | None,
) -> None:
    x = _x(artifacts)
    tensor = triton.InferInput("X", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary_in)
    outputs = [
        triton.InferRequestedOutput("label", binary_data=binary_out),
        triton.InferRequestedOutput("probabilities", binary_data=binary_out),
    ]
    client = _triton(onnx_server)
    try:
        result = client.infer(
            "iris",
            [tensor],
            model_version="3",
            outputs=outputs,
            request_id="triton-7",
            request_compression_algorithm=compression,
        )
    finally:
        client.close()
    label, proba = _reference(artifacts, x)
    assert result.get_response()["id"] == "triton-7"
    np.testing.assert_array_equal(result.as_numpy("label"), label)
    got = result.as_numpy("probabilities")
    assert got is not None
    assert got.shape == proba.shape
    np.testing.assert_allclose(got, proba, rtol=1e-6)


def test_triton_sees_clean_errors(onnx_server: Running) -> None:
    client = _triton(onnx_server)
    try:
        bad = triton.InferInput("X", [1, 3], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32), binary_data=False)
        with pytest.raises(InferenceServerException) as info:
            client.infer("iris", [bad])
        assert info.value.status() == "400"
        assert "the model expects [-1, 4]" in info.value.message()
        with pytest.raises(InferenceServerException) as info:
            client.infer("nope", [bad])
        assert info.value.status() == "404"
        with pytest.raises(InferenceServerException) as info:
            client.get_model_metadata("iris", "9")
        assert "no version '9'" in info.value.message()
    finally:
        client.close()


# ------------------------------------------------------------------------------------------------
# KServe's client, in its own venv


def test_kserve_v2_client(onnx_server: Running, artifacts: Artifacts) -> None:
    python = clientenv.ensure("kserve")
    x = _x(artifacts)
    proc = subprocess.run(
        [
            str(python),
            str(CLIENTS / "kserve_client.py"),
            onnx_server.url,
            "iris",
            "X",
            json.dumps(x.tolist()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["live"] is True
    assert seen["ready"] is True
    assert seen["model_ready"] is True
    assert seen["id"] == "kserve-1"
    assert seen["model_name"] == "iris"
    label, proba = _reference(artifacts, x)
    assert seen["outputs"]["label"]["data"] == label.tolist()
    assert seen["outputs"]["probabilities"]["shape"] == [10, 3]
    np.testing.assert_allclose(seen["outputs"]["probabilities"]["data"], proba.ravel(), rtol=1e-6)
    assert seen["bad_request"]["status"] == 400
    assert "expects [-1, 4]" in seen["bad_request"]["body"]["error"]
    assert seen["unknown_model_ready"] is False


# ------------------------------------------------------------------------------------------------
# MLServer's types, in their own venv


def _collect(running: Running, rows: list[list[float]], input_name: str) -> list[dict[str, Any]]:
    url = running.url
    docs: list[dict[str, Any]] = [
        {"type": "MetadataServerResponse", "doc": httpx.get(url + "/v2").json()},
        {"type": "MetadataModelResponse", "doc": httpx.get(url + "/v2/models/iris").json()},
        {
            "type": "MetadataModelResponse",
            "doc": httpx.get(url + "/v2/models/iris/versions/3").json(),
        },
        {
            "type": "MetadataModelErrorResponse",
            "doc": httpx.get(url + "/v2/models/none").json(),
        },
    ]
    good = {
        "id": "m-1",
        "inputs": [{"name": input_name, "shape": [len(rows), 4], "datatype": "FP64", "data": rows}],
    }
    resp = httpx.post(url + "/v2/models/iris/infer", json=good, timeout=10)
    assert resp.status_code == 200, resp.text
    docs.append({"type": "InferenceResponse", "doc": resp.json()})
    bad = {"inputs": [{"name": input_name, "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]}
    resp = httpx.post(url + "/v2/models/iris/infer", json=bad, timeout=10)
    assert resp.status_code == 400
    docs.append({"type": "InferenceErrorResponse", "doc": resp.json()})
    return docs


def test_responses_validate_against_mlserver_types(artifacts: Artifacts) -> None:
    python = clientenv.ensure("mlserver")
    rows = np.asarray(artifacts.X[::25]).tolist()
    docs: list[dict[str, Any]] = []
    for key, input_name in [
        ("onnx", "X"),
        ("onnx-zipmap", "X"),
        ("skops", "input-0"),
        ("xgboost-json", "input-0"),
        ("lightgbm", "input-0"),
    ]:
        with serve(settings_for(artifacts[key])) as running:
            assert running.plane.state == "ready", running.plane.detail
            docs.extend(_collect(running, rows, input_name))
    proc = subprocess.run(
        [str(python), str(CLIENTS / "mlserver_validate.py")],
        input=json.dumps(docs),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
    assert len(docs) == 30


def test_mlserver_validator_rejects_a_broken_response() -> None:
    """The validator is not a rubber stamp: a response with a wrong shape fails it."""
    python = clientenv.ensure("mlserver")
    broken = {
        "model_name": "iris",
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [2, 2], "data": [1.0, 2.0, 3.0]}],
    }
    missing = {"model_name": "iris"}
    proc = subprocess.run(
        [str(python), str(CLIENTS / "mlserver_validate.py")],
        input=json.dumps(
            [
                {"type": "InferenceResponse", "doc": broken},
                {"type": "InferenceResponse", "doc": missing},
            ]
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(json.loads(proc.stdout.strip().splitlines()[-1])) == 2
