"""Open Inference Protocol v2 wire format: requests in, responses out, JSON and binary tensors.

Called by `modelreg.runtime.dataplane` for every REST inference; `modelreg.runtime.grpc_codec`
shares its checks and its raw tensor layout. It turns a request body into named
numpy arrays (validating names, datatypes, shapes and values, raising `BadRequest` with a message
a client can act on) and turns output arrays into a response body.

Binary tensor data follows the extension that Triton and tritonclient implement: when the
`Inference-Header-Content-Length` header is present, the first that many bytes are the JSON
header and the raw tensors follow in input order, each input announcing its length in
`parameters.binary_data_size`. Numbers are little-endian, row-major; a BYTES element is a 4-byte
little-endian length followed by its bytes. Outputs are returned binary when the request asks
(`outputs[].parameters.binary_data`, or `parameters.binary_data_output` for all of them).
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from modelreg.runtime.errors import BadRequest, PayloadTooLarge

# v2 datatype <-> numpy dtype (little-endian, as the binary extension requires).
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
_KIND_TO_DATATYPE = {
    ("b", 1): "BOOL",
    ("u", 1): "UINT8",
    ("u", 2): "UINT16",
    ("u", 4): "UINT32",
    ("u", 8): "UINT64",
    ("i", 1): "INT8",
    ("i", 2): "INT16",
    ("i", 4): "INT32",
    ("i", 8): "INT64",
    ("f", 2): "FP16",
    ("f", 4): "FP32",
    ("f", 8): "FP64",
}
# Which numpy kinds a JSON array may hold for a declared datatype (no silent float->int).
_ACCEPTED_KINDS = {"b": "b", "u": "biu", "i": "biu", "f": "biuf"}
_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY
_MAX_RANK = 16
_MAX_NAME = 256
_U32 = struct.Struct("<I")


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The v2 datatype of a numpy dtype; strings and objects are BYTES."""
    if dtype.kind in ("O", "U", "S"):
        return "BYTES"
    try:
        return _KIND_TO_DATATYPE[(dtype.kind, dtype.itemsize)]
    except KeyError:
        raise BadRequest(f"the model produced an unsupported dtype {dtype}") from None


@dataclass(slots=True)
class InputTensor:
    name: str
    datatype: str
    array: np.ndarray[Any, Any]


@dataclass(slots=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(slots=True)
class InferRequest:
    id: str | None
    inputs: list[InputTensor]
    outputs: list[RequestedOutput] | None  # None: every output the model has
    binary_output: bool = False  # default for outputs not listed / not saying
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def elements(self) -> int:
        return sum(t.array.size for t in self.inputs)


ENCODINGS = (b"gzip", b"deflate")
"""Content-Encodings a request body may use (besides none/identity)."""


def too_large(cap: int) -> str:
    return f"the request body is larger than the limit of {cap} bytes (MODELREG_MAX_REQUEST_BYTES)"


def decompress(body: bytes, encoding: bytes, cap: int) -> bytes:
    """Inflate a gzip or deflate body, refusing more than `cap` bytes of output."""
    # wbits 32+15 accepts both gzip and zlib framing.
    inflater = zlib.decompressobj(32 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, cap + 1)
    except zlib.error as e:
        raise BadRequest(f"the {encoding.decode()} body cannot be decompressed: {e}") from None
    if len(out) > cap or inflater.unconsumed_tail:
        raise PayloadTooLarge(too_large(cap))
    if not inflater.eof:
        raise BadRequest(f"the {encoding.decode()} body is truncated")
    return out


def decode_request(body: bytes, header_length: int | None = None) -> InferRequest:
    """Parse and validate an inference request body (JSON, optionally followed by binary data)."""
    header: bytes | memoryview
    binary: bytes | memoryview
    if header_length is None:
        header, binary = body, b""
    else:
        if header_length <= 0 or header_length > len(body):
            raise BadRequest(
                f"Inference-Header-Content-Length is {header_length} but the body has "
                f"{len(body)} bytes"
            )
        view = memoryview(body)
        header, binary = view[:header_length], view[header_length:]
    try:
        doc = orjson.loads(header)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"the request body is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise BadRequest("the request body must be a JSON object with an 'inputs' list")

    req_id = doc.get("id")
    if req_id is not None and not isinstance(req_id, str):
        raise BadRequest("'id' must be a string")
    params = _parameters(doc.get("parameters"), "request")
    binary_output = params.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise BadRequest("parameters.binary_data_output must be true or false")

    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadRequest("'inputs' must be a non-empty list of tensors")
    offset = 0
    inputs: list[InputTensor] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_inputs):
        tensor, used = _decode_input(raw, i, binary, offset)
        if tensor.name in seen:
            raise BadRequest(f"input {tensor.name!r} is given twice")
        seen.add(tensor.name)
        inputs.append(tensor)
        offset += used
    if offset != len(binary):
        raise BadRequest(
            f"the body carries {len(binary)} bytes of binary tensor data but the inputs' "
            f"binary_data_size add up to {offset}"
        )

    outputs = _decode_outputs(doc.get("outputs"), binary_output)
    return InferRequest(
        id=req_id, inputs=inputs, outputs=outputs, binary_output=binary_output, parameters=params
    )


def decode_response(body: bytes, header_length: int | None = None) -> tuple[str, list[InputTensor]]:
    """An inference response's model_version and output tensors (another server's answer, read
    back: the shadow comparison). Raises BadRequest when it is not a v2 response."""
    header: bytes | memoryview = body
    binary: bytes | memoryview = b""
    if header_length is not None:
        if header_length <= 0 or header_length > len(body):
            raise BadRequest(f"the response's JSON header length {header_length} is wrong")
        view = memoryview(body)
        header, binary = view[:header_length], view[header_length:]
    try:
        doc = orjson.loads(header)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"the response is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("outputs"), list):
        raise BadRequest("the response has no 'outputs' list")
    offset = 0
    outputs: list[InputTensor] = []
    for i, raw in enumerate(doc["outputs"]):
        tensor, used = _decode_input(raw, i, binary, offset)
        outputs.append(tensor)
        offset += used
    return str(doc.get("model_version", "")), outputs


def _parameters(raw: object, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest(f"{where} 'parameters' must be an object")
    return raw


def _decode_outputs(raw: object, binary_default: bool) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise BadRequest("'outputs' must be a list of {\"name\": ...} objects")
    outputs: list[RequestedOutput] = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest("each entry of 'outputs' must be an object with a string 'name'")
        p = _parameters(item.get("parameters"), f"output {item['name']!r}")
        binary = p.get("binary_data", binary_default)
        if not isinstance(binary, bool):
            raise BadRequest(f"output {item['name']!r}: parameters.binary_data must be a boolean")
        if "classification" in p:
            raise BadRequest(
                f"output {item['name']!r}: the classification extension is not supported"
            )
        outputs.append(RequestedOutput(item["name"], binary))
    return outputs


def _decode_input(
    raw: object, index: int, binary: bytes | memoryview, offset: int
) -> tuple[InputTensor, int]:
    if not isinstance(raw, dict):
        raise BadRequest(f"inputs[{index}] must be an object with name, shape, datatype, data")
    name = check_name(index, raw.get("name"))
    datatype = check_datatype(name, raw.get("datatype"))
    shape = check_shape(name, raw.get("shape"))
    count = math.prod(shape)
    params = _parameters(raw.get("parameters"), f"input {name!r}")
    size = params.get("binary_data_size")

    if size is not None:
        if type(size) is not int or size < 0:
            raise BadRequest(f"input {name!r}: binary_data_size must be a non-negative integer")
        if "data" in raw:
            raise BadRequest(f"input {name!r}: give either 'data' or binary_data_size, not both")
        if offset + size > len(binary):
            raise BadRequest(
                f"input {name!r}: binary_data_size {size} runs past the end of the body"
            )
        chunk = binary[offset : offset + size]
        array = from_binary(name, datatype, shape, count, chunk)
        return InputTensor(name, datatype, array), size

    if "data" not in raw:
        raise BadRequest(f"input {name!r} has no 'data'")
    array = _from_json(name, datatype, shape, count, raw["data"])
    return InputTensor(name, datatype, array), 0


def check_name(index: int, name: object) -> str:
    """An input's name, as every wire format (REST here, gRPC in `grpc_codec`) requires it."""
    if not isinstance(name, str) or not name or len(name) > _MAX_NAME:
        raise BadRequest(f"inputs[{index}] needs a non-empty string 'name'")
    return name


def check_datatype(name: str, datatype: object) -> str:
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise BadRequest(
            f"input {name!r}: datatype {datatype!r} is not one of {', '.join(DATATYPES)}"
        )
    return datatype


def check_shape(name: str, shape: object) -> list[int]:
    if (
        not isinstance(shape, list)
        or len(shape) > _MAX_RANK
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise BadRequest(f"input {name!r}: 'shape' must be a list of non-negative integers")
    return shape


def _from_json(
    name: str, datatype: str, shape: list[int], count: int, data: object
) -> np.ndarray[Any, Any]:
    if not isinstance(data, list):
        data = [data]  # a scalar for a one-element tensor
    if datatype == "BYTES":
        flat = _flatten_bytes(name, data)
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
    else:
        try:
            array = np.array(data)
        except (ValueError, TypeError, OverflowError) as e:
            raise BadRequest(
                f"input {name!r}: data is not a regular array of numbers ({e})"
            ) from None
        target = DATATYPES[datatype]
        if array.size and array.dtype.kind not in _ACCEPTED_KINDS[target.kind]:
            what = "booleans" if target.kind == "b" else "numbers"
            raise BadRequest(
                f"input {name!r}: datatype {datatype} needs {what}, got {_describe(array)}"
            )
        if target.kind in "iu" and array.size and array.dtype.kind in "iu":
            info = np.iinfo(target)
            if array.min() < info.min or array.max() > info.max:
                raise BadRequest(f"input {name!r}: a value does not fit in {datatype}")
        array = array.astype(target, copy=False)
    if array.size != count:
        raise BadRequest(
            f"input {name!r}: shape {shape} holds {count} elements but data has {array.size}"
        )
    return array.reshape(shape)


def _describe(array: np.ndarray[Any, Any]) -> str:
    return {
        "U": "strings",
        "S": "strings",
        "O": "mixed values",
        "f": "non-integer numbers",
        "b": "booleans",
    }.get(array.dtype.kind, str(array.dtype))


def _flatten_bytes(name: str, data: list[Any]) -> list[str | bytes]:
    out: list[str | bytes] = []
    stack: list[Any] = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            if not isinstance(item, str):
                raise BadRequest(f"input {name!r}: BYTES data must be strings")
            out.append(item)
        else:
            stack.pop()
    return out


def from_binary(
    name: str,
    datatype: str,
    shape: list[int],
    count: int,
    chunk: bytes | memoryview,
    size_name: str = "binary_data_size",
) -> np.ndarray[Any, Any]:
    """A tensor from its raw bytes (also gRPC's raw_input_contents, whose length is `size_name`
    in messages)."""
    if datatype == "BYTES":
        items: list[bytes] = []
        pos, end = 0, len(chunk)
        while pos < end:
            if pos + 4 > end:
                raise BadRequest(f"input {name!r}: truncated BYTES element length")
            (n,) = _U32.unpack_from(chunk, pos)
            pos += 4
            if pos + n > end:
                raise BadRequest(f"input {name!r}: a BYTES element runs past its data")
            items.append(bytes(chunk[pos : pos + n]))
            pos += n
        if len(items) != count:
            raise BadRequest(
                f"input {name!r}: shape {shape} holds {count} elements but the binary data "
                f"has {len(items)}"
            )
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    dtype = DATATYPES[datatype]
    if len(chunk) != count * dtype.itemsize:
        raise BadRequest(
            f"input {name!r}: shape {shape} of {datatype} needs {count * dtype.itemsize} "
            f"bytes but {size_name} is {len(chunk)}"
        )
    # A copy: the body buffer is released after the request and models may keep references.
    return np.frombuffer(chunk, dtype=dtype).reshape(shape).copy()


# ------------------------------------------------------------------------------------------------
# Responses


@dataclass(slots=True)
class OutputTensor:
    name: str
    array: np.ndarray[Any, Any]
    binary: bool = False


def json_size_estimate(outputs: list[OutputTensor]) -> int:
    """A rough size of the JSON `encode_response` writes: 8 bytes per element not sent binary."""
    return 8 * sum(o.array.size for o in outputs if not o.binary)


def encode_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: list[OutputTensor],
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary tensors follow it."""
    doc_outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for out in outputs:
        array = out.array
        datatype = datatype_of(array.dtype)
        entry: dict[str, Any] = {"name": out.name, "datatype": datatype, "shape": list(array.shape)}
        if out.binary:
            blob = to_binary(array, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif datatype == "BYTES":
            entry["data"] = [_text(v) for v in array.ravel().tolist()]
        else:
            entry["data"] = np.ascontiguousarray(array.ravel())
        doc_outputs.append(entry)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        doc["id"] = request_id
    doc["outputs"] = doc_outputs
    header = orjson.dumps(doc, option=_JSON_OPTS)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def to_binary(array: np.ndarray[Any, Any], datatype: str) -> bytes:
    """The raw bytes of a tensor: little-endian, row-major, BYTES elements length-prefixed."""
    if datatype == "BYTES":
        parts: list[bytes] = []
        for v in array.ravel().tolist():
            b = v if isinstance(v, bytes) else str(v).encode("utf-8")
            parts.append(_U32.pack(len(b)))
            parts.append(b)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=DATATYPES[datatype]).tobytes()


def dumps(doc: Any) -> bytes:
    """JSON for the non-inference endpoints (metadata, health, errors)."""
    return orjson.dumps(doc, option=_JSON_OPTS)
