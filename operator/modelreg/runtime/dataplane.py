"""The data plane of the model server: fetch and verify the artifact, load it, answer v2 calls.

`modelreg.runtime.http` (the HTTP skin) and `modelreg.runtime.grpc` (the gRPC one) call it; it
knows nothing about HTTP beyond the status carried by the errors it raises
(`modelreg.runtime.errors`). Start-up is `load()`: download the
artifact through `modelreg.adapters.objectstore` into MODELREG_MODEL_DIR with the sha256 checked
on the way (or check a local file), refuse unsafe formats before any byte is fetched, and only then
deserialise. Until that has succeeded every model endpoint answers 503. The model metadata reports
the registered signature (MODELREG_SIGNATURE) where `modelreg.runtime.signature` says it applies.

Inference never blocks the event loop: a small request (MODELREG_INLINE_MAX_BYTES) is answered on
the loop in tens of microseconds; every other one is admitted by, and runs in, the bounded
`modelreg.runtime.executor` (503 with Retry-After when it is full), its body counted at its
Content-Length (MODELREG_MAX_REQUEST_BYTES when unknown). With batching on (MODELREG_BATCH_MAX_SIZE
above 1; unset, the artifact format's default, `RuntimeSettings.resolved_batch_max_size`) no
prediction runs on the loop: small requests are still decoded and written there, but every
prediction, REST or gRPC, goes through `modelreg.runtime.batching`.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import hashlib
import importlib.metadata
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from modelreg.adapters.objectstore import (
    DigestMismatch,
    ObjectStore,
    S3Location,
    StoreConfig,
    StoreError,
    StoreUnavailable,
)
from modelreg.runtime import codec
from modelreg.runtime import signature as signatures
from modelreg.runtime.batching import Batcher
from modelreg.runtime.errors import BadRequest, ModelLoadError, NotFound, NotReady
from modelreg.runtime.executor import Admission, Executor
from modelreg.runtime.loaders import LoadedModel, LoadOptions, load_model, refuse_unsafe
from modelreg.runtime.settings import ArtifactFormat, RuntimeSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

# A prediction answered on the event loop must be cheap. After the first two, the CPU time of the
# last few is kept; when their median is above this budget, every request goes to the executor
# from then on. The median: a garbage collection during one call does not count.
INLINE_BUDGET_SECONDS = 0.001
_INLINE_WARMUP = 2
_INLINE_WINDOW = 9

SERVER_NAME = "modelreg"
EXTENSIONS = ("binary_tensor_data",)
try:
    _VERSION = importlib.metadata.version("modelreg")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    _VERSION = "0.0.0+source"


class State(enum.StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class DataPlane:
    """One model, one version. Thread-safe for prediction; state changes happen on the loop."""

    def __init__(self, settings: RuntimeSettings, *, sleep: Callable[[float], Any] = asyncio.sleep):
        self.settings = settings
        self.name = settings.model_name
        self.version = str(settings.model_version)
        self.state = State.LOADING
        self.detail = "the artifact is being verified and loaded"
        self.model: LoadedModel | None = None
        self._sleep = sleep
        self._options = LoadOptions(
            allow_pickle=settings.allow_pickle,
            skops_trusted_types=tuple(settings.skops_trusted_types),
            threads=settings.intra_op_threads,
        )
        self._inline_max = settings.inline_max_elements
        self._inline_max_bytes = settings.inline_max_bytes
        self._inline_calls = 0
        self._inline_costs: collections.deque[float] = collections.deque(maxlen=_INLINE_WINDOW)
        self._max_request_bytes = settings.max_request_bytes
        self._metadata: bytes = b""
        self.registered: signatures.Registered | None = None
        if settings.signature:
            try:
                self.registered = signatures.parse(settings.signature)
            except ValueError as e:
                log.warning("ignoring MODELREG_SIGNATURE (the registered signature): %s", e)
        self.advertised: signatures.Advertised | None = None
        self.executor = Executor(
            workers=settings.workers,
            max_queue=settings.max_queue,
            max_queue_bytes=settings.max_queue_bytes,
            retry_after=settings.retry_after_seconds,
            process_min_bytes=settings.codec_process_min_bytes,
        )
        # Resolved here, from the format the settings name: the batcher must exist before the
        # server hands it its observers.
        self.batch_max_size = settings.resolved_batch_max_size
        self.batcher: Batcher | None = None
        if self.batch_max_size > 1:
            self.batcher = Batcher(
                self.executor,
                max_rows=self.batch_max_size,
                max_wait_seconds=settings.batch_max_wait_ms / 1000,
                inline=lambda elements: self.inlines and elements <= self._inline_max,
                on_inline=self._track_inline,
            )

    # -- start-up ---------------------------------------------------------------------------

    async def load(self) -> None:
        """Fetch, verify and load the artifact. On failure: state FAILED and ModelLoadError."""
        started = time.monotonic()
        log.info("%s", self.batching_summary())
        try:
            refuse_unsafe(self.settings.artifact_format, self._options)
            path = await self._fetch()
            model = await asyncio.to_thread(
                load_model, path, self.settings.artifact_format, self._options
            )
        except ModelLoadError as e:
            self.state, self.detail = State.FAILED, f"the model cannot be served: {e}"
            raise
        shown = self.use(model)
        log.info(
            "model %s version %s ready (%s) in %.1fs: inputs %s, outputs %s",
            self.name,
            self.version,
            model.platform,
            time.monotonic() - started,
            [s.metadata() for s in shown.inputs],
            [s.metadata() for s in shown.outputs],
        )

    def batching_summary(self) -> str:
        """How this server batches, and why: logged at start-up."""
        s = self.settings
        why = (
            "MODELREG_BATCH_MAX_SIZE"
            if s.batch_max_size is not None
            else f"the default for format {s.artifact_format.value}; set MODELREG_BATCH_MAX_SIZE "
            "to change it"
        )
        if self.batcher is None:
            return f"adaptive batching off ({why})"
        return (
            f"adaptive batching on: up to {self.batch_max_size} rows a prediction, waiting at "
            f"most {s.batch_max_wait_ms:g} ms ({why})"
        )

    def use(self, model: LoadedModel) -> signatures.Advertised:
        """Serve an already loaded model (also how tests inject one); returns the tensors its
        metadata reports."""
        shown = signatures.advertised(model, self.registered)
        for warning in shown.warnings:
            log.warning("%s", warning)
        self.model = model
        self.advertised = shown
        self._metadata = codec.dumps(
            {
                "name": self.name,
                "versions": [self.version],
                "platform": model.platform,
                "inputs": [s.metadata() for s in shown.inputs],
                "outputs": [s.metadata() for s in shown.outputs],
            }
        )
        self.state, self.detail = State.READY, "ready"
        return shown

    async def _fetch(self) -> Path:
        s = self.settings
        expected = s.expected_sha256
        if s.artifact_path is not None:
            path = s.artifact_path
            if not path.is_file():
                raise ModelLoadError(f"artifact file {path} does not exist")
            if expected is None:
                log.warning("serving %s without a sha256 to check it against", path)
                return path
            actual = await asyncio.to_thread(_sha256_file, path)
            if actual != expected:
                raise ModelLoadError(
                    f"refusing to load {path}: its sha256 is {actual}, expected {expected}"
                )
            return path

        # The settings validate that both are set when there is no local path.
        assert s.artifact_uri is not None
        assert expected is not None
        try:
            loc = S3Location.parse(s.artifact_uri)
        except StoreError as e:
            raise ModelLoadError(str(e)) from e
        dest = s.model_dir / _local_name(self.name, self.version, loc, s.artifact_format)
        if dest.is_file() and await asyncio.to_thread(_sha256_file, dest) == expected:
            log.info("reusing verified artifact %s", dest)
            return dest
        return await self._download(loc, dest, expected)

    async def _download(self, loc: S3Location, dest: Path, expected: str) -> Path:
        s = self.settings
        try:
            config = StoreConfig(
                endpoint=s.s3_endpoint,
                region=s.aws_region,
                access_key_id=_secret(s.aws_access_key_id),
                secret_access_key=_secret(s.aws_secret_access_key),
            )
            store = ObjectStore(config, timeout=s.store_timeout_seconds, max_attempts=3)
        except StoreError as e:
            raise ModelLoadError(str(e)) from e
        delay = 1.0
        try:
            while True:
                try:
                    digest = await store.download(
                        loc.uri(), dest, expected, s.artifact_version_id or None
                    )
                except StoreUnavailable as e:
                    self.detail = f"waiting for the object store: {e}"
                    log.warning("%s; retrying in %.0fs", e, delay)
                    await self._sleep(delay)
                    delay = min(delay * 2, s.download_retry_max_seconds)
                    continue
                except DigestMismatch as e:
                    raise ModelLoadError(
                        f"refusing to load {loc.uri()}: its sha256 is {e.actual}, expected "
                        f"{e.expected}. The artifact changed after it was registered."
                    ) from e
                except StoreError as e:
                    raise ModelLoadError(f"cannot download the artifact: {e}") from e
                log.info("downloaded %s (%d bytes), sha256 verified", loc.uri(), digest.size)
                return dest
        finally:
            store.close()

    # -- v2 endpoints -----------------------------------------------------------------------

    def server_metadata(self) -> bytes:
        return codec.dumps(
            {"name": SERVER_NAME, "version": _VERSION, "extensions": list(EXTENSIONS)}
        )

    def server_ready(self) -> None:
        if self.state is not State.READY:
            raise NotReady(f"model {self.name} version {self.version} is not ready: {self.detail}")

    def resolve(self, name: str, version: str | None) -> LoadedModel:
        """The model behind /v2/models/{name}[/versions/{version}], or NotFound/NotReady."""
        if name != self.name:
            raise NotFound(f"model {name!r} is not served here; this server serves {self.name!r}")
        if version is not None and version != self.version:
            raise NotFound(
                f"model {name!r} has no version {version!r} here; this server serves version "
                f"{self.version}"
            )
        if self.model is None or self.state is not State.READY:
            raise NotReady(f"model {self.name} version {self.version} is not ready: {self.detail}")
        return self.model

    def model_metadata(self, name: str, version: str | None) -> bytes:
        self.resolve(name, version)
        return self._metadata

    def model_ready(self, name: str, version: str | None) -> bytes:
        self.resolve(name, version)
        return codec.dumps({"name": self.name, "ready": True})

    def admit(
        self, name: str, version: str | None, length: int | None, encoding: bytes
    ) -> Admission | None:
        """Before the body is read: None when the request is answered on the event loop (a small
        uncompressed body), else its admission to the executor, its body counted at `length`
        (MODELREG_MAX_REQUEST_BYTES when unknown). Raises Overloaded (503) when the executor is
        full, NotFound/NotReady as `resolve` does."""
        self.resolve(name, version)
        if length is not None and length <= self._inline_max_bytes and not encoding:
            return None
        return self.executor.admit(self._max_request_bytes if length is None else length)

    async def infer(
        self,
        name: str,
        version: str | None,
        body: bytes,
        header_length: int | None,
        encoding: bytes = b"",
        *,
        admission: Admission | None,
    ) -> tuple[bytes, int | None]:
        """The response body (and its JSON header's length when binary tensors follow).

        `admission` is what `admit` returned: None for a request answered on the event loop;
        otherwise the caller holds it while this runs."""
        model = self.resolve(name, version)
        if admission is not None:
            return await self._in_executor(model, body, header_length, encoding, admission)
        request = codec.decode_request(body, header_length)
        if request.elements > self._inline_max or self.batcher is not None:
            with self.executor.admit(len(body)) as admitted:
                return await self._in_executor(
                    model, body, header_length, encoding, admitted, request
                )
        names, binary = _requested_outputs(model, request)
        started = time.thread_time()  # CPU time: being preempted is not the model's cost
        results = model.predict({t.name: t.array for t in request.inputs}, names)
        self._track_inline(time.thread_time() - started)
        outputs = [codec.OutputTensor(n, results[n], binary[n]) for n in names]
        return codec.encode_response(self.name, self.version, request.id, outputs)

    async def infer_message(
        self,
        name: str,
        version: str | None,
        size: int,
        decode: Callable[[], codec.InferRequest],
        encode: Callable[[codec.InferRequest, list[codec.OutputTensor]], T],
    ) -> T:
        """An inference already received in another wire format (`modelreg.runtime.grpc`):
        `decode` turns the message of `size` bytes into tensors, `encode` the outputs into the
        reply. Placed as REST requests are: at most MODELREG_INLINE_MAX_BYTES (and
        MODELREG_INLINE_MAX_ELEMENTS) on the event loop, else admitted to the executor
        (Overloaded when it is full), which then decodes, predicts and encodes."""
        model = self.resolve(name, version)
        request: codec.InferRequest | None = None
        if size <= self._inline_max_bytes:
            request = decode()
            if request.elements <= self._inline_max and self.batcher is None:
                names, binary = _requested_outputs(model, request)
                started = time.thread_time()
                results = model.predict({t.name: t.array for t in request.inputs}, names)
                self._track_inline(time.thread_time() - started)
                return encode(
                    request, [codec.OutputTensor(n, results[n], binary[n]) for n in names]
                )
        ex = self.executor
        with ex.admit(size) as admission:
            if self.batcher is not None:
                return await self._batched_message(
                    self.batcher, model, admission, request, decode, encode
                )
            async with ex.slot(admission):
                if request is None:
                    request = await ex.thread(decode)
                names, binary = _requested_outputs(model, request)
                arrays = {t.name: t.array for t in request.inputs}
                results = await ex.thread(model.predict, arrays, names)
                outputs = [codec.OutputTensor(n, results[n], binary[n]) for n in names]
                return await ex.thread(encode, request, outputs)

    async def _batched_message(
        self,
        batcher: Batcher,
        model: LoadedModel,
        admission: Admission,
        request: codec.InferRequest | None,
        decode: Callable[[], codec.InferRequest],
        encode: Callable[[codec.InferRequest, list[codec.OutputTensor]], T],
    ) -> T:
        """`infer_message` with batching on, as `_batched` is for REST."""
        ex = self.executor
        if request is None:
            with batcher.arriving():
                async with ex.slot(admission):
                    request = await ex.thread(decode)
        names, binary = _requested_outputs(model, request)
        results = await batcher.predict(model, request, names)
        outputs = [codec.OutputTensor(n, results[n], binary[n]) for n in names]
        if _response_bytes(outputs) <= self.settings.inline_max_bytes:
            return encode(request, outputs)
        async with ex.slot(admission):
            return await ex.thread(encode, request, outputs)

    @property
    def inlines(self) -> bool:
        """Whether small requests are still answered on the event loop."""
        return self._inline_max_bytes > 0

    def _track_inline(self, seconds: float) -> None:
        self._inline_calls += 1
        if self._inline_calls <= _INLINE_WARMUP:
            return  # first calls allocate and warm caches
        costs = self._inline_costs
        costs.append(seconds)
        if len(costs) < _INLINE_WINDOW or self._inline_max_bytes == 0:
            return
        median = statistics.median(costs)
        if median > INLINE_BUDGET_SECONDS:
            self._inline_max_bytes = 0
            log.warning(
                "predictions on small requests take %.1f ms of CPU (median of the last %d), "
                "more than the event loop can spare: from now on every request runs in the "
                "executor",
                median * 1000,
                len(costs),
            )

    async def _in_executor(
        self,
        model: LoadedModel,
        body: bytes,
        header_length: int | None,
        encoding: bytes,
        admission: Admission,
        request: codec.InferRequest | None = None,
    ) -> tuple[bytes, int | None]:
        if self.batcher is not None:
            return await self._batched(
                self.batcher, model, body, header_length, encoding, admission, request
            )
        ex = self.executor
        async with ex.slot(admission):
            if request is None:
                request = await self._decode(body, header_length, encoding)
            names, binary = _requested_outputs(model, request)
            arrays = {t.name: t.array for t in request.inputs}
            results = await ex.thread(model.predict, arrays, names)
            outputs = [codec.OutputTensor(n, results[n], binary[n]) for n in names]
            args = (self.name, self.version, request.id, outputs)
            # Not string tensors: pickling Python strings to a process costs more than writing.
            strings = any(o.array.dtype.kind == "O" for o in outputs)
            if not strings and ex.offloads(codec.json_size_estimate(outputs)):
                response: tuple[bytes, int | None] = await ex.process("encode_response", *args)
                return response
            return await ex.thread(codec.encode_response, *args)

    async def _batched(
        self,
        batcher: Batcher,
        model: LoadedModel,
        body: bytes,
        header_length: int | None,
        encoding: bytes,
        admission: Admission,
        request: codec.InferRequest | None,
    ) -> tuple[bytes, int | None]:
        """`_in_executor` with batching on. The request holds a slot only to be decoded: waiting
        in a batch with one would keep the others from reaching it. The batch takes its own, and
        its members' bodies count as waiting meanwhile."""
        ex = self.executor
        if request is None:
            with batcher.arriving():
                async with ex.slot(admission):
                    request = await self._decode(body, header_length, encoding)
        names, binary = _requested_outputs(model, request)
        results = await batcher.predict(model, request, names)
        outputs = [codec.OutputTensor(n, results[n], binary[n]) for n in names]
        args = (self.name, self.version, request.id, outputs)
        if _response_bytes(outputs) <= self.settings.inline_max_bytes:
            # As small as an inline answer: writing it costs less than a hop to a worker.
            return codec.encode_response(*args)
        async with ex.slot(admission):
            strings = any(o.array.dtype.kind == "O" for o in outputs)
            if not strings and ex.offloads(codec.json_size_estimate(outputs)):
                response: tuple[bytes, int | None] = await ex.process("encode_response", *args)
                return response
            return await ex.thread(codec.encode_response, *args)

    async def _decode(
        self, body: bytes, header_length: int | None, encoding: bytes
    ) -> codec.InferRequest:
        """Decompress and decode in the executor: large JSON in a worker process."""
        ex = self.executor
        if encoding:
            body = await ex.thread(codec.decompress, body, encoding, self._max_request_bytes)
        json_bytes = len(body) if header_length is None else min(header_length, len(body))
        if ex.offloads(json_bytes):
            request: codec.InferRequest = await ex.process("decode_request", body, header_length)
            return request
        return await ex.thread(codec.decode_request, body, header_length)

    def close(self) -> None:
        """Stop the executor's pools (at shutdown, after the requests in flight)."""
        self.executor.close()


def _requested_outputs(
    model: LoadedModel, request: codec.InferRequest
) -> tuple[list[str], dict[str, bool]]:
    """The output names to compute, and for each whether it is sent as binary data."""
    if request.outputs is None:
        names = list(model.output_names)
        return names, dict.fromkeys(names, request.binary_output)
    names = [o.name for o in request.outputs]
    if len(set(names)) != len(names):
        raise BadRequest("an output is requested twice")
    model.check_outputs(names)
    return names, {o.name: o.binary for o in request.outputs}


def _response_bytes(outputs: list[codec.OutputTensor]) -> int:
    """About the size of a response: 8 bytes a JSON element, the raw size of binary ones."""
    return sum(o.array.size * (o.array.itemsize if o.binary else 8) for o in outputs)


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


def _sha256_file(path: Path, chunk: int = 8 * 1024 * 1024) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _local_name(name: str, version: str, loc: S3Location, fmt: ArtifactFormat) -> str:
    suffix = Path(loc.key).suffix
    if not suffix or len(suffix) > 16 or not suffix[1:].isalnum():
        suffix = f".{fmt.value}"
    return f"{name}-v{version}{suffix}"
