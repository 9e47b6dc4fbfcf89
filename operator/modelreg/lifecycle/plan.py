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
from datetime import datetime, timedelta
from typing import Any

from modelreg.api.models import (
    API_VERSION,
    FINDINGS_MAX,
    GROUP,
    ArtifactStatus,
    AuditGate,
    AuditStatus,
    CanaryStatus,
    Condition,
    Finding,
    HistoryEntry,
    MirrorStatus,
    Model,
    ModelStatus,
    ModelVersion,
    ModelVersionStatus,
    Phase,
    PinnedImage,
    ServingStatus,
    ShadowStatus,
    Stage,
    Strategy,
)
from modelreg.lifecycle import (
    advisories,
    aliases,
    builders,
    canary,
    conditions,
    gates,
    naming,
    retention,
    shadow,
    stamps,
)

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


class AuditState(enum.StrEnum):
    """What is known about the advisory database a version is audited against."""

    OFF = "Off"  # no database configured (neither the Model's spec.advisories nor the operator's)
    SKIPPED = "Skipped"  # not audited (Archived): status.audit stays as it was
    PENDING = "Pending"  # the database is being read
    AUDITED = "Audited"  # audited against `database` (findings may be empty)
    UNAVAILABLE = "Unavailable"  # the database cannot be read or parsed: retried with backoff


@dataclass(frozen=True)
class AuditVerdict:
    state: AuditState = AuditState.OFF
    database: str = ""  # the URI or path, as status shows it
    sha256: str | None = None
    advisories: int | None = None
    packages: int = 0
    findings: tuple[Finding, ...] = ()  # all of them, worst first
    total: int = 0
    message: str = ""  # why it is PENDING or UNAVAILABLE


@dataclass(frozen=True)
class Owner:
    """An object's controller owner reference."""

    api_version: str
    kind: str
    name: str
    uid: str

    def describe(self) -> str:
        return f"{self.kind} {self.name} ({self.api_version})"


OWNED = Owner(API_VERSION, "Model", "", "")  # "owned by the Model being planned" (tests, builders)


@dataclass(frozen=True)
class DeploymentState:
    name: str
    version: int
    available: bool
    deadline_exceeded: bool
    ready_replicas: int
    spec_hash: str
    deleting: bool = False
    replicas: int = 1
    uid: str = ""
    owner: Owner | None = OWNED
    role: str = ""  # naming.SHADOW_ROLE for the shadow's Deployment


@dataclass(frozen=True)
class ServiceState:
    version: int | None
    spec_hash: str
    # Names of the pods behind the Service's ready endpoints (its EndpointSlices).
    ready_pods: frozenset[str] = frozenset()
    name: str = ""
    uid: str = ""
    owner: Owner | None = OWNED
    cluster_ip: str = ""


@dataclass(frozen=True)
class AutoscalerState:
    """The Model's HorizontalPodAutoscaler: which Deployment it scales."""

    name: str
    target: str
    spec_hash: str
    uid: str = ""
    owner: Owner | None = OWNED


@dataclass(frozen=True)
class Rejection:
    """The API server (or an admission policy) refused a child write: 422 or 403."""

    spec_hash: str
    message: str


ChildKey = tuple[str, str]  # (kind, name), e.g. ("Service", "fraud")


def controller_owner(meta: Body) -> Owner | None:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            return Owner(
                str(ref.get("apiVersion", "")),
                str(ref.get("kind", "")),
                str(ref.get("name", "")),
                str(ref.get("uid", "")),
            )
    return None


def owned_by(owner: Owner | None, model_name: str, model_uid: str | None) -> bool:
    """Is this the controller reference the operator sets: the Model itself (by uid, when known)?"""
    if owner is None:
        return False
    if owner is OWNED:
        return True
    return (
        owner.api_version.split("/")[0] == GROUP
        and owner.kind == "Model"
        and owner.name == model_name
        and (not model_uid or owner.uid == model_uid)
    )


def legacy_owner(owner: Owner | None, model_name: str, version: int) -> bool:
    """Operators before 0.2 made each Deployment's ModelVersion its controller. Such a Deployment
    is still the operator's own; the reconciler hands it to the Model before anything else."""
    return (
        owner is not None
        and owner.api_version.split("/")[0] == GROUP
        and owner.kind == "ModelVersion"
        and owner.name == f"{model_name}-v{version}"
    )


def foreign_message(
    kind: str, namespace: str, name: str, meta: Body, model_name: str, model_uid: str | None
) -> str | None:
    """Why an existing object named like one of this Model's children is not the operator's to
    touch (None when it is): it lacks the managed-by label, or another object is its controller."""
    labels = meta.get("labels") or {}
    owner = controller_owner(meta)
    if labels.get(naming.MANAGED_BY) != naming.MANAGER:
        return (
            f"{kind} {namespace}/{name} already exists and is not managed by modelreg "
            f"(no label {naming.MANAGED_BY}={naming.MANAGER}): rename or remove it"
        )
    if not owned_by(owner, model_name, model_uid):
        who = owner.describe() if owner else "no controller"
        if owner is not None and owner.kind == "Model" and owner.name == model_name:
            who = f"an earlier Model {model_name} (uid {owner.uid}), which is being deleted"
        return f"{kind} {namespace}/{name} already exists and is controlled by {who}"
    return None


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


def _drained(service: ServiceState | None, dep: DeploymentState, version: int) -> bool:
    """Has traffic left every other version for `dep`'s? Its pods are all the Service's ready
    endpoints; or, scaled to zero (spec.serving.replicas: 0), the Service selects it and routes
    to no pod at all: there is none to move to, and a Model parked at zero serves as that."""
    if endpoints_moved(service, dep.name):
        return True
    return (
        dep.replicas == 0
        and dep.available
        and service is not None
        and service.version == version
        and not service.ready_pods
    )


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
    # spec.shadow: the shadow's Service (its Deployment is in apply/delete_deployments).
    apply_shadow_service: Body | None = None
    delete_shadow_service: str | None = None
    # spec.serving.autoscaling: the HorizontalPodAutoscaler, written after the Service switch.
    apply_autoscaler: Body | None = None
    delete_autoscaler: str | None = None
    delete_autoscaler_uid: str = ""  # its uid precondition (it shares the Service's name)
    events: list[Event] = field(default_factory=list)
    # The version the Service points at once this plan is applied (None: no Service).
    serving_version: int | None = None
    # uid preconditions of the deletions: only the very objects that were planned on.
    delete_uids: dict[str, str] = field(default_factory=dict)
    # Objects named like children that are not ours: reported, never touched.
    conflicts: dict[ChildKey, str] = field(default_factory=dict)
    # Deployments of an older operator (controlled by their ModelVersion) to hand to the Model.
    adopt: dict[str, str] = field(default_factory=dict)
    # Plan again after this many seconds even if nothing changes (a grace period ends).
    wake_after: float | None = None
    # Versions (and artifacts) the Model's spec.retention deletes.
    delete_versions: list[retention.Deletion] = field(default_factory=list)


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
    total = int(status.get("replicas") or 0)
    # Complete, as `kubectl rollout status` has it: every replica runs the current template and
    # no pod of an older one is left (during an update the old pods keep it Available).
    available = (
        observed
        and conds.get("Available", {}).get("status") == "True"
        and updated >= want
        and available_n >= want
        and total <= want
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
        replicas=want,
        uid=str(meta.get("uid", "")),
        owner=controller_owner(meta),
        role=str(labels.get(naming.ROLE_LABEL, "")),
    )


def autoscaler_state(body: Body) -> AutoscalerState:
    meta = body.get("metadata", {}) or {}
    target = (body.get("spec", {}) or {}).get("scaleTargetRef", {}) or {}
    return AutoscalerState(
        name=str(meta.get("name", "")),
        target=str(target.get("name", "")),
        spec_hash=(meta.get("annotations", {}) or {}).get(naming.SPEC_HASH, ""),
        uid=str(meta.get("uid", "")),
        owner=controller_owner(meta),
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
        name=str(name or ""),
        uid=str(body.get("metadata", {}).get("uid", "")),
        owner=controller_owner(body.get("metadata", {})),
        cluster_ip=_cluster_ip(body),
    )


def _cluster_ip(body: Body) -> str:
    ip = str((body.get("spec") or {}).get("clusterIP") or "")
    return "" if ip.lower() == "none" else ip


@dataclass
class _Version:
    mv: ModelVersion
    art: ArtifactVerdict
    gate_results: list[Any]
    gates_ok: bool
    audit: AuditVerdict = AuditVerdict()
    findings: list[Finding] = field(default_factory=list)  # the audit's, allow list applied
    # (reason, message) when the audit gate keeps it out of Staging and Production
    audit_block: tuple[str, str] | None = None
    shadow_block: str | None = None  # why spec.promotion.shadow keeps it out of Production
    body: Body | None = None  # the Deployment it would run (versions asking for Production)
    # The spec hash of the attempt (its Deployment at its full count): a canary step's count
    # changes `body`, not the attempt a failure is recorded against.
    attempt: str = ""

    @property
    def n(self) -> int:
        return self.mv.spec.version

    @property
    def eligible(self) -> bool:
        return (
            self.art.verdict is Verdict.VERIFIED
            and self.gates_ok
            and self.audit_block is None
            and self.shadow_block is None
        )

    @property
    def spec_hash(self) -> str:
        return self.body["metadata"]["annotations"][naming.SPEC_HASH] if self.body else ""

    @property
    def failed_now(self) -> bool:
        """Did the rollout of this very generation and serving spec fail? A new generation of the
        version, or a fixed Model (another spec hash), is a new attempt."""
        st = self.mv.status
        return st.failed_generation == self.mv.metadata.generation and (
            st.failed_spec_hash is None or st.failed_spec_hash == (self.attempt or self.spec_hash)
        )


def _gate_message(v: _Version) -> str:
    return gates.summary(v.gate_results)


def _audit_block(
    gate: AuditGate | None, mv: ModelVersion, verdict: AuditVerdict, findings: list[Finding]
) -> tuple[str, str] | None:
    """Why the audit gate keeps a version out of Staging and Production, or None. Fail closed: a
    version that cannot be audited (no database, no packages, a database that cannot be read) is
    not let through; "Auditing" only while the database is being read."""
    if gate is None or verdict.state is AuditState.SKIPPED:
        return None
    if verdict.state is AuditState.OFF:
        return (
            conditions.AUDIT_NOT_CONFIGURED,
            "promotion.audit is set but there is no advisory database: set the Model's "
            "spec.advisories.uri, or the operator's advisoryDatabase",
        )
    env = mv.spec.environment
    if env is None or not env.packages:
        return (
            conditions.NO_ENVIRONMENT,
            "promotion.audit needs spec.environment.packages to audit: register the version "
            "with --requirements FILE or --capture-env",
        )
    if verdict.state is AuditState.PENDING:
        return (
            conditions.AUDITING,
            verdict.message or f"reading the advisory database {verdict.database}",
        )
    if verdict.state is AuditState.UNAVAILABLE:
        return conditions.ADVISORIES_UNAVAILABLE, verdict.message
    problem = advisories.gate_problem(gate, findings)
    return (conditions.VULNERABLE, problem) if problem is not None else None


def _audit_status(
    old: AuditStatus | None, v: _Version, now: str
) -> tuple[AuditStatus | None, tuple[bool | None, str, str] | None]:
    """status.audit and the Audited condition (status, reason, message) of a version."""
    a = v.audit
    if a.state is AuditState.SKIPPED:
        return old, None
    if a.state is AuditState.OFF:
        return None, None
    if a.state is not AuditState.AUDITED:
        if a.state is AuditState.PENDING:
            return old, (None, conditions.AUDITING, a.message)
        return old, (False, conditions.ADVISORIES_UNAVAILABLE, a.message)
    env = v.mv.spec.environment
    if env is None or not env.packages:
        return None, (
            None,
            conditions.NO_ENVIRONMENT,
            "spec.environment.packages is empty: nothing to audit",
        )
    new = AuditStatus(
        database=a.database,
        database_sha256=a.sha256,
        advisories=a.advisories,
        audited_at=now,
        packages=a.packages,
        findings=v.findings[:FINDINGS_MAX],  # worst first; the gate read them all
        findings_total=a.total,
    )
    if old is not None and old.model_copy(update={"audited_at": now}) == new:
        new = old  # the same verdict: keep the time it was first reached
    gating = [f for f in v.findings if not f.allowed]
    if not a.total:
        return new, (
            True,
            "NoKnownVulnerabilities",
            f"{a.packages} packages audited against {a.advisories} advisories in {a.database}: "
            "no known vulnerability",
        )
    worst = ", ".join(f"{f.id} {f.package} {f.version} {f.severity.value}" for f in v.findings[:3])
    allowed = f" ({a.total - len(gating)} allowed)" if len(gating) < a.total else ""
    return new, (
        False,
        "VulnerabilitiesFound",
        f"{a.total} known vulnerabilities{allowed} in {a.packages} packages: {worst}"
        + (", ..." if a.total > 3 else ""),
    )


def _pinned(model: Model, mv: ModelVersion) -> str | None:
    pin = mv.status.default_image
    return pin.image if pin is not None and pin.runtime is model.spec.serving.runtime else None


@dataclass
class _Verdicts:
    """What stops a version from serving besides its artifact and gates (per version number)."""

    failed: dict[int, str] = field(default_factory=dict)  # rollout missed its deadline, now
    invalid: dict[int, str] = field(default_factory=dict)  # the API server refused its Deployment
    conflict: dict[int, str] = field(default_factory=dict)  # its name is taken by another object
    update_failed: str | None = None  # the serving version's in-place update missed its deadline
    unavailable: bool = False  # the serving version has no ready pod
    handover: str | None = None  # why a version that no longer asks for Production still serves
    handover_pending: str | None = None  # the same, while its successor is still being verified
    withdraw_at: str | None = None  # nobody asks for Production: it is withdrawn at this time
    canary: CanaryStatus | None = None  # a canary rollout under way (the Model's status.canary)


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
    conflicts: dict[ChildKey, str] | None = None,
    rejected: dict[str, Rejection] | None = None,
    withdraw_grace_seconds: float = 0.0,
    audits: dict[str, AuditVerdict] | None = None,
    autoscaler: AutoscalerState | None = None,
    measured: canary.Measured | None = None,
    shadow_service: ServiceState | None = None,
    shadow_measured: shadow.Measured | None = None,
) -> Plan:
    """Everything the reconciler does for one Model, from what it sees.

    `withdraw_grace_seconds`: when no version asks for Production any more, the serving one keeps
    serving this long before production is withdrawn. Git and `kubectl apply -f dir/` write the
    objects of one change one by one (v2 archived, then v3 promoted; v1 pruned, then v2 added), and
    the moment between two writes must not take production down.
    """
    out = Plan()
    rejected = rejected or {}
    model_uid = model.metadata.uid if model is not None else None
    live = [mv for mv in versions if not mv.metadata.deletion_timestamp]
    gate_rules = model.spec.promotion.gates if model else []
    audit_gate = model.spec.promotion.audit if model else None
    views: dict[str, _Version] = {}
    for mv in live:
        results = gates.evaluate(gate_rules, mv.spec.metrics)
        verdict = (audits or {}).get(mv.metadata.name, AuditVerdict())
        findings = advisories.mark_allowed(audit_gate, list(verdict.findings))
        views[mv.metadata.name] = _Version(
            mv=mv,
            art=artifacts.get(mv.metadata.name, ArtifactVerdict(Verdict.PENDING)),
            gate_results=results,
            gates_ok=all(r.passed for r in results),
            audit=verdict,
            findings=findings,
            audit_block=_audit_block(audit_gate, mv, verdict, findings),
        )

    # Only what the operator created is planned on: labelled objects controlled by another owner,
    # and unlabelled objects found where a child must go (`conflicts`), are never touched.
    out.conflicts = dict(conflicts or {})
    deps: dict[int, DeploymentState] = {}
    shadow_dep: DeploymentState | None = None
    for d in deployments:
        if d.deleting:
            continue
        if d.role == naming.SHADOW_ROLE and owned_by(d.owner, model_name, model_uid):
            shadow_dep = d
        elif owned_by(d.owner, model_name, model_uid):
            deps[d.version] = d
        elif legacy_owner(d.owner, model_name, d.version) and model is not None:
            deps[d.version] = d
            out.adopt[d.name] = d.uid
        else:
            who = d.owner.describe() if d.owner else "no controller"
            out.conflicts[("Deployment", d.name)] = (
                f"Deployment {namespace}/{d.name} carries modelreg's labels but is controlled "
                f"by {who}, not Model {model_name}"
            )
    if service is not None and not owned_by(service.owner, model_name, model_uid):
        who = service.owner.describe() if service.owner else "no controller"
        out.conflicts[("Service", service.name)] = (
            f"Service {namespace}/{service.name} carries modelreg's labels but is controlled "
            f"by {who}, not Model {model_name}"
        )
        service = None
    if shadow_service is not None and not owned_by(shadow_service.owner, model_name, model_uid):
        who = shadow_service.owner.describe() if shadow_service.owner else "no controller"
        out.conflicts[("Service", shadow_service.name)] = (
            f"Service {namespace}/{shadow_service.name} carries modelreg's labels but is "
            f"controlled by {who}, not Model {model_name}"
        )
        shadow_service = None
    if autoscaler is not None and not owned_by(autoscaler.owner, model_name, model_uid):
        who = autoscaler.owner.describe() if autoscaler.owner else "no controller"
        out.conflicts[("HorizontalPodAutoscaler", autoscaler.name)] = (
            f"HorizontalPodAutoscaler {namespace}/{autoscaler.name} carries modelreg's labels but "
            f"is controlled by {who}, not Model {model_name}"
        )
        autoscaler = None
    service_taken = out.conflicts.get(("Service", naming.service_name(model_name)))
    verdicts = _Verdicts()

    # Who serves now: the Service's selector, if that version's Deployment is still there. The
    # version may have been deleted (Argo CD's prune of v3.yaml when v4.yaml replaces it): its
    # Deployment belongs to the Model and keeps serving until the planner hands over.
    current = service.version if service else None
    if service is not None and current is None:
        # A canary's Service selects every serving pod of the Model: the stable version is the
        # one whose status says Serving (the canary is Rolling until the switch).
        holders = [
            v.n for v in views.values() if v.mv.status.phase is Phase.SERVING and v.n in deps
        ]
        current = max(holders, default=None)
    if current is not None and (current not in deps or model is None):
        current = None

    # spec.shadow: whether its Deployment runs and the serving pods mirror to it (`shadow`), and
    # spec.promotion.shadow: which versions it keeps out of Production.
    decision = shadow.Decision(None, None, None)
    mirror: builders.Mirror | None = None
    if model is not None:
        shadow_gate = model.spec.promotion.shadow
        for v in views.values():
            v.shadow_block = shadow.gate_block(shadow_gate, v.mv, current)
        decision = _shadow_decision(model, views, current, shadow_dep, shadow_service, out)
        if decision.mirror_to is not None and model.spec.shadow is not None:
            assert shadow_service is not None
            mirror = builders.Mirror(
                decision.mirror_to,
                shadow_service.cluster_ip,
                builders.grpc_port(model),
                model.spec.shadow,
            )

    # Who should serve: the highest eligible version asking for Production. Gates are checked on
    # entering Production: the version already serving keeps its place if the gates change later.
    def may_serve(v: _Version) -> bool:
        # A re-check of the serving artifact (or a store outage) does not withdraw it; only a
        # definite failure does.
        return v.eligible or (v.n == current and v.art.verdict is not Verdict.FAILED)

    asking = sorted(
        (v for v in views.values() if v.mv.spec.stage is Stage.PRODUCTION),
        key=lambda v: v.n,
        reverse=True,
    )
    candidate: _Version | None = None
    for v in asking:
        if model is None or not may_serve(v):
            continue
        taken = out.conflicts.get(("Deployment", naming.deployment_name(model_name, v.n)))
        if service_taken or taken:
            verdicts.conflict[v.n] = service_taken or taken or ""
            continue
        auto = model.spec.serving.autoscaling
        # Under autoscaling a Deployment keeps the count the autoscaler gave it, and a new one
        # starts at the serving one's.
        own = deps.get(v.n) or (deps.get(current) if current is not None else None)
        v.body = _deployment(
            model,
            v,
            defaults,
            builders.start_replicas(auto, own.replicas if own is not None else None)
            if auto is not None
            else None,
            mirror=_mirror_for(mirror, v.n),
        )
        refused = rejected.get(v.body["metadata"]["name"])
        if refused is not None and refused.spec_hash == v.spec_hash:
            verdicts.invalid[v.n] = refused.message
            if v.n == current and candidate is None:
                candidate = v  # it keeps serving with the spec its Deployment has
            continue
        if v.failed_now and v.n != current:
            continue
        if candidate is None:
            candidate = v

    serving = current
    shared = False  # the Service selects the stable version's pods and the canary's
    if candidate is not None and candidate.body is not None and model is not None:
        step = _canary_step(model, candidate, current, deps, verdicts, measured, now)
        if step is not None:
            candidate.attempt = candidate.spec_hash
            candidate.body = _deployment(
                model, candidate, defaults, step.replicas, mirror=_mirror_for(mirror, candidate.n)
            )
            shared = not step.switch and step.failed is None
            if step.wake_after is not None:
                out.wake_after = step.wake_after
    if candidate is not None and candidate.body is not None:
        body = candidate.body
        dep = deps.get(candidate.n)
        # During a canary step the count is the step's (under autoscaling the hash leaves it out).
        same = (
            dep is not None
            and dep.spec_hash == candidate.spec_hash
            and (not shared or dep.replicas == body["spec"]["replicas"])
        )
        if not same and candidate.n not in verdicts.invalid:
            out.apply_deployments.append(body)
        if candidate.n == current:
            assert dep is not None
            if same and dep.deadline_exceeded:
                verdicts.update_failed = (
                    f"the Deployment {dep.name} did not become Available with the Model's "
                    "current serving spec within progressDeadlineSeconds="
                    f"{model.spec.serving.progress_deadline_seconds} ({dep.ready_replicas} ready); "  # type: ignore[union-attr]
                    "the previous pods keep serving"
                )
        elif candidate.n in verdicts.failed and dep is not None:
            # The canary's analysis was breached: the stable version takes all traffic again.
            out.apply_deployments = [b for b in out.apply_deployments if b is not body]
            out.delete_deployments.append(dep.name)
        elif dep is not None and dep.deadline_exceeded and (same or shared):
            deadline = model.spec.serving.progress_deadline_seconds  # type: ignore[union-attr]
            verdicts.failed[candidate.n] = (
                f"the Deployment {dep.name} did not become Available within "
                f"progressDeadlineSeconds={deadline} ({dep.ready_replicas} ready)"
                + (f"; version {current} keeps serving" if current is not None else "")
            )
            out.apply_deployments = [b for b in out.apply_deployments if b is not body]
            out.delete_deployments.append(dep.name)
            shared, verdicts.canary = False, None
        elif shared:
            pass  # a canary step: both versions serve through the Service
        elif dep is not None and dep.available and same:
            serving = candidate.n  # blue/green: switch now that the new Deployment is Available
    elif current is not None:
        # No version can take over. A version that served and no longer asks for Production
        # (demoted, or deleted by a GitOps prune) keeps serving while another one asks for it
        # (Blocked, Failed, refused): production is only withdrawn when none does.
        demoted = all(v.n != current for v in asking)
        stuck = [v for v in asking if v.n != current]
        if stuck and demoted and model is not None:
            listed = ", ".join(f"v{v.n} ({_why_not(v, verdicts)})" for v in stuck)
            # A successor whose artifact check is under way (a promotion re-confirms it) is not a
            # stalled hand-over: GitOps tools would read that as Degraded for a few seconds.
            if any(v.art.verdict in (Verdict.PENDING, Verdict.VERIFYING) for v in stuck):
                verdicts.handover_pending = "being verified before it takes over: " + listed
            else:
                verdicts.handover = "version(s) asking for Production cannot take over: " + listed
        elif not asking and model is not None and withdraw_grace_seconds > 0:
            at = _withdraw_at(model.status.withdraw_at, now, withdraw_grace_seconds)
            left = (at - _parse_time(now)).total_seconds()
            if left > 0:
                verdicts.withdraw_at = _format_time(at)
                out.wake_after = left
            else:
                serving = None
        else:
            serving = None

    out.serving_version = serving
    # Children that no longer serve a purpose: anything but the serving one and the rollout.
    keep = {serving} | (
        {candidate.n} if candidate is not None and candidate.n not in verdicts.failed else set()
    )
    # Until the Service's endpoints are all the serving version's pods, an Available Deployment of
    # another version may still receive requests (the switch happens in this pass or kube-proxy has
    # not caught up): it stays, and the EndpointSlice update brings the next pass.
    drained = serving is None or (
        serving == current and serving in deps and _drained(service, deps[serving], serving)
    )
    for n, dep in deps.items():
        if n in keep or dep.name in out.delete_deployments:
            continue
        if not drained and dep.available and not shared:
            # (During a canary the Service selects every pod of the Model: anything but the two
            # versions must go at once, drained by its preStop pause.)
            continue
        out.delete_deployments.append(dep.name)
    for dep in deps.values():
        if dep.name in out.delete_deployments and dep.uid:
            out.delete_uids[dep.name] = dep.uid

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
    if shown is not None and shown in deps:
        d = deps[shown]
        verdicts.unavailable = d.replicas > 0 and d.ready_replicas == 0

    if model is not None and serving is not None and not service_taken:
        svc = builders.build_service(model, None if shared else serving)
        svc_hash = svc["metadata"]["annotations"][naming.SPEC_HASH]
        refused = rejected.get(svc["metadata"]["name"])
        if refused is not None and refused.spec_hash == svc_hash:
            verdicts.invalid[serving] = refused.message
            if serving != current:  # the switch was refused: the version that served goes on
                out.serving_version = serving = current
        elif service is None or service.spec_hash != svc_hash:
            out.apply_service = svc
    elif service is not None and serving is None:
        out.delete_service = service.name or naming.service_name(model_name)
        if service.uid:
            out.delete_uids[out.delete_service] = service.uid
    _plan_autoscaler(out, model, serving, autoscaler)
    _plan_shadow(out, model, views, defaults, decision, shadow_dep, shadow_service)

    record: tuple[int, ShadowStatus] | None = None
    if model is not None and model.spec.shadow is not None and decision.mirror_to is not None:
        n = decision.mirror_to
        sv = next((v for v in views.values() if v.n == n), None)  # None: deleted meanwhile
        assert current is not None
        record = (
            n,
            shadow.record(
                sv.mv.status.shadow if sv is not None else None,
                serving=current,
                sample_percent=model.spec.shadow.sample_percent,
                measured=shadow_measured,
                version=n,
                now=now,
            ),
        )
    for v in views.values():
        status, events = _version_status(
            v,
            model=model,
            shadow_status=record[1] if record is not None and record[0] == v.n else None,
            serving=shown,
            switching=v.n == serving and serving != shown,
            candidate=candidate.n if candidate else None,
            verdicts=verdicts,
            deployment=deps.get(v.n),
            namespace=namespace,
            now=now,
            history_limit=history_limit,
            cluster_domain=cluster_domain,
            defaults=defaults,
        )
        if status is not None:
            out.version_status[v.mv.metadata.name] = status
        out.events.extend(events)

    if model is not None:
        out.model_status, model_events = _model_status(
            model,
            list(views.values()),
            shown,
            candidate,
            verdicts,
            out.conflicts,
            namespace,
            now,
            cluster_domain,
            decision,
            shadow.mirror_status(model, decision, current, now),
        )
        out.events.extend(model_events)
    protected = {
        n for n in (shown, serving, current, candidate.n if candidate else None, decision.run) if n
    }
    out.delete_versions = retention.plan(model, live, protected)
    return out


def _deployment(
    model: Model,
    v: _Version,
    defaults: builders.ServingDefaults,
    replicas: int | None,
    *,
    mirror: builders.Mirror | None = None,
    as_shadow: bool = False,
) -> Body:
    """The Deployment version `v` runs, from what its status and artifact verdict recorded."""
    recorded = v.art.status or v.mv.status.artifact
    return builders.build_deployment(
        model,
        v.mv,
        defaults,
        pinned_default=_pinned(model, v.mv),
        artifact_size=recorded.size_bytes if recorded is not None else None,
        artifact_version_id=recorded.version_id if recorded is not None else None,
        replicas=replicas,
        mirror=mirror,
        shadow=as_shadow,
    )


def _mirror_for(mirror: builders.Mirror | None, version: int) -> builders.Mirror | None:
    """The serving pods of `version` mirror to the shadow, unless they are the shadow's version."""
    return mirror if mirror is not None and mirror.version != version else None


def _shadow_decision(
    model: Model,
    views: dict[str, _Version],
    current: int | None,
    dep: DeploymentState | None,
    svc: ServiceState | None,
    out: Plan,
) -> shadow.Decision:
    name = naming.shadow_name(model.metadata.name)
    taken = out.conflicts.get(("Deployment", name)) or out.conflicts.get(("Service", name))
    if model.spec.shadow is not None and taken:
        return shadow.Decision(None, None, (False, "NameConflict", taken), warn=True)
    problems: dict[int, tuple[str, str]] = {}
    for v in views.values():
        if v.art.verdict is Verdict.FAILED:
            problems[v.n] = (v.art.reason or "ArtifactFailed", v.art.message)
        elif v.art.verdict is not Verdict.VERIFIED:
            problems[v.n] = ("Verifying", "its artifact is being verified")
    return shadow.decide(
        model,
        {v.n: v.mv for v in views.values()},
        problems,
        current,
        shadow.Children(
            deployment_available=None if dep is None else dep.available,
            deployment_version=None if dep is None else dep.version,
            deployment_ready=0 if dep is None else dep.ready_replicas,
            deployment_stuck=dep is not None and dep.deadline_exceeded,
            cluster_ip=svc.cluster_ip if svc is not None and svc.cluster_ip else None,
        ),
    )


def _plan_shadow(
    out: Plan,
    model: Model | None,
    views: dict[str, _Version],
    defaults: builders.ServingDefaults,
    decision: shadow.Decision,
    dep: DeploymentState | None,
    svc: ServiceState | None,
) -> None:
    """The shadow's Deployment and Service: written while it runs, removed when it does not."""
    run = next((v for v in views.values() if v.n == decision.run), None)
    if model is not None and run is not None:
        body = _deployment(model, run, defaults, None, as_shadow=True)
        if dep is None or dep.spec_hash != body["metadata"]["annotations"][naming.SPEC_HASH]:
            out.apply_deployments.append(body)
        service = builders.build_shadow_service(model)
        if svc is None or svc.spec_hash != service["metadata"]["annotations"][naming.SPEC_HASH]:
            out.apply_shadow_service = service
        return
    if dep is not None:
        out.delete_deployments.append(dep.name)
        if dep.uid:
            out.delete_uids[dep.name] = dep.uid
    if svc is not None:
        out.delete_shadow_service = svc.name
        if svc.uid:
            out.delete_uids[svc.name] = svc.uid


def _canary_step(
    model: Model,
    candidate: _Version,
    current: int | None,
    deps: dict[int, DeploymentState],
    verdicts: _Verdicts,
    measured: canary.Measured | None,
    now: str,
) -> canary.Step | None:
    """The step of the candidate's canary, or None when it rolls out blue/green (the strategy, or
    no version serves to compare it with). A breach is recorded as the candidate's failure."""
    rollout = model.spec.rollout
    stable = deps.get(current) if current is not None else None
    if (
        rollout.strategy is not Strategy.CANARY
        or stable is None
        or stable.replicas < 1
        or candidate.n == current
        or candidate.n in verdicts.failed
    ):
        return None
    dep = deps.get(candidate.n)
    ready_at = dep.replicas if dep is not None and dep.available else None
    if dep is not None and dep.spec_hash != _hash_at(model, candidate, dep.replicas):
        ready_at = None  # its pods are not those of the current spec
    step = canary.advance(
        rollout,
        old=model.status.canary,
        version=candidate.n,
        stable=stable.version,
        stable_replicas=stable.replicas,
        ready_at=ready_at,
        measured=measured,
        now=now,
    )
    ready_canary = dep.ready_replicas if dep is not None else 0
    state = canary.status(
        rollout,
        step,
        version=candidate.n,
        stable=stable.version,
        stable_replicas=stable.replicas,
        ready_canary=ready_canary,
        ready_stable=stable.ready_replicas,
        measured=measured,
    )
    if step.failed is not None:
        verdicts.failed[candidate.n] = (
            f"canary analysis failed at step {state.step}/{state.steps} ({state.weight}%, "
            f"{ready_canary} of {ready_canary + stable.ready_replicas} ready pods): {step.failed}; "
            f"version {stable.version} takes all traffic again"
        )
    elif not step.switch:
        verdicts.canary = state
    return step


def _hash_at(model: Model, candidate: _Version, replicas: int) -> str:
    """The candidate's spec hash if its Deployment were written with `replicas`."""
    assert candidate.body is not None
    return builders.deployment_hash(model, {**candidate.body["spec"], "replicas": replicas})


def _plan_autoscaler(
    out: Plan, model: Model | None, serving: int | None, autoscaler: AutoscalerState | None
) -> None:
    """The HorizontalPodAutoscaler follows the version the Service selects after this plan: it is
    moved in the pass that switches the Service, and removed with production or autoscaling."""
    taken = model is not None and out.conflicts.get(
        ("HorizontalPodAutoscaler", naming.autoscaler_name(model.metadata.name))
    )
    if model is not None and model.spec.serving.autoscaling and serving is not None:
        if taken:
            return
        body = builders.build_autoscaler(model, serving)
        want = body["metadata"]["annotations"][naming.SPEC_HASH]
        if autoscaler is None or autoscaler.spec_hash != want:
            out.apply_autoscaler = body
    elif autoscaler is not None:
        out.delete_autoscaler = autoscaler.name
        out.delete_autoscaler_uid = autoscaler.uid


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _format_time(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _withdraw_at(recorded: str | None, now: str, grace: float) -> datetime:
    """When production goes: the time recorded when nobody asked any more, else now + grace
    (rounded up to the second the status can hold). A recorded time further off than the grace
    (the setting was lowered, or a clock moved back) is brought in to it."""
    latest = _parse_time(now) + timedelta(seconds=-(-grace // 1))
    if recorded:
        try:
            return min(_parse_time(recorded), latest)
        except ValueError:
            pass
    return latest


def _why_not(v: _Version, verdicts: _Verdicts) -> str:
    if v.n in verdicts.conflict:
        return "NameConflict"
    if v.n in verdicts.invalid:
        return "InvalidServingSpec"
    if v.art.verdict is Verdict.FAILED:
        return v.art.reason or "Blocked"
    if v.art.verdict is not Verdict.VERIFIED:
        return "Verifying"
    if not v.gates_ok:
        return "GatesFailed"
    if v.audit_block is not None:
        return v.audit_block[0]
    if v.shadow_block is not None:
        return "ShadowGateFailed"
    if v.failed_now or v.n in verdicts.failed:
        return "RolloutFailed"
    return "not eligible"


def _version_status(
    v: _Version,
    *,
    model: Model | None,
    shadow_status: ShadowStatus | None,
    serving: int | None,
    switching: bool,
    candidate: int | None,
    verdicts: _Verdicts,
    deployment: DeploymentState | None,
    namespace: str,
    now: str,
    history_limit: int,
    cluster_domain: str,
    defaults: builders.ServingDefaults,
) -> tuple[ModelVersionStatus | None, list[Event]]:
    mv = v.mv
    old = mv.status
    gen = mv.metadata.generation
    desired = mv.spec.stage
    prev_stage = old.stage if old.stage is not None else Stage.NONE
    resting = prev_stage if prev_stage is not Stage.PRODUCTION else Stage.NONE
    failed_generation = old.failed_generation
    failed_hash = old.failed_spec_hash
    serving_status: ServingStatus | None = None
    art = v.art
    failed_message = verdicts.failed.get(v.n)
    invalid_message = verdicts.invalid.get(v.n)
    is_serving = v.n == serving
    serving_ok = True  # the Serving condition: False when the serving version has no ready pod
    serving_reason = ""

    if failed_message is not None or (is_serving and verdicts.update_failed is not None):
        failed_generation, failed_hash = gen, v.attempt or v.spec_hash or None
    failed = v.failed_now or failed_message is not None
    failed = failed and desired is Stage.PRODUCTION

    # (stage, phase, Ready?, reason, message) — the verdict for this version.
    if is_serving:
        stage, phase, ready = Stage.PRODUCTION, Phase.SERVING, desired is Stage.PRODUCTION
        reason = "Serving" if ready else "HandingOver"
        message = f"serving production traffic through Service {naming.service_name(mv.spec.model)}"
        if not ready:
            if verdicts.handover is not None:
                message += f"; keeps serving: {verdicts.handover}"
            elif verdicts.handover_pending is not None:
                message += f"; keeps serving while its successor is {verdicts.handover_pending}"
            elif verdicts.withdraw_at is not None:
                message += (
                    "; no version asks for Production: it keeps serving until "
                    f"{verdicts.withdraw_at}, then production is withdrawn"
                )
            elif candidate:
                message += f"; keeps serving until version {candidate} is Available"
        if invalid_message is not None:
            ready, reason = False, "InvalidServingSpec"
            message = (
                f"the API server refused the serving spec: {invalid_message}; the Deployment "
                "keeps its previous spec and serves"
            )
        elif verdicts.update_failed is not None:
            ready, reason, message = False, "RolloutFailed", verdicts.update_failed
        if verdicts.unavailable:
            serving_ok, serving_reason = False, "Unavailable"
            ready, reason = False, "Unavailable"
            message = (
                f"the Deployment {deployment.name if deployment else ''} has no ready pod: "
                "production requests to this version fail until its pods are ready again"
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
    elif v.audit_block is not None:
        waiting = v.audit_block[0] == conditions.AUDITING
        stage, phase, ready = resting, Phase.VERIFYING if waiting else Phase.BLOCKED, False
        reason, message = v.audit_block[0], f"cannot enter {desired}: {v.audit_block[1]}"
    elif desired is Stage.STAGING:
        stage, phase, ready, reason, message = (
            Stage.STAGING,
            Phase.READY,
            True,
            "Staged",
            f"in Staging; {_gate_message(v)}",
        )
    elif v.shadow_block is not None:
        stage, phase, ready = resting, Phase.BLOCKED, False
        reason, message = "ShadowGateFailed", f"cannot enter Production: {v.shadow_block}"
    elif v.n in verdicts.conflict:
        stage, phase, ready = resting, Phase.BLOCKED, False
        reason, message = "NameConflict", f"cannot be served: {verdicts.conflict[v.n]}"
    elif invalid_message is not None:
        stage, phase, ready = resting, Phase.FAILED, False
        reason = "InvalidServingSpec"
        message = f"the API server refused this version's serving objects: {invalid_message}"
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
        if verdicts.canary is not None and verdicts.canary.version == v.n:
            reason, message = "Canary", verdicts.canary.message
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
            service=naming.service_name(mv.spec.model) if is_serving else None,
            ready_replicas=deployment.ready_replicas,
            url=naming.endpoint(mv.spec.model, namespace, cluster_domain) if is_serving else None,
        )

    # The default image a version was first rolled out with stays until it leaves production.
    pin = None
    if (
        model is not None
        and phase in (Phase.SERVING, Phase.ROLLING)
        and not model.spec.serving.image
    ):
        runtime = model.spec.serving.runtime
        pin = PinnedImage(
            runtime=runtime,
            image=_pinned(model, mv) or builders.default_image(runtime, defaults),
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
    shows = phase in (Phase.SERVING, Phase.ROLLING, Phase.FAILED, Phase.SUPERSEDED)
    conds = conditions.set_condition(
        conds,
        conditions.SERVING,
        phase is Phase.SERVING and serving_ok,
        serving_reason or (reason if shows else "NotServing"),
        message if shows else f"desired stage is {desired}",
        generation=gen,
        now=now,
    )
    audit_status, audited = _audit_status(old.audit, v, now)
    if audited is not None:
        conds = conditions.set_condition(
            conds, conditions.AUDITED, audited[0], audited[1], audited[2], generation=gen, now=now
        )
    elif v.audit.state is AuditState.OFF:
        conds = [c for c in conds if c.type != conditions.AUDITED]
    conds = conditions.set_condition(
        conds, conditions.READY, ready, reason, message, generation=gen, now=now
    )

    history = list(old.history)
    events: list[Event] = []
    old_ready = conditions.get_condition(old.conditions, conditions.READY)
    request = stamps.unanswered(mv)
    if request is not None:
        # Who asked, recorded once, whether or not the stage was reached (`requested` says what
        # was asked for; `stage` what the version holds now).
        history.append(
            HistoryEntry(
                stage=stage,
                phase=phase,
                at=request.at or now,
                by=request.by,
                requested=request.to,
                reason=request.reason,
                message=message[:1000],
            )
        )
        history = history[-history_limit:]
    elif old.phase != phase or old.stage != stage:
        history.append(HistoryEntry(stage=stage, phase=phase, at=now, message=message[:1000]))
        history = history[-history_limit:]
    # An Event for each change of phase, except into Pending and Verifying (a check under way is
    # in the status and its history), and except a new version's first verdict when it is
    # uneventful (Ready or Archived, as asked): the status, its history and the ArtifactVerified
    # condition say it, and an Event each would double the API writes of thousands of versions
    # registered at once. A new version that is Blocked or Failed gets its Warning.
    checking = (None, Phase.PENDING, Phase.VERIFYING)
    quiet = (phase in (Phase.PENDING, Phase.VERIFYING) and old.phase in (None, Phase.PENDING)) or (
        phase in (Phase.READY, Phase.ARCHIVED)
        and old.phase in checking
        and all(h.phase in checking for h in old.history)
    )
    if (old.phase != phase or old.stage != stage) and not quiet:
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
    elif old_ready is not None and old_ready.reason != reason and reason in _WARNINGS:
        events.append(
            Event("ModelVersion", mv.metadata.name, mv.metadata.uid, "Warning", reason, message)
        )
    elif old_ready is not None and old_ready.reason in _WARNINGS and ready and is_serving:
        events.append(
            Event("ModelVersion", mv.metadata.name, mv.metadata.uid, "Normal", reason, message)
        )

    status = ModelVersionStatus(
        observed_generation=gen,
        stage=stage,
        phase=phase,
        artifact=art.status if art.status is not None else old.artifact,
        gates=v.gate_results,
        serving=serving_status,
        failed_generation=failed_generation,
        failed_spec_hash=failed_hash if failed_generation is not None else None,
        default_image=pin,
        history=history,
        shadow=shadow_status or old.shadow,
        audit=audit_status,
        conditions=conds,
    )
    if status.wire() == old.wire():
        return None, events
    return status, events


# Ready reasons that are worth a Warning Event when they appear on a version or Model.
_WARNINGS = frozenset(
    {"Unavailable", "RolloutFailed", "InvalidServingSpec", "NameConflict", "HandOverStalled"}
)


def _old_message(conds: list[Condition]) -> str:
    ready = conditions.get_condition(conds, conditions.READY)
    return ready.message if ready is not None and ready.reason == "RolloutFailed" else ""


def _model_event(model: Model, type_: str, reason: str, message: str) -> Event:
    return Event("Model", model.metadata.name, model.metadata.uid, type_, reason, message)


def _model_status(
    model: Model,
    views: list[_Version],
    serving: int | None,
    candidate: _Version | None,
    verdicts: _Verdicts,
    conflicts: dict[ChildKey, str],
    namespace: str,
    now: str,
    cluster_domain: str,
    shadowing: shadow.Decision,
    mirrored: MirrorStatus | None,
) -> tuple[ModelStatus | None, list[Event]]:
    old = model.status
    asked = [v for v in views if v.mv.spec.stage is Stage.PRODUCTION]
    if conflicts:
        ready, reason = False, "NameConflict"
        message = "; ".join(conflicts[k] for k in sorted(conflicts))
        if serving is not None:
            message += f" (version {serving} keeps serving)"
    elif verdicts.invalid:
        ready, reason = False, "InvalidServingSpec"
        message = "; ".join(
            f"v{n}: the API server refused the serving objects: {m}"
            for n, m in sorted(verdicts.invalid.items())
        )
    elif serving is not None and verdicts.unavailable:
        ready, reason = False, "Unavailable"
        message = f"version {serving} serves production but has no ready pod"
    elif serving is not None and verdicts.update_failed is not None:
        ready, reason, message = False, "RolloutFailed", f"v{serving}: {verdicts.update_failed}"
    elif serving is not None and verdicts.handover is not None:
        ready, reason = False, "HandOverStalled"
        message = f"version {serving} no longer asks for Production but keeps serving: "
        message += verdicts.handover
    elif serving is not None and verdicts.withdraw_at is not None:
        ready, reason = True, "Withdrawing"
        message = (
            f"no version asks for Production: version {serving} keeps serving until "
            f"{verdicts.withdraw_at}, then the Service and its Deployment are removed"
        )
    elif serving is not None and verdicts.handover_pending is not None:
        ready, reason = True, "Rolling"
        message = f"version {serving} serves; its successor is {verdicts.handover_pending}"
    elif serving is not None and verdicts.canary is not None:
        ready, reason = True, "Canary"
        message = f"version {serving} serves; {verdicts.canary.message}"
    elif serving is not None and (candidate is None or candidate.n == serving):
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
    events: list[Event] = []
    resolved = aliases.resolve(model.metadata.name, model.spec.aliases, (v.mv for v in views))
    if model.spec.aliases:
        conds = conditions.set_condition(
            conds,
            aliases.ALIASES_RESOLVED,
            not resolved.problems,
            "AliasNotResolved" if resolved.problems else "Resolved",
            resolved.message,
            generation=model.metadata.generation,
            now=now,
        )
        old_aliases = conditions.get_condition(old.conditions, aliases.ALIASES_RESOLVED)
        if resolved.problems and (old_aliases is None or old_aliases.message != resolved.message):
            events.append(_model_event(model, "Warning", "AliasNotResolved", resolved.message))
    else:
        conds = [c for c in conds if c.type != aliases.ALIASES_RESOLVED]
    conds, shadow_events = _shadow_condition(model, conds, shadowing, now)
    events.extend(shadow_events)
    status = ModelStatus(
        observed_generation=model.metadata.generation,
        production_version=serving,
        latest_version=max((v.n for v in views), default=None),
        endpoint=naming.endpoint(model.metadata.name, namespace, cluster_domain)
        if serving is not None
        else None,
        aliases=resolved.valid,
        withdraw_at=verdicts.withdraw_at,
        shadow=mirrored,
        canary=verdicts.canary,
        notifications=old.notifications,  # the notifier's figures, merged in by the reconciler
        conditions=conds,
    )
    now_canary, was = verdicts.canary, old.canary
    if now_canary is not None and (
        was is None or (was.version, was.step) != (now_canary.version, now_canary.step)
    ):
        events.append(
            _model_event(
                model,
                "Normal",
                "CanaryStep",
                f"version {now_canary.version}: step {now_canary.step}/{now_canary.steps} "
                f"({now_canary.weight}%, {now_canary.canary_replicas} canary and "
                f"{now_canary.stable_replicas} stable pods)",
            )
        )
    if verdicts.withdraw_at is not None and old.withdraw_at is None:
        events.append(
            _model_event(
                model,
                "Normal",
                "WithdrawScheduled",
                message,
            )
        )
    if old.production_version != serving:
        events.append(
            _model_event(
                model,
                "Normal",
                "ProductionChanged",
                f"production version: {old.production_version} -> {serving}",
            )
        )
        if serving is None:
            events.append(
                _model_event(
                    model,
                    "Warning",
                    "ProductionWithdrawn",
                    f"version {old.production_version} no longer serves and no version asks "
                    "for Production: the Service and the Deployment are removed",
                )
            )
    old_ready = conditions.get_condition(old.conditions, conditions.READY)
    if reason in _WARNINGS and (old_ready is None or old_ready.reason != reason):
        events.append(_model_event(model, "Warning", reason, message))
    if status.wire() == old.wire():
        return None, events
    return status, events


def _shadow_condition(
    model: Model, conds: list[Condition], decision: shadow.Decision, now: str
) -> tuple[list[Condition], list[Event]]:
    """The Model's Shadowing condition, and an Event when its reason changes."""
    if decision.condition is None:
        return [c for c in conds if c.type != shadow.SHADOWING], []
    ok, reason, message = decision.condition
    old = conditions.get_condition(conds, shadow.SHADOWING)
    conds = conditions.set_condition(
        conds,
        shadow.SHADOWING,
        ok,
        reason,
        message,
        generation=model.metadata.generation,
        now=now,
    )
    if old is not None and old.reason == reason:
        return conds, []
    kind = "Warning" if decision.warn else "Normal"
    return conds, [_model_event(model, kind, "Shadow" + reason.removeprefix("Shadow"), message)]


@dataclass(frozen=True)
class Unreadable:
    """An object of this Model that the operator's schema rejects (say, after a downgrade that
    kept newer CRDs): `field` is the first offending field, as a dotted path."""

    kind: str
    name: str
    uid: str
    field: str
    problem: str

    def describe(self) -> str:
        return f"{self.kind} {self.name}: {self.field}: {self.problem}"


def frozen(
    model_name: str,
    model_uid: str,
    generation: int,
    old: ModelStatus,
    unreadable: list[Unreadable],
    now: str,
) -> tuple[ModelStatus | None, list[Event]]:
    """The Model's status while some of its objects cannot be read. Nothing else is planned: no
    child is written or deleted (a plan from partial knowledge would tear production down), and
    every other field of the status stays as it was."""
    message = (
        "frozen: no serving object is changed or deleted until the operator can read "
        + "; ".join(u.describe() for u in unreadable)
    )
    conds = conditions.set_condition(
        list(old.conditions),
        conditions.READY,
        False,
        "Unreadable",
        message,
        generation=generation,
        now=now,
    )
    status = old.model_copy(update={"conditions": conds})
    events: list[Event] = []
    before = conditions.get_condition(old.conditions, conditions.READY)
    if before is None or before.reason != "Unreadable" or before.message != message[:4000]:
        for u in unreadable:
            events.append(
                Event(u.kind, u.name, u.uid, "Warning", "Unreadable", f"{u.describe()}; {message}")
            )
        if all(u.kind != "Model" for u in unreadable):
            events.append(Event("Model", model_name, model_uid, "Warning", "Unreadable", message))
    if status.wire() == old.wire():
        return None, events
    return status, events
