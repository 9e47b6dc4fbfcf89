"""Runs in .dev/venv-mlserver: validates response documents against MLServer's pydantic types.

Reads a JSON list of {"type": "<mlserver.types name>", "doc": {...}} on stdin and prints a JSON
list of error strings (empty when every document is valid). Inference responses are also decoded
tensor by tensor with MLServer's NumpyCodec, which checks data against shape and datatype.
"""

from __future__ import annotations

import json
import sys

from mlserver import types
from mlserver.codecs import NumpyCodec


def main() -> None:
    errors: list[str] = []
    items = json.load(sys.stdin)
    for i, item in enumerate(items):
        model = getattr(types, item["type"])
        try:
            parsed = model.model_validate(item["doc"])
            if isinstance(parsed, types.InferenceResponse):
                for output in parsed.outputs:
                    array = NumpyCodec.decode_output(output)
                    if list(array.shape) != list(output.shape):
                        errors.append(f"{i}: {output.name} decodes to {array.shape}")
        except Exception as e:
            errors.append(f"{i} ({item['type']}): {type(e).__name__}: {e}")
    print(json.dumps(errors))


if __name__ == "__main__":
    main()
