"""The v2 REST surface of a real server (uvicorn + the ASGI app) serving an ONNX iris model:
endpoints, id echo, nested/flat data, every error status, compression, binary tensors, metrics."""

from __future__ import annotations

import gzip
import struct
import zlib
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import orjson
import pytest

from tests.unit.runtime.conftest import Artifacts, Running

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def _reference(artifacts: Artifacts, rows: list[list[float]]) -> tuple[Any, Any]:
    sess = ort.InferenceSession(str(artifacts["onnx"].path), providers=["CPUExecutionProvider"])
    label, proba = sess.run(None, {"X": np.array(rows, dtype=np.float32)})
    return label, proba


def _infer(url: str, doc: Any, path: str = "/v2/models/iris/infer", **kw: Any) -> httpx.Response:
    return httpx.post(url + path, content=orjson.dumps(doc), timeout=10, **kw)


def _error(resp: httpx.Response, status: int) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"], str)
    assert "Traceback" not in body["error"]
    return str(body["error"])


def test_server_metadata_and_health(onnx_server: Running) -> None:
    url = onnx_server.url
    meta = httpx.get(url + "/v2").json()
    assert meta["name"] == "modelreg"
    assert "binary_tensor_data" in meta["extensions"]
    assert httpx.get(url + "/v2/health/live").json() == {"live": True}
    assert httpx.get(url + "/v2/health/ready").json() == {"ready": True}


@pytest.mark.parametrize("prefix", ["/v2/models/iris", "/v2/models/iris/versions/3"])
def test_model_metadata_from_the_onnx_graph(onnx_server: Running, prefix: str) -> None:
    meta = httpx.get(onnx_server.url + prefix).json()
    assert meta == {
        "name": "iris",
        "versions": ["3"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
        ],
    }
    ready = httpx.get(onnx_server.url + prefix + "/ready")
    assert ready.status_code == 200
    assert ready.json() == {"name": "iris", "ready": True}


@pytest.mark.parametrize("nested", [True, False])
@pytest.mark.parametrize("path", ["/v2/models/iris/infer", "/v2/models/iris/versions/3/infer"])
def test_infer_matches_onnxruntime(
    onnx_server: Running, artifacts: Artifacts, nested: bool, path: str
) -> None:
    data: Any = ROWS if nested else [v for row in ROWS for v in row]
    doc = {
        "id": "req-42",
        "inputs": [{"name": "X", "shape": [3, 4], "datatype": "FP32", "data": data}],
    }
    resp = _infer(onnx_server.url, doc, path)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["id"] == "req-42"
    assert body["model_name"] == "iris"
    assert body["model_version"] == "3"
    label, proba = _reference(artifacts, ROWS)
    out = {o["name"]: o for o in body["outputs"]}
    assert out["label"]["datatype"] == "INT64"
    assert out["label"]["shape"] == [3]
    assert out["label"]["data"] == label.tolist()
    assert out["probabilities"]["shape"] == [3, 3]
    np.testing.assert_allclose(out["probabilities"]["data"], proba.ravel(), rtol=1e-6)


def test_infer_selected_output_and_no_id(onnx_server: Running) -> None:
    doc = {
        "inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": ROWS[0]}],
        "outputs": [{"name": "label"}],
    }
    body = _infer(onnx_server.url, doc).json()
    assert "id" not in body
    assert [o["name"] for o in body["outputs"]] == ["label"]


def test_fp64_input_is_cast_to_the_graph_type(onnx_server: Running, artifacts: Artifacts) -> None:
    doc = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0]}]}
    body = _infer(onnx_server.url, doc).json()
    assert body["outputs"][0]["data"] == _reference(artifacts, ROWS[:1])[0].tolist()


def test_zero_rows(onnx_server: Running) -> None:
    doc = {"inputs": [{"name": "X", "shape": [0, 4], "datatype": "FP32", "data": []}]}
    resp = _infer(onnx_server.url, doc)
    assert resp.status_code == 200, resp.text
    assert resp.json()["outputs"][0]["shape"] == [0]


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ([], "JSON object"),
        ({}, "'inputs'"),
        ({"inputs": []}, "'inputs'"),
        ({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32"}]}, "no 'data'"),
        ({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FLOAT", "data": [1]}]}, "datatype"),
        ({"inputs": [{"name": "X", "shape": "1,4", "datatype": "FP32", "data": [1]}]}, "'shape'"),
        ({"inputs": [{"name": "X", "shape": [1, -4], "datatype": "FP32", "data": [1]}]}, "'shape'"),
        ({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2]}]}, "holds 4"),
        ({"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}, "expects"),
        ({"inputs": [{"name": "X", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}, "expects"),
        ({"inputs": [{"name": "Y", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}, "missing input 'X'"),
        ({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": ["a", 2, 3, 4]}]}, "needs numbers"),
        ({"inputs": [{"name": "X", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3]]}]}, "regular array"),
        ({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [None, 1, 2, 3]}]}, "needs numbers"),
        ({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "INT8", "data": [1, 2, 3, 999]}]}, "does not fit"),
        ({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "INT32", "data": [1.5, 2, 3, 4]}]}, "non-integer"),
        ({"id": 7, "inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}, "'id'"),
        ({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}], "outputs": [{"name": "nope"}]}, "unknown output 'nope'"),
        ({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}, {"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}, "twice"),
        ({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}, {"name": "Z", "shape": [1], "datatype": "FP32", "data": [1]}]}, "unknown input 'Z'"),
    ],
)  # fmt: skip
def test_invalid_input_is_a_clean_400(onnx_server: Running, doc: Any, fragment: str) -> None:
    assert fragment in _error(_infer(onnx_server.url, doc), 400)


def test_malformed_json_is_400(onnx_server: Running) -> None:
    resp = httpx.post(onnx_server.url + "/v2/models/iris/infer", content=b'{"inputs": [', timeout=5)
    assert "not valid JSON" in _error(resp, 400)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v2/models/other", 404),
        ("POST", "/v2/models/other/infer", 404),
        ("GET", "/v2/models/iris/versions/2", 404),
        ("POST", "/v2/models/iris/versions/2/infer", 404),
        ("GET", "/v2/models/iris/versions/2/ready", 404),
        ("GET", "/v2/models/iris/explain", 404),
        ("GET", "/v2/models/iris/versions//infer", 404),
        ("GET", "/nothing", 404),
        ("GET", "/v2/models/iris/infer", 405),
        ("POST", "/v2/models/iris", 405),
        ("DELETE", "/v2/health/ready", 405),
    ],
)
def test_routing_errors(onnx_server: Running, method: str, path: str, status: int) -> None:
    resp = httpx.request(method, onnx_server.url + path, content=b"{}", timeout=5)
    _error(resp, status)


def test_request_size_cap_is_413(artifacts: Artifacts) -> None:
    from tests.unit.runtime.conftest import serve, settings_for

    with serve(settings_for(artifacts["onnx"], max_request_bytes=4096)) as running:
        big = {
            "inputs": [{"name": "X", "shape": [400, 4], "datatype": "FP32", "data": [1.0] * 1600}]
        }
        assert "limit of 4096 bytes" in _error(_infer(running.url, big), 413)

        def chunks() -> Any:  # no Content-Length: the cap applies while streaming
            body = orjson.dumps(big)
            for i in range(0, len(body), 1000):
                yield body[i : i + 1000]

        resp = httpx.post(running.url + "/v2/models/iris/infer", content=chunks(), timeout=5)
        _error(resp, 413)
        # A zip bomb is stopped at the cap too.
        bomb = gzip.compress(b" " * 1_000_000)
        resp = httpx.post(
            running.url + "/v2/models/iris/infer",
            content=bomb,
            headers={"Content-Encoding": "gzip"},
            timeout=5,
        )
        _error(resp, 413)
        # Small requests still pass.
        small = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": ROWS[0]}]}
        assert _infer(running.url, small).status_code == 200


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_request(onnx_server: Running, encoding: str) -> None:
    raw = orjson.dumps(
        {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": ROWS[0]}]}
    )
    body = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)
    resp = httpx.post(
        onnx_server.url + "/v2/models/iris/infer",
        content=body,
        headers={"Content-Encoding": encoding},
        timeout=5,
    )
    assert resp.status_code == 200, resp.text


def test_unknown_encoding_is_415(onnx_server: Running) -> None:
    resp = httpx.post(
        onnx_server.url + "/v2/models/iris/infer",
        content=b"x",
        headers={"Content-Encoding": "br"},
        timeout=5,
    )
    _error(resp, 415)


def _binary_request(rows: np.ndarray[Any, Any], *, binary_out: bool) -> tuple[bytes, int]:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "X",
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": rows.nbytes},
                }
            ],
            "outputs": [
                {"name": "label", "parameters": {"binary_data": binary_out}},
                {"name": "probabilities", "parameters": {"binary_data": binary_out}},
            ],
        }
    )
    return header + rows.astype("<f4").tobytes(), len(header)


def test_binary_tensors_both_ways(onnx_server: Running, artifacts: Artifacts) -> None:
    rows = np.array(ROWS, dtype=np.float32)
    body, hlen = _binary_request(rows, binary_out=True)
    resp = httpx.post(
        onnx_server.url + "/v2/models/iris/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(hlen)},
        timeout=5,
    )
    assert resp.status_code == 200, resp.text
    n = int(resp.headers["inference-header-content-length"])
    header = orjson.loads(resp.content[:n])
    blob = resp.content[n:]
    label_size = header["outputs"][0]["parameters"]["binary_data_size"]
    label = np.frombuffer(blob[:label_size], dtype="<i8")
    proba = np.frombuffer(blob[label_size:], dtype="<f4").reshape(3, 3)
    ref_label, ref_proba = _reference(artifacts, ROWS)
    assert label.tolist() == ref_label.tolist()
    np.testing.assert_allclose(proba, ref_proba, rtol=1e-6)
    assert "data" not in header["outputs"][0]


def test_binary_input_json_output(onnx_server: Running, artifacts: Artifacts) -> None:
    rows = np.array(ROWS, dtype=np.float32)
    body, hlen = _binary_request(rows, binary_out=False)
    resp = httpx.post(
        onnx_server.url + "/v2/models/iris/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(hlen)},
        timeout=5,
    )
    assert resp.status_code == 200, resp.text
    assert "inference-header-content-length" not in resp.headers
    assert resp.json()["outputs"][0]["data"] == _reference(artifacts, ROWS)[0].tolist()


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda body, hlen: (body[:-4], hlen), "runs past"),
        (lambda body, hlen: (body + b"xx", hlen), "add up to"),
        (lambda body, hlen: (body, len(body) + 10), "Inference-Header-Content-Length is"),
        (lambda body, hlen: (body, hlen - 3), "not valid JSON"),
    ],
)
def test_bad_binary_requests_are_400(onnx_server: Running, mutate: Any, fragment: str) -> None:
    body, hlen = _binary_request(np.array(ROWS, dtype=np.float32), binary_out=False)
    body, hlen = mutate(body, hlen)
    resp = httpx.post(
        onnx_server.url + "/v2/models/iris/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(hlen)},
        timeout=5,
    )
    assert fragment in _error(resp, 400)


def test_binary_size_must_match_shape(onnx_server: Running) -> None:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "X",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 12},
                }
            ]
        }
    )
    resp = httpx.post(
        onnx_server.url + "/v2/models/iris/infer",
        content=header + struct.pack("<3f", 1, 2, 3),
        headers={"Inference-Header-Content-Length": str(len(header))},
        timeout=5,
    )
    assert "needs 16 bytes" in _error(resp, 400)


def test_metrics_count_by_model_and_status(onnx_server: Running) -> None:
    url = onnx_server.url

    def count(status: str) -> float:
        text = httpx.get(url + "/metrics").text
        for line in text.splitlines():
            if (
                line.startswith("modelreg_runtime_requests_total{")
                and 'endpoint="infer"' in line
                and f'status="{status}"' in line
                and 'model="iris"' in line
            ):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    ok, bad = count("200"), count("400")
    good = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": ROWS[0]}]}
    _infer(url, good)
    _infer(url, good)
    _infer(url, {"inputs": []})
    assert count("200") == ok + 2
    assert count("400") == bad + 1
    text = httpx.get(url + "/metrics").text
    assert "modelreg_runtime_request_duration_seconds_bucket{" in text
    assert 'modelreg_runtime_model_ready{model="iris",version="3"} 1.0' in text
