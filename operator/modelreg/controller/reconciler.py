"""The per-Model reconcile loop: read the cached world, ask the lifecycle for a plan, apply it.

Kopf's handlers (`modelreg.controller.handlers`) only call `kick(namespace, model)` when anything
about a Model changes: the Model, one of its versions, a Deployment or the Service it owns. Kicks
coalesce: at most one reconcile per Model runs at a time, and a kick during a run makes exactly one
more run. A failed pass is retried with exponential backoff; nothing polls, so an idle operator
uses no CPU. Reads come from kopf's in-memory indexes (filled by the watches before any handler
runs), so a converged pass makes no API call at all; writes go through `adapters.kube`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from modelreg.adapters import kube as k8s
from modelreg.adapters import objectstore as store
from modelreg.api.models import Model, ModelStatus, ModelVersion, ModelVersionStatus, Phase
from modelreg.controller import metrics
from modelreg.controller.analyst import Analyst, Window, shadow_reading
from modelreg.controller.auditor import Auditor
from modelreg.controller.notifier import Notifier
from modelreg.controller.verifier import Verifier
from modelreg.lifecycle import builders, canary, naming, notify, retention, shadow
from modelreg.lifecycle import plan as lifecycle
from modelreg.lifecycle.patch import merge_patch
from modelreg.settings import OperatorSettings

log = logging.getLogger("modelreg.reconciler")

Body = dict[str, Any]
ModelKey = tuple[str, str]


@dataclass
class Caches:
    """What the reconciler reads: bodies by (namespace, model). Kopf's indexes fit this."""

    models: Mapping[ModelKey, Iterable[bytes]]
    versions: Mapping[ModelKey, Iterable[bytes]]
    deployments: Mapping[ModelKey, Iterable[bytes]]
    services: Mapping[ModelKey, Iterable[bytes]]
    endpoints: Mapping[ModelKey, Iterable[bytes]] = field(default_factory=dict)
    autoscalers: Mapping[ModelKey, Iterable[bytes]] = field(default_factory=dict)


@dataclass
class _Slot:
    dirty: bool = False
    running: bool = False
    failures: int = 0
    retry: asyncio.TimerHandle | None = None


@dataclass
class _Written:
    """A status we wrote whose watch event has not reached the cache yet."""

    stale: set[str]  # resourceVersions older than the body we wrote: the cache may still show them
    rv: str  # the written body's resourceVersion
    body: bytes  # compact()ed


@dataclass
class _Posted:
    """An Event already posted: a repeat raises its count instead of posting another."""

    name: str
    count: int
    first: str


EVENTS_KEPT = 4096  # repeats of older Events post new ones (the API server keeps Events ~1h)
SHADOW_SCRAPE_SECONDS = 5.0  # the serving pods' shadow counters: a status write at most this often
CONFLICT_RECHECK_SECONDS = 30.0  # an unlabelled object in a child's place sends no events


_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def compact(body: Mapping[str, Any], *, template: bool = True) -> bytes:
    """What the reconciler keeps of an object, as compact JSON: no managedFields, no kubectl
    last-applied copy, and (`template=False`, for Deployments) no pod template. Tens of thousands
    of cached objects cost a few KiB each this way instead of tens of KiB of Python dicts."""
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    annotations = meta.get("annotations")
    if annotations and _LAST_APPLIED in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k != _LAST_APPLIED}
    spec = body.get("spec") or {}
    if not template:
        spec = {k: v for k, v in spec.items() if k != "template"}
    slim = {"metadata": meta, "spec": spec, "status": body.get("status") or {}}
    return json.dumps(slim, separators=(",", ":")).encode()


def compact_slice(body: Mapping[str, Any]) -> bytes:
    """What the reconciler keeps of an EndpointSlice: its Service's name and, per endpoint, the
    pod and whether it is ready."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    name = labels.get(lifecycle.SERVICE_NAME_LABEL, "")
    endpoints = [
        {
            "targetRef": {k: (e.get("targetRef") or {}).get(k) for k in ("kind", "name")},
            "conditions": {"ready": (e.get("conditions") or {}).get("ready")},
            # A canary's analysis reads each canary pod's /metrics at its address.
            "addresses": list(e.get("addresses") or [])[:1],
        }
        for e in body.get("endpoints") or []
    ]
    ports = [{"name": p.get("name"), "port": p.get("port")} for p in body.get("ports") or []]
    slim = {
        "metadata": {"labels": {lifecycle.SERVICE_NAME_LABEL: name}},
        "endpoints": endpoints,
        "ports": ports,
    }
    return json.dumps(slim, separators=(",", ":")).encode()


def canary_targets(slices: list[Body], deployment: str) -> tuple[tuple[str, str], ...]:
    """(pod, its /metrics URL) of the ready pods of `deployment` behind the Service's slices."""
    out = []
    for s in slices:
        port = next((p.get("port") for p in s.get("ports") or [] if p.get("name") == "http"), None)
        for ep in s.get("endpoints") or []:
            pod = str((ep.get("targetRef") or {}).get("name") or "")
            addresses = ep.get("addresses") or []
            ready = (ep.get("conditions") or {}).get("ready") is not False
            if port and addresses and ready and pod.startswith(deployment + "-"):
                out.append((pod, f"http://{addresses[0]}:{port}/metrics"))
    return tuple(sorted(out))


def _shadow_pair(model: Model | None, status: ModelStatus | None) -> tuple[int, int] | None:
    """(shadow version, serving version) while the Model's status says its serving pods mirror."""
    if model is None or model.spec.shadow is None or status is None or status.shadow is None:
        return None
    return status.shadow.version, status.shadow.serving_version


def expand(packed: bytes) -> Body:
    body: Body = json.loads(packed)
    return body


async def _all(calls: list[Coroutine[Any, Any, Any]]) -> None:
    """Await every call concurrently; when any fails, raise the first failure after all ended."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r


def _uid(body: Body) -> str:
    return str((body.get("metadata") or {}).get("uid", ""))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Reconciler:
    kube: k8s.Kube
    settings: OperatorSettings
    caches: Caches | None = None
    _slots: dict[ModelKey, _Slot] = field(default_factory=dict)
    _written: dict[str, _Written] = field(default_factory=dict)
    _patched: set[ModelKey] = field(default_factory=set)  # Models whose pass wrote a status
    _rolling_since: dict[str, float] = field(default_factory=dict)
    _phases: dict[ModelKey, dict[str, str]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _conflicts: dict[ModelKey, dict[lifecycle.ChildKey, str]] = field(default_factory=dict)
    _rejected: dict[ModelKey, dict[str, lifecycle.Rejection]] = field(default_factory=dict)
    _posted: OrderedDict[tuple[str, str, str, str], _Posted] = field(default_factory=OrderedDict)
    _recheck: dict[ModelKey, asyncio.TimerHandle] = field(default_factory=dict)
    # A pass the plan asked for at a time (a grace period ends), if nothing kicks before.
    _wake: dict[ModelKey, asyncio.TimerHandle] = field(default_factory=dict)
    # uids of the children this operator deleted that the cache may still show (the watch lags):
    # planning on one would switch production to a Deployment that is gone.
    _gone: dict[ModelKey, set[str]] = field(default_factory=dict)
    # uids of the versions retention deleted that the cache may still show: deleted once.
    _retiring: set[str] = field(default_factory=set)
    verifier: Verifier | None = None
    auditor: Auditor | None = None
    notifier: Notifier | None = None
    analyst: Analyst | None = None
    shadow_analyst: Analyst | None = None
    on_pass: Callable[[ModelKey], None] | None = None

    def __post_init__(self) -> None:
        self.defaults = builders.ServingDefaults(
            builtin_image=self.settings.serving_image,
            mlserver_image=self.settings.mlserver_image,
            allow_pickle=self.settings.runtime_allow_pickle,
        )
        self.host = socket.gethostname()

    def start(self, caches: Caches) -> None:
        self.caches = caches
        if self.verifier is None:
            self.verifier = Verifier(
                self.kube,
                self.settings,
                lambda key: self.kick(*key),
                observe=metrics.observe_verification,
            )
        if self.auditor is None:
            self.auditor = Auditor(self.settings, self.verifier, lambda key: self.kick(*key))
        if self.notifier is None:
            self.notifier = Notifier(self.kube, self.settings, lambda key: self.kick(*key))
        if self.analyst is None:
            self.analyst = Analyst(kick=self.kick)
        if self.shadow_analyst is None:
            self.shadow_analyst = Analyst(
                kick=self.kick,
                interval=SHADOW_SCRAPE_SECONDS,
                parse=shadow_reading,
                from_zero=True,
                what="shadow",
            )

    async def close(self) -> None:
        for slot in self._slots.values():
            if slot.retry is not None:
                slot.retry.cancel()
        for timer in [*self._recheck.values(), *self._wake.values()]:
            timer.cancel()
        if self.auditor is not None:
            await self.auditor.close()
        if self.verifier is not None:
            await self.verifier.close()
        if self.notifier is not None:
            await self.notifier.close()
        for analyst in (self.analyst, self.shadow_analyst):
            if analyst is not None:
                await analyst.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t

    # -- scheduling ------------------------------------------------------------------------------

    def kick(self, namespace: str, model: str) -> None:
        """Ask for one more pass over this Model; cheap, and safe to call from any handler."""
        if not model or self.caches is None:
            return
        key = (namespace, model)
        slot = self._slots.setdefault(key, _Slot())
        slot.dirty = True
        if not slot.running:
            slot.running = True
            task = asyncio.get_running_loop().create_task(
                self._drain(key, slot), name=f"reconcile:{namespace}/{model}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _drain(self, key: ModelKey, slot: _Slot) -> None:
        try:
            while slot.dirty:
                slot.dirty = False
                started = time.monotonic()
                try:
                    self._patched.discard(key)
                    await self.reconcile(key)
                except Exception as e:
                    slot.failures += 1
                    delay = min(
                        self.settings.retry_initial_seconds * 2 ** (slot.failures - 1),
                        self.settings.retry_max_seconds,
                    )
                    metrics.RECONCILES.labels(kind="Model", result="error").inc()
                    level = logging.WARNING if isinstance(e, k8s.KubeError) else logging.ERROR
                    log.log(
                        level,
                        "reconcile of Model %s/%s failed (%s: %s); retrying in %.1fs",
                        *key,
                        e.__class__.__name__,
                        e,
                        delay,
                        exc_info=not isinstance(e, k8s.KubeError),
                    )
                    if slot.retry is not None:
                        slot.retry.cancel()
                    slot.retry = asyncio.get_running_loop().call_later(delay, self.kick, *key)
                else:
                    if key in self._patched:
                        # One more pass plans from what this one wrote (the watch echoes of
                        # those writes do not kick: `is_echo`); it usually finds nothing to do.
                        slot.dirty = True
                    slot.failures = 0
                    if slot.retry is not None:
                        slot.retry.cancel()
                        slot.retry = None
                    metrics.RECONCILES.labels(kind="Model", result="ok").inc()
                finally:
                    metrics.RECONCILE_SECONDS.labels(kind="Model").observe(
                        time.monotonic() - started
                    )
                if self.on_pass is not None:
                    self.on_pass(key)
        finally:
            slot.running = False
            if not slot.dirty and slot.retry is None and not self._known(key):
                self._slots.pop(key, None)

    def is_echo(self, uid: str, resource_version: str) -> bool:
        """True when a watch event brings a status this operator wrote: the pass that wrote it
        asked for the one more pass that sees it (`_wrote`), so the echo needs no kick."""
        written = self._written.get(uid)
        return written is not None and bool(resource_version) and written.rv == resource_version

    def _known(self, key: ModelKey) -> bool:
        assert self.caches is not None
        return bool(self.caches.models.get(key)) or bool(self.caches.versions.get(key))

    # -- one pass --------------------------------------------------------------------------------

    def _fresh(self, packed: bytes) -> Body:
        """The cached body, or the newer one we wrote if its watch event has not arrived yet.

        Kept until the cache shows the written resourceVersion or any other one we did not know
        as older (someone else's later write): two quick writes never bring back the first body.
        """
        body = expand(packed)
        uid = body.get("metadata", {}).get("uid", "")
        written = self._written.get(uid)
        if written is None:
            return body
        if body.get("metadata", {}).get("resourceVersion") in written.stale:
            return expand(written.body)
        del self._written[uid]
        return body

    async def reconcile(self, key: ModelKey) -> None:
        assert self.caches is not None
        assert self.verifier is not None
        assert self.auditor is not None
        namespace, model_name = key
        unreadable: list[lifecycle.Unreadable] = []
        model_bodies = [self._fresh(b) for b in self.caches.models.get(key) or []]
        model = self._parse_model(model_bodies, unreadable)
        versions = self._parse_versions(
            [self._fresh(b) for b in self.caches.versions.get(key) or []], unreadable
        )
        if unreadable:
            await self._freeze(key, model, model_bodies, unreadable)
            return
        deployment_bodies, services, hpas = self._without_gone(
            key,
            [expand(b) for b in self.caches.deployments.get(key) or []],
            [expand(b) for b in self.caches.services.get(key) or []],
            [expand(b) for b in self.caches.autoscalers.get(key) or []],
        )
        deployments = [lifecycle.deployment_state(b) for b in deployment_bodies]
        service = shadow_service = None
        slices: list[Body] = []
        if services:
            slices = [expand(b) for b in self.caches.endpoints.get(key) or []]
        for body in services:
            labels = (body.get("metadata") or {}).get("labels") or {}
            if labels.get(naming.ROLE_LABEL) == naming.SHADOW_ROLE:
                shadow_service = lifecycle.service_state(body, slices)
            elif service is None:
                service = lifecycle.service_state(body, slices)
        measured = self._measure(key, model, slices)
        shadow_measured = self._measure_shadow(key, model, slices)
        autoscaler = lifecycle.autoscaler_state(hpas[0]) if hpas else None
        cached = (
            {("Deployment", d.name) for d in deployments}
            | {("Service", str(b.get("metadata", {}).get("name", ""))) for b in services}
            | {("HorizontalPodAutoscaler", a.name) for a in [autoscaler] if a is not None}
        )
        await self._recheck_conflicts(key, model)

        verdicts = {mv.metadata.name: self.verifier.verdict(model, mv) for mv in versions}
        audits = {mv.metadata.name: self.auditor.verdict(model, mv) for mv in versions}
        # A child the API server refuses, or whose name another object holds, is found while
        # applying; the plan is then made again knowing it, before any status is written.
        for _ in range(3):
            result = lifecycle.plan(
                namespace=namespace,
                model_name=model_name,
                model=model,
                versions=versions,
                artifacts=verdicts,
                deployments=deployments,
                service=service,
                defaults=self.defaults,
                now=_now(),
                history_limit=self.settings.history_limit,
                cluster_domain=self.settings.cluster_domain,
                conflicts=self._conflicts.get(key),
                rejected=self._rejected.get(key),
                withdraw_grace_seconds=self.settings.withdraw_grace_seconds,
                audits=audits,
                autoscaler=autoscaler,
                measured=measured,
                shadow_service=shadow_service,
                shadow_measured=shadow_measured,
            )
            if await self._apply_children(key, model, cached, result):
                break
        held = await self._apply(key, model, versions, result)
        status = result.model_status or (model.status if model is not None else None)
        if self.analyst is not None and (status is None or status.canary is None):
            self.analyst.stop(key)  # no canary (any more): no scraping
        if self.shadow_analyst is not None and _shadow_pair(model, status) is None:
            self.shadow_analyst.stop(key)
        self._count_phases(key, versions, result)
        wake = result.wake_after
        self._wake_later(key, held if wake is None or (held is not None and held < wake) else wake)

    def _measure(
        self, key: ModelKey, model: Model | None, slices: list[Body]
    ) -> canary.Measured | None:
        """The analyst's figures for the canary step the Model's status says is under way."""
        st = model.status.canary if model is not None else None
        if self.analyst is None or st is None or st.step_started_at is None:
            return None
        window = Window(
            version=st.version,
            step=st.step - 1,
            started_at=st.step_started_at,
            targets=canary_targets(slices, naming.deployment_name(key[1], st.version)),
        )
        figures = self.analyst.measure(key, window)
        if figures is None:
            return None
        return canary.Measured(
            version=window.version,
            step=window.step,
            started_at=window.started_at,
            requests=figures.requests,
            errors=figures.errors,
            p99_ms=figures.p99_ms,
            problem=self.analyst.errors(key),
        )

    def _measure_shadow(
        self, key: ModelKey, model: Model | None, slices: list[Body]
    ) -> shadow.Measured | None:
        """The shadow analyst's figures: what the serving pods mirrored to the shadow version."""
        pair = _shadow_pair(model, model.status if model is not None else None)
        if self.shadow_analyst is None or pair is None:
            return None
        version, serving = pair
        window = Window(
            version=version,
            step=serving,  # another serving version is another window
            started_at="",
            targets=canary_targets(slices, naming.deployment_name(key[1], serving)),
        )
        figures = self.shadow_analyst.measure(key, window)
        if figures is None:
            return None
        return shadow.Measured(
            version=version,
            serving=serving,
            requests=figures.requests,
            errors=figures.errors,
            mismatches=figures.mismatches,
            dropped=figures.dropped,
            p99_ms=figures.p99_ms,
            problem=self.shadow_analyst.errors(key),
        )

    def _wake_later(self, key: ModelKey, seconds: float | None) -> None:
        timer = self._wake.pop(key, None)
        if timer is not None:
            timer.cancel()
        if seconds is not None:
            # A little after the time: the plan compares whole seconds.
            self._wake[key] = asyncio.get_running_loop().call_later(seconds + 0.5, self.kick, *key)

    def _without_gone(self, key: ModelKey, *kinds: list[Body]) -> tuple[list[Body], ...]:
        """The cached children of each kind, less those this operator deleted. A deleted uid the
        cache no longer shows is forgotten: its delete event has arrived."""
        gone = self._gone.get(key)
        if not gone:
            return kinds
        gone &= {_uid(b) for bodies in kinds for b in bodies}
        if not gone:
            del self._gone[key]
        return tuple([b for b in bodies if _uid(b) not in gone] for bodies in kinds)

    def _parse_model(
        self, bodies: list[Body], unreadable: list[lifecycle.Unreadable]
    ) -> Model | None:
        for body in bodies:
            if body.get("metadata", {}).get("deletionTimestamp"):
                continue
            try:
                return Model.model_validate(body)
            except ValidationError as e:
                unreadable.append(_unreadable("Model", body, e))
        return None

    def _parse_versions(
        self, bodies: list[Body], unreadable: list[lifecycle.Unreadable]
    ) -> list[ModelVersion]:
        out = []
        for body in bodies:
            try:
                out.append(ModelVersion.model_validate(body))
            except ValidationError as e:
                if not body.get("metadata", {}).get("deletionTimestamp"):
                    unreadable.append(_unreadable("ModelVersion", body, e))
        return out

    async def _freeze(
        self,
        key: ModelKey,
        model: Model | None,
        model_bodies: list[Body],
        unreadable: list[lifecycle.Unreadable],
    ) -> None:
        """Some object of this Model cannot be read: say so, and change nothing else."""
        namespace, name = key
        for u in unreadable:
            log.error(
                "%s %s/%s is unreadable: %s: %s", u.kind, namespace, u.name, u.field, u.problem
            )
        body = model_bodies[0] if model_bodies else None
        if body is None:
            await _all([self._post(namespace, e) for e in _unreadable_events(unreadable)])
            return
        meta = body.get("metadata", {})
        try:
            old = (
                model.status
                if model is not None
                else ModelStatus.model_validate(body.get("status") or {})
            )
        except ValidationError:
            old = ModelStatus()
        status, events = lifecycle.frozen(
            name,
            str(meta.get("uid", "")),
            int(meta.get("generation") or 0),
            old,
            unreadable,
            _now(),
        )
        if status is not None:
            await self._write_status(
                key,
                "models",
                name,
                str(meta.get("uid", "")),
                str(meta.get("resourceVersion", "")),
                body.get("status") or {},
                status.wire(),
            )
        await _all([self._post(namespace, e) for e in events])

    async def _recheck_conflicts(self, key: ModelKey, model: Model | None) -> None:
        """Drop the conflicts whose object is gone or has become the operator's own."""
        known = self._conflicts.get(key)
        if not known:
            return
        namespace, model_name = key
        uid = model.metadata.uid if model is not None else None
        for kind, name in list(known):
            found = await self.kube.call(self._child_api(kind)[0], namespace, name)
            if (
                found is None
                or lifecycle.foreign_message(
                    kind, namespace, name, found["metadata"], model_name, uid
                )
                is None
            ):
                del known[(kind, name)]
        if not known:
            self._conflicts.pop(key, None)
            timer = self._recheck.pop(key, None)
            if timer is not None:
                timer.cancel()

    async def _apply_children(
        self,
        key: ModelKey,
        model: Model | None,
        cached: set[lifecycle.ChildKey],
        result: lifecycle.Plan,
    ) -> bool:
        """Write the plan's Deployments and Service, in blue/green order (the new Deployment,
        then the Service switch). False when something new was learnt (a conflict, a refusal)
        that the plan must take into account."""
        namespace, model_name = key
        kube = self.kube
        if model is not None:
            ref = builders.owner_reference("Model", model_name, model.metadata.uid)
            for name, uid in result.adopt.items():
                log.info(
                    "handing Deployment %s/%s of an older operator to its Model", namespace, name
                )
                with contextlib.suppress(k8s.NotFound):
                    await kube.call(kube.set_deployment_owner, namespace, name, uid, ref)
        writes: list[tuple[str, Body]] = [("Deployment", b) for b in result.apply_deployments]
        if result.apply_shadow_service is not None:
            writes.append(("Service", result.apply_shadow_service))
        if result.apply_service is not None:
            writes.append(("Service", result.apply_service))
        if result.apply_autoscaler is not None:
            # After the Service switch: it follows the version that now serves.
            writes.append(("HorizontalPodAutoscaler", result.apply_autoscaler))
        for kind, body in writes:
            name = body["metadata"]["name"]
            get, apply = self._child_api(kind)
            if (kind, name) not in cached and model is not None:
                found = await kube.call(get, namespace, name)
                why = (
                    None
                    if found is None
                    else lifecycle.foreign_message(
                        kind, namespace, name, found["metadata"], model_name, model.metadata.uid
                    )
                )
                if why is not None:
                    log.warning("not touching %s: %s", name, why)
                    self._conflicts.setdefault(key, {})[(kind, name)] = why
                    self._schedule_recheck(key)
                    return False
            if kind == "Deployment":
                log.info("applying Deployment %s/%s", namespace, name)
            else:
                log.info("%s %s/%s -> version %s", kind, namespace, name, result.serving_version)
            try:
                await kube.call(apply, namespace, body)
            except (k8s.Invalid, k8s.Forbidden) as e:
                log.warning("the API server refused %s %s/%s: %s", kind, namespace, name, e)
                self._rejected.setdefault(key, {})[name] = lifecycle.Rejection(
                    body["metadata"]["annotations"][naming.SPEC_HASH], str(e)
                )
                return False
            rejected = self._rejected.get(key)
            if rejected:
                rejected.pop(name, None)
        return True

    def _child_api(
        self, kind: str
    ) -> tuple[Callable[[str, str], Body | None], Callable[[str, Body], Body]]:
        """The adapter's get (metadata) and apply of a child kind."""
        kube = self.kube
        if kind == "Deployment":
            return kube.get_deployment, kube.apply_deployment
        if kind == "Service":
            return kube.get_service, kube.apply_service
        return kube.get_autoscaler, kube.apply_autoscaler

    def _schedule_recheck(self, key: ModelKey) -> None:
        if key in self._recheck:
            return

        def again() -> None:
            self._recheck.pop(key, None)
            if key in self._conflicts:
                self.kick(*key)
                self._schedule_recheck(key)

        self._recheck[key] = asyncio.get_running_loop().call_later(CONFLICT_RECHECK_SECONDS, again)

    async def _apply(
        self,
        key: ModelKey,
        model: Model | None,
        versions: list[ModelVersion],
        result: lifecycle.Plan,
    ) -> float | None:
        """Carry out the plan; the seconds until a held first status must be looked at again."""
        namespace = key[0]
        kube = self.kube
        # Statuses are independent of each other: written concurrently, as are the removals.
        by_name = {mv.metadata.name: mv for mv in versions}
        writes: list[Coroutine[Any, Any, Any]] = []
        held: float | None = None
        for name, status in result.version_status.items():
            mv = by_name[name]
            hold = self._hold(mv, status)
            if hold is not None:
                held = hold if held is None else min(held, hold)
                continue
            self._track_promotion(mv, status.phase)
            writes.append(self._write_version(key, model, mv, status))
        model_status = result.model_status
        if model is not None and self.notifier is not None:
            # The webhook figures ride on the Model's status write (notifier kicks are throttled).
            figures = self.notifier.deliveries(key, model)
            model_status = notify.with_deliveries(model_status, model.status, figures)
        if model is not None and model_status is not None:
            writes.append(
                self._write_status(
                    key,
                    "models",
                    model.metadata.name,
                    model.metadata.uid,
                    model.metadata.resource_version,
                    model.status.wire(),
                    model_status.wire(),
                )
            )
        await _all(writes)
        # The transitions are recorded: their Events go out even if a removal fails below.
        await _all([self._post(namespace, event) for event in result.events])
        removals = []
        if result.delete_service is not None:
            name = result.delete_service
            log.info("deleting Service %s/%s: no version serves", namespace, name)
            removals.append(
                self._delete(key, kube.delete_service, name, result.delete_uids.get(name))
            )
        if result.delete_shadow_service is not None:
            name = result.delete_shadow_service
            log.info("deleting Service %s/%s: no shadow runs", namespace, name)
            removals.append(
                self._delete(key, kube.delete_service, name, result.delete_uids.get(name))
            )
        if result.delete_autoscaler is not None:
            name = result.delete_autoscaler
            log.info("deleting HorizontalPodAutoscaler %s/%s", namespace, name)
            removals.append(
                self._delete(
                    key, kube.delete_autoscaler, name, result.delete_autoscaler_uid or None
                )
            )
        for name in result.delete_deployments:
            log.info("deleting Deployment %s/%s", namespace, name)
            removals.append(
                self._delete(key, kube.delete_deployment, name, result.delete_uids.get(name))
            )
        await _all(removals)
        if model is not None:
            await _all([self._retire(model, d) for d in result.delete_versions])
        return held

    def _hold(self, mv: ModelVersion, status: ModelVersionStatus) -> float | None:
        """Seconds a new version's first status (Verifying) may wait for its check's verdict."""
        if status.phase is not Phase.VERIFYING or self.verifier is None:
            return None
        return self.verifier.holding(mv)

    async def _retire(self, model: Model, d: retention.Deletion) -> None:
        """Retention: delete one old version (that very object), then its artifact; each an
        Event on the Model. A failure is a Warning and the next pass tries again."""
        if d.uid in self._retiring:
            return
        self._retiring.add(d.uid)
        ns, name = model.metadata.namespace, model.metadata.name
        keep = model.spec.retention.keep_archived if model.spec.retention else 0

        def event(type_: str, reason: str, message: str) -> lifecycle.Event:
            return lifecycle.Event("Model", name, model.metadata.uid, type_, reason, message)

        try:
            await self.kube.call(self.kube.delete_version, ns, d.name, d.uid)
        except k8s.KubeError as e:
            self._retiring.discard(d.uid)
            await self._post(ns, event("Warning", "RetentionFailed", f"deleting {d.name}: {e}"))
            return
        log.info("retention: deleted %s/%s (%s)", ns, d.name, d.phase.value)
        await self._post(
            ns,
            event(
                "Normal",
                "VersionDeleted",
                f"retention keeps the newest {keep} Archived or Superseded versions: deleted "
                f"{d.name} ({d.phase.value})",
            ),
        )
        if d.artifact is None:
            return
        assert self.verifier is not None
        problem = None
        client = await self.verifier.model_store(model)
        if isinstance(client, lifecycle.ArtifactVerdict):
            problem = client.message
        else:
            try:
                await client.delete(d.artifact)
            except store.StoreError as e:
                problem = str(e)
        if problem is not None:
            await self._post(
                ns,
                event(
                    "Warning",
                    "ArtifactNotDeleted",
                    f"{d.artifact} of {d.name} stays in the store ({problem}); "
                    "`modelreg gc` lists it",
                ),
            )
            return
        log.info("retention: deleted artifact %s of %s/%s", d.artifact, ns, d.name)
        await self._post(
            ns, event("Normal", "ArtifactDeleted", f"deleted {d.artifact} of {d.name}")
        )

    async def _delete(
        self, key: ModelKey, delete: Callable[..., None], name: str, uid: str | None
    ) -> None:
        """Delete a child (with `uid`, only that very object), and remember it is gone until the
        cache stops showing it."""
        await self.kube.call(delete, key[0], name, uid)
        if uid:
            self._gone.setdefault(key, set()).add(uid)

    async def _write_version(
        self, key: ModelKey, model: Model | None, mv: ModelVersion, status: ModelVersionStatus
    ) -> None:
        """Write a version's status; once written, queue the webhook events of its change (so an
        event's id and time are those of a status that exists)."""
        written = await self._write_status(
            key,
            "modelversions",
            mv.metadata.name,
            mv.metadata.uid,
            mv.metadata.resource_version,
            mv.status.wire(),
            status.wire(),
        )
        if written and model is not None and model.spec.notifications and self.notifier:
            events = notify.events(key[0], key[1], mv, mv.status, status, now=_now())
            self.notifier.enqueue(key, model, events)

    async def _write_status(
        self, key: ModelKey, plural: str, name: str, uid: str, rv: str, old: Body, new: Body
    ) -> bool:
        """Merge-patch a status of Model `key` or one of its versions; False when it is gone."""
        namespace = key[0]
        patch = merge_patch(old, new)
        if not patch:
            return True
        self._patched.add(key)
        try:
            body = await self.kube.call(self.kube.patch_status, plural, namespace, name, patch)
        except k8s.NotFound:
            return False  # deleted meanwhile: its DELETED event will reconcile again
        before = self._written.get(uid)
        stale = (before.stale | {before.rv}) if before is not None else set()
        stale.add(rv)
        written_rv = str(body.get("metadata", {}).get("resourceVersion", ""))
        stale.discard(written_rv)
        self._written[uid] = _Written(stale=stale, rv=written_rv, body=compact(body))
        return True

    async def _post(self, namespace: str, event: lifecycle.Event) -> None:
        """Post an Event; a repeat of one already posted (same object, reason and message) raises
        its count and lastTimestamp instead, as the Kubernetes Event convention has it."""
        stamp = _now()
        key = (namespace, event.uid, event.reason, event.message)
        seen = self._posted.get(key)
        try:
            if seen is not None:
                seen.count += 1
                self._posted.move_to_end(key)
                patch = {
                    "count": seen.count,
                    "lastTimestamp": stamp,
                    "series": {"count": seen.count, "lastObservedTime": _micro(stamp)},
                }
                try:
                    await self.kube.call(self.kube.patch_event, namespace, seen.name, patch)
                    return
                except k8s.NotFound:
                    del self._posted[key]  # expired: post it afresh
            body = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{event.name}.", "namespace": namespace},
                "involvedObject": {
                    "apiVersion": "modelreg.dev/v1alpha1",
                    "kind": event.kind,
                    "name": event.name,
                    "namespace": namespace,
                    "uid": event.uid,
                },
                "type": event.type,
                "reason": event.reason[:128],
                "message": event.message[:1024],
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
                "source": {"component": "modelreg-operator"},
                "reportingComponent": "modelreg.dev/operator",
                "reportingInstance": self.host[:128],
            }
            created = await self.kube.call(self.kube.create_event, namespace, body)
            self._posted[key] = _Posted(name=created, count=1, first=stamp)
            while len(self._posted) > EVENTS_KEPT:
                self._posted.popitem(last=False)
        except k8s.KubeError as e:  # an Event is best effort: never fail the reconcile for it
            log.warning(
                "could not post Event %s for %s/%s: %s", event.reason, namespace, event.name, e
            )

    def _track_promotion(self, mv: ModelVersion, phase: Phase | None) -> None:
        uid = mv.metadata.uid
        if phase is Phase.ROLLING:
            self._rolling_since.setdefault(uid, time.monotonic())
        elif uid in self._rolling_since:
            started = self._rolling_since.pop(uid)
            if phase is Phase.SERVING:
                metrics.PROMOTION_SECONDS.observe(time.monotonic() - started)

    def _count_phases(
        self, key: ModelKey, versions: list[ModelVersion], result: lifecycle.Plan
    ) -> None:
        phases = {}
        for mv in versions:
            status = result.version_status.get(mv.metadata.name, mv.status)
            if status.phase is not None:
                phases[mv.metadata.name] = status.phase.value
        metrics.set_phases(key, phases, self._phases)

    def forget(self, namespace: str, name: str, uid: str = "") -> None:
        """A ModelVersion is gone: drop what was kept about it."""
        self._written.pop(uid, None)
        self._retiring.discard(uid)
        self._rolling_since.pop(uid, None)
        self._forget_events(uid)
        if self.verifier is not None:
            self.verifier.forget(namespace, name)

    def forget_model(self, namespace: str, name: str, uid: str = "") -> None:
        """A Model is gone: drop what was kept about it."""
        key = (namespace, name)
        self._written.pop(uid, None)
        self._forget_events(uid)
        self._conflicts.pop(key, None)
        self._rejected.pop(key, None)
        self._gone.pop(key, None)
        if self.notifier is not None:
            self.notifier.forget(key)
        for timers in (self._recheck, self._wake):
            timer = timers.pop(key, None)
            if timer is not None:
                timer.cancel()

    def _forget_events(self, uid: str) -> None:
        for key in [k for k in self._posted if k[1] == uid]:
            del self._posted[key]


def _micro(stamp: str) -> str:
    """An RFC 3339 time with microseconds (EventSeries.lastObservedTime is a MicroTime)."""
    return stamp.replace("Z", ".000000Z")


def _unreadable(kind: str, body: Body, error: ValidationError) -> lifecycle.Unreadable:
    first = error.errors()[0] if error.errors() else {"loc": (), "msg": str(error)}
    path = ".".join(str(p) for p in first.get("loc", ())) or "(object)"
    meta = body.get("metadata", {})
    return lifecycle.Unreadable(
        kind=kind,
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        field=path,
        problem=str(first.get("msg", "invalid")),
    )


def _unreadable_events(unreadable: list[lifecycle.Unreadable]) -> list[lifecycle.Event]:
    return [
        lifecycle.Event(u.kind, u.name, u.uid, "Warning", "Unreadable", u.describe())
        for u in unreadable
    ]
