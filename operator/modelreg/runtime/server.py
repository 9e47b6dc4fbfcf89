"""Entry point of the model server: settings, app, uvicorn, start-up loading, shutdown.

Callers:
- `python -m modelreg.runtime` (the serving container's command, written by the operator) calls
  `main()`, configured by the environment (see `modelreg.runtime.settings`).
- `modelreg serve` (the CLI) calls `main(argv)` with its own arguments; flags override the
  environment. `main` returns the process exit code: 0 after a clean shutdown, 1 when the
  artifact cannot be verified or loaded, 2 for an invalid configuration.
- Tests and benchmarks use `RuntimeServer(settings).run(sockets=[...])` to serve on a socket they
  bound themselves, in a thread.

The server binds first and loads second: liveness answers while the artifact downloads, and
readiness (and every model endpoint) is 503 until the digest has been checked and the model
loaded. The gRPC server (`modelreg.runtime.grpc`, MODELREG_GRPC_PORT, 0 for none) is bound in
the same start-up, before the load, and is NOT_SERVING in grpc.health.v1 until the model is ready.
On SIGTERM uvicorn stops accepting connections and lets the requests in flight finish (up to
MODELREG_GRACEFUL_TIMEOUT_SECONDS); the gRPC server drains at the same time, within the same
timeout; then the executor's threads and processes stop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn
from pydantic import ValidationError

from modelreg.runtime.dataplane import DataPlane
from modelreg.runtime.errors import ModelLoadError
from modelreg.runtime.grpc import GrpcServer
from modelreg.runtime.http import RuntimeApp, create_app
from modelreg.runtime.metrics import Metrics
from modelreg.runtime.settings import ArtifactFormat, RuntimeSettings
from modelreg.runtime.shadow import Mirror

log = logging.getLogger("modelreg.runtime")

EXIT_OK = 0
EXIT_LOAD_FAILED = 1
EXIT_BAD_CONFIG = 2

# Settings fields whose environment variable is not MODELREG_<FIELD>.
_ENV_NAMES = {
    "aws_region": "AWS_REGION",
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
}


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, saying when its graceful shutdown begins: gRPC drains alongside HTTP."""

    def __init__(self, config: uvicorn.Config, shutting_down: Callable[[], None]) -> None:
        super().__init__(config)
        self._shutting_down = shutting_down

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._shutting_down()
        await super().shutdown(sockets=sockets)


class RuntimeServer:
    """One model server: a data plane, its app, the uvicorn server running it, and its gRPC
    server (unless MODELREG_GRPC_PORT is 0)."""

    def __init__(self, settings: RuntimeSettings, *, plane: DataPlane | None = None) -> None:
        self.settings = settings
        self.plane = plane or DataPlane(settings)
        executor = self.plane.executor
        self.metrics = Metrics(
            self.plane.name,
            self.plane.version,
            queued=lambda: float(executor.queued),
            queued_bytes=lambda: float(executor.waiting_bytes),
        )
        self.metrics.set_batch_max_size(self.plane.batch_max_size)
        if self.plane.batcher is not None:
            metrics = self.metrics
            self.plane.batcher.observers.append(lambda d: metrics.batched(d.rows, d.requests))
        self.exit_code = EXIT_OK
        self._load_task: asyncio.Task[None] | None = None
        # spec.shadow: a sample of the answered requests is mirrored to the shadow version.
        self.mirror = Mirror(settings, self.metrics) if settings.shadow_url else None
        self.grpc: GrpcServer | None = None
        if settings.grpc_port:
            self.grpc = GrpcServer(
                self.plane,
                self.metrics,
                host=settings.http_host,
                port=settings.grpc_port,
                max_message_bytes=settings.max_request_bytes,
                mirror=self.mirror,
            )
        self._grpc_stop: asyncio.Task[None] | None = None
        self.app: RuntimeApp = create_app(
            self.plane,
            self.metrics,
            max_request_bytes=settings.max_request_bytes,
            on_startup=self._startup,
            on_shutdown=self._shutdown,
            mirror=self.mirror,
        )
        self.server = _Uvicorn(
            uvicorn.Config(
                self.app,
                host=settings.http_host,
                port=settings.http_port,
                loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
                http="httptools" if importlib.util.find_spec("httptools") else "h11",
                lifespan="on",
                log_config=None,
                log_level=settings.log_level.lower(),
                access_log=settings.access_log,
                server_header=False,
                # Longer than the idle timeouts of common proxies, so they close first.
                timeout_keep_alive=75,
                timeout_graceful_shutdown=settings.graceful_timeout_seconds,
            ),
            self._stop_grpc,
        )

    def run(self, sockets: list[socket.socket] | None = None) -> int:
        """Serve until stopped (SIGTERM/SIGINT, `stop()`, or a fatal load failure)."""
        self.server.run(sockets=sockets)
        return self.exit_code

    def stop(self) -> None:
        """Ask the server to shut down gracefully (thread-safe flag)."""
        self.server.should_exit = True

    @property
    def started(self) -> bool:
        return bool(self.server.started)

    async def _startup(self) -> None:
        self.metrics.set_ready(False)
        if self.mirror is not None:
            log.info("%s", self.mirror.describe())
        if self.grpc is not None:
            try:
                await self.grpc.start()
            except OSError as e:
                log.error("%s", e)
                raise
        if self.plane.model is not None:  # injected, already loaded
            await self._ready()
            return
        self._load_task = asyncio.create_task(self._load(), name="load-model")

    async def _ready(self) -> None:
        self.metrics.set_ready(True)
        if self.grpc is not None:
            await self.grpc.set_serving(True)

    def _stop_grpc(self) -> None:
        """Begin the gRPC server's graceful stop (once), on the event loop."""
        if self.grpc is not None and self._grpc_stop is None:
            grace = float(self.settings.graceful_timeout_seconds)
            self._grpc_stop = asyncio.create_task(self.grpc.stop(grace), name="stop-grpc")

    async def _load(self) -> None:
        try:
            await self.plane.load()
        except ModelLoadError as e:
            log.error("%s", self.plane.detail)  # the message is the whole story
            _write_termination_log(self.settings, str(e))
            if self.settings.exit_on_load_failure:
                self.exit_code = EXIT_LOAD_FAILED
                self.stop()
            return
        except Exception as e:
            log.exception("unexpected failure while loading the model")
            self.plane.detail = f"unexpected failure while loading: {type(e).__name__}: {e}"
            _write_termination_log(self.settings, self.plane.detail)
            if self.settings.exit_on_load_failure:
                self.exit_code = EXIT_LOAD_FAILED
                self.stop()
            return
        await self._ready()

    async def _shutdown(self) -> None:
        self.metrics.set_ready(False)
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._load_task
        # uvicorn has drained the HTTP requests in flight before the lifespan shutdown; the gRPC
        # ones drain from the same moment (or now, when uvicorn never started serving).
        self._stop_grpc()
        if self._grpc_stop is not None:
            await self._grpc_stop
        if self.mirror is not None:
            await self.mirror.close()
        self.plane.close()


def _ignore_signal(signum: int, frame: object) -> None:
    """Stand-in handler that uvicorn restores and re-raises into after a graceful shutdown."""


def _write_termination_log(settings: RuntimeSettings, message: str) -> None:
    path = settings.termination_log
    if path is None:
        return
    # Best effort: outside Kubernetes the path usually does not exist.
    with contextlib.suppress(OSError):
        path.write_text(message[:4000] + "\n")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m modelreg.runtime",
        description="Serve one verified model over the Open Inference Protocol v2 (REST and "
        "gRPC). "
        "Every option can also come from the environment (MODELREG_<OPTION>); flags win.",
    )
    p.add_argument("--model-name", help="name served under /v2/models/<name>")
    p.add_argument("--model-version", type=int, help="version number served")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--artifact-uri", help="s3://bucket/key of the artifact")
    src.add_argument("--artifact-path", help="a local artifact file instead of --artifact-uri")
    p.add_argument("--artifact-sha256", "--sha256", help="expected hex sha256 of the artifact")
    p.add_argument(
        "--artifact-format", "--format", choices=[f.value for f in ArtifactFormat], help="format"
    )
    p.add_argument("--s3-endpoint", help="endpoint URL of an S3-compatible store")
    p.add_argument("--http-host", "--host", help="address to bind (default 0.0.0.0)")
    p.add_argument("--http-port", "--port", type=int, help="port to bind (default 8080)")
    p.add_argument(
        "--grpc-port", type=int, help="gRPC port on the same address (default 9000; 0: no gRPC)"
    )
    p.add_argument("--model-dir", help="writable directory for the downloaded artifact")
    p.add_argument(
        "--batch-max-size",
        type=int,
        help="rows one batched prediction may hold; 1: off (default: 32 for sklearn, skops, "
        "xgboost and lightgbm, 1 for onnx)",
    )
    p.add_argument(
        "--batch-max-wait-ms", type=float, help="longest a batch waits for more (default 1)"
    )
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        default=None,
        help="allow format sklearn (joblib/pickle): unpickling runs code from the file",
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    return p


def load_settings(argv: Sequence[str] | None = None) -> RuntimeSettings:
    """Settings from the environment, overridden by flags. Raises ValidationError/SystemExit."""
    args = parser().parse_args(argv)
    overrides: dict[str, Any] = {k: v for k, v in vars(args).items() if v is not None}
    return RuntimeSettings(**overrides)


def describe_errors(error: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for item in error.errors(include_url=False, include_input=False):
        field = ".".join(str(x) for x in item["loc"])
        env = _ENV_NAMES.get(field, f"MODELREG_{field.upper()}") if field else ""
        where = f"{env}: " if env else ""
        lines.append(f"  - {where}{item['msg']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the model server; returns the exit code (see the module docstring)."""
    try:
        settings = load_settings(argv)
    except ValidationError as e:
        print(f"modelreg runtime: {describe_errors(e)}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    log.info(
        "serving %s version %s (%s) from %s on %s:%d (gRPC: %s)",
        settings.model_name,
        settings.model_version,
        settings.artifact_format.value,
        settings.artifact_uri or settings.artifact_path,
        settings.http_host,
        settings.http_port,
        settings.grpc_port or "off",
    )
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal to the previous handler; a
    # no-op one lets the drained server return and the process exit 0 instead of dying by signal.
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _ignore_signal)
    server = RuntimeServer(settings)
    code = server.run()
    if code == EXIT_OK and not server.started:
        # uvicorn could not bind (port in use, permission): it has logged why.
        return EXIT_LOAD_FAILED
    return code
