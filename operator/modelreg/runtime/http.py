"""The HTTP skin of the model server: a lean ASGI application over the data plane.

`create_app` is the factory; `modelreg.runtime.server` hands the app to uvicorn, tests can too. It
routes the Open Inference Protocol v2 REST paths (plus /metrics), reads bodies under the size
cap, calls `DataPlane`, and maps every error in one place (`_respond_error`) to
`{"error": "<message>"}` with the status the error carries. No framework sits in between: at a
few hundred microseconds per request, routing and middleware layers would be a visible share of
the latency, and this surface is small and fixed.

Nothing here is CPU-bound: health, metadata and readiness answer from memory, and an inference
request is admitted (`DataPlane.admit`) from its headers alone, before its body is read. When the
executor is full (by count, or by the bytes of the bodies waiting) it gets 503 with `Retry-After`
at once; its body is then discarded unread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from modelreg.runtime import codec
from modelreg.runtime.dataplane import DataPlane
from modelreg.runtime.errors import (
    BadRequest,
    InferenceError,
    MethodNotAllowed,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from modelreg.runtime.metrics import Metrics
from modelreg.runtime.shadow import Mirror

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Hook = Callable[[], Awaitable[None]]

_JSON = b"application/json"
_OCTETS = b"application/octet-stream"
_MODELS = "/v2/models/"
_HEADER_LEN = b"inference-header-content-length"


class _ClientGone(Exception):
    """The client disconnected before sending its whole body."""


class RuntimeApp:
    """ASGI 3 application. `on_startup`/`on_shutdown` run in the lifespan protocol."""

    def __init__(
        self,
        plane: DataPlane,
        metrics: Metrics,
        *,
        max_request_bytes: int,
        on_startup: Hook | None = None,
        on_shutdown: Hook | None = None,
        mirror: Mirror | None = None,
    ) -> None:
        self.plane = plane
        self.metrics = metrics
        self.max_request_bytes = max_request_bytes
        self.mirror = mirror
        self._on_startup = on_startup
        self._on_shutdown = on_shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # -- lifespan -----------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self._on_startup is not None:
                        await self._on_startup()
                except Exception as e:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._on_shutdown is not None:
                    await self._on_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- requests -----------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith(_MODELS):
            await self._model_route(path[len(_MODELS) :], method, scope, receive, send)
            return
        try:
            if path in ("/v2/health/live", "/v2/health/live/"):
                _require(method, "GET")
                await _send(send, 200, b'{"live":true}')
            elif path in ("/v2/health/ready", "/v2/health/ready/"):
                _require(method, "GET")
                self.plane.server_ready()
                await _send(send, 200, b'{"ready":true}')
            elif path in ("/v2", "/v2/"):
                _require(method, "GET")
                await _send(send, 200, self.plane.server_metadata())
            elif path == "/metrics":
                _require(method, "GET")
                body, content_type = self.metrics.render()
                await _send(send, 200, body, content_type.encode())
            else:
                raise NotFound(f"no such endpoint: {method} {path}")
        except InferenceError as e:
            await _respond_error(send, e)

    async def _model_route(
        self, rest: str, method: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        started = time.perf_counter()
        endpoint = "unknown"
        status = 500
        metrics = self.metrics
        try:
            parts = rest.split("/")
            name = parts[0]
            version: str | None = None
            if len(parts) >= 3 and parts[1] == "versions":
                version = parts[2]
                tail = parts[3:]
            else:
                tail = parts[1:]
            if not name or (len(parts) >= 2 and parts[1] == "versions" and not version):
                raise NotFound(f"no such endpoint: {method} /v2/models/{rest}")
            if tail == ["infer"]:
                endpoint = "infer"
                _require(method, "POST")
                length, header_length, encoding = _request_head(scope, self.max_request_bytes)
                admission = self.plane.admit(name, version, length, encoding)
                metrics.started()
                try:
                    body = await self._read_body(receive)
                    payload, response_header_length = await self.plane.infer(
                        name, version, body, header_length, encoding, admission=admission
                    )
                finally:
                    metrics.finished()
                    if admission is not None:
                        admission.release()
                if response_header_length is None:
                    await _send(send, 200, payload)
                else:
                    await _send(
                        send,
                        200,
                        payload,
                        _OCTETS,
                        ((_HEADER_LEN, str(response_header_length).encode()),),
                    )
                if self.mirror is not None:  # after the answer is sent: never in its way
                    self.mirror.offer_rest(
                        name, body, _forwarded(scope), payload, response_header_length
                    )
            elif not tail or tail == [""]:
                endpoint = "metadata"
                _require(method, "GET")
                await _send(send, 200, self.plane.model_metadata(name, version))
            elif tail == ["ready"]:
                endpoint = "ready"
                _require(method, "GET")
                await _send(send, 200, self.plane.model_ready(name, version))
            else:
                raise NotFound(f"no such endpoint: {method} /v2/models/{rest}")
            status = 200
        except InferenceError as e:
            status = e.status
            if isinstance(e, Overloaded):
                metrics.rejected(endpoint)
            await _respond_error(send, e)
        except _ClientGone:
            status = 499  # nginx's "client closed request"; nothing can be sent
        except Exception:
            log.exception("unexpected error serving %s /v2/models/%s", method, rest)
            status = 500
            await _send(send, 500, b'{"error":"internal server error; see the server log"}')
        finally:
            metrics.observe(endpoint, status, time.perf_counter() - started)

    async def _read_body(self, receive: Receive) -> bytes:
        """The raw body (still compressed, if it is), refused above the size cap."""
        cap = self.max_request_bytes
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        body: bytes = message.get("body", b"")
        if message.get("more_body", False):
            chunks = [body]
            total = len(body)
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _ClientGone
                chunk = message.get("body", b"")
                total += len(chunk)
                if total > cap:
                    raise PayloadTooLarge(codec.too_large(cap))
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
        elif len(body) > cap:
            raise PayloadTooLarge(codec.too_large(cap))
        return body


def create_app(
    plane: DataPlane,
    metrics: Metrics,
    *,
    max_request_bytes: int,
    on_startup: Hook | None = None,
    on_shutdown: Hook | None = None,
    mirror: Mirror | None = None,
) -> RuntimeApp:
    """The ASGI app of one model server."""
    return RuntimeApp(
        plane,
        metrics,
        max_request_bytes=max_request_bytes,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        mirror=mirror,
    )


_FORWARDED = {b"content-type", b"content-encoding", _HEADER_LEN}


def _forwarded(scope: Scope) -> dict[str, str]:
    """The request headers a mirrored copy carries: how to read its body."""
    return {
        k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in _FORWARDED
    }


# ------------------------------------------------------------------------------------------------
# Helpers


def _require(method: str, allowed: str) -> None:
    if method != allowed:
        raise MethodNotAllowed(method, allowed)


def _int_header(value: bytes, name: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if n < 0:
        raise BadRequest(f"{name} must not be negative")
    return n


def _request_head(scope: Scope, cap: int) -> tuple[int | None, int | None, bytes]:
    """Content-Length, Inference-Header-Content-Length and Content-Encoding ('' for none),
    checked before the body is read."""
    length: int | None = None
    header_length: int | None = None
    encoding = b""
    for key, value in scope["headers"]:
        if key == b"content-length":
            length = _int_header(value, "Content-Length")
        elif key == _HEADER_LEN:
            header_length = _int_header(value, "Inference-Header-Content-Length")
        elif key == b"content-encoding":
            encoding = value.strip().lower()
    if length is not None and length > cap:
        raise PayloadTooLarge(codec.too_large(cap))
    if encoding == b"identity":
        encoding = b""
    elif encoding and encoding not in codec.ENCODINGS:
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding.decode(errors='replace')!r} is not supported; use "
            "gzip, deflate or none"
        )
    return length, header_length, encoding


async def _send(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = _JSON,
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _respond_error(send: Send, error: InferenceError) -> None:
    """The one place errors become responses: `{"error": message}` with the error's status."""
    extra: tuple[tuple[bytes, bytes], ...] = ()
    if isinstance(error, PayloadTooLarge):
        # The rest of an oversized body is not worth reading: drop the connection after replying.
        extra = ((b"connection", b"close"),)
    elif isinstance(error, MethodNotAllowed):
        extra = ((b"allow", error.allowed.encode()),)
    elif isinstance(error, Overloaded):
        extra = ((b"retry-after", str(error.retry_after).encode()),)
    await _send(send, error.status, codec.dumps({"error": error.message}), _JSON, extra)
