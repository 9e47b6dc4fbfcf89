"""Vulnerability audit for the reconciler: each version's spec.environment.packages against an
OSV-format advisory database, read from the Model's object store (spec.advisories.uri, with the
Model's endpoint and credentials) or from a path in the operator's settings (a mounted volume).

Nothing is fetched from the internet, and nothing is read while reconciling: `verdict()` answers
from the database already in memory and starts a background read when there is none, or when
it is older than `advisory_refresh_seconds` (an S3 object whose ETag did not change is not read
again). Until the first read ends a version is "Auditing"; a database that cannot be read or
parsed makes it "AdvisoriesUnavailable", retried with backoff, and the last good copy is kept
through a failed refresh. Each database is read once for all the Models that name it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from modelreg.adapters import objectstore as store
from modelreg.api.models import Finding, Model, ModelVersion, Stage
from modelreg.controller.verifier import Verifier
from modelreg.lifecycle import advisories
from modelreg.lifecycle.plan import ArtifactVerdict, AuditState, AuditVerdict
from modelreg.settings import OperatorSettings

log = logging.getLogger("modelreg.auditor")

ModelKey = tuple[str, str]
# ("s3", uri, endpoint, region, secret name) or ("path", path, "", "", "")
SourceKey = tuple[str, str, str, str, str]
FINDINGS_CACHE_MAX = 4096
DIRECTORY_FILES_MAX = 200_000


@dataclass
class _Database:
    index: advisories.Index | None = None
    sha256: str | None = None
    etag: str | None = None
    loaded_at: float = 0.0  # time.monotonic() of the last read (or ETag check) that succeeded
    error: str | None = None  # why the last read failed
    attempts: int = 0
    retry_at: float = 0.0
    task: asyncio.Task[None] | None = None
    users: set[ModelKey] = field(default_factory=set)


class Auditor:
    def __init__(
        self, settings: OperatorSettings, verifier: Verifier, on_done: Callable[[ModelKey], None]
    ) -> None:
        self._settings = settings
        self._verifier = verifier  # credentials and store clients are shared with verification
        self._on_done = on_done
        self._dbs: dict[SourceKey, _Database] = {}
        self._findings: OrderedDict[tuple[str, tuple[str, ...]], tuple[list[Finding], int]] = (
            OrderedDict()
        )
        self._timers: list[asyncio.TimerHandle] = []

    # -- the question the reconciler asks ------------------------------------------------------

    def verdict(self, model: Model | None, mv: ModelVersion) -> AuditVerdict:
        if model is None or mv.spec.stage is Stage.ARCHIVED:
            return AuditVerdict(AuditState.SKIPPED)
        source = self._source(model)
        if source is None:
            return AuditVerdict(AuditState.OFF)
        if isinstance(source, AuditVerdict):
            return source
        key, label = source
        db = self._dbs.setdefault(key, _Database())
        db.users.add((model.metadata.namespace, model.metadata.name))
        now = time.monotonic()
        due = db.index is None or now - db.loaded_at >= self._settings.advisory_refresh_seconds
        if due and db.task is None and now >= db.retry_at:
            db.task = asyncio.get_running_loop().create_task(
                self._load(key, label, model), name=f"advisories:{label}"
            )
        if db.index is None:
            if db.error is not None:
                return AuditVerdict(AuditState.UNAVAILABLE, database=label, message=db.error)
            return AuditVerdict(
                AuditState.PENDING,
                database=label,
                message=f"reading the advisory database {label}",
            )
        packages = tuple(mv.spec.environment.packages) if mv.spec.environment else ()
        findings, total = self._audit(db, packages)
        return AuditVerdict(
            AuditState.AUDITED,
            database=label,
            sha256=db.sha256,
            advisories=db.index.records,
            packages=len(packages),
            findings=tuple(findings),
            total=total,
        )

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        tasks = [db.task for db in self._dbs.values() if db.task is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t

    # -- where the database is -----------------------------------------------------------------

    def _source(self, model: Model) -> tuple[SourceKey, str] | AuditVerdict | None:
        named = model.spec.advisories
        if named is not None:
            storage = model.spec.storage
            if storage is None:
                return AuditVerdict(
                    AuditState.UNAVAILABLE,
                    database=named.uri,
                    message=f"spec.advisories.uri {named.uri} is read with the Model's "
                    "spec.storage endpoint and credentials, and the Model has no spec.storage",
                )
            try:
                uri = store.S3Location.parse(named.uri).uri()
            except store.InvalidURI as e:
                return AuditVerdict(AuditState.UNAVAILABLE, database=named.uri, message=str(e))
            secret = storage.secret_ref.name if storage.secret_ref else ""
            key = ("s3", uri, storage.endpoint or "", storage.region or "", secret)
            return key, uri
        path = self._settings.advisory_database
        if path:
            return ("path", path, "", "", ""), path
        return None

    # -- reading it ----------------------------------------------------------------------------

    async def _load(self, key: SourceKey, label: str, model: Model) -> None:
        db = self._dbs[key]
        changed = False
        try:
            if key[0] == "s3":
                result = await self._read_s3(key, db, model)
            else:
                result = await asyncio.to_thread(_read_path, Path(key[1]), self._max_bytes)
            if result is None:  # the same object as before
                db.loaded_at = time.monotonic()
            else:
                data_sha, etag, index = result
                changed = data_sha != db.sha256
                db.index, db.sha256, db.etag = index, data_sha, etag
                db.loaded_at = time.monotonic()
                log.info(
                    "advisory database %s: %d PyPI advisories (sha256 %s)",
                    label,
                    index.records,
                    data_sha[:12],
                )
            had_error = db.error is not None
            db.error, db.attempts, db.retry_at = None, 0, 0.0
            changed = changed or had_error
            self._later(self._settings.advisory_refresh_seconds, key)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # every failure is a message in status, never a crash
            message = _describe(e, label)
            changed = db.error != message or db.index is None
            db.error = message
            db.attempts += 1
            delay = min(
                self._settings.retry_initial_seconds * 2 ** (db.attempts - 1),
                self._settings.retry_max_seconds,
            )
            db.retry_at = time.monotonic() + delay
            log.warning(
                "advisory database %s: %s; reading it again in %.0fs", label, message, delay
            )
            self._later(delay, key)
        finally:
            db.task = None
        if changed:
            for user in list(db.users):
                self._on_done(user)

    async def _read_s3(
        self, key: SourceKey, db: _Database, model: Model
    ) -> tuple[str, str | None, advisories.Index] | None:
        uri = key[1]
        client = await self._verifier.model_store(model)
        if isinstance(client, ArtifactVerdict):
            raise _Unreadable(client.message)
        if db.index is not None and db.etag:
            info = await client.head(uri)
            if info.etag == db.etag:
                return None
        data, digest = await client.read(uri, self._max_bytes)
        index = await asyncio.to_thread(_index, data, uri)
        return digest.sha256, digest.etag or None, index

    @property
    def _max_bytes(self) -> int:
        return self._settings.advisory_max_bytes

    def _later(self, delay: float, key: SourceKey) -> None:
        """Look at the database's users again in `delay` seconds (a refresh, or a retry)."""
        loop = asyncio.get_running_loop()
        self._timers = [t for t in self._timers if not t.cancelled() and t.when() > loop.time()]
        self._timers.append(loop.call_later(delay, self._wake, key))

    def _wake(self, key: SourceKey) -> None:
        db = self._dbs.get(key)
        for user in list(db.users if db else ()):
            self._on_done(user)

    # -- the audit itself ----------------------------------------------------------------------

    def _audit(self, db: _Database, packages: tuple[str, ...]) -> tuple[list[Finding], int]:
        assert db.index is not None
        key = (db.sha256 or "", packages)
        hit = self._findings.get(key)
        if hit is not None:
            self._findings.move_to_end(key)
            return hit
        result = advisories.audit(packages, db.index, limit=None)  # the gate sees them all
        self._findings[key] = result
        while len(self._findings) > FINDINGS_CACHE_MAX:
            self._findings.popitem(last=False)
        return result


class _Unreadable(Exception):
    pass


def _index(data: bytes, name: str) -> advisories.Index:
    return advisories.build_index(advisories.parse_database(data, name))


def _read_path(path: Path, max_bytes: int) -> tuple[str, None, advisories.Index]:
    """A database file, or a directory of OSV .json records (a mounted volume)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.json") if p.is_file())
        if len(files) > DIRECTORY_FILES_MAX:
            raise _Unreadable(
                f"{path} holds {len(files)} .json files, more than {DIRECTORY_FILES_MAX}"
            )
        h = hashlib.sha256()
        records = []
        total = 0
        for f in files:
            data = f.read_bytes()
            total += len(data)
            if total > max_bytes:
                raise _Unreadable(f"the .json files under {path} exceed {max_bytes} bytes")
            h.update(f.relative_to(path).as_posix().encode() + b"\0" + data)
            records.extend(advisories.parse_database(data, str(f)))
        return h.hexdigest(), None, advisories.build_index(records)
    size = path.stat().st_size
    if size > max_bytes:
        raise _Unreadable(f"{path} is {size} bytes, more than advisoryMaxBytes ({max_bytes})")
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), None, _index(data, str(path))


def _describe(e: Exception, label: str) -> str:
    if isinstance(e, advisories.AdvisoryFormatError):
        return f"the advisory database {label} is not in OSV format: {e}"
    if isinstance(e, _Unreadable):
        return f"cannot read the advisory database {label}: {e}"
    if isinstance(e, store.ObjectNotFound):
        return f"the advisory database {label} does not exist in the store"
    if isinstance(e, store.StoreError):
        return f"cannot read the advisory database {label}: {e}"
    if isinstance(e, FileNotFoundError):
        return f"the advisory database {label} does not exist (operator setting advisoryDatabase)"
    if isinstance(e, OSError):
        return f"cannot read the advisory database {label}: {e.strerror or e}"
    log.exception("reading the advisory database %s crashed", label)
    return f"cannot read the advisory database {label}: internal error {e.__class__.__name__}"
