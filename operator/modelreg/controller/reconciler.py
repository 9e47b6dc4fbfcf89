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
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from modelreg.adapters import kube as k8s
from modelreg.api.models import Model, ModelVersion, Phase
from modelreg.controller import metrics
from modelreg.controller.verifier import Verifier
from modelreg.lifecycle import builders
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


@dataclass
class _Slot:
    dirty: bool = False
    running: bool = False
    failures: int = 0
    retry: asyncio.TimerHandle | None = None


@dataclass
class _Written:
    """A status we wrote whose watch event has not reached the cache yet."""

    before: str  # resourceVersion the cache still shows
    body: bytes  # compact()ed


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
        }
        for e in body.get("endpoints") or []
    ]
    slim = {"metadata": {"labels": {lifecycle.SERVICE_NAME_LABEL: name}}, "endpoints": endpoints}
    return json.dumps(slim, separators=(",", ":")).encode()


def expand(packed: bytes) -> Body:
    body: Body = json.loads(packed)
    return body


async def _all(calls: list[Coroutine[Any, Any, Any]]) -> None:
    """Await every call concurrently; when any fails, raise the first failure after all ended."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Reconciler:
    kube: k8s.Kube
    settings: OperatorSettings
    caches: Caches | None = None
    _slots: dict[ModelKey, _Slot] = field(default_factory=dict)
    _written: dict[str, _Written] = field(default_factory=dict)
    _rolling_since: dict[str, float] = field(default_factory=dict)
    _phases: dict[ModelKey, dict[str, str]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    verifier: Verifier | None = None
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

    async def close(self) -> None:
        for slot in self._slots.values():
            if slot.retry is not None:
                slot.retry.cancel()
        if self.verifier is not None:
            await self.verifier.close()
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

    def _known(self, key: ModelKey) -> bool:
        assert self.caches is not None
        return bool(self.caches.models.get(key)) or bool(self.caches.versions.get(key))

    # -- one pass --------------------------------------------------------------------------------

    def _fresh(self, packed: bytes) -> Body:
        """The cached body, or the newer one we wrote if its watch event has not arrived yet."""
        body = expand(packed)
        uid = body.get("metadata", {}).get("uid", "")
        written = self._written.get(uid)
        if written is None:
            return body
        if body.get("metadata", {}).get("resourceVersion") == written.before:
            return expand(written.body)
        del self._written[uid]
        return body

    async def reconcile(self, key: ModelKey) -> None:
        assert self.caches is not None
        assert self.verifier is not None
        namespace, model_name = key
        model = self._parse_model([self._fresh(b) for b in self.caches.models.get(key) or []])
        versions = self._parse_versions(
            [self._fresh(b) for b in self.caches.versions.get(key) or []]
        )
        deployments = [
            lifecycle.deployment_state(expand(b)) for b in self.caches.deployments.get(key) or []
        ]
        services = [expand(b) for b in self.caches.services.get(key) or []]
        service = None
        if services:
            slices = [expand(b) for b in self.caches.endpoints.get(key) or []]
            service = lifecycle.service_state(services[0], slices)

        verdicts = {mv.metadata.name: self.verifier.verdict(model, mv) for mv in versions}
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
        )
        await self._apply(namespace, model, versions, result)
        self._count_phases(key, versions, result)

    def _parse_model(self, bodies: list[Body]) -> Model | None:
        for body in bodies:
            if body.get("metadata", {}).get("deletionTimestamp"):
                continue
            try:
                return Model.model_validate(body)
            except ValidationError as e:
                log.error("Model %s is unreadable: %s", body.get("metadata", {}).get("name"), e)
        return None

    def _parse_versions(self, bodies: list[Body]) -> list[ModelVersion]:
        out = []
        for body in bodies:
            try:
                out.append(ModelVersion.model_validate(body))
            except ValidationError as e:
                log.error(
                    "ModelVersion %s is unreadable: %s", body.get("metadata", {}).get("name"), e
                )
        return out

    async def _apply(
        self,
        namespace: str,
        model: Model | None,
        versions: list[ModelVersion],
        result: lifecycle.Plan,
    ) -> None:
        kube = self.kube
        # Blue/green order: the new Deployment first, then the Service switch, then the statuses
        # that report it, and only then the removal of what no longer serves.
        for body in result.apply_deployments:
            log.info("applying Deployment %s/%s", namespace, body["metadata"]["name"])
            await kube.call(kube.apply_deployment, namespace, body)
        if result.apply_service is not None:
            log.info(
                "Service %s/%s -> version %s",
                namespace,
                result.apply_service["metadata"]["name"],
                result.serving_version,
            )
            await kube.call(kube.apply_service, namespace, result.apply_service)
        # Statuses are independent of each other: written concurrently, as are the removals.
        by_name = {mv.metadata.name: mv for mv in versions}
        writes = []
        for name, status in result.version_status.items():
            mv = by_name[name]
            self._track_promotion(mv, status.phase)
            writes.append(
                self._write_status(
                    "modelversions",
                    mv.metadata.name,
                    namespace,
                    mv.metadata.uid,
                    mv.metadata.resource_version,
                    mv.status.wire(),
                    status.wire(),
                )
            )
        if model is not None and result.model_status is not None:
            writes.append(
                self._write_status(
                    "models",
                    model.metadata.name,
                    namespace,
                    model.metadata.uid,
                    model.metadata.resource_version,
                    model.status.wire(),
                    result.model_status.wire(),
                )
            )
        await _all(writes)
        removals = []
        if result.delete_service is not None:
            log.info("deleting Service %s/%s: no version serves", namespace, result.delete_service)
            removals.append(kube.call(kube.delete_service, namespace, result.delete_service))
        for name in result.delete_deployments:
            log.info("deleting Deployment %s/%s", namespace, name)
            removals.append(kube.call(kube.delete_deployment, namespace, name))
        await _all(removals)
        await _all([self._post(namespace, event) for event in result.events])

    async def _write_status(
        self, plural: str, name: str, namespace: str, uid: str, rv: str, old: Body, new: Body
    ) -> None:
        patch = merge_patch(old, new)
        if not patch:
            return
        try:
            body = await self.kube.call(self.kube.patch_status, plural, namespace, name, patch)
        except k8s.NotFound:
            return  # deleted meanwhile: its DELETED event will reconcile again
        self._written[uid] = _Written(before=rv, body=compact(body))

    async def _post(self, namespace: str, event: lifecycle.Event) -> None:
        stamp = _now()
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
        try:
            await self.kube.call(self.kube.create_event, namespace, body)
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

    def forget(self, namespace: str, name: str) -> None:
        if self.verifier is not None:
            self.verifier.forget(namespace, name)
