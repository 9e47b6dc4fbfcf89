"""Every artifact format served by a real server predicts exactly what the same model predicts
when loaded directly in the test; unsafe or corrupt artifacts are refused with a clear reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from modelreg.runtime.errors import ModelLoadError
from modelreg.runtime.loaders import LoadOptions, load_model
from modelreg.runtime.settings import ArtifactFormat
from tests.unit.runtime.conftest import Artifacts, serve, settings_for, sha256_of

ROWS = 12  # rows 0, 12, 24, ... cover all three classes


def _batch(artifacts: Artifacts) -> np.ndarray[Any, Any]:
    return np.asarray(artifacts.X[::ROWS], dtype=np.float64)


def _infer(url: str, x: np.ndarray[Any, Any], datatype: str, name: str = "input-0") -> Any:
    doc = {
        "inputs": [{"name": name, "shape": list(x.shape), "datatype": datatype, "data": x.tolist()}]
    }
    resp = httpx.post(url + "/v2/models/iris/infer", json=doc, timeout=10)
    assert resp.status_code == 200, resp.text
    return {o["name"]: o for o in resp.json()["outputs"]}


def _array(out: dict[str, Any]) -> np.ndarray[Any, Any]:
    return np.asarray(out["data"]).reshape(out["shape"])


@pytest.mark.parametrize("key", ["skops", "sklearn"])
def test_sklearn_formats_match_the_estimator(artifacts: Artifacts, key: str) -> None:
    art = artifacts[key]
    x = _batch(artifacts)
    with serve(settings_for(art, allow_pickle=(key == "sklearn"))) as running:
        assert running.plane.state == "ready", running.plane.detail
        meta = httpx.get(running.url + "/v2/models/iris").json()
        assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
        assert [o["name"] for o in meta["outputs"]] == ["predict", "predict_proba"]
        out = _infer(running.url, x, "FP64")
    assert _array(out["predict"]).tolist() == art.model.predict(x).tolist()
    np.testing.assert_array_equal(_array(out["predict_proba"]), art.model.predict_proba(x))


@pytest.mark.parametrize("key", ["xgboost-json", "xgboost-ubj"])
def test_xgboost_matches_the_booster(artifacts: Artifacts, key: str) -> None:
    import xgboost as xgb

    art = artifacts[key]
    x = _batch(artifacts).astype(np.float32)
    with serve(settings_for(art)) as running:
        assert running.plane.state == "ready", running.plane.detail
        meta = httpx.get(running.url + "/v2/models/iris").json()
        assert meta["outputs"] == [{"name": "predict", "datatype": "FP32", "shape": [-1, 3]}]
        out = _infer(running.url, x, "FP32", name="features")  # any single input name
    expected = art.model.predict(xgb.DMatrix(x))
    np.testing.assert_array_equal(_array(out["predict"]).astype(np.float32), expected)


def test_lightgbm_matches_the_booster(artifacts: Artifacts) -> None:
    art = artifacts["lightgbm"]
    x = _batch(artifacts)
    with serve(settings_for(art)) as running:
        assert running.plane.state == "ready", running.plane.detail
        out = _infer(running.url, x, "FP64")
    np.testing.assert_array_equal(_array(out["predict"]), art.model.predict(x))


def test_onnx_zipmap_probabilities_become_a_tensor(artifacts: Artifacts) -> None:
    art = artifacts["onnx-zipmap"]
    x = _batch(artifacts).astype(np.float32)
    sess = ort.InferenceSession(str(art.path), providers=["CPUExecutionProvider"])
    labels, maps = sess.run(None, {"X": x})
    with serve(settings_for(art)) as running:
        meta = httpx.get(running.url + "/v2/models/iris").json()
        assert meta["outputs"][1] == {
            "name": "output_probability",
            "datatype": "FP32",
            "shape": [-1, -1],
        }
        doc = {
            "inputs": [
                {
                    "name": "X",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "data": x.ravel().tolist(),
                }
            ]
        }
        out = httpx.post(running.url + "/v2/models/iris/infer", json=doc, timeout=10).json()
    got = {o["name"]: o for o in out["outputs"]}
    assert got["output_label"]["data"] == labels.tolist()
    expected = np.array([[m[k] for k in sorted(m)] for m in maps], dtype=np.float32)
    np.testing.assert_allclose(_array(got["output_probability"]), expected, rtol=1e-6)


def test_single_input_models_reject_several_inputs(artifacts: Artifacts) -> None:
    with serve(settings_for(artifacts["lightgbm"])) as running:
        doc = {
            "inputs": [
                {"name": "a", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]},
                {"name": "b", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]},
            ]
        }
        resp = httpx.post(running.url + "/v2/models/iris/infer", json=doc, timeout=10)
        assert resp.status_code == 400
        assert "exactly one input" in resp.json()["error"]
        doc = {"inputs": [{"name": "a", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}
        resp = httpx.post(running.url + "/v2/models/iris/infer", json=doc, timeout=10)
        assert resp.status_code == 400
        assert "expects [-1, 4]" in resp.json()["error"]


# ------------------------------------------------------------------------------------------------
# Refusals


def test_pickle_is_refused_without_opt_in(artifacts: Artifacts) -> None:
    with pytest.raises(ModelLoadError) as info:
        load_model(artifacts["sklearn"].path, ArtifactFormat.SKLEARN, LoadOptions())
    message = str(info.value)
    assert "runs code" in message
    assert "MODELREG_ALLOW_PICKLE" in message
    for safe in ("onnx", "skops", "xgboost", "lightgbm"):
        assert safe in message


def test_pickle_refusal_keeps_the_server_unready(artifacts: Artifacts) -> None:
    with serve(settings_for(artifacts["sklearn"])) as running:
        assert running.plane.state == "failed"
        resp = httpx.get(running.url + "/v2/health/ready")
        assert resp.status_code == 503
        assert "MODELREG_ALLOW_PICKLE" in resp.json()["error"]
        resp = httpx.post(running.url + "/v2/models/iris/infer", json={"inputs": []}, timeout=5)
        assert resp.status_code == 503
        assert httpx.get(running.url + "/v2/health/live").status_code == 200


def _double(x: Any) -> Any:
    return x * 2


def test_skops_with_untrusted_types_is_refused(artifacts: Artifacts, tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    est = make_pipeline(FunctionTransformer(_double), LogisticRegression(max_iter=500))
    est.fit(artifacts.X, artifacts.y)
    path = tmp_path / "f.skops"
    sio.dump(est, path)
    untrusted = sio.get_untrusted_types(file=path)
    assert any("_double" in t for t in untrusted)
    with pytest.raises(ModelLoadError, match="MODELREG_SKOPS_TRUSTED_TYPES") as info:
        load_model(path, ArtifactFormat.SKOPS, LoadOptions())
    assert "_double" in str(info.value)
    model = load_model(
        path, ArtifactFormat.SKOPS, LoadOptions(skops_trusted_types=tuple(untrusted))
    )
    x = np.asarray(artifacts.X[:5])
    got = model.predict({"x": x}, ["predict"])["predict"]
    assert got.tolist() == est.predict(x).tolist()


@pytest.mark.parametrize("fmt", [f for f in ArtifactFormat if f is not ArtifactFormat.SKLEARN])
def test_corrupt_artifacts_fail_with_the_reason(tmp_path: Path, fmt: ArtifactFormat) -> None:
    path = tmp_path / "garbage.bin"
    path.write_bytes(b"\x00\x01not a model at all")
    with pytest.raises(ModelLoadError, match=f"cannot load garbage.bin as {fmt.value}"):
        load_model(path, fmt, LoadOptions())


def test_local_artifact_with_wrong_digest_is_not_loaded(artifacts: Artifacts) -> None:
    art = artifacts["onnx"]
    assert sha256_of(art.path) == art.sha256
    with serve(settings_for(art, artifact_sha256="0" * 64)) as running:
        assert running.plane.state == "failed"
        assert running.plane.model is None
        err = httpx.get(running.url + "/v2/health/ready").json()["error"]
        assert "expected " + "0" * 64 in err
