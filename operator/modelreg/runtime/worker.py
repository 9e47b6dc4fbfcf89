"""A codec worker process: parses large JSON request bodies and writes large JSON responses.

Started by `modelreg.runtime.executor` (which runs `main()` with the server's own sys.path), one
task at a time, so that the interpreter lock the JSON parser holds is not the server's. It never sees the model or
the credentials (its environment has no AWS_* variables).

Protocol, on stdin and stdout: frames of an 8-byte little-endian length and a pickle. A request is
`(operation, args)` with `operation` one of `OPERATIONS`; the answer is `(True, result)` or
`(False, exception)`. The pickles come only from the server that started the process. The process
exits when stdin closes. Anything else written to stdout goes to stderr, so it cannot break a frame.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import struct
import sys
from collections.abc import Callable
from typing import IO, Any

import numpy as np

from modelreg.runtime import codec
from modelreg.runtime.errors import InferenceError

FRAME = struct.Struct("<Q")
_U32 = struct.Struct("<I")


def decode_request(body: bytes, header_length: int | None) -> codec.InferRequest:
    """`codec.decode_request`, with string tensors packed for a cheap trip back to the server."""
    request = codec.decode_request(body, header_length)
    for tensor in request.inputs:
        if tensor.array.dtype.kind == "O":
            tensor.array = PackedStrings(tensor.array)  # type: ignore[assignment]
    return request


class PackedStrings:
    """A string tensor pickled as one blob and the lengths of its elements.

    Pickling a numpy object array makes and unpickles every string in C, holding the interpreter
    lock throughout (over 100 ms for a million strings). `unpack_strings` rebuilds them in
    bytecode instead, so the server can do it in a thread while its event loop keeps running."""

    def __init__(self, array: np.ndarray[Any, Any]) -> None:
        self.array = array

    def __reduce__(self) -> tuple[Any, ...]:
        items = self.array.ravel().tolist()
        text = all(isinstance(v, str) for v in items)
        if not text and not all(isinstance(v, bytes) for v in items):
            return (np.asarray, (self.array,))  # mixed: the codec never makes these
        raw = [v.encode("utf-8", "surrogatepass") for v in items] if text else items
        lengths = b"".join(_U32.pack(len(v)) for v in raw)
        return (unpack_strings, (self.array.shape, b"".join(raw), lengths, text))


def unpack_strings(
    shape: tuple[int, ...], blob: bytes, lengths: bytes, text: bool
) -> np.ndarray[Any, Any]:
    """Rebuild a `PackedStrings` tensor (a loop in bytecode: other threads get their turn)."""
    items: list[str | bytes] = []
    pos = 0
    for (n,) in _U32.iter_unpack(lengths):
        chunk = blob[pos : pos + n]
        items.append(chunk.decode("utf-8", "surrogatepass") if text else chunk)
        pos += n
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array.reshape(shape)


OPERATIONS: dict[str, Callable[..., Any]] = {
    "decode_request": decode_request,
    "encode_response": codec.encode_response,
}

log = logging.getLogger("modelreg.runtime.worker")


def serve(inp: IO[bytes], out: IO[bytes]) -> None:
    """Answer frames from `inp` on `out` until `inp` ends."""
    while True:
        head = inp.read(FRAME.size)
        if len(head) < FRAME.size:
            return
        (size,) = FRAME.unpack(head)
        data = inp.read(size)
        if len(data) < size:
            return
        operation, args = pickle.loads(data)  # noqa: S301 - written by the parent server only
        answer: tuple[bool, Any]
        try:
            answer = (True, OPERATIONS[operation](*args))
        except InferenceError as e:
            answer = (False, e)
        except Exception as e:
            log.exception("codec worker: %s failed", operation)
            answer = (False, RuntimeError(f"{operation} failed: {type(e).__name__}: {e}"))
        blob = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        out.write(FRAME.pack(len(blob)))
        out.write(blob)
        out.flush()


def main() -> None:
    # The server stops its workers itself; Ctrl-C on the process group must not kill them first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints go to stderr
    sys.stdout = sys.stderr
    serve(os.fdopen(0, "rb"), out)


if __name__ == "__main__":
    main()
