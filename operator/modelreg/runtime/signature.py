"""The registered signature (MODELREG_SIGNATURE) and the tensors the metadata endpoint reports.

The operator passes a ModelVersion's `spec.signature` as compact JSON,
`{"inputs": [{"name", "datatype", "shape"}], "outputs": [...]}`. `modelreg.runtime.dataplane`
parses it once (`parse`; a signature that does not parse is logged and ignored, never fatal) and,
when the model is loaded, `advertised` decides what `GET /v2/models/<name>` reports:

- A loader without a native signature (sklearn, skops, xgboost, lightgbm: one input of any name,
  outputs named after the estimator's methods, shapes probed) reports the registered inputs and
  outputs instead of its guess. Predictions are unchanged: a registered name that differs from
  the one the server computes is reported as a warning at start-up.
- ONNX (the graph is the signature the server enforces) reports the registered one only when it
  agrees with the graph: the same input names, and outputs the graph has (graph outputs it does
  not list, such as a ZipMap left out at register, are still reported). Otherwise the graph's, and
  a warning.
- Either way, a role (inputs or outputs) the registered signature leaves empty is the loader's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelreg.runtime.codec import DATATYPES
from modelreg.runtime.loaders import LoadedModel, TensorSpec

__all__ = ["Advertised", "Registered", "advertised", "parse"]

_MAX_TENSORS = 256
_MAX_RANK = 64


@dataclass(frozen=True)
class Registered:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class Advertised:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    warnings: tuple[str, ...] = ()


def parse(text: str) -> Registered:
    """The registered signature from MODELREG_SIGNATURE's JSON. ValueError says what is wrong."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ValueError(f"not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ValueError('expected a JSON object {"inputs": [...], "outputs": [...]}')
    roles = tuple(_tensors(doc.get(role), role) for role in ("inputs", "outputs"))
    if not roles[0] and not roles[1]:
        raise ValueError("it lists no inputs and no outputs")
    return Registered(*roles)


def _tensors(raw: Any, role: str) -> tuple[TensorSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > _MAX_TENSORS:
        raise ValueError(f"{role} must be a list of at most {_MAX_TENSORS} tensors")
    out: list[TensorSpec] = []
    for i, item in enumerate(raw):
        where = f"{role}[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where} is not an object")
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape", [])
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: name must be a non-empty string")
        if not isinstance(datatype, str) or datatype not in DATATYPES:
            raise ValueError(f"{where} ({name!r}): datatype {datatype!r} is not a v2 datatype")
        if (
            not isinstance(shape, list)
            or len(shape) > _MAX_RANK
            or not all(type(d) is int and d >= -1 for d in shape)
        ):
            raise ValueError(f"{where} ({name!r}): shape must be a list of integers >= -1")
        if any(s.name == name for s in out):
            raise ValueError(f"{role}: {name!r} is listed twice")
        out.append(TensorSpec(name, datatype, tuple(shape)))
    return tuple(out)


def advertised(model: LoadedModel, registered: Registered | None) -> Advertised:
    """The inputs and outputs the metadata endpoint reports for `model` (see the module doc)."""
    if registered is None:
        return Advertised(model.inputs, model.outputs)
    if model.native_signature:
        return _against_graph(model, registered)
    inputs = registered.inputs or model.inputs
    outputs = registered.outputs or model.outputs
    notes: list[str] = []
    if len(inputs) != len(model.inputs):
        notes.append(
            f"the registered signature lists {len(inputs)} inputs; this {model.platform} model "
            f"takes {len(model.inputs)} tensor ({_names(model.inputs)}, any name)"
        )
    if {o.name for o in outputs} != set(model.output_names):
        notes.append(
            f"the registered signature names the outputs {_names(outputs)}; this "
            f"{model.platform} model computes {_names(model.outputs)}, and predictions use "
            "those names"
        )
    return Advertised(inputs, outputs, tuple(notes))


def _against_graph(model: LoadedModel, registered: Registered) -> Advertised:
    graph_inputs = {s.name for s in model.inputs}
    if registered.inputs and {s.name for s in registered.inputs} != graph_inputs:
        return _keep_graph(
            model,
            f"its inputs ({_names(registered.inputs)}) are not the graph's "
            f"({_names(model.inputs)})",
        )
    unknown = [s for s in registered.outputs if s.name not in model.output_names]
    if unknown:
        return _keep_graph(
            model,
            f"the graph has no output {_names(unknown)} (it has {_names(model.outputs)})",
        )
    listed = {s.name for s in registered.outputs}
    outputs = registered.outputs + tuple(s for s in model.outputs if s.name not in listed)
    return Advertised(registered.inputs or model.inputs, outputs)


def _keep_graph(model: LoadedModel, why: str) -> Advertised:
    return Advertised(
        model.inputs,
        model.outputs,
        (f"the registered signature is not reported, the ONNX graph's is: {why}",),
    )


def _names(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(repr(s.name) for s in specs) or "none"
