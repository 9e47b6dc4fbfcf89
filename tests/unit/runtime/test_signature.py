"""The registered signature (MODELREG_SIGNATURE) in the model server: read from the environment the
operator writes, reported by `GET /v2/models/<name>` in place of a loader's guess (or, for ONNX,
when it agrees with the graph), and never a reason not to start: an invalid one is logged and
ignored."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

import httpx
import numpy as np
import pytest

from modelreg.api.models import Model, ModelVersion
from modelreg.lifecycle import builders
from modelreg.runtime import signature as signatures
from modelreg.runtime.dataplane import DataPlane
from modelreg.runtime.loaders import LoadedModel, TensorSpec
from modelreg.runtime.settings import RuntimeSettings
from tests.unit.runtime.conftest import Artifacts, serve, settings_for

IRIS_COLUMNS = {
    "inputs": [
        {"name": "sepal length (cm)", "datatype": "FP64", "shape": [-1]},
        {"name": "sepal width (cm)", "datatype": "FP64", "shape": [-1]},
        {"name": "petal length (cm)", "datatype": "FP64", "shape": [-1]},
        {"name": "petal width (cm)", "datatype": "FP64", "shape": [-1]},
    ],
    "outputs": [{"name": "output-0", "datatype": "INT64", "shape": [-1]}],
}


def _builder_env(signature: dict[str, Any]) -> str:
    """MODELREG_SIGNATURE exactly as the operator's Deployment builder writes it."""
    model = Model.model_validate({"metadata": {"name": "iris", "uid": "u"}, "spec": {}})
    mv = ModelVersion.model_validate(
        {
            "metadata": {"name": "iris-v3", "namespace": "ns"},
            "spec": {
                "model": "iris",
                "version": 3,
                "artifact": {"uri": "s3://b/iris/3/model.onnx", "sha256": "ab" * 32},
                "signature": signature,
            },
        }
    )
    defaults = builders.ServingDefaults(builtin_image="img:1", mlserver_image="mls:1")
    (container,) = builders.build_deployment(model, mv, defaults)["spec"]["template"]["spec"][
        "containers"
    ]
    (value,) = [e["value"] for e in container["env"] if e["name"] == "MODELREG_SIGNATURE"]
    assert isinstance(value, str)
    return value


def _metadata(url: str) -> Any:
    resp = httpx.get(url + "/v2/models/iris", timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_the_settings_read_the_signature_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in list(os.environ):
        if key.startswith(("MODELREG_", "AWS_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("MODELREG_MODEL_NAME", "iris")
    monkeypatch.setenv("MODELREG_ARTIFACT_PATH", "/models/iris.skops")
    monkeypatch.setenv("MODELREG_ARTIFACT_FORMAT", "skops")
    value = _builder_env(IRIS_COLUMNS)
    monkeypatch.setenv("MODELREG_SIGNATURE", value)
    assert RuntimeSettings().signature == value
    # Garbage is still a valid setting: it is checked (and ignored) when the model loads.
    monkeypatch.setenv("MODELREG_SIGNATURE", "{not json")
    assert RuntimeSettings().signature == "{not json"
    monkeypatch.delenv("MODELREG_SIGNATURE")
    assert RuntimeSettings().signature is None


def test_skops_metadata_reports_the_registered_signature(artifacts: Artifacts) -> None:
    art = artifacts["skops"]
    with serve(settings_for(art, signature=_builder_env(IRIS_COLUMNS))) as running:
        assert running.plane.state == "ready", running.plane.detail
        meta = _metadata(running.url)
        assert meta["inputs"] == IRIS_COLUMNS["inputs"]
        assert meta["outputs"] == IRIS_COLUMNS["outputs"]
        assert meta["platform"] == "sklearn (skops)"
        # Predictions are what they were: one [batch, features] input.
        x = np.asarray(artifacts.X[:3], dtype=np.float64)
        doc = {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64", "data": x.tolist()}]}
        resp = httpx.post(running.url + "/v2/models/iris/infer", json=doc, timeout=10)
        assert resp.status_code == 200, resp.text
        (out,) = [o for o in resp.json()["outputs"] if o["name"] == "predict"]
        assert out["data"] == art.model.predict(x).tolist()


def test_a_registered_signature_without_outputs_keeps_the_loaders(artifacts: Artifacts) -> None:
    inputs_only = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]}
    plane = DataPlane(settings_for(artifacts["xgboost-json"], signature=json.dumps(inputs_only)))
    asyncio.run(plane.load())
    meta = json.loads(plane.model_metadata("iris", None))
    assert meta["inputs"] == inputs_only["inputs"]
    assert [o["name"] for o in meta["outputs"]] == ["predict"]
    assert meta["outputs"][0]["shape"] == [-1, 3]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("{not json", "not valid JSON"),
        ('["inputs"]', "expected a JSON object"),
        ("{}", "it lists no inputs and no outputs"),
        ('{"inputs": [{"name": "x", "datatype": "FLOAT", "shape": [-1]}]}', "'FLOAT' is not"),
        ('{"inputs": [{"name": "x", "datatype": "FP32", "shape": [-2]}]}', "shape must be"),
        ('{"inputs": [{"name": "", "datatype": "FP32", "shape": [1]}]}', "name must be"),
        ('{"outputs": {"name": "y"}}', "outputs must be a list"),
        (
            '{"inputs": [{"name": "x", "datatype": "FP32"}, {"name": "x", "datatype": "FP32"}]}',
            "'x' is listed twice",
        ),
    ],
)
def test_an_invalid_signature_is_logged_and_ignored(
    artifacts: Artifacts, value: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="modelreg.runtime.dataplane"):
        plane = DataPlane(settings_for(artifacts["skops"], signature=value))
    assert plane.registered is None
    assert any(
        "ignoring MODELREG_SIGNATURE" in r.getMessage() and why in r.getMessage()
        for r in caplog.records
    ), caplog.text
    asyncio.run(plane.load())
    meta = json.loads(plane.model_metadata("iris", None))
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert [o["name"] for o in meta["outputs"]] == ["predict", "predict_proba"]


def test_a_server_with_an_invalid_signature_starts_and_serves(artifacts: Artifacts) -> None:
    with serve(settings_for(artifacts["onnx"], signature='{"inputs": 7}')) as running:
        assert running.plane.state == "ready", running.plane.detail
        assert httpx.get(running.url + "/v2/health/ready").status_code == 200
        meta = _metadata(running.url)
        assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
        assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]


def test_onnx_reports_a_registered_signature_that_agrees_with_the_graph(
    artifacts: Artifacts,
) -> None:
    # The ZipMap probabilities have no v2 datatype, so register left them out; the server still
    # returns them, so the metadata still lists them.
    registered = {
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "output_label", "datatype": "INT64", "shape": [-1]}],
    }
    settings = settings_for(artifacts["onnx-zipmap"], signature=_builder_env(registered))
    with serve(settings) as running:
        meta = _metadata(running.url)
    assert meta["inputs"] == registered["inputs"]
    assert meta["outputs"] == [
        {"name": "output_label", "datatype": "INT64", "shape": [-1]},
        {"name": "output_probability", "datatype": "FP32", "shape": [-1, -1]},
    ]


def test_onnx_keeps_the_graph_when_the_registered_signature_disagrees(
    artifacts: Artifacts, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = {
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}],
    }
    plane = DataPlane(settings_for(artifacts["onnx"], signature=json.dumps(wrong)))
    with caplog.at_level(logging.WARNING, logger="modelreg.runtime.dataplane"):
        asyncio.run(plane.load())
    meta = json.loads(plane.model_metadata("iris", None))
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]
    assert "its inputs ('features') are not the graph's ('X')" in caplog.text


def test_advertised_rules() -> None:
    """`advertised` on its own: which tensors are reported, and what is warned about."""
    model = _FakeModel(native=False)
    registered = signatures.parse(json.dumps(IRIS_COLUMNS))
    shown = signatures.advertised(model, registered)
    assert [s.name for s in shown.inputs] == [t["name"] for t in IRIS_COLUMNS["inputs"]]
    assert [s.name for s in shown.outputs] == ["output-0"]
    assert shown.warnings == (
        "the registered signature lists 4 inputs; this fake model takes 1 tensor ('input-0', "
        "any name)",
        "the registered signature names the outputs 'output-0'; this fake model computes "
        "'predict', and predictions use those names",
    )
    assert signatures.advertised(model, None) == signatures.Advertised(model.inputs, model.outputs)

    graph = _FakeModel(native=True)
    unknown_output = signatures.parse(
        '{"outputs": [{"name": "proba", "datatype": "FP32", "shape": [-1, 3]}]}'
    )
    shown = signatures.advertised(graph, unknown_output)
    assert (shown.inputs, shown.outputs) == (graph.inputs, graph.outputs)
    assert shown.warnings == (
        "the registered signature is not reported, the ONNX graph's is: the graph has no "
        "output 'proba' (it has 'predict')",
    )
    more_precise = signatures.parse(
        '{"outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1, 1]}]}'
    )
    shown = signatures.advertised(graph, more_precise)
    assert shown.inputs == graph.inputs
    assert [s.metadata() for s in shown.outputs] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1, 1]}
    ]
    assert shown.warnings == ()


class _FakeModel(LoadedModel):
    platform = "fake"

    def __init__(self, native: bool) -> None:
        self.native_signature = native
        self.inputs = (TensorSpec("input-0", "FP64", (-1, 4)),)
        self.outputs = (TensorSpec("predict", "INT64", (-1,)),)

    def predict(self, inputs: dict[str, Any], outputs: Any) -> dict[str, Any]:
        raise AssertionError("not called")
