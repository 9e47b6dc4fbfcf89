"""The SDK's errors: one family under `ModelregError`, each with the CLI exit code it maps to.

Raised by `modelreg.sdk.client.Client` and the MLflow import; caught by `modelreg.cli.main`, which
prints `error: <message>` and exits with `exit_code`. The adapters' errors (`KubeError`,
`StoreError`) never cross the SDK: `from_kube` and `from_store` translate them here, once.

Exit codes (stable, documented in docs/cli.md):
    0 success, 1 error, 2 usage, 3 not found, 4 timeout, 5 precondition failed / blocked,
    6 permission denied, 130 interrupted.
"""

from __future__ import annotations

from modelreg.adapters import kube as k
from modelreg.adapters import objectstore as s

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_TIMEOUT = 4
EXIT_PRECONDITION = 5
EXIT_FORBIDDEN = 6
EXIT_INTERRUPTED = 130


class ModelregError(Exception):
    """Base of every error the SDK raises; the message is meant for the user."""

    exit_code = EXIT_ERROR


# -- usage / configuration ---------------------------------------------------------------------


class InvalidArgument(ModelregError, ValueError):
    """An argument is wrong before anything was asked of the cluster (a bad path, metric, ...)."""

    exit_code = EXIT_USAGE


class ConfigurationError(ModelregError):
    """No usable kubeconfig / context."""


# -- not found ----------------------------------------------------------------------------------


class NotFound(ModelregError, LookupError):
    exit_code = EXIT_NOT_FOUND


class ModelNotFound(NotFound):
    pass


class VersionNotFound(NotFound):
    pass


class ArtifactNotFound(NotFound):
    pass


# -- preconditions ------------------------------------------------------------------------------


class PreconditionFailed(ModelregError):
    exit_code = EXIT_PRECONDITION


class NoStorageConfigured(PreconditionFailed):
    """The Model has no spec.storage, so there is nowhere to upload the artifact."""


class NoCredentials(PreconditionFailed):
    """Neither the Model's storage Secret nor AWS_* environment variables gave credentials."""


class VersionBlocked(PreconditionFailed):
    """A wait ended because the version is Blocked or Failed (the message says why)."""


class NothingToRollBack(PreconditionFailed):
    """No version serves production, or none could take over from it."""


class ArtifactMismatch(PreconditionFailed):
    """The stored bytes do not hash to the sha256 recorded in the ModelVersion."""


class AlreadyExists(PreconditionFailed):
    """The object exists (and the caller asked not to overwrite it)."""


# -- other ----------------------------------------------------------------------------------------


class Timeout(ModelregError, TimeoutError):
    exit_code = EXIT_TIMEOUT


class PermissionDenied(ModelregError, PermissionError):
    """The API server (RBAC, the promotion admission policy) or the store refused."""

    exit_code = EXIT_FORBIDDEN


class Rejected(ModelregError):
    """The API server rejected the object as invalid (schema, CEL rules, admission)."""


class Unavailable(ModelregError):
    """The API server or the object store could not be reached; retrying may help."""


class StoreFailure(ModelregError):
    """Another object-store failure."""


class MlflowError(ModelregError):
    """Reading the MLflow registry failed (or mlflow is not installed)."""


def from_kube(e: k.KubeError, what: str) -> ModelregError:
    """Translate a Kubernetes adapter error; `what` names the object for the message."""
    msg = f"{what}: {e}"
    if isinstance(e, k.NotFound):
        return NotFound(msg)
    if isinstance(e, k.Forbidden):
        return PermissionDenied(msg)
    if isinstance(e, k.Invalid):
        return Rejected(msg)
    if isinstance(e, k.Conflict):
        return AlreadyExists(msg)
    if isinstance(e, k.Unavailable):
        return Unavailable(msg)
    if isinstance(e, k.ConfigError):
        return ConfigurationError(str(e))
    return ModelregError(msg)


def from_store(e: s.StoreError) -> ModelregError:
    """Translate an object-store adapter error (its messages already name the object)."""
    msg = str(e)
    if isinstance(e, s.ObjectNotFound):
        return ArtifactNotFound(msg)
    if isinstance(e, s.AccessDenied):
        return PermissionDenied(msg)
    if isinstance(e, s.StoreUnavailable):
        return Unavailable(msg)
    if isinstance(e, s.DigestMismatch):
        return ArtifactMismatch(msg)
    if isinstance(e, s.InvalidURI):
        return InvalidArgument(msg)
    return StoreFailure(msg)
