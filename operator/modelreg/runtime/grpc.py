"""The gRPC skin of the model server: the Open Inference Protocol v2 over gRPC, and grpc.health.v1.

`modelreg.runtime.server` creates a `GrpcServer` beside the HTTP app when MODELREG_GRPC_PORT is
not 0, starts it before the model loads, marks it serving once the model is ready, and stops it
gracefully while uvicorn drains. The six calls of `inference.GRPCInferenceService`
(`proto/grpc_predict_v2.proto`) sit on the same `DataPlane` as the REST endpoints: the same
readiness, model resolution, decoding limits and executor. Errors are mapped in one place
(`_answer`): the status an `InferenceError` carries becomes a gRPC code (`status_code`) and its
message the details. No generated `_pb2_grpc` module: the handlers are registered here, typed.

Choices where the REST and gRPC protocols differ, as Triton makes them: ServerReady and
ModelReady answer `ready: false` (not an error) while the model loads or for a model or version
not served here; ModelMetadata and ModelInfer answer NOT_FOUND / UNAVAILABLE as REST answers
404 / 503. An overloaded executor answers RESOURCE_EXHAUSTED with a `grpc-retry-pushback-ms`
trailer (MODELREG_RETRY_AFTER_SECONDS). The health service reports NOT_SERVING, for "" and for
"inference.GRPCInferenceService", until the model is loaded, and again from the start of the
shutdown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import orjson
from google.protobuf.message import Message
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from modelreg.runtime import codec, grpc_codec
from modelreg.runtime.dataplane import DataPlane
from modelreg.runtime.errors import InferenceError, NotFound, NotReady, Overloaded
from modelreg.runtime.metrics import Metrics
from modelreg.runtime.proto import grpc_predict_v2_pb2 as pb
from modelreg.runtime.shadow import Mirror

log = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"
_PROTOCOL = "grpc"
_INTERNAL = "internal server error; see the server log"

T = TypeVar("T")
Context = aio.ServicerContext[Any, Any]

# The HTTP status an InferenceError carries -> the gRPC code that means the same.
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


def status_code(error: InferenceError) -> grpc.StatusCode:
    """The gRPC code of a data-plane error: Overloaded (a 503 in REST) is RESOURCE_EXHAUSTED."""
    if isinstance(error, Overloaded):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return _CODES.get(error.status, grpc.StatusCode.INTERNAL)


@dataclass(frozen=True, slots=True)
class Received:
    """An inference request and its size on the wire (the data plane places it by size)."""

    size: int
    message: pb.ModelInferRequest
    raw: bytes = b""  # as received: what a shadow mirror sends on


def _receive(data: bytes) -> Received:
    return Received(len(data), pb.ModelInferRequest.FromString(data), data)


class InferenceService:
    """The calls of inference.GRPCInferenceService over one data plane."""

    def __init__(self, plane: DataPlane, metrics: Metrics, mirror: Mirror | None = None) -> None:
        self.plane = plane
        self.metrics = metrics
        self.mirror = mirror
        meta = orjson.loads(plane.server_metadata())
        self._server = pb.ServerMetadataResponse(
            name=meta["name"], version=meta["version"], extensions=meta["extensions"]
        )

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(
            behavior: Callable[[Any, Context], Awaitable[Any]],
            request: Callable[[bytes], Any],
            response: type[Message],
        ) -> grpc.RpcMethodHandler[Any, Any]:
            return grpc.unary_unary_rpc_method_handler(
                behavior,
                request_deserializer=request,
                response_serializer=response.SerializeToString,
            )

        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ServerLive": unary(
                    self.server_live, pb.ServerLiveRequest.FromString, pb.ServerLiveResponse
                ),
                "ServerReady": unary(
                    self.server_ready, pb.ServerReadyRequest.FromString, pb.ServerReadyResponse
                ),
                "ModelReady": unary(
                    self.model_ready, pb.ModelReadyRequest.FromString, pb.ModelReadyResponse
                ),
                "ServerMetadata": unary(
                    self.server_metadata,
                    pb.ServerMetadataRequest.FromString,
                    pb.ServerMetadataResponse,
                ),
                "ModelMetadata": unary(
                    self.model_metadata,
                    pb.ModelMetadataRequest.FromString,
                    pb.ModelMetadataResponse,
                ),
                "ModelInfer": unary(self.model_infer, _receive, pb.ModelInferResponse),
            },
        )

    # -- the calls ------------------------------------------------------------------------------

    async def server_live(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        try:
            self.plane.server_ready()
        except NotReady:
            return pb.ServerReadyResponse(ready=False)
        return pb.ServerReadyResponse(ready=True)

    async def server_metadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return self._server

    async def model_ready(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        async def call() -> pb.ModelReadyResponse:
            try:
                self.plane.resolve(request.name, request.version or None)
            except (NotFound, NotReady):
                return pb.ModelReadyResponse(ready=False)
            return pb.ModelReadyResponse(ready=True)

        return await self._answer("ready", context, call)

    async def model_metadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        async def call() -> pb.ModelMetadataResponse:
            plane = self.plane
            model = plane.resolve(request.name, request.version or None)
            shown = plane.advertised
            inputs = shown.inputs if shown is not None else model.inputs
            outputs = shown.outputs if shown is not None else model.outputs
            tensor = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=plane.name,
                versions=[plane.version],
                platform=model.platform,
                inputs=[tensor(name=s.name, datatype=s.datatype, shape=s.shape) for s in inputs],
                outputs=[tensor(name=s.name, datatype=s.datatype, shape=s.shape) for s in outputs],
            )

        return await self._answer("metadata", context, call)

    async def model_infer(self, received: Received, context: Context) -> pb.ModelInferResponse:
        plane = self.plane
        message = received.message

        def decode() -> codec.InferRequest:
            return grpc_codec.decode_request(message)

        def encode(
            request: codec.InferRequest, outputs: list[codec.OutputTensor]
        ) -> pb.ModelInferResponse:
            return grpc_codec.encode_response(plane.name, plane.version, request, outputs)

        async def call() -> pb.ModelInferResponse:
            self.metrics.started()
            try:
                reply = await plane.infer_message(
                    message.model_name, message.model_version or None, received.size, decode, encode
                )
            finally:
                self.metrics.finished()
            if self.mirror is not None:
                self.mirror.offer_grpc(received.raw, reply)
            return reply

        return await self._answer("infer", context, call)

    # -- the one error mapping ------------------------------------------------------------------

    async def _answer(self, endpoint: str, context: Context, call: Callable[[], Awaitable[T]]) -> T:
        """Run a model call, count it, and turn its error into a gRPC status."""
        started = time.perf_counter()
        code = grpc.StatusCode.CANCELLED  # until it finishes: the client went away
        details = ""
        trailers: tuple[tuple[str, str], ...] = ()
        try:
            result = await call()
            code = grpc.StatusCode.OK
            return result
        except InferenceError as e:
            code, details = status_code(e), e.message
            if isinstance(e, Overloaded):
                self.metrics.rejected(endpoint, _PROTOCOL)
                trailers = (("grpc-retry-pushback-ms", str(e.retry_after * 1000)),)
        except Exception:
            log.exception("unexpected error serving %s/%s", SERVICE, endpoint)
            code, details = grpc.StatusCode.INTERNAL, _INTERNAL
        finally:
            self.metrics.observe(endpoint, code.name, time.perf_counter() - started, _PROTOCOL)
        return await context.abort(code, details, trailers)  # raises: the call ends with `code`


class GrpcServer:
    """A grpc.aio server for one data plane: the inference service and grpc.health.v1."""

    def __init__(
        self,
        plane: DataPlane,
        metrics: Metrics,
        *,
        host: str,
        port: int,
        max_message_bytes: int,
        mirror: Mirror | None = None,
    ) -> None:
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.port = port
        self.service = InferenceService(plane, metrics, mirror)
        self.health = health.aio.HealthServicer()
        self._max_message_bytes = max_message_bytes
        self._server: aio.Server | None = None

    async def start(self) -> int:
        """Bind and serve (not serving in the health service yet); returns the bound port.
        Raises OSError when the address cannot be bound."""
        server = aio.server(
            options=[
                ("grpc.max_receive_message_length", self._max_message_bytes),
                ("grpc.max_send_message_length", -1),
                # grpc shares a port with any other server that binds it (SO_REUSEPORT), and
                # would split one model's traffic with another's: a taken port must fail here.
                ("grpc.so_reuseport", 0),
            ]
        )
        server.add_generic_rpc_handlers((self.service.handler(),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        await self.set_serving(False)
        try:
            self.port = server.add_insecure_port(self.address)
        except RuntimeError as e:  # grpc's way of saying the port is taken or not allowed
            raise OSError(f"cannot bind gRPC to {self.address}: {e}") from e
        await server.start()
        self._server = server
        log.info("serving the Open Inference Protocol v2 over gRPC on %s", self.address)
        return self.port

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE):
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        """Refuse new calls, let those in flight finish for up to `grace` seconds."""
        await self.health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(grace)
