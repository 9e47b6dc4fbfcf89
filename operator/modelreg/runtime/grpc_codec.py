"""Open Inference Protocol v2 over gRPC: protobuf messages to tensors and back.

Called by `modelreg.runtime.grpc` (through `DataPlane.infer_message`, so on the event loop for a
small request, else in the executor). A `ModelInferRequest` becomes the same
`codec.InferRequest` a REST body does, checked by the same rules (`codec.check_*`,
`codec.from_binary`), with `BadRequest` messages that name the protobuf fields.

Inputs carry their data either in `contents` (the one typed field of their datatype, below) or,
for every input at once, in `raw_input_contents`: little-endian, row-major, a BYTES element a
4-byte little-endian length and its bytes. FP16 has no typed field, so it comes raw only.

Outputs are written to `raw_output_contents` when the request sent its inputs raw (as
tritonclient does: its `as_numpy` reads numbers only from raw contents), when it sets the
request parameter `binary_data_output` to true, or when an output is FP16; otherwise to typed
`contents`. It is all or nothing: the protocol does not mix the two in one response.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from modelreg.runtime import codec
from modelreg.runtime.errors import BadRequest
from modelreg.runtime.proto import grpc_predict_v2_pb2 as pb

# The typed field of each datatype, and the numpy dtype protobuf holds its values in.
CONTENTS: dict[str, tuple[str, np.dtype[Any]]] = {
    "BOOL": ("bool_contents", np.dtype(np.bool_)),
    "INT8": ("int_contents", np.dtype(np.int32)),
    "INT16": ("int_contents", np.dtype(np.int32)),
    "INT32": ("int_contents", np.dtype(np.int32)),
    "INT64": ("int64_contents", np.dtype(np.int64)),
    "UINT8": ("uint_contents", np.dtype(np.uint32)),
    "UINT16": ("uint_contents", np.dtype(np.uint32)),
    "UINT32": ("uint_contents", np.dtype(np.uint32)),
    "UINT64": ("uint64_contents", np.dtype(np.uint64)),
    "FP32": ("fp32_contents", np.dtype(np.float32)),
    "FP64": ("fp64_contents", np.dtype(np.float64)),
    "BYTES": ("bytes_contents", np.dtype(object)),
}

Parameters = dict[str, bool | int | str | float]


def parameters(params: Any) -> Parameters:
    """A protobuf `map<string, InferParameter>` as plain values."""
    out: Parameters = {}
    for key, value in params.items():
        which = value.WhichOneof("parameter_choice")
        if which is not None:
            out[key] = getattr(value, which)
    return out


def decode_request(message: pb.ModelInferRequest) -> codec.InferRequest:
    """Validate a request and turn its inputs into arrays."""
    params = parameters(message.parameters)
    raw_outputs = params.get("binary_data_output", False)
    if not isinstance(raw_outputs, bool):
        raise BadRequest("parameter binary_data_output must be a bool_param")
    if not message.inputs:
        raise BadRequest("'inputs' must be a non-empty list of tensors")
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise BadRequest(
            f"raw_input_contents has {len(raw)} entries but the request has "
            f"{len(message.inputs)} inputs: give one per input, in order"
        )
    inputs: list[codec.InputTensor] = []
    seen: set[str] = set()
    for i, tensor in enumerate(message.inputs):
        name = codec.check_name(i, tensor.name)
        datatype = codec.check_datatype(name, tensor.datatype)
        shape = codec.check_shape(name, list(tensor.shape))
        count = math.prod(shape)
        if name in seen:
            raise BadRequest(f"input {name!r} is given twice")
        seen.add(name)
        if raw:
            if tensor.contents.ListFields():
                raise BadRequest(
                    f"input {name!r}: the request uses raw_input_contents, so no input may "
                    "also have contents"
                )
            size_name = f"the length of raw_input_contents[{i}]"
            array = codec.from_binary(name, datatype, shape, count, raw[i], size_name)
        else:
            array = _from_contents(name, datatype, shape, count, tensor.contents)
        inputs.append(codec.InputTensor(name, datatype, array))
    raw_outputs = raw_outputs or bool(raw)
    outputs: list[codec.RequestedOutput] | None = None
    if message.outputs:
        outputs = []
        for out in message.outputs:
            if "classification" in out.parameters:
                raise BadRequest(
                    f"output {out.name!r}: the classification extension is not supported"
                )
            outputs.append(codec.RequestedOutput(out.name, raw_outputs))
    return codec.InferRequest(
        id=message.id or None,
        inputs=inputs,
        outputs=outputs,
        binary_output=raw_outputs,
        parameters=dict(params),
    )


def _from_contents(
    name: str, datatype: str, shape: list[int], count: int, contents: pb.InferTensorContents
) -> np.ndarray[Any, Any]:
    given = [field.name for field, _ in contents.ListFields()]
    if datatype not in CONTENTS:  # FP16
        raise BadRequest(
            f"input {name!r}: {datatype} has no typed contents field; send it in raw_input_contents"
        )
    field, held = CONTENTS[datatype]
    others = [g for g in given if g != field]
    if others:
        raise BadRequest(
            f"input {name!r}: datatype {datatype} takes its data in contents.{field}, not "
            f"contents.{', contents.'.join(others)}"
        )
    values = getattr(contents, field)
    if len(values) != count:
        if not given and count:
            raise BadRequest(
                f"input {name!r} has no data: set contents.{field} or raw_input_contents"
            )
        raise BadRequest(
            f"input {name!r}: shape {shape} holds {count} elements but contents.{field} has "
            f"{len(values)}"
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    wide = np.fromiter(values, dtype=held, count=count)
    target = codec.DATATYPES[datatype]
    if target != held and wide.size:
        info = np.iinfo(target)
        if wide.min() < info.min or wide.max() > info.max:
            raise BadRequest(f"input {name!r}: a value does not fit in {datatype}")
    return wide.astype(target, copy=False).reshape(shape)


def decode_response(reply: pb.ModelInferResponse) -> tuple[str, list[codec.InputTensor]]:
    """A reply's model_version and output tensors (the shadow comparison reads answers back)."""
    raw = reply.raw_output_contents
    if raw and len(raw) != len(reply.outputs):
        raise BadRequest("raw_output_contents does not match the outputs")
    outputs: list[codec.InputTensor] = []
    for i, tensor in enumerate(reply.outputs):
        name = codec.check_name(i, tensor.name)
        datatype = codec.check_datatype(name, tensor.datatype)
        shape = codec.check_shape(name, list(tensor.shape))
        count = math.prod(shape)
        if raw:
            array = codec.from_binary(name, datatype, shape, count, raw[i])
        else:
            array = _from_contents(name, datatype, shape, count, tensor.contents)
        outputs.append(codec.InputTensor(name, datatype, array))
    return reply.model_version, outputs


def encode_response(
    model_name: str,
    model_version: str,
    request: codec.InferRequest,
    outputs: list[codec.OutputTensor],
) -> pb.ModelInferResponse:
    """The reply: raw contents when the request asked for them (see the module docstring)."""
    reply = pb.ModelInferResponse(
        model_name=model_name, model_version=model_version, id=request.id or ""
    )
    datatypes = [codec.datatype_of(o.array.dtype) for o in outputs]
    raw = any(o.binary for o in outputs) or any(d not in CONTENTS for d in datatypes)
    for out, datatype in zip(outputs, datatypes, strict=True):
        array = out.array
        tensor = reply.outputs.add(name=out.name, datatype=datatype, shape=array.shape)
        if raw:
            reply.raw_output_contents.append(codec.to_binary(array, datatype))
            continue
        values = getattr(tensor.contents, CONTENTS[datatype][0])
        if datatype == "BYTES":
            values.extend(_bytes(v) for v in array.ravel().tolist())
        else:
            values.extend(array.ravel().tolist())
    return reply


def _bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")
