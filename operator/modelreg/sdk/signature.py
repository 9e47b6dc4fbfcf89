"""A model's signature (`spec.signature`): its input and output tensors as v2 name, datatype, shape.

Called by `Client.register` (a signature given by the caller, or captured from an ONNX file), by
the MLflow import (the `signature:` block of a model directory's `MLmodel` file) and by the CLI
(`modelreg register --signature FILE`). The operator hands it to the model server, whose metadata
endpoint (`GET /v2/models/<name>`) reports it.

Where a signature comes from:
- `from_onnx(path)`: the graph's inputs (initializers excluded) and outputs, read with the `onnx`
  package without loading external weights. A symbolic or unknown dimension is -1.
- `from_mlflow(mlmodel_text)`: MLflow's tensor-based specs map their numpy dtype and shape;
  column-based specs become one tensor per column of shape [-1] (double FP64, float FP32, long
  INT64, integer INT32, boolean BOOL, string/binary/datetime BYTES); unnamed tensors are called
  `input-0`, `input-1`, ... (`output-0`, ... for outputs).
- `parse(text_or_mapping)`: a signature the user wrote, `{"inputs": [...], "outputs": [...]}` with
  v2 datatypes (JSON or YAML).

A tensor that has no v2 datatype (a sequence or map, such as the ZipMap probabilities skl2onnx
writes by default; a complex or 8-bit float tensor; an MLflow array/object/map column) is left
out of a captured signature, and the capture's `notes` say which and why: the rest of the
signature is still worth having. A capture never invents a tensor.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import ValidationError

from modelreg.api.models import LIST_MAX, ArtifactFormat, Datatype, Signature, TensorSpec
from modelreg.sdk.errors import InvalidArgument

__all__ = [
    "Captured",
    "Signature",
    "SignatureWarning",
    "auto",
    "from_mlflow",
    "from_onnx",
    "given",
    "parse",
    "summary",
]

_MAX_RANK = 16  # TensorSpec.shape's bound
_MLMODEL_MAX = 1024 * 1024


class SignatureWarning(UserWarning):
    """`register(signature="auto")` captured less than the whole signature, or nothing."""


class Captured(NamedTuple):
    signature: Signature
    notes: list[str]  # what was left out of the signature, and why


# ONNX TensorProto element types (by name, stable across onnx releases) -> v2 datatype.
_ONNX_TYPES: dict[str, Datatype] = {
    "FLOAT": Datatype.FP32,
    "DOUBLE": Datatype.FP64,
    "FLOAT16": Datatype.FP16,
    "INT8": Datatype.INT8,
    "INT16": Datatype.INT16,
    "INT32": Datatype.INT32,
    "INT64": Datatype.INT64,
    "UINT8": Datatype.UINT8,
    "UINT16": Datatype.UINT16,
    "UINT32": Datatype.UINT32,
    "UINT64": Datatype.UINT64,
    "BOOL": Datatype.BOOL,
    "STRING": Datatype.BYTES,
}

# MLflow tensor-spec dtypes (numpy dtype names) -> v2 datatype.
_NUMPY_TYPES: dict[str, Datatype] = {
    "float16": Datatype.FP16,
    "float32": Datatype.FP32,
    "float64": Datatype.FP64,
    "int8": Datatype.INT8,
    "int16": Datatype.INT16,
    "int32": Datatype.INT32,
    "int64": Datatype.INT64,
    "uint8": Datatype.UINT8,
    "uint16": Datatype.UINT16,
    "uint32": Datatype.UINT32,
    "uint64": Datatype.UINT64,
    "bool": Datatype.BOOL,
    "object": Datatype.BYTES,
}

# MLflow column types (mlflow.types.DataType) -> v2 datatype.
_COLUMN_TYPES: dict[str, Datatype] = {
    "double": Datatype.FP64,
    "float": Datatype.FP32,
    "long": Datatype.INT64,
    "integer": Datatype.INT32,
    "boolean": Datatype.BOOL,
    "string": Datatype.BYTES,
    "binary": Datatype.BYTES,
    "datetime": Datatype.BYTES,
}


# -- ONNX -----------------------------------------------------------------------------------------


def from_onnx(path: str | os.PathLike[str]) -> Captured:
    """The signature of the ONNX model at `path`, and notes on the tensors left out.

    Reads the graph only (`onnx.load(..., load_external_data=False)`). InvalidArgument when the
    file cannot be read or is not an ONNX model, or when the `onnx` package is not installed.
    """
    file = Path(path).expanduser()
    try:
        import onnx  # noqa: PLC0415 - optional, and only needed here
    except ImportError as e:
        raise InvalidArgument(
            f"{file}: reading an ONNX signature needs the onnx package (pip install onnx), "
            "or give the signature yourself"
        ) from e
    if not file.is_file():
        raise InvalidArgument(f"{file}: no such file")
    try:
        model = onnx.load(os.fspath(file), load_external_data=False)
    except OSError as e:
        raise InvalidArgument(f"{file}: cannot read it: {e.strerror or e}") from e
    except Exception as e:  # protobuf's DecodeError and whatever else onnx raises on garbage
        raise InvalidArgument(f"{file}: not a readable ONNX model: {_short(e)}") from e
    # Protobuf parses many byte strings as an empty message: a model has a graph with outputs.
    if not model.HasField("graph") or not model.graph.output:
        raise InvalidArgument(f"{file}: not an ONNX model (it has no graph outputs)")
    graph = model.graph
    weights = {t.name for t in graph.initializer} | {
        s.values.name for s in graph.sparse_initializer
    }
    notes: list[str] = []
    inputs = [
        spec
        for v in graph.input
        if v.name not in weights and (spec := _onnx_tensor(onnx, v, "input", notes)) is not None
    ]
    outputs = [
        spec for v in graph.output if (spec := _onnx_tensor(onnx, v, "output", notes)) is not None
    ]
    return Captured(_signature(inputs, outputs, str(file), notes), notes)


def _onnx_tensor(onnx: Any, value: Any, role: str, notes: list[str]) -> TensorSpec | None:
    name = str(value.name)
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        what = _onnx_kind(value.type)
        article = "an" if what[0] in "aeiou" else "a"
        notes.append(f"{role} {name!r} left out: it is {article} {what}, not a tensor")
        return None
    tensor = value.type.tensor_type
    try:
        elem = str(onnx.TensorProto.DataType.Name(tensor.elem_type))
    except ValueError:  # a type newer than the installed onnx knows
        elem = f"#{tensor.elem_type}"
    datatype = _ONNX_TYPES.get(elem)
    if datatype is None:
        notes.append(f"{role} {name!r} left out: element type {elem} has no v2 datatype")
        return None
    if tensor.HasField("shape"):
        shape = [
            d.dim_value if d.WhichOneof("value") == "dim_value" and d.dim_value >= 0 else -1
            for d in tensor.shape.dim
        ]
    else:
        shape = [-1]
        notes.append(f"{role} {name!r}: the graph does not give its rank; recorded as [-1]")
    return TensorSpec(name=name, datatype=datatype, shape=shape)


def _onnx_kind(tp: Any) -> str:
    """`sequence of maps` (skl2onnx's ZipMap), `map`, ... for a non-tensor ONNX type."""
    kind = tp.WhichOneof("value")
    if kind == "sequence_type" and tp.sequence_type.elem_type.WhichOneof("value"):
        return f"sequence of {_onnx_kind(tp.sequence_type.elem_type)}s"
    return {
        "tensor_type": "tensor",
        "sequence_type": "sequence",
        "map_type": "map",
        "optional_type": "optional",
        "sparse_tensor_type": "sparse tensor",
        "opaque_type": "opaque value",
    }.get(str(kind), "unknown type")


# -- MLflow ---------------------------------------------------------------------------------------


def from_mlflow(mlmodel_text: str) -> Captured | None:
    """The signature in the `signature:` block of an MLflow `MLmodel` file; None when it has none.

    InvalidArgument when the file or its signature cannot be read.
    """
    try:
        meta = yaml.safe_load(mlmodel_text)
    except yaml.YAMLError as e:
        raise InvalidArgument(f"MLmodel is not valid YAML: {_short(e)}") from e
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise InvalidArgument("MLmodel is not a YAML mapping")
    block = meta.get("signature")
    if block is None:
        return None
    if not isinstance(block, dict):
        raise InvalidArgument("MLmodel: signature is not a mapping of inputs and outputs")
    notes: list[str] = []
    inputs = _mlflow_specs(block.get("inputs"), "input", notes)
    outputs = _mlflow_specs(block.get("outputs"), "output", notes)
    if not inputs and not outputs and not notes:
        return None
    return Captured(_signature(inputs, outputs, "MLmodel signature", notes), notes)


def _mlflow_specs(raw: Any, role: str, notes: list[str]) -> list[TensorSpec]:
    if raw is None:
        return []
    if isinstance(raw, str):  # MLflow writes each list as a JSON string inside the YAML
        try:
            raw = json.loads(raw)
        except ValueError as e:
            raise InvalidArgument(f"MLmodel: signature {role}s are not valid JSON: {e}") from e
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidArgument(f"MLmodel: signature {role}s are not a list")
    out: list[TensorSpec] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidArgument(f"MLmodel: signature {role} {i} is not a mapping")
        name = item.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            raise InvalidArgument(f"MLmodel: signature {role} {i} has an invalid name {name!r}")
        label = name or f"{role}-{i}"
        kind = item.get("type")
        if kind == "tensor":
            spec = _mlflow_tensor(item.get("tensor-spec"), label, role, notes)
        elif isinstance(kind, str) and kind in _COLUMN_TYPES:
            spec = TensorSpec(name=label, datatype=_COLUMN_TYPES[kind], shape=[-1])
        else:
            notes.append(f"{role} {label!r} left out: MLflow type {kind!r} has no v2 datatype")
            spec = None
        if spec is not None:
            out.append(spec)
    return out


def _mlflow_tensor(raw: Any, name: str, role: str, notes: list[str]) -> TensorSpec | None:
    if not isinstance(raw, dict):
        raise InvalidArgument(f"MLmodel: signature {role} {name!r} has no tensor-spec")
    dtype, shape = raw.get("dtype"), raw.get("shape")
    if not isinstance(dtype, str):
        raise InvalidArgument(f"MLmodel: signature {role} {name!r} has no dtype")
    datatype = _numpy_datatype(dtype)
    if datatype is None:
        notes.append(f"{role} {name!r} left out: numpy dtype {dtype!r} has no v2 datatype")
        return None
    if not isinstance(shape, list) or not all(type(d) is int for d in shape):
        raise InvalidArgument(
            f"MLmodel: signature {role} {name!r}: shape {shape!r} is not a list of integers"
        )
    return TensorSpec(name=name, datatype=datatype, shape=[d if d >= 0 else -1 for d in shape])


def _numpy_datatype(dtype: str) -> Datatype | None:
    name = dtype.lstrip("<>=|")
    if name in _NUMPY_TYPES:
        return _NUMPY_TYPES[name]
    # Strings and bytes (str, bytes, str160, <U5, |S3) and datetimes travel as v2 BYTES.
    if name.startswith(("str", "bytes", "U", "S", "datetime64")):
        return Datatype.BYTES
    return None


# -- given by the user ----------------------------------------------------------------------------

_TOP_KEYS = frozenset({"inputs", "outputs"})
_TENSOR_KEYS = frozenset({"name", "datatype", "shape"})


def parse(value: str | Mapping[str, Any] | Signature, *, source: str = "signature") -> Signature:
    """A signature the user gave: a `Signature`, a mapping, or the JSON/YAML text of one
    (`{"inputs": [{"name", "datatype", "shape"}], "outputs": [...]}`). Unknown keys, unknown
    datatypes and duplicate names are refused (InvalidArgument, naming `source`)."""
    if isinstance(value, Signature):
        data: Any = value.wire()
    elif isinstance(value, str):
        try:
            data = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise InvalidArgument(f"{source}: not valid JSON/YAML: {_short(e)}") from e
    else:
        data = value
    if not isinstance(data, Mapping):
        raise InvalidArgument(
            f'{source}: expected a mapping {{"inputs": [...], "outputs": [...]}}, '
            f"got {type(data).__name__}"
        )
    unknown = sorted(str(k) for k in data if k not in _TOP_KEYS)
    if unknown:
        raise InvalidArgument(f"{source}: unknown key(s) {', '.join(unknown)}; use inputs, outputs")
    clean: dict[str, list[dict[str, Any]]] = {}
    for role in ("inputs", "outputs"):
        items = data.get(role)
        if items is None:
            clean[role] = []
            continue
        if not isinstance(items, list):
            raise InvalidArgument(f"{source}: {role} must be a list of tensors")
        clean[role] = [
            _given_tensor(item, f"{source}: {role}[{i}]") for i, item in enumerate(items)
        ]
    try:
        sig = Signature.model_validate(clean)
    except ValidationError as e:
        raise InvalidArgument(f"{source}: {_validation(e)}") from e
    _check(sig, source)
    return sig


def _given_tensor(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise InvalidArgument(f"{where}: expected a mapping with name, datatype and shape")
    unknown = sorted(str(k) for k in item if k not in _TENSOR_KEYS)
    if unknown:
        raise InvalidArgument(f"{where}: unknown key(s) {', '.join(unknown)}")
    missing = [k for k in ("name", "datatype", "shape") if k not in item]
    if missing:
        raise InvalidArgument(f"{where}: missing {', '.join(missing)}")
    name, datatype, shape = item["name"], item["datatype"], item["shape"]
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"{where}: name must be a non-empty string")
    where = f"{where} ({name!r})"
    choices = ", ".join(d.value for d in Datatype)
    if not isinstance(datatype, str) or datatype.upper() not in Datatype.__members__:
        raise InvalidArgument(f"{where}: datatype {datatype!r} is not one of {choices}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= -1 for d in shape):
        raise InvalidArgument(
            f"{where}: shape {shape!r} must be a list of integers (-1 for any size)"
        )
    return {"name": name, "datatype": datatype.upper(), "shape": shape}


# -- register's "auto" ----------------------------------------------------------------------------


def given(value: Signature | Mapping[str, Any] | str | None) -> Signature | None:
    """The signature `register(signature=...)` was given: None for "auto" (decided once the
    artifact's format is known, see `auto`) and for None; else the validated signature."""
    if value is None or (isinstance(value, str) and value == "auto"):
        return None
    if isinstance(value, str):
        raise InvalidArgument(
            f'signature must be "auto", None, a Signature or a mapping of inputs and outputs; '
            f"got {value!r} (read a file with modelreg.sdk.signature.parse)"
        )
    return parse(value)


def auto(path: Path, fmt: ArtifactFormat) -> Signature | None:
    """What `register(signature="auto")` records: the ONNX signature of an ONNX file, else None.

    Never fails the registration: a file that cannot be read as ONNX (or a missing onnx package)
    records no signature, and that and every tensor left out is a `SignatureWarning`.
    """
    if fmt is not ArtifactFormat.ONNX or not path.is_file():
        return None
    try:
        sig, notes = from_onnx(path)
    except InvalidArgument as e:
        warnings.warn(f"no signature recorded: {e}", SignatureWarning, stacklevel=3)
        return None
    for note in notes:
        warnings.warn(f"{path.name}: {note}", SignatureWarning, stacklevel=3)
    return sig


def summary(sig: Signature) -> str:
    """`1 input(s), 2 output(s)`."""
    return f"{len(sig.inputs)} input(s), {len(sig.outputs)} output(s)"


# -- shared ---------------------------------------------------------------------------------------


def _signature(
    inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], source: str, notes: list[str]
) -> Signature:
    """A captured signature, checked against the schema's bounds."""
    if not inputs and not outputs:
        raise InvalidArgument(f"{source}: no tensor in it has a v2 datatype ({'; '.join(notes)})")
    for role, specs in (("inputs", inputs), ("outputs", outputs)):
        if len(specs) > LIST_MAX:
            raise InvalidArgument(
                f"{source}: {len(specs)} {role}; a ModelVersion's signature holds at most "
                f"{LIST_MAX} (give a signature yourself, or none)"
            )
        for spec in specs:
            if len(spec.shape) > _MAX_RANK:
                raise InvalidArgument(
                    f"{source}: {role[:-1]} {spec.name!r} has rank {len(spec.shape)}; at most "
                    f"{_MAX_RANK} dimensions are recorded"
                )
    try:
        sig = Signature.model_validate(
            {"inputs": [s.wire() for s in inputs], "outputs": [s.wire() for s in outputs]}
        )
    except ValidationError as e:
        raise InvalidArgument(f"{source}: {_validation(e)}") from e
    _check(sig, source)
    return sig


def _check(sig: Signature, source: str) -> None:
    if not sig.inputs and not sig.outputs:
        raise InvalidArgument(f"{source}: a signature needs at least one input or output")
    for role, specs in (("input", sig.inputs), ("output", sig.outputs)):
        seen: set[str] = set()
        for spec in specs:
            if spec.name in seen:
                raise InvalidArgument(f"{source}: {role} {spec.name!r} is named twice")
            seen.add(spec.name)


def _validation(e: ValidationError) -> str:
    parts = []
    for err in e.errors(include_url=False, include_input=False):
        loc = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "; ".join(parts)


def _short(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
