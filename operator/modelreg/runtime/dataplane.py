"""The data plane of the model server: fetch and verify the artifact, load it, answer v2 calls.

`modelreg.runtime.http` (the HTTP skin) calls it; it knows nothing about HTTP beyond the status
carried by the errors it raises (`modelreg.runtime.errors`). Start-up is `load()`: download the
artifact through `modelreg.adapters.objectstore` into MODELREG_MODEL_DIR with the sha256 checked
on the way (or check a local file), refuse unsafe formats before any byte is fetched, and only then
deserialise. Until that has succeeded every model endpoint answers 503.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import importlib.metadata
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelreg.adapters.objectstore import (
    DigestMismatch,
    ObjectStore,
    S3Location,
    StoreConfig,
    StoreError,
    StoreUnavailable,
)
from modelreg.runtime import codec
from modelreg.runtime.errors import BadRequest, ModelLoadError, NotFound, NotReady
from modelreg.runtime.loaders import LoadedModel, LoadOptions, load_model, refuse_unsafe
from modelreg.runtime.settings import ArtifactFormat, RuntimeSettings

log = logging.getLogger(__name__)

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
        self._metadata: bytes = b""

    # -- start-up ---------------------------------------------------------------------------

    async def load(self) -> None:
        """Fetch, verify and load the artifact. On failure: state FAILED and ModelLoadError."""
        started = time.monotonic()
        try:
            refuse_unsafe(self.settings.artifact_format, self._options)
            path = await self._fetch()
            model = await asyncio.to_thread(
                load_model, path, self.settings.artifact_format, self._options
            )
        except ModelLoadError as e:
            self.state, self.detail = State.FAILED, f"the model cannot be served: {e}"
            raise
        self.use(model)
        log.info(
            "model %s version %s ready (%s) in %.1fs: inputs %s, outputs %s",
            self.name,
            self.version,
            model.platform,
            time.monotonic() - started,
            [s.metadata() for s in model.inputs],
            [s.metadata() for s in model.outputs],
        )

    def use(self, model: LoadedModel) -> None:
        """Serve an already loaded model (also how tests inject one)."""
        self.model = model
        self._metadata = codec.dumps(
            {
                "name": self.name,
                "versions": [self.version],
                "platform": model.platform,
                "inputs": [s.metadata() for s in model.inputs],
                "outputs": [s.metadata() for s in model.outputs],
            }
        )
        self.state, self.detail = State.READY, "ready"

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
                    digest = await store.download(loc.uri(), dest, expected)
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

    async def infer(
        self, name: str, version: str | None, body: bytes, header_length: int | None
    ) -> tuple[bytes, int | None]:
        model = self.resolve(name, version)
        request = codec.decode_request(body, header_length)
        if request.outputs is None:
            names = list(model.output_names)
            binary = dict.fromkeys(names, request.binary_output)
        else:
            names = [o.name for o in request.outputs]
            if len(set(names)) != len(names):
                raise BadRequest("an output is requested twice")
            model.check_outputs(names)
            binary = {o.name: o.binary for o in request.outputs}
        arrays = {t.name: t.array for t in request.inputs}
        # A prediction on a few rows takes microseconds, less than a hop to a thread; big
        # batches go to a thread so health checks and other requests keep flowing.
        if request.elements <= self._inline_max:
            results = model.predict(arrays, names)
        else:
            results = await asyncio.to_thread(model.predict, arrays, names)
        outputs = [codec.OutputTensor(n, results[n], binary[n]) for n in names]
        return codec.encode_response(self.name, self.version, request.id, outputs)


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
