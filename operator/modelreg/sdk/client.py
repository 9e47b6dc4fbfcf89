"""The Python SDK: `modelreg.Client`, for notebooks, pipelines and the `modelreg` CLI.

Called by users (`import modelreg; modelreg.Client().register(...)`) and by `modelreg.cli`. It talks
to the cluster through `modelreg.adapters.kube` and to the object store through
`modelreg.adapters.upload`/`objectstore`; it never imports kubernetes or boto3 itself. Every failure
surfaces as a `modelreg.sdk.errors.ModelregError` subclass with a message for humans.

The SDK only ever writes `spec` (and creates objects); what actually happens is the operator's to
decide and report in `status`, which `wait()` polls with a deadline.

Where artifacts go: `<Model spec.storage.uri>/<version>/<file name>`. A directory is uploaded as
one reproducible tar (see `modelreg.sdk.artifacts`). Before uploading, the next free version
number N is taken from the existing ModelVersions (and the Model's status.latestVersion), and N is
skipped when anything already lies under `<prefix>/N/`. If creating `<model>-vN` then conflicts
(someone registered N meanwhile), the object is copied server-side to the next free number and the
create retried, so concurrent registrations never clobber each other's versions.

Credentials for the store: the Model's `spec.storage.secretRef` Secret when the caller may read
it, else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the environment, else (only when the Model
names no Secret) boto3's default chain. The endpoint seen from the user's machine may differ from
the in-cluster one: `s3_endpoint=` or MODELREG_S3_ENDPOINT override `spec.storage.endpoint`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import math
import os
import re
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import ValidationError

from modelreg.adapters import kube as k
from modelreg.adapters import objectstore as store
from modelreg.adapters import upload as up
from modelreg.adapters.impersonation import Impersonation
from modelreg.api.models import (
    REASON_ANNOTATION,
    REASON_MAX,
    ArtifactFormat,
    Environment,
    HistoryEntry,
    Model,
    ModelVersion,
    ModelVersionSpec,
    ObjectMeta,
    Phase,
    Stage,
    version_name,
)
from modelreg.lifecycle import aliases as alias_rules
from modelreg.lifecycle import conditions
from modelreg.sdk import artifacts
from modelreg.sdk import environment as envs
from modelreg.sdk import search as find
from modelreg.sdk import signature as sigs
from modelreg.sdk.errors import (
    AlreadyExists,
    ArtifactNotFound,
    ConfigurationError,
    InvalidArgument,
    ModelNotFound,
    ModelregError,
    NoCredentials,
    NoStorageConfigured,
    NotFound,
    NothingToRollBack,
    PreconditionFailed,
    Timeout,
    VersionBlocked,
    VersionNotFound,
    from_kube,
    from_store,
)

T = TypeVar("T")
Body = dict[str, Any]
ProgressFn = Callable[[int, int], None]
"""Upload progress: called with (bytes sent so far, total bytes)."""

MODEL_LABEL = "modelreg.dev/model"
_MAX_CREATE_ATTEMPTS = 8
_VERSION_RE = re.compile(r"^(?P<model>[a-z0-9]([-a-z0-9]*[a-z0-9])?)-v(?P<version>[0-9]+)$")
_FAILED_PHASES = frozenset({Phase.BLOCKED, Phase.FAILED})


class KubeAPI(Protocol):
    """The part of `modelreg.adapters.kube.Kube` the SDK uses (unit tests pass a fake)."""

    def get_object(self, plural: str, namespace: str, name: str) -> Body: ...
    def list_objects(self, plural: str, namespace: str, label_selector: str = "") -> list[Body]: ...
    def create_object(self, plural: str, namespace: str, body: Body) -> Body: ...
    def patch_object(self, plural: str, namespace: str, name: str, patch: Body) -> Body: ...
    def get_secret_data(self, namespace: str, name: str) -> dict[str, str]: ...


@runtime_checkable
class EventsAPI(Protocol):
    """An adapter that lists the Events about one object (core/v1 or events.k8s.io/v1 bodies)."""

    def list_events(self, namespace: str, involved_name: str) -> list[Body]: ...


class ArtifactStore(Protocol):
    """What the SDK does with an object store (unit tests pass a fake)."""

    def upload(
        self,
        src: Path,
        uri: str,
        *,
        progress: Callable[[int], None] | None = None,
        content_type: str | None = None,
        if_none_match: bool = False,
    ) -> up.UploadResult: ...
    def any_under(self, prefix_uri: str) -> bool: ...
    def list_under(self, prefix_uri: str) -> builtins.list[up.StoredObject]: ...
    def copy(self, src_uri: str, dst_uri: str) -> None: ...
    def delete(self, uri: str) -> None: ...
    def sha256(self, uri: str) -> store.Digest: ...
    def download(
        self, uri: str, dest: Path, expected_sha256: str, version_id: str | None = None
    ) -> store.Digest: ...
    def close(self) -> None: ...


StoreFactory = Callable[[store.StoreConfig], ArtifactStore]

_RETRY_DELAYS = (0.5, 1.0, 2.0)


class _Retrying:
    """KubeAPI with idempotent calls retried when the API server is briefly unavailable (a
    restart, a dropped connection, 429/5xx). Creates are not retried: one may have succeeded."""

    def __init__(self, inner: KubeAPI, sleep: Callable[[float], None]) -> None:
        self.inner = inner
        self._sleep = sleep

    def _retry(self, fn: Callable[[], T]) -> T:
        for delay in _RETRY_DELAYS:
            try:
                return fn()
            except k.Unavailable:
                self._sleep(delay)
        return fn()

    def get_object(self, plural: str, namespace: str, name: str) -> Body:
        return self._retry(lambda: self.inner.get_object(plural, namespace, name))

    def list_objects(self, plural: str, namespace: str, label_selector: str = "") -> list[Body]:
        return self._retry(lambda: self.inner.list_objects(plural, namespace, label_selector))

    def create_object(self, plural: str, namespace: str, body: Body) -> Body:
        return self.inner.create_object(plural, namespace, body)

    def patch_object(self, plural: str, namespace: str, name: str, patch: Body) -> Body:
        # A merge patch of spec.stage is idempotent.
        return self._retry(lambda: self.inner.patch_object(plural, namespace, name, patch))

    def get_secret_data(self, namespace: str, name: str) -> dict[str, str]:
        return self._retry(lambda: self.inner.get_secret_data(namespace, name))

    def list_events(self, namespace: str, involved_name: str) -> list[Body]:
        inner = self.inner
        if not isinstance(inner, EventsAPI):
            raise k.KubeError("this Kubernetes adapter cannot list Events")
        return self._retry(lambda: inner.list_events(namespace, involved_name))


class _S3Store:
    """The real ArtifactStore: uploads through `Uploader`, hashes through `ObjectStore`."""

    def __init__(self, config: store.StoreConfig, part_bytes: int, concurrency: int) -> None:
        self._config = config
        self._uploader = up.Uploader(config, part_bytes=part_bytes, concurrency=concurrency)

    def upload(
        self,
        src: Path,
        uri: str,
        *,
        progress: Callable[[int], None] | None = None,
        content_type: str | None = None,
        if_none_match: bool = False,
    ) -> up.UploadResult:
        return self._uploader.upload(
            src, uri, progress=progress, content_type=content_type, if_none_match=if_none_match
        )

    def any_under(self, prefix_uri: str) -> bool:
        return self._uploader.any_under(prefix_uri)

    def list_under(self, prefix_uri: str) -> builtins.list[up.StoredObject]:
        return self._uploader.list_under(prefix_uri)

    def copy(self, src_uri: str, dst_uri: str) -> None:
        self._uploader.copy(src_uri, dst_uri)

    def delete(self, uri: str) -> None:
        self._uploader.delete(uri)

    def sha256(self, uri: str) -> store.Digest:
        reader = store.ObjectStore(self._config, timeout=60.0)
        try:
            return _run_sync(reader.sha256(uri))
        finally:
            reader.close()

    def download(
        self, uri: str, dest: Path, expected_sha256: str, version_id: str | None = None
    ) -> store.Digest:
        reader = store.ObjectStore(self._config, timeout=60.0)
        try:
            return _run_sync(reader.download(uri, dest, expected_sha256, version_id))
        finally:
            reader.close()

    def close(self) -> None:
        self._uploader.close()


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion, also from inside a running loop (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as ex:
        return ex.submit(asyncio.run, coro).result()


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRecord:
    """One entry of a version's stage history, with the version it belongs to."""

    name: str
    version: int
    stage: Stage
    phase: Phase | None
    at: str
    reason: str  # why, in the requesting user's words
    message: str = ""  # what the operator saw
    by: str | None = None  # who asked (the API server's user name), on a request's entry
    requested: Stage | None = None  # the stage asked for, on a request's entry
    from_stage: Stage | None = None  # the stage the version held before this entry


@dataclass(frozen=True)
class EventRecord:
    """One Event about an object, as `kubectl describe` shows it (`Client.list_events`)."""

    type: str  # Normal | Warning
    reason: str
    message: str
    count: int
    first: str | None  # RFC 3339
    last: str | None
    source: str  # the component that reported it


@dataclass(frozen=True)
class Comparison:
    """Metrics of several versions side by side: `table[metric][version]` (None when absent)."""

    model: str
    versions: list[ModelVersion]
    metrics: list[str]
    table: dict[str, dict[int, float | None]]


@dataclass(frozen=True)
class VerifyReport:
    name: str
    uri: str
    expected_sha256: str
    actual_sha256: str
    size_bytes: int

    @property
    def ok(self) -> bool:
        return self.expected_sha256.lower() == self.actual_sha256.lower()


@dataclass(frozen=True)
class GcReport:
    """Objects under a Model's storage prefix that no version references (`modelreg gc`)."""

    model: str
    prefix: str
    scanned: int
    orphans: list[up.StoredObject]
    young: int  # unreferenced, but newer than the minimum age (a registration in flight)
    deleted: list[str]


@dataclass(frozen=True)
class PromoteResult:
    version: ModelVersion
    archived: list[str] = field(default_factory=list)  # versions archived on the way
    left_requesting: list[str] = field(default_factory=list)  # still ask for Production


@dataclass(frozen=True)
class RollbackResult:
    archived: str  # the version that was serving
    target: str  # the version expected to take over
    version: ModelVersion  # the target, as last read


# -- the client -------------------------------------------------------------------------------


class Client:
    """Registers, inspects and promotes model versions in one namespace of one cluster."""

    def __init__(
        self,
        kubeconfig: str | None = None,
        context: str | None = None,
        namespace: str | None = None,
        *,
        s3_endpoint: str | None = None,
        part_bytes: int = 8 * up.MIB,
        concurrency: int = 4,
        kube: KubeAPI | None = None,
        store_factory: StoreFactory | None = None,
        env: Mapping[str, str] | None = None,
        poll_interval: float = 1.0,
        as_user: str | None = None,
        as_groups: Sequence[str] = (),
        as_uid: str | None = None,
    ) -> None:
        """`as_user`/`as_groups`/`as_uid` impersonate, like kubectl's --as/--as-group/--as-uid;
        they override the kubeconfig user's `as`/`as-groups`/`as-uid`, which are honoured too."""
        self._env: Mapping[str, str] = os.environ if env is None else env
        if kube is None:
            acting = Impersonation(user=as_user, groups=tuple(as_groups), uid=as_uid)
            try:
                kube = k.ClientKube(k.api_client(kubeconfig, context, impersonate=acting))
            except k.KubeError as e:
                raise ConfigurationError(str(e)) from e
        # Late-bound: the retry sleeps through whatever `_sleep` is at call time (tests swap it).
        self.kube: KubeAPI = _Retrying(kube, lambda seconds: self._sleep(seconds))  # noqa: PLW0108
        self.namespace = namespace or k.Kube.default_namespace(kubeconfig, context)
        self.s3_endpoint = s3_endpoint or self._env.get("MODELREG_S3_ENDPOINT") or None
        self._store_factory: StoreFactory = store_factory or (
            lambda cfg: _S3Store(cfg, part_bytes, concurrency)
        )
        self.poll_interval = poll_interval
        self._sleep: Callable[[float], None] = time.sleep
        self._clock: Callable[[], float] = time.monotonic

    def __repr__(self) -> str:
        return f"Client(namespace={self.namespace!r})"

    # -- reading ----------------------------------------------------------------------------------

    def get_model(self, name: str) -> Model:
        try:
            body = self.kube.get_object(k.MODELS, self.namespace, name)
        except k.NotFound as e:
            raise ModelNotFound(f"model {name!r} not found in namespace {self.namespace!r}") from e
        except k.KubeError as e:
            raise from_kube(e, f"model {name!r}") from e
        return Model.model_validate(body)

    def list_models(self) -> builtins.list[Model]:
        bodies = self._call(lambda: self.kube.list_objects(k.MODELS, self.namespace), "models")
        return sorted((Model.model_validate(b) for b in bodies), key=lambda m: m.metadata.name)

    def get(self, name: str, version: int | None = None) -> ModelVersion:
        """A ModelVersion by name ("fraud-v3") or by model and number ("fraud", 3)."""
        mv_name = self._version_ref(name, version)
        try:
            body = self.kube.get_object(k.MODEL_VERSIONS, self.namespace, mv_name)
        except k.NotFound as e:
            raise VersionNotFound(
                f"model version {mv_name!r} not found in namespace {self.namespace!r}"
            ) from e
        except k.KubeError as e:
            raise from_kube(e, f"model version {mv_name!r}") from e
        return ModelVersion.model_validate(body)

    def list(self, model: str | None = None) -> builtins.list[ModelVersion]:
        """Every ModelVersion of the namespace (or of one Model), sorted by model and version."""
        bodies = self._call(
            lambda: self.kube.list_objects(k.MODEL_VERSIONS, self.namespace), "model versions"
        )
        out: builtins.list[ModelVersion] = []
        for body in bodies:
            try:
                mv = ModelVersion.model_validate(body)
            except ValidationError:
                continue  # not ours to judge; the API server's schema keeps these rare
            if model is None or mv.spec.model == model:
                out.append(mv)
        return sorted(out, key=lambda mv: (mv.spec.model, mv.spec.version))

    def search(
        self,
        model: str | None = None,
        *,
        stage: str | Stage | Iterable[str | Stage] | None = None,
        phase: str | Phase | Iterable[str | Phase] | None = None,
        tags: Mapping[str, str | None] | None = None,
        alias: str | None = None,
        where: Iterable[str | find.Condition] = (),
    ) -> builtins.list[ModelVersion]:
        """The versions that match every filter given (see `modelreg.sdk.search`).

        `tags`: Model tags, `{key: value}` or `{key: None}` for the key alone; `where`: metric
        thresholds such as "auc>=0.9"."""
        stages = [stage] if isinstance(stage, str) else list(stage or [])
        chosen = find.Filter(
            stages=frozenset(parse_stage(x) for x in stages),
            phases=frozenset(Phase(p) for p in _phases(phase)),
            tags=dict(tags or {}),
            alias=alias,
            where=[c if isinstance(c, find.Condition) else find.parse_where(c) for c in where],
        )
        versions = self.list(model)
        if model is not None and not versions:
            self.get_model(model)  # a clear ModelNotFound rather than an empty list
        models = {m.metadata.name: m for m in self.list_models()} if tags or alias else {}
        return chosen.select(versions, models)

    def history(self, name: str, version: int | None = None) -> builtins.list[HistoryRecord]:
        """The stage history of one version, or of every version of a Model merged by time."""
        if version is None and not _VERSION_RE.match(name) and not is_uri_ref(name):
            self.get_model(name)  # a clear ModelNotFound rather than an empty list
            versions = self.list(name)
        else:
            versions = [self.get(name, version)]
        records = [
            HistoryRecord(
                mv.metadata.name,
                mv.spec.version,
                h.stage,
                h.phase,
                h.at,
                h.reason,
                message=h.message,
                by=h.by,
                requested=h.requested,
                from_stage=mv.status.history[i - 1].stage if i else None,
            )
            for mv in versions
            for i, h in enumerate(mv.status.history)
        ]
        return sorted(records, key=lambda r: (r.at, r.version))

    def compare(self, model: str, versions: Sequence[int] | None = None) -> Comparison:
        """The metrics of `versions` (default: all) of a Model, side by side."""
        if versions:
            chosen = [self.get(model, v) for v in versions]
        else:
            self.get_model(model)
            chosen = self.list(model)
            if not chosen:
                raise VersionNotFound(f"model {model!r} has no versions to compare")
        metrics = sorted({m for mv in chosen for m in mv.spec.metrics})
        table = {m: {mv.spec.version: mv.spec.metrics.get(m) for mv in chosen} for m in metrics}
        return Comparison(model, chosen, metrics, table)

    def list_events(self, name: str) -> builtins.list[EventRecord]:
        """The Events about object `name` (a Model or ModelVersion) of this namespace, oldest
        first, through the adapter's `list_events` (events.k8s.io/v1 or core/v1 bodies)."""
        kube = self.kube
        if not isinstance(kube, EventsAPI):
            raise ModelregError("this client's Kubernetes adapter cannot list Events")
        bodies = self._call(lambda: kube.list_events(self.namespace, name), f"events of {name!r}")
        records = [_event_record(b) for b in bodies]
        return sorted(records, key=lambda r: (r.last or r.first or "", r.reason))

    # -- registering ------------------------------------------------------------------------------

    def register(
        self,
        model: str,
        path: str | os.PathLike[str],
        *,
        metrics: Mapping[str, float] | None = None,
        params: Mapping[str, Any] | None = None,
        lineage: Mapping[str, Any] | None = None,
        framework: str = "",
        format: str | ArtifactFormat | None = None,
        stage: str | Stage | None = None,
        description: str = "",
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        version: int | None = None,
        progress: ProgressFn | None = None,
        environment: Environment | Mapping[str, Any] | Literal["current"] | None = None,
        requirements: str | os.PathLike[str] | None = None,
        python: str | None = None,
        image: str | None = None,
        signature: sigs.Signature | Mapping[str, Any] | Literal["auto"] | None = "auto",
    ) -> ModelVersion:
        """Upload the artifact at `path` and create `<model>-v<N>` with the next free N.

        `version` asks for a specific number instead (AlreadyExists when it is taken).
        Returns the created ModelVersion (its status is filled in later by the operator).

        What the model was trained with becomes `spec.environment` (the operator audits its
        packages against advisory databases; none is recorded when none of these is given):
        - `environment`: an `Environment` (or a mapping of its fields: python, packages, image),
          or "current" for the interpreter running this call (its Python version and every
          installed distribution; call it from the training environment);
        - `requirements`: a pip requirements file whose requirements are all pinned with `==`
          (see `modelreg.sdk.environment.from_requirements`); not together with `environment`;
        - `python` ("3.11.7") and `image` (the training image, `name@sha256:<digest>`) fill in
          the fields `environment` leaves empty (a different value than it gives is an error).

        The model's inputs and outputs become `spec.signature` (the model server's metadata
        endpoint reports them): `signature` is a `Signature` (or a mapping of it, see
        `modelreg.sdk.signature.parse`), None for none, or "auto" (the default): read from the
        graph of an ONNX file, none for other formats and directories. "auto" never fails the
        registration: what it cannot capture is a `modelreg.sdk.signature.SignatureWarning`.
        All of it is checked before anything is uploaded (InvalidArgument).
        """
        env = envs.resolve(environment, requirements=requirements, python=python, image=image)
        sig = sigs.given(signature)
        mdl = self.get_model(model)
        fields = self._spec_fields(
            metrics=metrics,
            params=params,
            lineage=lineage,
            framework=framework,
            stage=stage,
            description=description,
        )
        if env is not None:
            fields["environment"] = env.wire()
        with artifacts.prepared(path, format) as art:
            if isinstance(signature, str) and signature == "auto":
                sig = sigs.auto(Path(path).expanduser(), art.format)
            if sig is not None:
                fields["signature"] = sig.wire()
            return self._publish(
                mdl,
                art,
                fields,
                version=version,
                labels=labels,
                annotations=annotations,
                progress=progress,
            )

    def _publish(
        self,
        mdl: Model,
        art: artifacts.LocalArtifact,
        fields: Body,
        *,
        version: int | None = None,
        prefer: int | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        progress: ProgressFn | None = None,
    ) -> ModelVersion:
        """Upload `art` under the Model's prefix and create its ModelVersion.

        `version` pins the number (AlreadyExists when taken); `prefer` is used when free, else
        the next free number; with neither, the next free number.
        """
        prefix = self._prefix(mdl)
        st = self._store_factory(self._store_config(mdl))
        try:
            if version is not None:
                if not self._is_free(mdl, st, prefix, version):
                    raise AlreadyExists(
                        f"version {version} of {mdl.metadata.name!r} is taken (a ModelVersion "
                        f"or objects under {prefix}{version}/ exist)"
                    )
                n = version
            elif prefer is not None and self._is_free(mdl, st, prefix, prefer):
                n = prefer
            else:
                n = self._next_version(mdl, st, prefix)
            sent = 0

            def on_bytes(count: int) -> None:
                nonlocal sent
                sent += count
                if progress:
                    progress(sent, art.size)

            for _ in range(_MAX_CREATE_ATTEMPTS):
                uri = f"{prefix}{n}/{art.filename}"
                sent = 0
                if progress:
                    progress(0, art.size)
                try:
                    # Conditional: never overwrite an object another registration just wrote.
                    result = st.upload(art.path, uri, progress=on_bytes, if_none_match=True)
                    break
                except up.ObjectExists as e:
                    if version is not None:
                        raise AlreadyExists(f"{uri} already exists; version {n} is taken") from e
                    n = self._next_version(mdl, st, prefix, floor=n)
                except store.StoreError as e:
                    raise _store_error(e) from e
            else:
                raise AlreadyExists(f"gave up finding a free version of {mdl.metadata.name!r}")
            spec = {
                **fields,
                "model": mdl.metadata.name,
                "artifact": {"uri": uri, "sha256": result.sha256, "format": art.format},
            }
            return self._create_version(
                mdl, n, spec, st, pinned=version is not None, labels=labels, annotations=annotations
            )
        finally:
            st.close()

    def _is_free(self, mdl: Model, st: ArtifactStore, prefix: str, n: int) -> bool:
        try:
            self.kube.get_object(
                k.MODEL_VERSIONS, self.namespace, version_name(mdl.metadata.name, n)
            )
        except k.NotFound:
            pass
        except k.KubeError as e:
            raise from_kube(e, f"model version {version_name(mdl.metadata.name, n)!r}") from e
        else:
            return False
        try:
            return not st.any_under(f"{prefix}{n}/")
        except store.StoreError as e:
            raise _store_error(e) from e

    def _spec_fields(
        self,
        *,
        metrics: Mapping[str, float] | None,
        params: Mapping[str, Any] | None,
        lineage: Mapping[str, Any] | None,
        framework: str,
        stage: str | Stage | None,
        description: str,
    ) -> Body:
        """Validate everything the user gave before a single byte is uploaded."""
        for key, value in (metrics or {}).items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidArgument(f"metric {key!r} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise InvalidArgument(f"metric {key!r} must be finite, got {value!r}")
        fields: Body = {
            "stage": parse_stage(stage) if stage else Stage.NONE,
            "framework": framework,
            "description": description,
            "metrics": {str(key): float(v) for key, v in (metrics or {}).items()},
            "params": {str(key): str(v) for key, v in (params or {}).items()},
            "lineage": {str(key): str(v) for key, v in (lineage or {}).items() if v is not None},
        }
        try:
            ModelVersionSpec.model_validate(
                {
                    **fields,
                    "model": "x",
                    "version": 1,
                    "artifact": {"uri": "s3://bucket/key", "sha256": "0"},
                }
            )
        except ValidationError as e:
            raise InvalidArgument(_validation_message(e)) from e
        return fields

    def _prefix(self, mdl: Model) -> str:
        if mdl.spec.storage is None:
            raise NoStorageConfigured(
                f"model {mdl.metadata.name!r} has no spec.storage: set spec.storage.uri "
                "(s3://bucket/prefix/) so versions have somewhere to live"
            )
        try:
            loc = store.S3Location.parse_prefix(mdl.spec.storage.uri)
        except store.InvalidURI as e:
            raise PreconditionFailed(f"model {mdl.metadata.name!r}: spec.storage.uri: {e}") from e
        key = loc.key if (not loc.key or loc.key.endswith("/")) else loc.key + "/"
        return f"s3://{loc.bucket}/{key}"

    def _store_config(self, mdl: Model) -> store.StoreConfig:
        storage = mdl.spec.storage
        if storage is None:
            raise NoStorageConfigured(f"model {mdl.metadata.name!r} has no spec.storage")
        key_id: str | None = None
        secret: str | None = None
        why = ""
        if storage.secret_ref:
            ref = storage.secret_ref.name
            try:
                data = self.kube.get_secret_data(self.namespace, ref)
            except (k.Forbidden, k.NotFound) as e:
                why = f"cannot read Secret {ref!r} ({e})"
            except k.KubeError as e:
                raise from_kube(e, f"secret {ref!r}") from e
            else:
                key_id = data.get("AWS_ACCESS_KEY_ID")
                secret = data.get("AWS_SECRET_ACCESS_KEY")
                if not (key_id and secret):
                    why = f"Secret {ref!r} lacks AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY"
        if not (key_id and secret):
            key_id = self._env.get("AWS_ACCESS_KEY_ID") or None
            secret = self._env.get("AWS_SECRET_ACCESS_KEY") or None
        if not (key_id and secret):
            key_id = secret = None
            if storage.secret_ref:
                raise NoCredentials(
                    f"no credentials for the store of model {mdl.metadata.name!r}: {why}, and "
                    "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not set"
                )
        region = (
            storage.region
            or self._env.get("AWS_REGION")
            or self._env.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )
        try:
            return store.StoreConfig(
                endpoint=self.s3_endpoint or storage.endpoint,
                region=region,
                access_key_id=key_id,
                secret_access_key=secret,
            )
        except store.StoreError as e:
            raise _store_error(e) from e

    def _versions_of(self, model: str) -> builtins.list[int]:
        return [mv.spec.version for mv in self.list(model)]

    def _next_version(self, mdl: Model, st: ArtifactStore, prefix: str, floor: int = 0) -> int:
        """The next number with neither a ModelVersion nor objects under `<prefix><N>/`."""
        taken = self._versions_of(mdl.metadata.name)
        n = max([floor, mdl.status.latest_version or 0, *taken]) + 1
        for _ in range(100):
            try:
                if not st.any_under(f"{prefix}{n}/"):
                    return n
            except store.StoreError as e:
                raise _store_error(e) from e
            n += 1
        raise PreconditionFailed(f"no free version number under {prefix} (tried up to {n})")

    def _create_version(
        self,
        mdl: Model,
        n: int,
        spec: Body,
        st: ArtifactStore,
        *,
        pinned: bool,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> ModelVersion:
        model = mdl.metadata.name
        prefix = self._prefix(mdl)
        uri: str = spec["artifact"]["uri"]
        filename = uri.rsplit("/", 1)[-1]
        for _ in range(_MAX_CREATE_ATTEMPTS):
            body = ModelVersion(
                metadata=ObjectMeta(
                    name=version_name(model, n),
                    namespace=self.namespace,
                    labels={MODEL_LABEL: model, **(labels or {})},
                    annotations=dict(annotations or {}),
                ),
                spec=ModelVersionSpec.model_validate({**spec, "version": n}),
            ).wire()
            body["metadata"] = {
                key: v
                for key, v in body["metadata"].items()
                if key in ("name", "labels", "annotations")
            }
            body.pop("status", None)
            try:
                created = self.kube.create_object(k.MODEL_VERSIONS, self.namespace, body)
            except k.Conflict as e:
                if pinned:
                    self._discard(st, uri)
                    raise AlreadyExists(
                        f"model version {version_name(model, n)!r} already exists"
                    ) from e
                # Someone took N meanwhile: move our object to the next free number.
                n = self._next_version(mdl, st, prefix, floor=n)
                new_uri = f"{prefix}{n}/{filename}"
                try:
                    st.copy(uri, new_uri)
                except store.StoreError as err:
                    raise _store_error(err) from err
                self._discard(st, uri)
                uri = new_uri
                spec = {**spec, "artifact": {**spec["artifact"], "uri": uri}}
                continue
            except k.KubeError as e:
                self._discard(st, uri)
                raise from_kube(e, f"creating model version {version_name(model, n)!r}") from e
            return ModelVersion.model_validate(created)
        self._discard(st, uri)
        raise AlreadyExists(
            f"gave up creating a version of {model!r} after {_MAX_CREATE_ATTEMPTS} conflicts"
        )

    @staticmethod
    def _discard(st: ArtifactStore, uri: str) -> None:
        """Best effort: remove an object uploaded for a version that will not exist."""
        with contextlib.suppress(store.StoreError):
            st.delete(uri)

    # -- stages -----------------------------------------------------------------------------------

    def set_stage(
        self, name: str, version: int | None, stage: str | Stage, *, reason: str | None = None
    ) -> ModelVersion:
        """Set `spec.stage` (the request; the operator decides `status.stage`).

        `reason` goes in the modelreg.dev/reason annotation in the same write (no reason clears
        it, so an old one is never recorded for a new change); the chart's stage-audit policy
        stamps who asked and when, and the operator records both in status.history."""
        target = parse_stage(stage)
        why = _reason(reason)
        mv_name = self._version_ref(name, version)
        patch = {
            "metadata": {"annotations": {REASON_ANNOTATION: why}},
            "spec": {"stage": target.value},
        }
        try:
            body = self.kube.patch_object(k.MODEL_VERSIONS, self.namespace, mv_name, patch)
        except k.NotFound as e:
            raise VersionNotFound(
                f"model version {mv_name!r} not found in namespace {self.namespace!r}"
            ) from e
        except k.Forbidden as e:
            raise from_kube(
                e, f"setting {mv_name!r} to {target.value} (promotion needs the 'promote' verb)"
            ) from e
        except k.KubeError as e:
            raise from_kube(e, f"setting {mv_name!r} to {target.value}") from e
        return ModelVersion.model_validate(body)

    def archive(
        self, name: str, version: int | None = None, *, reason: str | None = None
    ) -> ModelVersion:
        return self.set_stage(name, version, Stage.ARCHIVED, reason=reason)

    def promote(
        self,
        name: str,
        version: int | None = None,
        *,
        stage: str | Stage = Stage.PRODUCTION,
        archive_previous: bool = False,
        wait: bool = False,
        timeout: float = 300.0,
        reason: str | None = None,
    ) -> PromoteResult:
        """Ask for `stage` (Production by default).

        With `archive_previous` (the CLI's default), other versions asking for Production are
        archived: higher-numbered ones at once (they would outrank this one), the others only after
        this version serves (with `wait`), so production is never left without a version. With
        `wait`, returns once the version reached the stage (Serving for Production), raising
        VersionBlocked if the operator blocks it and Timeout at the deadline.
        """
        target = parse_stage(stage)
        _reason(reason)
        mv = self.get(name, version)
        model, n = mv.spec.model, mv.spec.version
        others = [
            o for o in self.list(model) if o.spec.version != n and o.spec.stage == Stage.PRODUCTION
        ]
        higher = [o for o in others if o.spec.version > n]
        lower = [o for o in others if o.spec.version < n]
        if target == Stage.PRODUCTION and higher and not archive_previous:
            raise PreconditionFailed(
                f"{', '.join(o.metadata.name for o in higher)} also ask(s) for Production and "
                f"outrank(s) {mv.metadata.name}, which would be Superseded; archive them first "
                "(or promote without --keep)"
            )
        mv = self.set_stage(mv.metadata.name, None, target, reason=reason)
        promoted = mv.metadata.name
        archived: builtins.list[str] = []
        if target != Stage.PRODUCTION:
            if wait:
                mv = self.wait(mv.metadata.name, stage=target, timeout=timeout)
            return PromoteResult(mv, [], [o.metadata.name for o in others])
        for o in higher:
            self.archive(o.metadata.name, reason=_follows(f"promotion of {promoted}", reason))
            archived.append(o.metadata.name)
        if wait:
            try:
                mv = self.wait(mv.metadata.name, phase=Phase.SERVING, timeout=timeout)
            except VersionBlocked as e:
                # The versions archived above never stopped serving (the operator hands over
                # only to a version that serves): ask for Production again, so spec and status
                # agree, and say who serves.
                for other in archived:
                    self.set_stage(
                        other,
                        None,
                        Stage.PRODUCTION,
                        reason=_follows(f"{promoted} did not serve", str(e)),
                    )
                raise VersionBlocked(f"{e}; {self._who_serves(model)}") from e
            if archive_previous:
                for o in lower:
                    self.archive(
                        o.metadata.name, reason=_follows(f"{promoted} serves production", reason)
                    )
                    archived.append(o.metadata.name)
                lower = []
        return PromoteResult(mv, archived, [o.metadata.name for o in lower])

    def rollback(
        self,
        model: str,
        *,
        to: int | None = None,
        wait: bool = False,
        timeout: float = 300.0,
        reason: str | None = None,
    ) -> RollbackResult:
        """Archive the version serving production so the next one takes over (DESIGN.md).

        The successor is `to` when given; else the highest other version asking for Production
        that is not Blocked/Failed; else the version that served production most recently before
        the current one (it is asked for Production again). NothingToRollBack when there is none.
        """
        _reason(reason)
        mdl = self.get_model(model)
        versions = self.list(model)
        by_number = {mv.spec.version: mv for mv in versions}
        current_n = mdl.status.production_version
        if current_n is None:
            serving = [mv for mv in versions if mv.status.phase == Phase.SERVING]
            current_n = max((mv.spec.version for mv in serving), default=None)
        if current_n is None or current_n not in by_number:
            raise NothingToRollBack(f"no version of {model!r} is serving production")
        current = by_number[current_n]
        if to is not None:
            if to == current_n:
                raise InvalidArgument(f"{current.metadata.name} is the version being rolled back")
            if to not in by_number:
                raise VersionNotFound(f"model version {version_name(model, to)!r} not found")
            successor = by_number[to]
        else:
            candidates = [
                mv
                for mv in versions
                if mv.spec.version != current_n
                and mv.spec.stage == Stage.PRODUCTION
                and mv.status.phase not in _FAILED_PHASES
            ]
            if candidates:
                successor = max(candidates, key=lambda mv: mv.spec.version)
            else:
                previous = _previous_production(versions, current_n)
                if previous is None:
                    raise NothingToRollBack(
                        f"no other version of {model!r} asks for or has held Production; "
                        "promote one first (modelreg promote MODEL VERSION)"
                    )
                successor = previous
        refused = [
            c
            for c in successor.status.conditions
            if c.type in ("ArtifactVerified", "GatesPassed") and c.status == "False"
        ]
        if _status_current(successor) and (successor.status.phase in _FAILED_PHASES or refused):
            raise VersionBlocked(
                f"{successor.metadata.name} cannot take over "
                f"({successor.status.phase.value if successor.status.phase else 'no phase'}): "
                f"{_why(successor)}; {current.metadata.name} keeps serving production"
            )
        asked_before = successor.spec.stage
        why = _follows(f"rollback of {current.metadata.name}", reason)
        if asked_before != Stage.PRODUCTION:
            self.set_stage(successor.metadata.name, None, Stage.PRODUCTION, reason=why)
        # Archiving the serving version does not stop it: the operator keeps it serving until the
        # successor serves, and on if the successor cannot (Blocked, or its rollout fails).
        self.archive(current.metadata.name, reason=why)
        target = self.get(successor.metadata.name)
        if wait:
            try:
                target = self.wait(successor.metadata.name, phase=Phase.SERVING, timeout=timeout)
            except VersionBlocked as e:
                undo = _follows(f"rollback to {successor.metadata.name} undone", str(e))
                self.set_stage(current.metadata.name, None, Stage.PRODUCTION, reason=undo)
                if asked_before != Stage.PRODUCTION:
                    self.set_stage(successor.metadata.name, None, asked_before, reason=undo)
                raise VersionBlocked(
                    f"{e}; {current.metadata.name} keeps serving production"
                ) from e
        return RollbackResult(current.metadata.name, successor.metadata.name, target)

    def _who_serves(self, model: str) -> str:
        try:
            serving = self.get_model(model).status.production_version
        except ModelregError:
            return "production is unchanged"
        if serving is None:
            return "no version serves production"
        return f"{version_name(model, serving)} keeps serving production"

    # -- waiting ----------------------------------------------------------------------------------

    def wait(
        self,
        name: str,
        version: int | None = None,
        *,
        condition: str | None = None,
        phase: str | Phase | Iterable[str | Phase] | None = None,
        stage: str | Stage | None = None,
        timeout: float = 300.0,
    ) -> ModelVersion:
        """Poll until the version's status is current and matches; raise Timeout at the deadline.

        `condition` (e.g. "Ready", "ArtifactVerified") must be True; `phase` one of the given;
        `stage` equal to status.stage. With none of them, waits for condition Ready. A version that
        turns Blocked or Failed (and was not waited for in that phase) raises VersionBlocked.
        """
        mv_name = self._version_ref(name, version)
        phases = _phases(phase)
        want_stage = parse_stage(stage) if stage else None
        if condition is None and not phases and want_stage is None:
            condition = "Ready"
        deadline = self._clock() + timeout
        last = "no status yet"
        while True:
            mv = self.get(mv_name)
            current = _status_current(mv)
            if current:
                if _matches(mv, condition, phases, want_stage):
                    return mv
                if mv.status.phase in _FAILED_PHASES and mv.status.phase not in phases:
                    raise VersionBlocked(f"{mv_name} is {mv.status.phase}: {_why(mv)}")
            last = _describe(mv)
            remaining = deadline - self._clock()
            if remaining <= 0:
                what = " and ".join(
                    x
                    for x in (
                        f"condition {condition}=True" if condition else "",
                        f"phase {'|'.join(sorted(phases))}" if phases else "",
                        f"stage {want_stage}" if want_stage else "",
                    )
                    if x
                )
                raise Timeout(f"timed out after {timeout:g}s waiting for {mv_name}: {what}; {last}")
            self._sleep(min(self.poll_interval, remaining))

    # -- verifying --------------------------------------------------------------------------------

    def verify(self, name: str, version: int | None = None) -> VerifyReport:
        """Re-hash the stored artifact and compare it with spec.artifact.sha256."""
        mv = self.get(name, version)
        mdl = self.get_model(mv.spec.model)
        cfg = self._store_config(mdl)
        st = self._store_factory(cfg)
        try:
            digest = st.sha256(mv.spec.artifact.uri)
        except store.StoreError as e:
            raise _store_error(e) from e
        finally:
            st.close()
        return VerifyReport(
            mv.metadata.name,
            mv.spec.artifact.uri,
            mv.spec.artifact.sha256,
            digest.sha256,
            digest.size,
        )

    def gc(self, model: str, *, dry_run: bool = True, min_age_seconds: float = 3600.0) -> GcReport:
        """Orphaned artifacts under `model`'s storage prefix: objects that no ModelVersion of
        this namespace references (nor a Model's spec.advisories), older than
        `min_age_seconds` (a registration uploads before it creates its version). With
        `dry_run=False` they are deleted."""
        if min_age_seconds < 0:
            raise InvalidArgument("min_age_seconds must be >= 0")
        mdl = self.get_model(model)
        storage = mdl.spec.storage
        if storage is None:
            raise PreconditionFailed(
                f"model {model!r} has no spec.storage: there is nothing to scan"
            )
        # Every version of the namespace: another Model's prefix may lie under this one.
        referenced = {mv.spec.artifact.uri for mv in self.list(None)}
        referenced |= {m.spec.advisories.uri for m in self.list_models() if m.spec.advisories}
        st = self._store_factory(self._store_config(mdl))
        try:
            try:
                objects = st.list_under(storage.uri)
            except store.StoreError as e:
                raise _store_error(e) from e
            now = time.time()
            unreferenced = [o for o in objects if o.uri not in referenced]
            orphans = [o for o in unreferenced if now - o.modified >= min_age_seconds]
            deleted: builtins.list[str] = []
            if not dry_run:
                for o in orphans:
                    try:
                        st.delete(o.uri)
                    except store.StoreError as e:
                        raise _store_error(e) from e
                    deleted.append(o.uri)
        finally:
            st.close()
        return GcReport(
            model=model,
            prefix=storage.uri,
            scanned=len(objects),
            orphans=orphans,
            young=len(unreferenced) - len(orphans),
            deleted=deleted,
        )

    def download(
        self, name: str, version: int | None = None, path: str | os.PathLike[str] | None = None
    ) -> Path:
        """Fetch a version's artifact to `path` (a file, or a directory to put it in; default:
        the artifact's file name in the current directory). Streamed, checked against
        spec.artifact.sha256 (the verified S3 object version when the operator recorded one),
        and written atomically: on a mismatch or an error nothing is left at `path`."""
        mv = self.get(name, version)
        mdl = self.get_model(mv.spec.model)
        leaf = mv.spec.artifact.uri.rstrip("/").rsplit("/", 1)[-1] or "artifact"
        dest = Path(path) if path is not None else Path.cwd() / leaf
        if dest.is_dir():
            dest = dest / leaf
        verified = mv.status.artifact
        version_id = (
            verified.version_id
            if verified is not None and verified.verified and verified.uri == mv.spec.artifact.uri
            else None
        )
        st = self._store_factory(self._store_config(mdl))
        try:
            st.download(mv.spec.artifact.uri, dest, mv.spec.artifact.sha256, version_id)
        except store.StoreError as e:
            raise _store_error(e) from e
        finally:
            st.close()
        return dest

    # -- MLflow ------------------------------------------------------------------------------------

    def import_mlflow(self, tracking_uri: str, **kwargs: Any) -> Any:
        """Import an MLflow registry; see `modelreg.sdk.mlflow_import.import_mlflow`."""
        from modelreg.sdk.mlflow_import import import_mlflow  # noqa: PLC0415 - mlflow is optional

        return import_mlflow(self, tracking_uri, **kwargs)

    # -- aliases ----------------------------------------------------------------------------------

    def set_alias(self, model: str, alias: str, version: int) -> Model:
        """Point `alias` of `model` at `version` (moving it if it named another one)."""
        why = alias_rules.name_problem(alias)
        if why is not None:
            raise InvalidArgument(why)
        self.get_model(model)  # a clear ModelNotFound first
        why = self._alias_problem(model, alias, version)
        if why is not None:
            raise PreconditionFailed(f"{why}: an alias must name a live version")
        return self._patch_model(model, {"spec": {"aliases": {alias: version}}}, f"@{alias}")

    def remove_alias(self, model: str, alias: str) -> Model:
        _no_such_alias(self.get_model(model), alias)
        return self._patch_model(model, {"spec": {"aliases": {alias: None}}}, f"@{alias}")

    def _alias_problem(self, model: str, alias: str, n: int) -> str | None:
        try:
            mv: ModelVersion | None = self.get(model, n)
        except VersionNotFound:
            mv = None
        return alias_rules.version_problem(model, alias, n, mv)

    def resolve(self, ref: str) -> tuple[str, int]:
        """(model, version) for a reference: `models:/NAME@ALIAS`, `models:/NAME/3`,
        `models:/NAME/latest`, `models:/NAME/Production` (the version serving it),
        `models:/NAME/Staging`, `NAME@ALIAS` or `NAME-v3`."""
        body = ref[len("models:/") :] if ref.startswith("models:/") else ref
        if "@" in body:
            model, _, alias = body.partition("@")
            mdl = self.get_model(model)
            _no_such_alias(mdl, alias)
            n = mdl.spec.aliases[alias]
            why = self._alias_problem(model, alias, n)
            if why is not None:
                raise PreconditionFailed(f"{why}: it does not resolve")
            return model, n
        if ref.startswith("models:/"):
            model, _, which = body.partition("/")
            if not model or not which or "/" in which:
                raise InvalidArgument(
                    f"{ref!r} is not a model URI: models:/NAME/VERSION, models:/NAME/STAGE, "
                    "models:/NAME/latest or models:/NAME@ALIAS"
                )
            if which.isdigit():
                return model, int(which)
            return model, self._by_keyword(model, which, ref)
        found = parse_version_ref(ref)
        if found is None:
            raise InvalidArgument(
                f"{ref!r} names no version: give MODEL-vN, MODEL@ALIAS or models:/MODEL/N"
            )
        return found

    def _by_keyword(self, model: str, which: str, ref: str) -> int:
        versions = [mv for mv in self.list(model) if not mv.metadata.deletion_timestamp]
        if not versions:
            self.get_model(model)
            raise VersionNotFound(f"model {model!r} has no versions ({ref})")
        if which == "latest":
            return max(mv.spec.version for mv in versions)
        stage = parse_stage(which)
        if stage is Stage.PRODUCTION:
            serving = self.get_model(model).status.production_version
            if serving is None:
                raise VersionNotFound(f"no version of {model!r} serves Production ({ref})")
            return serving
        held = [mv.spec.version for mv in versions if mv.status.stage is stage]
        if not held:
            raise VersionNotFound(f"no version of {model!r} is in {stage.value} ({ref})")
        return max(held)

    # -- helpers ----------------------------------------------------------------------------------

    def _patch_model(self, model: str, patch: Body, what: str) -> Model:
        try:
            body = self.kube.patch_object(k.MODELS, self.namespace, model, patch)
        except k.NotFound as e:
            raise ModelNotFound(f"model {model!r} not found in namespace {self.namespace!r}") from e
        except k.KubeError as e:
            raise from_kube(e, f"changing {what} of model {model!r}") from e
        return Model.model_validate(body)

    def _version_ref(self, name: str, version: int | None) -> str:
        if version is not None:
            if version < 1:
                raise InvalidArgument(f"version must be >= 1, got {version}")
            return version_name(name, version)
        if is_uri_ref(name):
            return version_name(*self.resolve(name))
        return name

    def _call(self, fn: Callable[[], T], what: str) -> T:
        try:
            return fn()
        except k.KubeError as e:
            raise from_kube(e, what) from e


# -- pure helpers --------------------------------------------------------------------------------


def parse_stage(value: str | Stage) -> Stage:
    """A Stage from any casing ("production", "Production")."""
    if isinstance(value, Stage):
        return value
    for s in Stage:
        if s.value.lower() == str(value).strip().lower():
            return s
    raise InvalidArgument(
        f"unknown stage {value!r}; choose one of {', '.join(s.value for s in Stage)}"
    )


def _reason(reason: str | None) -> str | None:
    """The reason to record, checked before anything is written (None or "": none)."""
    if reason is None or reason == "":
        return None
    if "\x00" in reason or not reason.strip():
        raise InvalidArgument("a reason must be text (not blank, no NUL characters)")
    if len(reason) > REASON_MAX:
        raise InvalidArgument(
            f"a reason is at most {REASON_MAX} characters (got {len(reason)}); "
            "link to a longer write-up instead"
        )
    return reason


def _follows(what: str, reason: str | None) -> str:
    """The reason recorded on a version changed as part of another change (clipped to fit)."""
    return (f"{what}: {reason}" if reason else what)[:REASON_MAX]


def _no_such_alias(mdl: Model, alias: str) -> None:
    """NotFound, naming the aliases the Model has, unless it has `alias`."""
    if alias not in mdl.spec.aliases:
        have = ", ".join(f"@{a}" for a in sorted(mdl.spec.aliases)) or "none"
        raise NotFound(f"model {mdl.metadata.name!r} has no alias {alias!r} (its aliases: {have})")


def is_uri_ref(ref: str) -> bool:
    """Whether `ref` is resolved by `Client.resolve` (an alias or a models:/ URI)."""
    return "@" in ref or ref.startswith("models:/")


def parse_version_ref(ref: str) -> tuple[str, int] | None:
    """("credit-scoring", 3) for "credit-scoring-v3", else None."""
    m = _VERSION_RE.match(ref)
    return (m.group("model"), int(m.group("version"))) if m else None


def _phases(phase: str | Phase | Iterable[str | Phase] | None) -> set[str]:
    if phase is None:
        return set()
    items = [phase] if isinstance(phase, str) else list(phase)
    out: set[str] = set()
    for p in items:
        try:
            out.add(Phase(str(p)).value if isinstance(p, Phase) else _phase_named(str(p)))
        except ValueError:
            raise InvalidArgument(
                f"unknown phase {p!r}; choose from {', '.join(x.value for x in Phase)}"
            ) from None
    return out


def _phase_named(name: str) -> str:
    for p in Phase:
        if p.value.lower() == name.strip().lower():
            return p.value
    raise ValueError(name)


def _status_current(mv: ModelVersion) -> bool:
    """The operator has seen the latest spec (so the status is not about an older request)."""
    observed = mv.status.observed_generation
    if observed is None:
        return False
    return observed >= (mv.metadata.generation or 0)


def _matches(
    mv: ModelVersion, condition: str | None, phases: set[str], stage: Stage | None
) -> bool:
    if condition is not None:
        cond = next((c for c in mv.status.conditions if c.type == condition), None)
        if cond is None or cond.status != "True":
            return False
    if phases and (mv.status.phase is None or mv.status.phase.value not in phases):
        return False
    return not (stage is not None and mv.status.stage != stage)


def _why(mv: ModelVersion) -> str:
    """The failed conditions, the most specific first: what blocks a version is its artifact or
    its gates; a failed rollout shows in Serving; Ready only summarizes."""

    def fmt(c: Any) -> str:
        return f"{c.type}: {c.reason}{' - ' + c.message if c.message else ''}"

    failed = [c for c in mv.status.conditions if c.status == "False"]
    audit_gate = [c for c in failed if c.type == "Ready" and c.reason in conditions.AUDIT_BLOCKS]
    for chosen in (
        [fmt(c) for c in failed if c.type in ("ArtifactVerified", "GatesPassed")],
        [fmt(c) for c in audit_gate],  # Ready names the findings the audit gate refused
        [fmt(c) for c in failed if c.type == "Serving"],
        [fmt(c) for c in failed if c.type == "Ready"],
    ):
        if chosen:
            return "; ".join(chosen)
    return "; ".join(fmt(c) for c in failed) or "no reason given"


def _describe(mv: ModelVersion) -> str:
    s = mv.status
    if s.observed_generation is None:
        return "the operator has not reported on it yet"
    conds = ", ".join(f"{c.type}={c.status}" for c in s.conditions)
    return f"last seen phase={s.phase}, stage={s.stage}" + (f", {conds}" if conds else "")


def _previous_production(versions: list[ModelVersion], current: int) -> ModelVersion | None:
    """The version that served most recently before `current`: among the older versions when one
    of them has held Production (a rollback goes back, so rolling back twice from v11 lands on v9,
    not on the v11 just rolled back), else among the others."""
    older = [mv for mv in versions if mv.spec.version < current]
    newer = [mv for mv in versions if mv.spec.version > current]
    for pool in (older, newer):
        best: tuple[str, int] | None = None
        chosen: ModelVersion | None = None
        for mv in pool:
            times = [h.at for h in mv.status.history if h.stage == Stage.PRODUCTION]
            if times and (best is None or (max(times), mv.spec.version) > best):
                best = (max(times), mv.spec.version)
                chosen = mv
        if chosen is not None:
            return chosen
    return None


def _validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg')}")
    return "invalid version: " + "; ".join(parts)


def _event_record(b: Body) -> EventRecord:
    """An Event from either API's shape: core/v1 (message, count, firstTimestamp, source) or
    events.k8s.io/v1 (note, deprecatedCount, deprecatedFirstTimestamp, reportingController)."""
    series = b.get("series") or {}
    count = series.get("count") or b.get("count") or b.get("deprecatedCount") or 1
    first = b.get("firstTimestamp") or b.get("deprecatedFirstTimestamp") or b.get("eventTime")
    last = (
        series.get("lastObservedTime")
        or b.get("lastTimestamp")
        or b.get("deprecatedLastTimestamp")
        or first
    )
    source = (b.get("source") or b.get("deprecatedSource") or {}).get("component") or ""
    return EventRecord(
        type=str(b.get("type") or "Normal"),
        reason=str(b.get("reason") or ""),
        message=str(b.get("message") or b.get("note") or ""),
        count=int(count),
        first=first,
        last=last,
        source=source or str(b.get("reportingComponent") or b.get("reportingController") or ""),
    )


def _store_error(e: store.StoreError) -> ModelregError:
    if isinstance(e, up.MissingCredentials):
        return NoCredentials(
            f"{e}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or give the Model a "
            "spec.storage.secretRef"
        )
    return from_store(e)


__all__ = [
    "ArtifactNotFound",
    "Client",
    "Comparison",
    "EventRecord",
    "HistoryEntry",
    "HistoryRecord",
    "ModelregError",
    "NotFound",
    "PromoteResult",
    "RollbackResult",
    "VerifyReport",
    "parse_stage",
    "parse_version_ref",
]
