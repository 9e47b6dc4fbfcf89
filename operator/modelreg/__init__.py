"""modelreg: a Kubernetes-native ML model registry.

`modelreg.Client` is the Python SDK (imported lazily, so the operator and the model server do not
pay for it). The layers are described in README.md and enforced by import-linter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from modelreg.sdk.client import Client

__all__ = ["Client", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from modelreg.sdk.client import Client  # noqa: PLC0415 - lazy on purpose

        return Client
    raise AttributeError(name)
