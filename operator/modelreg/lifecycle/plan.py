"""The registry's rules for one Model: who may hold which stage, who serves, what to change. Pure.

`plan()` is called by the controller's reconciler with everything it knows about one Model (the
Model, its versions, their artifact verdicts, the serving Deployments and the stable Service) and
returns the full desired state: each version's status, the Model's status, the children to apply or
delete, and the Events to post. It performs no I/O and reads no clock (`now` is passed in), so
every rule of DESIGN.md is tested table by table in tests/unit without a cluster.

The rules, in brief: a version enters Staging or Production only with a verified artifact and every
gate passed (else Blocked); the highest eligible version asking for Production is the candidate;
its Deployment comes up beside the serving one and the Service switches only when it is Available;
a rollout that misses its progress deadline is Failed for that generation and the old version keeps
serving; anything else asking for Production is Superseded. The Deployment that served before a
switch is removed only once the Service's ready endpoints are all the new version's pods, so no
request is sent to a pod that is going away.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from modelreg.api.models import (
    ArtifactStatus,
    Condition,
    HistoryEntry,
    Model,
    ModelStatus,
    ModelVersion,
    ModelVersionStatus,
    Phase,
    ServingStatus,
    Stage,
)
from modelreg.lifecycle import builders, conditions, gates, naming

Body = dict[str, Any]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # set by the EndpointSlice controller


class Verdict(enum.StrEnum):
    """What is known about a version's artifact."""

    PENDING = "Pending"  # not checked yet (a check is being scheduled)
    VERIFYING = "Verifying"  # a check is running
    VERIFIED = "Verified"
    FAILED = "Failed"  # definitely bad: missing, mismatch, outside the prefix, no credentials...
    UNKNOWN = "Unknown"  # the store could not be asked (unreachable): retried with backoff
    SKIPPED = "Skipped"  # not needed (Archived)


@dataclass(frozen=True)
class ArtifactVerdict:
    verdict: Verdict
    reason: str = ""
    message: str = ""
    status: ArtifactStatus | None = None  # what to record in status.artifact


@dataclass(frozen=True)
class DeploymentState:
    name: str
    version: int
    available: bool
    deadline_exceeded: bool
    ready_replicas: int
    spec_hash: str
    deleting: bool = False


@dataclass(frozen=True)
class ServiceState:
    version: int | None
    spec_hash: str
    # Names of the pods behind the Service's ready endpoints (its EndpointSlices).
    ready_pods: frozenset[str] = frozenset()


def ready_endpoint_pods(slices: list[Body]) -> frozenset[str]:
    """The pods behind the ready endpoints of a Service's EndpointSlices."""
    pods: set[str] = set()
    for s in slices:
        for ep in s.get("endpoints") or []:
            ref = ep.get("targetRef") or {}
            ready = (ep.get("conditions") or {}).get("ready")
            if ref.get("kind") == "Pod" and ref.get("name") and ready is not False:
                pods.add(str(ref["name"]))
    return frozenset(pods)


def endpoints_moved(service: ServiceState | None, deployment: str) -> bool:
    """Does the Service route only to the pods of `deployment` (and to at least one)?"""
    if service is None or not service.ready_pods:
        return False
    return all(p.startswith(deployment + "-") for p in service.ready_pods)


@dataclass(frozen=True)
class Event:
    kind: str  # Model | ModelVersion
    name: str
    uid: str
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Plan:
    version_status: dict[str, ModelVersionStatus] = field(default_factory=dict)
    model_status: ModelStatus | None = None
    apply_deployments: list[Body] = field(default_factory=list)
    delete_deployments: list[str] = field(default_factory=list)
    apply_service: Body | None = None
    delete_service: str | None = None
    events: list[Event] = field(default_factory=list)
    # The version the Service points at once this plan is applied (None: no Service).
    serving_version: int | None = None


def deployment_state(body: Body) -> DeploymentState:
    """Read what matters of a Deployment: is it Available, or has it missed its deadline?"""
    meta = body.get("metadata", {})
    spec = body.get("spec", {})
    status = body.get("status", {}) or {}
    conds = {c.get("type"): c for c in status.get("conditions", []) or []}
    want = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    observed = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    available_n = int(status.get("availableReplicas") or 0)
    available = (
        observed
        and conds.get("Available", {}).get("status") == "True"
        and updated >= want
        and available_n >= want
    )
    progressing = conds.get("Progressing", {})
    exceeded = (
        progressing.get("status") == "False"
        and progressing.get("reason") == "ProgressDeadlineExceeded"
    )
    labels = meta.get("labels", {}) or {}
    return DeploymentState(
        name=meta.get("name", ""),
        version=int(labels.get(naming.VERSION_LABEL, "0") or 0),
        available=bool(available),
        deadline_exceeded=bool(exceeded) and not available,
        ready_replicas=int(status.get("readyReplicas") or 0),
        spec_hash=(meta.get("annotations", {}) or {}).get(naming.SPEC_HASH, ""),
        deleting=bool(meta.get("deletionTimestamp")),
    )


def service_state(body: Body, slices: list[Body] | None = None) -> ServiceState:
    """The Service's selected version, and its ready endpoints from the EndpointSlices named for it."""
    selector = body.get("spec", {}).get("selector", {}) or {}
    raw = selector.get(naming.VERSION_LABEL)
    name = body.get("metadata", {}).get("name")
    own = [
        s
        for s in slices or []
        if ((s.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL) == name
    ]
    return ServiceState(
        version=int(raw) if raw and str(raw).isdigit() else None,
        spec_hash=(body.get("metadata", {}).get("annotations", {}) or {}).get(naming.SPEC_HASH, ""),
        ready_pods=ready_endpoint_pods(own),
    )


@dataclass
class _Version:
    mv: ModelVersion
    art: ArtifactVerdict
    gate_results: list[Any]
    gates_ok: bool

    @property
    def n(self) -> int:
        return self.mv.spec.version

    @property
    def eligible(self) -> bool:
        return self.art.verdict is Verdict.VERIFIED and self.gates_ok

    @property
    def failed_now(self) -> bool:
        return self.mv.status.failed_generation == self.mv.metadata.generation


def _gate_message(v: _Version) -> str:
    return gates.summary(v.gate_results)


def plan(
    *,
    namespace: str,
    model_name: str,
    model: Model | None,
    versions: list[ModelVersion],
    artifacts: dict[str, ArtifactVerdict],
    deployments: list[DeploymentState],
    service: ServiceState | None,
    defaults: builders.ServingDefaults,
    now: str,
    history_limit: int = 20,
    cluster_domain: str = "svc",
) -> Plan:
    out = Plan()
    live = [mv for mv in versions if not mv.metadata.deletion_timestamp]
    gate_rules = model.spec.promotion.gates if model else []
    views: dict[str, _Version] = {}
    for mv in live:
        results = gates.evaluate(gate_rules, mv.spec.metrics)
        views[mv.metadata.name] = _Version(
            mv=mv,
            art=artifacts.get(mv.metadata.name, ArtifactVerdict(Verdict.PENDING)),
            gate_results=results,
            gates_ok=all(r.passed for r in results),
        )
    deps = {d.version: d for d in deployments if not d.deleting}

    # Who serves now: the Service's selector, if that version's Deployment is still there.
    current = service.version if service else None
    if current is not None and (current not in deps or model is None):
        current = None

    # Who should serve: the highest eligible version asking for Production. Gates are checked on
    # entering Production: the version already serving keeps its place if the gates change later.
    def may_serve(v: _Version) -> bool:
        # A re-check of the serving artifact (or a store outage) does not withdraw it; only a
        # definite failure does.
        return v.eligible or (v.n == current and v.art.verdict is not Verdict.FAILED)

    wanting = sorted(
        (v for v in views.values() if v.mv.spec.stage is Stage.PRODUCTION and may_serve(v)),
        key=lambda v: v.n,
        reverse=True,
    )
    candidates = [v for v in wanting if not v.failed_now]
    candidate = candidates[0] if candidates and model is not None else None

    failed_now: dict[int, str] = {}
    serving = current
    if candidate is not None:
        body = builders.build_deployment(model, candidate.mv, defaults)  # type: ignore[arg-type]
        dep = deps.get(candidate.n)
        if dep is None or dep.spec_hash != body["metadata"]["annotations"][naming.SPEC_HASH]:
            out.apply_deployments.append(body)
        if candidate.n == current:
            serving = current
        elif (
            dep is not None
            and dep.available
            and dep.spec_hash == body["metadata"]["annotations"][naming.SPEC_HASH]
        ):
            serving = candidate.n  # blue/green: switch now that the new Deployment is Available
        elif dep is not None and dep.deadline_exceeded:
            deadline = model.spec.serving.progress_deadline_seconds  # type: ignore[union-attr]
            failed_now[candidate.n] = (
                f"the Deployment {dep.name} did not become Available within "
                f"progressDeadlineSeconds={deadline} ({dep.ready_replicas} ready)"
                + (f"; version {current} keeps serving" if current is not None else "")
            )
            out.apply_deployments = [b for b in out.apply_deployments if b is not body]
            out.delete_deployments.append(dep.name)
    elif current is not None:
        serving = None  # nothing eligible is left: production is withdrawn

    out.serving_version = serving
    # Children that no longer serve a purpose: anything but the serving one and the rollout.
    keep = {serving} | (
        {candidate.n} if candidate is not None and candidate.n not in failed_now else set()
    )
    # Until the Service's endpoints are all the serving version's pods, an Available Deployment of
    # another version may still receive requests (the switch happens in this pass or kube-proxy has
    # not caught up): it stays, and the EndpointSlice update brings the next pass.
    drained = serving is None or (
        serving == current and serving in deps and endpoints_moved(service, deps[serving].name)
    )
    for n, dep in deps.items():
        if n in keep or dep.name in out.delete_deployments:
            continue
        if not drained and dep.available:
            continue
        out.delete_deployments.append(dep.name)

    # Who the statuses say serves: the version the Service's endpoints lead to. Right after a switch
    # (or the Service's creation) kube-proxy still sends requests to the old pods (or refuses them),
    # so the new version is Serving only once the endpoints are all its pods; until then the
    # version that served keeps that status, and `promote --wait` returns when traffic has moved.
    shown = serving
    if serving is not None and not drained:
        holders = [
            v.n for v in views.values() if v.mv.status.phase is Phase.SERVING and v.n in deps
        ]
        shown = serving if serving in holders else max(holders, default=None)

    if model is not None and serving is not None:
        svc = builders.build_service(model, serving)
        if service is None or service.spec_hash != svc["metadata"]["annotations"][naming.SPEC_HASH]:
            out.apply_service = svc
    elif service is not None:
        out.delete_service = naming.service_name(model_name)

    for v in views.values():
        status, events = _version_status(
            v,
            model=model,
            serving=shown,
            switching=v.n == serving and serving != shown,
            candidate=candidate.n if candidate else None,
            failed_message=failed_now.get(v.n),
            deployment=deps.get(v.n),
            namespace=namespace,
            now=now,
            history_limit=history_limit,
            cluster_domain=cluster_domain,
        )
        if status is not None:
            out.version_status[v.mv.metadata.name] = status
        out.events.extend(events)

    if model is not None:
        out.model_status, model_events = _model_status(
            model, list(views.values()), shown, candidate, namespace, now, cluster_domain
        )
        out.events.extend(model_events)
    return out


def _version_status(
    v: _Version,
    *,
    model: Model | None,
    serving: int | None,
    switching: bool,
    candidate: int | None,
    failed_message: str | None,
    deployment: DeploymentState | None,
    namespace: str,
    now: str,
    history_limit: int,
    cluster_domain: str,
) -> tuple[ModelVersionStatus | None, list[Event]]:
    mv = v.mv
    old = mv.status
    gen = mv.metadata.generation
    desired = mv.spec.stage
    prev_stage = old.stage if old.stage is not None else Stage.NONE
    resting = prev_stage if prev_stage is not Stage.PRODUCTION else Stage.NONE
    failed_generation = old.failed_generation
    serving_status: ServingStatus | None = None
    art = v.art

    if failed_message is not None:
        failed_generation = gen
    failed = failed_generation == gen and desired is Stage.PRODUCTION

    # (stage, phase, Ready?, reason, message) — the verdict for this version.
    if v.n == serving:
        stage, phase, ready = Stage.PRODUCTION, Phase.SERVING, desired is Stage.PRODUCTION
        reason = "Serving" if ready else "HandingOver"
        message = f"serving production traffic through Service {naming.service_name(mv.spec.model)}"
        if not ready:
            message += (
                f"; keeps serving until version {candidate} is Available" if candidate else ""
            )
    elif model is None:
        stage = Stage.ARCHIVED if desired is Stage.ARCHIVED else Stage.NONE
        phase = Phase.ARCHIVED if desired is Stage.ARCHIVED else Phase.BLOCKED
        ready = desired is Stage.ARCHIVED
        reason = "Archived" if ready else "ModelNotFound"
        message = f"Model {mv.spec.model!r} does not exist in namespace {namespace}"
    elif desired is Stage.ARCHIVED:
        stage, phase, ready, reason, message = (
            Stage.ARCHIVED,
            Phase.ARCHIVED,
            True,
            "Archived",
            "archived: not served",
        )
    elif art.verdict is Verdict.FAILED:
        stage, phase, ready = resting, Phase.BLOCKED, False
        reason, message = art.reason, art.message
    elif art.verdict in (Verdict.PENDING, Verdict.VERIFYING, Verdict.UNKNOWN):
        stage, phase, ready = resting, Phase.VERIFYING, False
        reason = art.reason or "Verifying"
        message = art.message or "verifying the artifact's sha256 in the object store"
        if art.verdict is Verdict.PENDING and not art.reason:
            phase = Phase.PENDING
    elif desired is Stage.NONE:
        stage, phase, ready, reason, message = (
            Stage.NONE,
            Phase.READY,
            True,
            "Registered",
            "artifact verified",
        )
    elif not v.gates_ok:
        stage, phase, ready = resting, Phase.BLOCKED, False
        reason, message = "GatesFailed", f"cannot enter {desired}: {_gate_message(v)}"
    elif desired is Stage.STAGING:
        stage, phase, ready, reason, message = (
            Stage.STAGING,
            Phase.READY,
            True,
            "Staged",
            f"in Staging; {_gate_message(v)}",
        )
    elif failed:
        stage, phase, ready = resting, Phase.FAILED, False
        reason = "RolloutFailed"
        message = failed_message or _old_message(old.conditions) or "the rollout failed"
    elif v.n == candidate:
        stage, phase, ready = resting, Phase.ROLLING, False
        reason = "Rolling"
        message = (
            "the Service selects this version; waiting until its endpoints lead only to this "
            "version's ready pods"
            if switching
            else "rolling out the serving Deployment; the Service switches when it is Available"
        )
    else:
        stage, phase, ready = Stage.NONE, Phase.SUPERSEDED, True
        reason = "Superseded"
        message = (
            f"version {candidate} is the highest eligible version asking for Production; "
            "this one is not served"
            if candidate is not None
            else "not served"
        )

    if deployment is not None and phase in (Phase.SERVING, Phase.ROLLING):
        serving_status = ServingStatus(
            deployment=deployment.name,
            service=naming.service_name(mv.spec.model) if v.n == serving else None,
            ready_replicas=deployment.ready_replicas,
            url=naming.endpoint(mv.spec.model, namespace, cluster_domain)
            if v.n == serving
            else None,
        )

    conds = list(old.conditions)
    if art.verdict is not Verdict.SKIPPED:
        art_ok = {Verdict.VERIFIED: True, Verdict.FAILED: False}.get(art.verdict)
        conds = conditions.set_condition(
            conds,
            conditions.ARTIFACT_VERIFIED,
            art_ok,
            art.reason or ("Verified" if art_ok else "Verifying"),
            art.message or ("sha256 matches the object in the store" if art_ok else "verifying"),
            generation=gen,
            now=now,
        )
    conds = conditions.set_condition(
        conds,
        conditions.GATES_PASSED,
        v.gates_ok,
        "GatesPassed" if v.gates_ok else "GatesFailed",
        _gate_message(v),
        generation=gen,
        now=now,
    )
    conds = conditions.set_condition(
        conds,
        conditions.SERVING,
        phase is Phase.SERVING,
        reason
        if phase in (Phase.SERVING, Phase.ROLLING, Phase.FAILED, Phase.SUPERSEDED)
        else "NotServing",
        message
        if phase in (Phase.SERVING, Phase.ROLLING, Phase.FAILED, Phase.SUPERSEDED)
        else f"desired stage is {desired}",
        generation=gen,
        now=now,
    )
    conds = conditions.set_condition(
        conds, conditions.READY, ready, reason, message, generation=gen, now=now
    )

    history = list(old.history)
    events: list[Event] = []
    if old.phase != phase or old.stage != stage:
        history.append(HistoryEntry(stage=stage, phase=phase, at=now, reason=message[:1000]))
        history = history[-history_limit:]
        warn = phase in (Phase.BLOCKED, Phase.FAILED, Phase.SUPERSEDED)
        events.append(
            Event(
                "ModelVersion",
                mv.metadata.name,
                mv.metadata.uid,
                "Warning" if warn else "Normal",
                reason or phase.value,
                f"{phase.value}: {message}",
            )
        )

    status = ModelVersionStatus(
        observed_generation=gen,
        stage=stage,
        phase=phase,
        artifact=art.status if art.status is not None else old.artifact,
        gates=v.gate_results,
        serving=serving_status,
        failed_generation=failed_generation,
        history=history,
        conditions=conds,
    )
    if status.wire() == old.wire():
        return None, events
    return status, events


def _old_message(conds: list[Condition]) -> str:
    ready = conditions.get_condition(conds, conditions.READY)
    return ready.message if ready is not None and ready.reason == "RolloutFailed" else ""


def _model_status(
    model: Model,
    views: list[_Version],
    serving: int | None,
    candidate: _Version | None,
    namespace: str,
    now: str,
    cluster_domain: str,
) -> tuple[ModelStatus | None, list[Event]]:
    old = model.status
    asked = [v for v in views if v.mv.spec.stage is Stage.PRODUCTION]
    if serving is not None and (candidate is None or candidate.n == serving):
        ready, reason, message = True, "Serving", f"version {serving} serves production"
    elif serving is not None and candidate is not None:
        ready, reason, message = (
            True,
            "Rolling",
            f"version {serving} serves; version {candidate.n} is rolling out",
        )
    elif candidate is not None:
        ready, reason, message = False, "Rolling", f"version {candidate.n} is rolling out"
    elif asked:
        ready, reason = False, "NoEligibleVersion"
        message = "versions ask for Production but none is eligible: " + ", ".join(
            f"v{v.n}" for v in sorted(asked, key=lambda v: v.n)
        )
    else:
        ready, reason, message = True, "NoProductionVersion", "no version asks for Production"
    conds = conditions.set_condition(
        list(old.conditions),
        conditions.READY,
        ready,
        reason,
        message,
        generation=model.metadata.generation,
        now=now,
    )
    status = ModelStatus(
        observed_generation=model.metadata.generation,
        production_version=serving,
        latest_version=max((v.n for v in views), default=None),
        endpoint=naming.endpoint(model.metadata.name, namespace, cluster_domain)
        if serving is not None
        else None,
        conditions=conds,
    )
    events: list[Event] = []
    if old.production_version != serving:
        events.append(
            Event(
                "Model",
                model.metadata.name,
                model.metadata.uid,
                "Normal",
                "ProductionChanged",
                f"production version: {old.production_version} -> {serving}",
            )
        )
    if status.wire() == old.wire():
        return None, events
    return status, events
