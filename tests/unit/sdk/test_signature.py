"""Signatures (modelreg.sdk.signature): captured from real ONNX models (skl2onnx, onnx.helper) and
from MLmodel files as MLflow writes them, given by the user, recorded by `Client.register` and by
the MLflow import; every bad input refused with InvalidArgument naming what is wrong."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelreg.adapters.mlflow_source import SourceModel, SourceVersion
from modelreg.api.models import ArtifactFormat, Datatype, Signature, TensorSpec
from modelreg.sdk import signature as sigs
from modelreg.sdk.errors import EXIT_USAGE, InvalidArgument
from modelreg.sdk.mlflow_import import import_mlflow
from tests.unit.sdk.fakes import standard


def spec(name: str, datatype: str, shape: list[int]) -> TensorSpec:
    return TensorSpec(name=name, datatype=Datatype(datatype), shape=shape)


def _iris(zipmap: bool) -> onnx.ModelProto:
    from skl2onnx import to_onnx  # type: ignore[import-untyped]
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    est = LogisticRegression(max_iter=500).fit(X, y)
    options = None if zipmap else {LogisticRegression: {"zipmap": False}}
    model: onnx.ModelProto = to_onnx(est, X[:1].astype("float32"), options=options, target_opset=17)
    return model


@pytest.fixture(scope="module")
def iris_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ZipMap-free classifier: label and probabilities are plain tensors."""
    path = tmp_path_factory.mktemp("onnx") / "iris.onnx"
    path.write_bytes(_iris(zipmap=False).SerializeToString())
    return path


@pytest.fixture(scope="module")
def zipmap_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """skl2onnx's default: the probabilities are a sequence of maps (ZipMap)."""
    path = tmp_path_factory.mktemp("onnx") / "iris_zipmap.onnx"
    path.write_bytes(_iris(zipmap=True).SerializeToString())
    return path


def _graph_model() -> onnx.ModelProto:
    """Every kind of graph input and output from_onnx meets, built with onnx.helper."""
    weight = numpy_helper.from_array(np.full((3, 2), 0.5, dtype=np.float32), "W")
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["y"]),
        helper.make_node("Identity", ["tokens"], ["tokens_out"]),
        helper.make_node("Cast", ["y"], ["y64"], to=TensorProto.DOUBLE),
        helper.make_node("Cast", ["y"], ["y16"], to=TensorProto.FLOAT16),
        helper.make_node("Cast", ["y"], ["mask"], to=TensorProto.BOOL),
        helper.make_node("Cast", ["y"], ["yc"], to=TensorProto.COMPLEX64),
        helper.make_node("SequenceConstruct", ["y"], ["seq"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        inputs=[
            # a dynamic batch dimension by name, and the weight listed as an input too (as
            # exporters before IR 4 did): an initializer is not an input
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("W", TensorProto.FLOAT, [3, 2]),
            helper.make_tensor_value_info("tokens", TensorProto.STRING, [None]),
            helper.make_tensor_value_info("ids", TensorProto.UINT8, [2, 5]),
        ],
        outputs=[
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("y64", TensorProto.DOUBLE, ["batch", 2]),
            helper.make_tensor_value_info("y16", TensorProto.FLOAT16, ["batch", 2]),
            helper.make_tensor_value_info("mask", TensorProto.BOOL, ["batch", 2]),
            helper.make_tensor_value_info("tokens_out", TensorProto.STRING, None),
            helper.make_tensor_value_info("yc", TensorProto.COMPLEX64, ["batch", 2]),
            helper.make_tensor_sequence_value_info("seq", TensorProto.FLOAT, None),
        ],
        initializer=[weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# -- ONNX -----------------------------------------------------------------------------------------


def test_onnx_classifier_without_zipmap(iris_onnx: Path) -> None:
    sig, notes = sigs.from_onnx(iris_onnx)
    assert sig == Signature(
        inputs=[spec("X", "FP32", [-1, 4])],
        outputs=[spec("label", "INT64", [-1]), spec("probabilities", "FP32", [-1, 3])],
    )
    assert notes == []


def test_onnx_zipmap_output_is_left_out_with_a_note(zipmap_onnx: Path) -> None:
    sig, notes = sigs.from_onnx(zipmap_onnx)
    assert sig.inputs == [spec("X", "FP32", [-1, 4])]
    assert sig.outputs == [spec("output_label", "INT64", [-1])]
    assert notes == ["output 'output_probability' left out: it is a sequence of maps, not a tensor"]


def test_onnx_graph_types_shapes_and_initializers(tmp_path: Path) -> None:
    path = tmp_path / "g.onnx"
    onnx.save_model(_graph_model(), path)
    sig, notes = sigs.from_onnx(path)
    assert sig.inputs == [
        spec("x", "FP32", [-1, 3]),
        spec("tokens", "BYTES", [-1]),
        spec("ids", "UINT8", [2, 5]),
    ]
    assert sig.outputs == [
        spec("y", "FP32", [-1, 2]),
        spec("y64", "FP64", [-1, 2]),
        spec("y16", "FP16", [-1, 2]),
        spec("mask", "BOOL", [-1, 2]),
        spec("tokens_out", "BYTES", [-1]),
    ]
    assert notes == [
        "output 'tokens_out': the graph does not give its rank; recorded as [-1]",
        "output 'yc' left out: element type COMPLEX64 has no v2 datatype",
        "output 'seq' left out: it is a sequence of tensors, not a tensor",
    ]


def test_onnx_external_weights_are_not_read(tmp_path: Path) -> None:
    path = tmp_path / "ext.onnx"
    onnx.save_model(
        _graph_model(),
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    (tmp_path / "weights.bin").unlink()  # only the graph is needed
    with pytest.raises(Exception, match=r"weights\.bin"):
        onnx.load(path)  # loading the weights too fails
    sig, _ = sigs.from_onnx(path)
    assert [s.name for s in sig.inputs] == ["x", "tokens", "ids"]


def test_onnx_files_that_are_not_models(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"onnx-bytes" * 100)
    with pytest.raises(InvalidArgument, match=r"corrupt\.onnx: not a readable ONNX model") as e:
        sigs.from_onnx(corrupt)
    assert e.value.exit_code == EXIT_USAGE
    # Protobuf reads these bytes as an empty message; an ONNX model has a graph.
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"x" * 4096)
    with pytest.raises(InvalidArgument, match=r"empty\.onnx: not an ONNX model \(it has no graph"):
        sigs.from_onnx(empty)
    with pytest.raises(InvalidArgument, match=r"missing\.onnx: no such file"):
        sigs.from_onnx(tmp_path / "missing.onnx")
    with pytest.raises(InvalidArgument, match="no such file"):
        sigs.from_onnx(tmp_path)


def test_onnx_with_more_inputs_than_a_signature_holds(tmp_path: Path) -> None:
    names = [f"x{i}" for i in range(33)]
    graph = helper.make_graph(
        [helper.make_node("Sum", names, ["y"])],
        "wide",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in names],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "wide.onnx"
    onnx.save_model(helper.make_model(graph), path)
    with pytest.raises(InvalidArgument, match=r"wide\.onnx: 33 inputs; .* at most 32"):
        sigs.from_onnx(path)


# -- MLflow ---------------------------------------------------------------------------------------

# As MLflow 2.x/3.x writes them (mlflow.models.Model.save with infer_signature): each list is a
# JSON string inside the YAML, folded across lines.
MLMODEL_COLUMNS = """\
artifact_path: model
flavors:
  python_function:
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.sklearn
    model_path: model.pkl
    predict_fn: predict
    python_version: 3.11.7
  sklearn:
    code: null
    pickled_model: model.pkl
    serialization_format: cloudpickle
    sklearn_version: 1.5.2
mlflow_version: 2.17.2
model_size_bytes: 1234
model_uuid: 5c7d1f0b9e5a4d0c8f6f0a6b2f3f4e5d
run_id: 0d8f5b1c2a3e4f5a6b7c8d9e0f1a2b3c
signature:
  inputs: '[{"type": "double", "name": "sepal length (cm)", "required": true}, {"type":
    "double", "name": "sepal width (cm)", "required": true}, {"type": "double", "name":
    "petal length (cm)", "required": true}, {"type": "double", "name": "petal width
    (cm)", "required": true}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]'
  params: null
utc_time_created: '2024-11-05 10:12:13.141516'
"""

MLMODEL_TENSORS = """\
flavors:
  onnx:
    data: model.onnx
    onnx_version: 1.17.0
mlflow_version: 2.17.2
signature:
  inputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1,
    3]}}]'
  params: null
"""

MLMODEL_ALL_COLUMN_TYPES = """\
signature:
  inputs: '[{"type": "long", "name": "a", "required": true}, {"type": "string", "name":
    "b", "required": true}, {"type": "boolean", "name": "c", "required": true}, {"type":
    "datetime", "name": "d", "required": true}, {"type": "binary", "name": "e", "required":
    true}, {"type": "integer", "name": "f", "required": true}, {"type": "float", "name":
    "g", "required": true}, {"type": "double", "required": false}]'
  outputs: null
  params: null
"""


def test_mlflow_column_based_inputs_tensor_based_output() -> None:
    captured = sigs.from_mlflow(MLMODEL_COLUMNS)
    assert captured is not None
    assert captured.signature == Signature(
        inputs=[
            spec("sepal length (cm)", "FP64", [-1]),
            spec("sepal width (cm)", "FP64", [-1]),
            spec("petal length (cm)", "FP64", [-1]),
            spec("petal width (cm)", "FP64", [-1]),
        ],
        outputs=[spec("output-0", "INT64", [-1])],
    )
    assert captured.notes == []


def test_mlflow_tensor_based() -> None:
    captured = sigs.from_mlflow(MLMODEL_TENSORS)
    assert captured is not None
    assert captured.signature == Signature(
        inputs=[spec("input-0", "FP32", [-1, 4])], outputs=[spec("output-0", "FP32", [-1, 3])]
    )


def test_mlflow_every_column_type_and_unnamed_columns() -> None:
    captured = sigs.from_mlflow(MLMODEL_ALL_COLUMN_TYPES)
    assert captured is not None
    assert [(s.name, s.datatype.value, s.shape) for s in captured.signature.inputs] == [
        ("a", "INT64", [-1]),
        ("b", "BYTES", [-1]),
        ("c", "BOOL", [-1]),
        ("d", "BYTES", [-1]),
        ("e", "BYTES", [-1]),
        ("f", "INT32", [-1]),
        ("g", "FP32", [-1]),
        ("input-7", "FP64", [-1]),
    ]
    assert captured.signature.outputs == []


def test_mlflow_numpy_dtypes_and_unsupported_types() -> None:
    inputs = [
        {"type": "tensor", "tensor-spec": {"dtype": d, "shape": [-1, 2]}, "name": d}
        for d in ("str", "bytes", "object", "bool", "uint16", "float16", "datetime64[ns]")
    ]
    inputs += [
        {"type": "tensor", "tensor-spec": {"dtype": "complex128", "shape": [-1]}, "name": "z"},
        {"type": "array", "items": {"type": "string"}, "name": "tags"},
        {"type": "object", "properties": {}, "name": "doc"},
    ]
    text = "signature:\n  inputs: " + json.dumps(json.dumps(inputs)) + "\n"
    captured = sigs.from_mlflow(text)
    assert captured is not None
    assert [(s.name, s.datatype.value) for s in captured.signature.inputs] == [
        ("str", "BYTES"),
        ("bytes", "BYTES"),
        ("object", "BYTES"),
        ("bool", "BOOL"),
        ("uint16", "UINT16"),
        ("float16", "FP16"),
        ("datetime64[ns]", "BYTES"),
    ]
    assert captured.notes == [
        "input 'z' left out: numpy dtype 'complex128' has no v2 datatype",
        "input 'tags' left out: MLflow type 'array' has no v2 datatype",
        "input 'doc' left out: MLflow type 'object' has no v2 datatype",
    ]


def test_mlflow_round_trip_through_mlflow_itself(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    import pandas as pd  # type: ignore[import-untyped]
    from mlflow.models import Model, infer_signature

    frame = pd.DataFrame({"age": np.array([31, 40], dtype="int64"), "score": [0.5, 0.7]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlmodel = Model(signature=infer_signature(frame, np.array([1, 0], dtype="int32")))
        mlmodel.save(str(tmp_path / "MLmodel"))
    captured = sigs.from_mlflow((tmp_path / "MLmodel").read_text())
    assert captured is not None
    assert captured.signature == Signature(
        inputs=[spec("age", "INT64", [-1]), spec("score", "FP64", [-1])],
        outputs=[spec("output-0", "INT32", [-1])],
    )


@pytest.mark.parametrize(
    "text",
    [
        "flavors:\n  sklearn: {}\n",
        "",
        "signature:\n  inputs: null\n  outputs: null\n  params: null\n",
    ],
)
def test_mlflow_without_a_signature_is_none(text: str) -> None:
    assert sigs.from_mlflow(text) is None


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("signature: [\n", "MLmodel is not valid YAML"),
        ("- a list\n", "MLmodel is not a YAML mapping"),
        ("signature: inputs\n", "signature is not a mapping"),
        ("signature:\n  inputs: '[{\"type\": '\n", "signature inputs are not valid JSON"),
        ("signature:\n  inputs: '{\"a\": 1}'\n", "signature inputs are not a list"),
        (
            'signature:\n  inputs: \'[{"type": "tensor", "tensor-spec": '
            '{"dtype": "float32", "shape": "(-1, 4)"}}]\'\n',
            "input 'input-0': shape '\\(-1, 4\\)' is not a list of integers",
        ),
        (
            'signature:\n  outputs: \'[{"type": "tensor"}]\'\n',
            "output 'output-0' has no tensor-spec",
        ),
        (
            'signature:\n  inputs: \'[{"type": "array", "name": "t"}]\'\n',
            "no tensor in it has a v2 datatype \\(input 't' left out",
        ),
    ],
)
def test_mlflow_bad_signatures(text: str, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        sigs.from_mlflow(text)


def test_mlflow_more_columns_than_a_signature_holds() -> None:
    columns = [{"type": "double", "name": f"f{i}"} for i in range(40)]
    text = "signature:\n  inputs: " + json.dumps(json.dumps(columns)) + "\n"
    with pytest.raises(InvalidArgument, match=r"MLmodel signature: 40 inputs; .* at most 32"):
        sigs.from_mlflow(text)


# -- given by the user ----------------------------------------------------------------------------

GIVEN = {
    "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "probabilities", "datatype": "fp32", "shape": [-1, 3]},
    ],
}
EXPECTED = Signature(
    inputs=[spec("features", "FP32", [-1, 4])],
    outputs=[spec("label", "INT64", [-1]), spec("probabilities", "FP32", [-1, 3])],
)


def test_parse_json_yaml_mapping_and_signature() -> None:
    assert sigs.parse(json.dumps(GIVEN)) == EXPECTED
    yaml_text = """\
inputs:
  - {name: features, datatype: FP32, shape: [-1, 4]}
outputs:
  - name: label
    datatype: INT64
    shape: [-1]
  - {name: probabilities, datatype: fp32, shape: [-1, 3]}
"""
    assert sigs.parse(yaml_text) == EXPECTED
    assert sigs.parse(GIVEN) == EXPECTED
    assert sigs.parse(EXPECTED) == EXPECTED
    assert sigs.parse({"outputs": GIVEN["outputs"]}).inputs == []


def _with(role: str, **tensor: Any) -> dict[str, Any]:
    return {role: [{"name": "x", "datatype": "FP32", "shape": [-1], **tensor}]}


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("inputs: [\n", "sig.json: not valid JSON/YAML"),
        ("[1, 2]", "sig.json: expected a mapping .* got list"),
        ({}, "sig.json: a signature needs at least one input or output"),
        ({"inputs": [], "outptus": []}, "unknown key\\(s\\) outptus; use inputs, outputs"),
        ({"inputs": {"name": "x"}}, "inputs must be a list of tensors"),
        ({"inputs": ["x"]}, "inputs\\[0\\]: expected a mapping with name, datatype and shape"),
        (_with("inputs", dtype="float32"), "inputs\\[0\\]: unknown key\\(s\\) dtype"),
        ({"inputs": [{"name": "x", "shape": [1]}]}, "inputs\\[0\\]: missing datatype"),
        (_with("inputs", name=""), "inputs\\[0\\]: name must be a non-empty string"),
        (_with("outputs", datatype="FLOAT"), "outputs\\[0\\] \\('x'\\): datatype 'FLOAT' is not"),
        (_with("outputs", datatype=3), "datatype 3 is not one of BOOL, UINT8"),
        (_with("inputs", shape=[-2, 4]), "shape \\[-2, 4\\] must be a list of integers"),
        (_with("inputs", shape=[True]), "shape \\[True\\] must be a list of integers"),
        (_with("inputs", shape=[1.5]), "shape \\[1.5\\] must be a list of integers"),
        (_with("inputs", shape="(-1, 4)"), "shape '\\(-1, 4\\)' must be a list of integers"),
        (_with("inputs", shape=[1] * 17), "inputs.0.shape: List should have at most 16 items"),
        ({"inputs": [GIVEN["inputs"][0]] * 2}, "input 'features' is named twice"),
    ],
)
def test_parse_refuses_bad_signatures(value: Any, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match) as e:
        sigs.parse(value, source="sig.json")
    assert e.value.exit_code == EXIT_USAGE


def test_given_accepts_only_what_register_takes() -> None:
    assert sigs.given("auto") is None
    assert sigs.given(None) is None
    assert sigs.given(GIVEN) == EXPECTED
    with pytest.raises(InvalidArgument, match='signature must be "auto", None, a Signature'):
        sigs.given("sig.json")


def test_auto_captures_only_onnx_files(iris_onnx: Path, tmp_path: Path) -> None:
    assert sigs.auto(iris_onnx, ArtifactFormat.ONNX) == sigs.from_onnx(iris_onnx).signature
    assert sigs.auto(iris_onnx, ArtifactFormat.CUSTOM) is None
    assert sigs.auto(tmp_path, ArtifactFormat.ONNX) is None  # a directory (sent as a tar)


def test_summary() -> None:
    assert sigs.summary(EXPECTED) == "1 input(s), 2 output(s)"


# -- Client.register ------------------------------------------------------------------------------


def test_register_captures_the_onnx_signature(iris_onnx: Path) -> None:
    client, kube, _, _ = standard()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left out of this model
        mv = client.register("credit", iris_onnx)
    assert mv.spec.signature == sigs.from_onnx(iris_onnx).signature
    assert kube.mv("credit-v1")["spec"]["signature"] == {
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
        ],
    }


def test_register_warns_about_what_auto_leaves_out(zipmap_onnx: Path, tmp_path: Path) -> None:
    client, kube, st, _ = standard()
    with pytest.warns(sigs.SignatureWarning, match="output 'output_probability' left out"):
        client.register("credit", zipmap_onnx)
    assert [o["name"] for o in kube.mv("credit-v1")["spec"]["signature"]["outputs"]] == [
        "output_label"
    ]
    # Not an ONNX model after all: registered (the operator and server have their say), without
    # a signature, and the caller is told.
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"onnx-bytes" * 100)
    with pytest.warns(sigs.SignatureWarning, match="no signature recorded: .*model.onnx: not a"):
        client.register("credit", bogus)
    assert "signature" not in kube.mv("credit-v2")["spec"]
    assert "s3://models/credit/2/model.onnx" in st.objects


def test_register_signature_none_explicit_and_other_formats(
    iris_onnx: Path, tmp_path: Path
) -> None:
    client, kube, _, _ = standard()
    client.register("credit", iris_onnx, signature=None)
    assert "signature" not in kube.mv("credit-v1")["spec"]
    mv = client.register("credit", iris_onnx, signature=GIVEN)
    assert mv.spec.signature == EXPECTED
    client.register("credit", iris_onnx, signature=EXPECTED)
    assert kube.mv("credit-v3")["spec"]["signature"] == EXPECTED.wire()
    skops = tmp_path / "model.skops"
    skops.write_bytes(b"skops")
    client.register("credit", skops)
    assert "signature" not in kube.mv("credit-v4")["spec"]
    client.register("credit", skops, signature=GIVEN)
    assert kube.mv("credit-v5")["spec"]["signature"] == EXPECTED.wire()
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(iris_onnx.read_bytes())
    client.register("credit", folder, format="onnx")
    assert "signature" not in kube.mv("credit-v6")["spec"]


@pytest.mark.parametrize(
    ("signature", "match"),
    [
        ({"inputs": [{"name": "x", "datatype": "FLOAT", "shape": [-1]}]}, "datatype 'FLOAT'"),
        ("model.json", 'signature must be "auto"'),
        ({}, "at least one input or output"),
    ],
)
def test_register_refuses_a_bad_signature_before_uploading(
    iris_onnx: Path, signature: Any, match: str
) -> None:
    client, kube, st, _ = standard()
    with pytest.raises(InvalidArgument, match=match):
        client.register("credit", iris_onnx, signature=signature)
    assert st.objects == {}
    assert not [key for key in kube.objects if key[0] == "modelversions"]


# -- the MLflow import ----------------------------------------------------------------------------


class _Source:
    """An MLflow registry of one model whose versions' directories hold the given files."""

    def __init__(self, dirs: dict[int, dict[str, bytes]]) -> None:
        self.dirs = dirs

    def models(self, names: list[str] | None = None) -> list[SourceModel]:
        versions = [
            SourceVersion("Iris", n, "None", (), "READY", f"models:/m-{n}", None, "")
            for n in sorted(self.dirs)
        ]
        return [SourceModel("Iris", "", {}, versions)]

    def download(self, version: SourceVersion, dest: Path) -> Path:
        dest.mkdir(parents=True)
        for name, data in self.dirs[version.version].items():
            (dest / name).write_bytes(data)
        return dest


def test_import_mlflow_records_the_mlmodel_signature(iris_onnx: Path) -> None:
    client, kube, _, _ = standard()
    skops_dir = MLMODEL_COLUMNS.replace("model.pkl", "model.skops").replace(
        "serialization_format: cloudpickle", "serialization_format: skops"
    )
    src = _Source(
        {
            1: {"MLmodel": skops_dir.encode(), "model.skops": b"weights"},
            # An ONNX flavor whose MLmodel has no signature: the graph's.
            2: {
                "MLmodel": b"flavors:\n  onnx:\n    data: model.onnx\n",
                "model.onnx": iris_onnx.read_bytes(),
            },
            # A signature that cannot be read: imported without one, and the report says why.
            3: {
                "MLmodel": b"flavors:\n  onnx:\n    data: model.onnx\n"
                b"signature:\n  inputs: '[{\"type\": '\n",
                "model.onnx": iris_onnx.read_bytes(),
            },
        }
    )
    report = import_mlflow(
        client,
        "sqlite:///x.db",
        model_map={"Iris": "credit"},
        source=src,  # type: ignore[arg-type]
    )
    assert [v.action for v in report.versions] == ["created"] * 3
    first = kube.mv("credit-v1")["spec"]
    assert first["artifact"]["format"] == "skops"
    assert first["signature"] == {
        "inputs": [
            {"name": "sepal length (cm)", "datatype": "FP64", "shape": [-1]},
            {"name": "sepal width (cm)", "datatype": "FP64", "shape": [-1]},
            {"name": "petal length (cm)", "datatype": "FP64", "shape": [-1]},
            {"name": "petal width (cm)", "datatype": "FP64", "shape": [-1]},
        ],
        "outputs": [{"name": "output-0", "datatype": "INT64", "shape": [-1]}],
    }
    assert kube.mv("credit-v2")["spec"]["signature"] == sigs.from_onnx(iris_onnx).signature.wire()
    assert "signature" not in kube.mv("credit-v3")["spec"]
    assert report.versions[2].detail.startswith(
        "no signature recorded: MLmodel: signature inputs are not valid JSON"
    )
    assert report.versions[0].detail == report.versions[1].detail == ""
