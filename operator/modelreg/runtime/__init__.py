"""The builtin model server: Open Inference Protocol v2 over one verified artifact.

Run as `python -m modelreg.runtime` (the operator's serving Deployment) or `modelreg serve`
(which calls `modelreg.runtime.server.main(argv)`). Layers, outside in:

- `server`: settings -> app -> uvicorn (and gRPC); loads the model after binding; graceful
  shutdown.
- `http`: the ASGI skin; routes, body limits, the one error-to-response mapping, /metrics.
- `grpc`: the gRPC skin (inference.GRPCInferenceService, grpc.health.v1) on its own port;
  `grpc_codec` turns its protobuf messages (`proto/`, generated) into tensors and back.
- `dataplane`: fetch + verify (via `modelreg.adapters.objectstore`) + load, and the v2 calls.
- `codec`: the v2 JSON/binary wire format; `loaders`: onnx, skops, xgboost, lightgbm, sklearn.
- `settings`: the environment contract with the operator; `errors`: errors with their status.

Its dependencies live in the `modelreg[runtime]` extra, so the operator does not carry them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelreg.runtime.server import main

__all__ = ["main"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `import modelreg.runtime.settings` does not pull in uvicorn and numpy, and
    # a missing extra surfaces as ImportError where `modelreg serve` looks up `main`.
    if name == "main":
        from modelreg.runtime.server import main  # noqa: PLC0415

        return main
    raise AttributeError(name)
