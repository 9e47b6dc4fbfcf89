"""Artifact verification for the reconciler: what is known about each version's artifact, and the
background checks that find out.

The reconciler asks `verdict(model, version)` on every pass; the answer comes from, in order, the
pure location and policy rules (the endpoint allow-list, no ambient credentials), the verified
result already recorded in `status.artifact` when its seal is the operator's (an unchanged
artifact is never re-read), or the outcome of a background check. A recorded result is confirmed
by a HEAD (same ETag and VersionId) once per `artifact_confirm_seconds`, and always before the
version enters Staging or Production: until then such a version is Verifying ("Confirming"). Checks stream the object through
`ObjectStore.sha256` under a concurrency limit, and when one ends the Model is reconciled again
(`on_done`). Failures are re-checked with exponential backoff, and while a re-check runs the last
verdict stands, so a flapping store does not churn status or history.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from modelreg.adapters import endpoints
from modelreg.adapters import kube as k8s
from modelreg.adapters import objectstore as store
from modelreg.api.models import ArtifactStatus, Model, ModelVersion, Phase, Stage
from modelreg.lifecycle.plan import ArtifactVerdict, Verdict
from modelreg.settings import OperatorSettings

log = logging.getLogger("modelreg.verifier")

ModelKey = tuple[str, str]
SpecKey = tuple[str, str, str, str, str]  # uri, sha256, endpoint, region, secret name

# Definite failures are re-checked too (the object may be uploaded or fixed later), but slowly.
FAILED_RECHECK_MIN = 30.0
FAILED_RECHECK_MAX = 600.0
# Credentials read for one check serve the others that start soon after (10,000 versions would
# otherwise read their Model's Secret 10,000 times); short, so a rotated Secret is seen quickly.
SECRET_TTL = 10.0
DONE_RECHECK = 1.0  # a held status whose check has ended is looked at again after this
HOLD_QUEUED = 60.0  # longest a new version's first status waits for its check to get a slot
# Building a boto3 client parses botocore's JSON models (~0.1-0.3 s of CPU and MiBs of garbage),
# far more than hashing a small artifact: one client per store and credentials is reused.
STORE_CLIENTS_MAX = 32


@dataclass(frozen=True)
class _Confirmation:
    at: float  # time.monotonic() of the HEAD that found the object unchanged
    stage: Stage  # the stage the version asked for then


@dataclass
class _Outcome:
    spec: SpecKey
    verdict: ArtifactVerdict
    stale: bool = False
    attempts: int = 0


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Verifier:
    def __init__(
        self,
        kube: k8s.Kube,
        settings: OperatorSettings,
        on_done: Callable[[ModelKey], None],
        *,
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        self._kube = kube
        self._settings = settings
        self._on_done = on_done
        self._observe = observe or (lambda result, seconds: None)
        self._outcomes: dict[str, _Outcome] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._queued_at: dict[str, float] = {}  # checks started, waiting for the semaphore
        self._running_at: dict[str, float] = {}  # ... and holding it
        self._confirmed: dict[str, _Confirmation] = {}
        self._kick_after: set[str] = set()  # keys whose in-flight confirmation must kick
        self._expiries: dict[str, asyncio.TimerHandle] = {}
        key = settings.seal_key.get_secret_value().encode()
        self._seal_key = key or os.urandom(32)
        self._sem = asyncio.Semaphore(settings.verify_concurrency)
        self._stores: OrderedDict[store.StoreConfig, store.ObjectStore] = OrderedDict()
        self._secret_reads: dict[tuple[str, str], tuple[float, asyncio.Future[dict[str, str]]]] = {}

    # -- the question the reconciler asks ------------------------------------------------------

    def verdict(self, model: Model | None, mv: ModelVersion) -> ArtifactVerdict:
        if model is None or mv.spec.stage is Stage.ARCHIVED:
            return ArtifactVerdict(Verdict.SKIPPED)
        storage = model.spec.storage
        if storage is None:
            return ArtifactVerdict(
                Verdict.FAILED,
                "NoStorage",
                f"Model {model.metadata.name!r} has no spec.storage: there is no object store to "
                "verify the artifact in",
            )
        if storage.endpoint:
            refusal = endpoints.endpoint_refusal(
                storage.endpoint, self._settings.allowed_endpoint_hosts
            )
            if refusal is not None:
                return ArtifactVerdict(Verdict.FAILED, "EndpointNotAllowed", refusal)
        if storage.secret_ref is None and not self._settings.allow_ambient_credentials:
            return ArtifactVerdict(
                Verdict.FAILED,
                "CredentialsRequired",
                f"Model {model.metadata.name!r} has no spec.storage.secretRef: name the Secret "
                "with this Model's object-store credentials; the operator does not lend its own "
                "(MODELREG_ALLOW_AMBIENT_CREDENTIALS, chart value "
                "operator.allowAmbientCredentials, would allow it)",
            )
        try:
            prefix = store.S3Location.parse_prefix(storage.uri)
            artifact = store.S3Location.parse(mv.spec.artifact.uri)
        except store.InvalidURI as e:
            return ArtifactVerdict(Verdict.FAILED, "InvalidURI", str(e))
        if not artifact.is_under(prefix):
            return ArtifactVerdict(
                Verdict.FAILED,
                "OutsidePrefix",
                f"artifact {artifact} is not under the Model's storage prefix {storage.uri}",
            )
        sha = mv.spec.artifact.sha256.lower()
        recorded = mv.status.artifact
        key = f"{mv.metadata.namespace}/{mv.metadata.name}/{mv.metadata.uid}"
        spec: SpecKey = (
            artifact.uri(),
            sha,
            storage.endpoint or "",
            storage.region or "",
            storage.secret_ref.name if storage.secret_ref else "",
        )
        model_key = (mv.metadata.namespace, model.metadata.name)
        outcome = self._outcomes.get(key)
        if (
            recorded is not None
            and recorded.verified
            and recorded.uri == artifact.uri()
            and recorded.sha256 == sha
            and recorded.seal is not None
            and hmac.compare_digest(recorded.seal, self.seal(mv.metadata.uid, recorded))
            # A later check of the same spec that did not verify overrides the record.
            and not (
                outcome is not None
                and outcome.spec == spec
                and (outcome.stale or outcome.verdict.verdict is not Verdict.VERIFIED)
            )
        ):
            return self._confirmed_verdict(key, model_key, model, mv, spec, recorded)

        if outcome is not None and outcome.spec != spec:
            outcome = None
        running = key in self._tasks
        if (outcome is None or outcome.stale) and not running:
            self._start(key, model_key, model, mv, spec, outcome)
            running = True
        if outcome is not None:
            return outcome.verdict
        return (
            ArtifactVerdict(Verdict.VERIFYING, "Verifying", f"computing the sha256 of {artifact}")
            if running
            else ArtifactVerdict(Verdict.PENDING)
        )

    def holding(self, mv: ModelVersion) -> float | None:
        """Seconds for which a version's first status may still wait for its check's verdict.

        Every new version is Verifying at first; a check that ends soon makes writing that phase
        a wasted request (and at start-up, one for each version). So a version that has no status
        yet is left unwritten while its check waits for a slot (up to HOLD_QUEUED seconds) or has
        run for less than `settings.verify_hold_seconds`; None once Verifying should be shown."""
        hold = self._settings.verify_hold_seconds
        if hold <= 0 or mv.status.observed_generation is not None:
            return None
        key = f"{mv.metadata.namespace}/{mv.metadata.name}/{mv.metadata.uid}"
        queued = self._queued_at.get(key)
        if queued is None:
            # The check ended while the pass that read its verdict was applying its plan: that
            # Verifying is already stale, and the pass the check's end kicked writes the verdict.
            done = self._outcomes.get(key)
            final = (Verdict.VERIFIED, Verdict.FAILED)
            return (
                DONE_RECHECK if done and not done.stale and done.verdict.verdict in final else None
            )
        now = time.monotonic()
        left = HOLD_QUEUED - (now - queued)
        running = self._running_at.get(key)
        if running is not None:
            left = min(left, hold - (now - running))
        return left if left > 0 else None

    def _confirmed_verdict(
        self,
        key: str,
        model_key: ModelKey,
        model: Model,
        mv: ModelVersion,
        spec: SpecKey,
        recorded: ArtifactStatus,
    ) -> ArtifactVerdict:
        """The verdict of a recorded, sealed result: a HEAD confirms the object unchanged once per
        `artifact_confirm_seconds`, and before the version enters Staging or Production, which
        waits for it (a version already rolling out or serving does not)."""
        asked = mv.spec.stage
        entering = (
            asked in (Stage.STAGING, Stage.PRODUCTION)
            and mv.status.stage is not asked
            and mv.status.phase not in (Phase.ROLLING, Phase.SERVING)
        )
        done = self._confirmed.get(key)
        fresh = done is not None and (
            time.monotonic() - done.at < self._settings.artifact_confirm_seconds
        )
        waiting = entering and (done is None or done.stage is not asked)
        if waiting and key in self._tasks:
            # A confirmation started for another stage is in flight: its end must bring the
            # pass that starts this version's own, or the promotion waits for nothing.
            self._kick_after.add(key)
        if (waiting or not fresh) and key not in self._tasks:
            self._tasks[key] = asyncio.get_running_loop().create_task(
                self._confirm(key, model_key, model, spec, recorded, asked, waiting),
                name=f"confirm:{key}",
            )
        if waiting:
            pinned = " and VersionId" if recorded.version_id else ""
            return ArtifactVerdict(
                Verdict.VERIFYING,
                "Confirming",
                f"confirming that {spec[0]} is unchanged in the store (its ETag{pinned}) before "
                f"the version enters {asked}",
            )
        return ArtifactVerdict(
            Verdict.VERIFIED, "Verified", "sha256 matches the object in the store"
        )

    def seal(self, uid: str, artifact: ArtifactStatus) -> str:
        """The HMAC binding a verified result to its version (by uid) under the operator's key:
        status written by anyone else (or copied from another version) does not carry it."""
        fields = (
            uid,
            artifact.uri or "",
            artifact.sha256 or "",
            str(artifact.size_bytes if artifact.size_bytes is not None else ""),
            artifact.etag or "",
            artifact.version_id or "",
        )
        return hmac.new(self._seal_key, "\n".join(fields).encode(), hashlib.sha256).hexdigest()

    def forget(self, namespace: str, name: str) -> None:
        """Drop what is known of a deleted version."""
        prefix = f"{namespace}/{name}/"
        for key in [k for k in self._outcomes if k.startswith(prefix)]:
            del self._outcomes[key]
        for key in [k for k in self._confirmed if k.startswith(prefix)]:
            del self._confirmed[key]
        self._kick_after = {k for k in self._kick_after if not k.startswith(prefix)}
        for key in [k for k in self._expiries if k.startswith(prefix)]:
            self._expiries.pop(key).cancel()
        for key in [k for k in self._tasks if k.startswith(prefix)]:
            self._tasks.pop(key).cancel()

    def _confirmed_now(self, key: str, model_key: ModelKey, at: float, stage: Stage) -> None:
        """Record a confirmation, and look at the Model again when it expires, so a changed
        object is found within `artifact_confirm_seconds` even when nothing else happens."""
        self._confirmed[key] = _Confirmation(at, stage)
        old = self._expiries.pop(key, None)
        if old is not None:
            old.cancel()
        delay = max(0.0, at + self._settings.artifact_confirm_seconds - time.monotonic())
        self._expiries[key] = asyncio.get_running_loop().call_later(delay, self._on_done, model_key)

    async def close(self) -> None:
        for timer in self._expiries.values():
            timer.cancel()
        self._expiries.clear()
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        for client in self._stores.values():
            client.close()
        self._stores.clear()

    async def model_store(self, model: Model) -> store.ObjectStore | ArtifactVerdict:
        """The shared client of the Model's store (its spec.storage endpoint and region, the keys
        of its Secret, read once per SECRET_TTL), or why there is none. For the other readers and
        writers of a Model's store: the audit's advisory database, retention's deletions."""
        storage = model.spec.storage
        if storage is None:
            return ArtifactVerdict(
                Verdict.FAILED, "NoStorage", f"Model {model.metadata.name!r} has no spec.storage"
            )
        creds = await self._credentials(model)
        if isinstance(creds, ArtifactVerdict):
            return creds
        return await self._store(
            store.StoreConfig(storage.endpoint or None, storage.region or None, creds[0], creds[1])
        )

    async def _store(self, config: store.StoreConfig) -> store.ObjectStore:
        """The shared client of this store and credentials (built off the event loop once)."""
        client = self._stores.get(config)
        if client is not None:
            self._stores.move_to_end(config)
            return client
        client = await asyncio.to_thread(
            store.ObjectStore,
            config,
            timeout=self._settings.store_timeout_seconds,
            chunk_bytes=self._settings.verify_chunk_bytes,
        )
        # Evicted clients are not closed: a check may still be using one; the GC closes it.
        self._stores[config] = client
        while len(self._stores) > STORE_CLIENTS_MAX:
            self._stores.popitem(last=False)
        return client

    # -- background checks ---------------------------------------------------------------------

    def _start(
        self,
        key: str,
        model_key: ModelKey,
        model: Model,
        mv: ModelVersion,
        spec: SpecKey,
        previous: _Outcome | None,
    ) -> None:
        attempts = previous.attempts if previous is not None else 0
        self._queued_at[key] = time.monotonic()  # now: the task starts only after this pass
        task = asyncio.get_running_loop().create_task(
            self._check(key, model_key, model, mv, spec, attempts), name=f"verify:{key}"
        )
        self._tasks[key] = task

    async def _check(
        self,
        key: str,
        model_key: ModelKey,
        model: Model,
        mv: ModelVersion,
        spec: SpecKey,
        attempts: int,
    ) -> None:
        started = time.monotonic()
        try:
            async with self._sem:
                self._running_at[key] = time.monotonic()
                verdict = await self._verify(model, mv, spec)
        except asyncio.CancelledError:
            self._tasks.pop(key, None)
            raise
        except Exception as e:  # a bug must not kill verification of every other version
            log.exception("verification of %s crashed", key)
            verdict = ArtifactVerdict(
                Verdict.UNKNOWN, "VerificationError", f"internal error: {e.__class__.__name__}"
            )
        finally:
            self._queued_at.pop(key, None)
            self._running_at.pop(key, None)
        self._tasks.pop(key, None)
        self._observe(verdict.verdict.value, time.monotonic() - started)
        attempts = 0 if verdict.verdict is Verdict.VERIFIED else attempts + 1
        if verdict.verdict is Verdict.VERIFIED:
            # Just read in full, while the version asked for this stage: no HEAD needed.
            self._confirmed_now(key, model_key, time.monotonic(), mv.spec.stage)
        self._outcomes[key] = _Outcome(spec=spec, verdict=verdict, attempts=attempts)
        if verdict.verdict is Verdict.UNKNOWN:
            delay = min(
                self._settings.retry_initial_seconds * 2 ** (attempts - 1),
                self._settings.retry_max_seconds,
            )
        elif verdict.verdict is Verdict.FAILED:
            delay = min(FAILED_RECHECK_MIN * 2 ** (attempts - 1), FAILED_RECHECK_MAX)
        else:
            delay = 0.0
        if delay:
            log.info(
                "artifact of %s: %s (%s); re-checking in %.0fs",
                key,
                verdict.reason,
                verdict.message,
                delay,
            )
            asyncio.get_running_loop().call_later(delay, self._expire, key, model_key)
        self._on_done(model_key)

    def _expire(self, key: str, model_key: ModelKey) -> None:
        outcome = self._outcomes.get(key)
        if outcome is not None and outcome.verdict.verdict is not Verdict.VERIFIED:
            outcome.stale = True
            self._on_done(model_key)

    async def _confirm(
        self,
        key: str,
        model_key: ModelKey,
        model: Model,
        spec: SpecKey,
        recorded: ArtifactStatus,
        asked: Stage,
        waiting: bool,
    ) -> None:
        """HEAD a recorded artifact: the same ETag (and VersionId, in a versioned bucket) confirms
        it; anything else makes the version be verified again in full."""
        started = time.monotonic()
        try:
            creds = await self._credentials(model)
            if isinstance(creds, ArtifactVerdict):
                info = None  # the full check reports why
            else:
                client = await self._store(
                    store.StoreConfig(spec[2] or None, spec[3] or None, creds[0], creds[1])
                )
                info = await client.head(spec[0])
        except store.StoreUnavailable as e:
            # Tried again on a later pass; the recorded verdict stands (a version waiting to
            # enter a stage keeps waiting: an unconfirmed artifact is not promoted).
            log.info("cannot confirm the artifact of %s: %s", key, e)
            asyncio.get_running_loop().call_later(
                self._settings.retry_max_seconds, self._on_done, model_key
            )
            return
        except store.StoreError as e:
            info = None
            log.warning("artifact %s of %s changed or vanished: %s", spec[0], key, e)
        finally:
            self._tasks.pop(key, None)
        changed = info is None or (
            (bool(recorded.etag) and info.etag != recorded.etag)
            or (recorded.version_id or None) != info.version_id
        )
        kick = waiting or key in self._kick_after
        self._kick_after.discard(key)
        if not changed:
            self._confirmed_now(key, model_key, started, asked)
            if kick:
                self._on_done(model_key)
            return
        if info is not None:
            log.warning(
                "artifact %s of %s changed in the store (ETag %s, VersionId %s; verified %s, "
                "%s): verifying it again",
                spec[0],
                key,
                info.etag,
                info.version_id,
                recorded.etag,
                recorded.version_id,
            )
        self._confirmed.pop(key, None)
        self._outcomes[key] = _Outcome(
            spec=spec,
            verdict=ArtifactVerdict(
                Verdict.VERIFYING, "Reverifying", "the object changed in the store"
            ),
            stale=True,
        )
        self._on_done(model_key)

    async def _secret(self, namespace: str, name: str) -> dict[str, str]:
        """A Secret's data, read once for every check that starts within SECRET_TTL (a Model's
        versions share one Secret); failures are not kept, so a Secret created later is seen."""
        key = (namespace, name)
        now = time.monotonic()
        hit = self._secret_reads.get(key)
        if hit is None or now - hit[0] > SECRET_TTL:
            read = asyncio.ensure_future(
                asyncio.to_thread(self._kube.get_secret_data, namespace, name)
            )
            hit = (now, read)
            self._secret_reads[key] = hit
        try:
            return await asyncio.shield(hit[1])
        except k8s.KubeError:
            if self._secret_reads.get(key) is hit:
                del self._secret_reads[key]
            raise

    async def _credentials(self, model: Model) -> tuple[str | None, str | None] | ArtifactVerdict:
        storage = model.spec.storage
        assert storage is not None
        if storage.secret_ref is None:
            return None, None
        name = storage.secret_ref.name
        ns = model.metadata.namespace
        try:
            data = await self._secret(ns, name)
        except k8s.NotFound:
            return ArtifactVerdict(
                Verdict.FAILED,
                "SecretNotFound",
                f"the Secret {name!r} named by Model {model.metadata.name!r} spec.storage.secretRef "
                f"does not exist in namespace {ns}",
            )
        except k8s.Forbidden:
            return ArtifactVerdict(
                Verdict.FAILED,
                "SecretForbidden",
                f"the operator may not read the Secret {name!r} in namespace {ns} (RBAC)",
            )
        except k8s.KubeError as e:
            return ArtifactVerdict(
                Verdict.UNKNOWN, "SecretUnavailable", f"reading Secret {name!r}: {e}"
            )
        missing = [k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if not data.get(k)]
        if missing:
            return ArtifactVerdict(
                Verdict.FAILED,
                "SecretInvalid",
                f"the Secret {name!r} lacks the key(s) {', '.join(missing)}",
            )
        return data["AWS_ACCESS_KEY_ID"], data["AWS_SECRET_ACCESS_KEY"]

    async def _verify(self, model: Model, mv: ModelVersion, spec: SpecKey) -> ArtifactVerdict:
        uri, sha, endpoint, region, _ = spec
        creds = await self._credentials(model)
        if isinstance(creds, ArtifactVerdict):
            return creds
        failed = ArtifactStatus(verified=False, uri=uri, sha256=None)
        try:
            config = store.StoreConfig(
                endpoint=endpoint or None,
                region=region or None,
                access_key_id=creds[0],
                secret_access_key=creds[1],
            )
            client = await self._store(config)
        except store.StoreError as e:
            return ArtifactVerdict(Verdict.FAILED, "InvalidStorage", str(e), failed)
        try:
            digest = await client.sha256(uri)
        except store.EndpointNotAllowed as e:
            msg = str(e)
            return ArtifactVerdict(
                Verdict.FAILED,
                "EndpointNotAllowed",
                msg,
                failed.model_copy(update={"message": msg}),
            )
        except store.ObjectNotFound as e:
            msg = f"artifact {uri} does not exist in the store ({e})"
            return ArtifactVerdict(
                Verdict.FAILED, "ArtifactNotFound", msg, failed.model_copy(update={"message": msg})
            )
        except store.AccessDenied as e:
            msg = f"the store denied access to {uri}: {e}"
            return ArtifactVerdict(
                Verdict.FAILED, "AccessDenied", msg, failed.model_copy(update={"message": msg})
            )
        except store.StoreUnavailable as e:
            return ArtifactVerdict(
                Verdict.UNKNOWN, "StoreUnavailable", f"the object store is unreachable: {e}"
            )
        except store.StoreError as e:
            msg = str(e)
            return ArtifactVerdict(
                Verdict.FAILED, "StoreError", msg, failed.model_copy(update={"message": msg})
            )
        if digest.sha256 != sha:
            msg = f"sha256 mismatch for {uri}: spec says {sha}, the store has {digest.sha256} ({digest.size} bytes)"
            return ArtifactVerdict(
                Verdict.FAILED,
                "DigestMismatch",
                msg,
                ArtifactStatus(
                    verified=False,
                    uri=uri,
                    sha256=digest.sha256,
                    size_bytes=digest.size,
                    etag=digest.etag,
                    version_id=digest.version_id,
                    message=msg,
                ),
            )
        verified = ArtifactStatus(
            verified=True,
            uri=uri,
            sha256=digest.sha256,
            size_bytes=digest.size,
            etag=digest.etag,
            version_id=digest.version_id,
            verified_at=_now(),
        )
        verified = verified.model_copy(update={"seal": self.seal(mv.metadata.uid, verified)})
        return ArtifactVerdict(
            Verdict.VERIFIED, "Verified", "sha256 matches the object in the store", verified
        )
