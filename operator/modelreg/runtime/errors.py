"""Errors of the model server: each carries its HTTP status.

Raised by the data plane (`dataplane`, `codec`, `loaders`) and mapped once, in
`modelreg.runtime.http`, to a response `{"error": "<message>"}` with that status. Messages are for
the caller: they say what was wrong with the request and never contain a traceback.
"""

from __future__ import annotations


class InferenceError(Exception):
    """Base: a failure the client is told about, with an HTTP status."""

    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(InferenceError):
    """Malformed JSON, wrong names, shapes or datatypes, values that do not fit the tensor."""

    status = 400


class NotFound(InferenceError):
    """Unknown model, version or path."""

    status = 404


class MethodNotAllowed(InferenceError):
    status = 405

    def __init__(self, method: str, allowed: str) -> None:
        super().__init__(f"use {allowed} for this endpoint, not {method}")
        self.allowed = allowed


class PayloadTooLarge(InferenceError):
    """The body is above MODELREG_MAX_REQUEST_BYTES."""

    status = 413


class UnsupportedMediaType(InferenceError):
    status = 415


class NotReady(InferenceError):
    """The model has not been verified and loaded (yet), or it failed to load."""

    status = 503


class Overloaded(InferenceError):
    """Every worker is busy and the queue is full: 503, and the client should retry later."""

    status = 503

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PredictionFailed(InferenceError):
    """The model itself raised on valid-looking input; the message names the model's complaint."""

    status = 500


class ModelLoadError(Exception):
    """The artifact cannot be served: refused format, digest mismatch, corrupt file.

    Fatal at start-up: the server stays not-ready (or exits) with this message.
    """
