"""The registry's rules (modelreg.lifecycle.plan), table by table, without a cluster."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from modelreg.api.models import Model, ModelVersion, Phase, Stage
from modelreg.lifecycle import builders, naming
from modelreg.lifecycle.plan import (
    SERVICE_NAME_LABEL,
    ArtifactVerdict,
    DeploymentState,
    Plan,
    ServiceState,
    Verdict,
    deployment_state,
    endpoints_moved,
    plan,
    service_state,
)

NOW = "2026-11-24T00:00:00Z"
DEFAULTS = builders.ServingDefaults(builtin_image="img:1", mlserver_image="mls:1")
SHA = "a" * 64
OK = ArtifactVerdict(Verdict.VERIFIED, "Verified", "ok")


def model(gates: list[dict[str, Any]] | None = None, **status: Any) -> Model:
    return Model.model_validate(
        {
            "metadata": {"name": "m", "namespace": "ns", "uid": "model-uid", "generation": 1},
            "spec": {
                "storage": {"uri": "s3://models/m/", "secretRef": {"name": "s3"}},
                "promotion": {"gates": gates or []},
            },
            "status": status,
        }
    )


def version(
    n: int,
    stage: str = "None",
    metrics: dict[str, float] | None = None,
    status: dict[str, Any] | None = None,
) -> ModelVersion:
    return ModelVersion.model_validate(
        {
            "metadata": {"name": f"m-v{n}", "namespace": "ns", "uid": f"uid-{n}", "generation": 1},
            "spec": {
                "model": "m",
                "version": n,
                "stage": stage,
                "artifact": {"uri": f"s3://models/m/{n}/model.onnx", "sha256": SHA},
                "metrics": metrics or {},
            },
            "status": status or {},
        }
    )


def dep(
    n: int,
    *,
    available: bool = True,
    exceeded: bool = False,
    m: Model | None = None,
    mv: ModelVersion | None = None,
) -> DeploymentState:
    body = builders.build_deployment(m or model(), mv or version(n, "Production"), DEFAULTS)
    return DeploymentState(
        name=body["metadata"]["name"],
        version=n,
        available=available,
        deadline_exceeded=exceeded,
        ready_replicas=1 if available else 0,
        spec_hash=body["metadata"]["annotations"][naming.SPEC_HASH],
    )


def svc(n: int, *, endpoints: tuple[int, ...] | None = None) -> ServiceState:
    """The Service selecting version n; its ready endpoints are pods of `endpoints` (default: n)."""
    body = builders.build_service(model(), n)
    pods = frozenset(
        f"m-v{v}-7f9c-{i}" for v in (endpoints if endpoints is not None else (n,)) for i in range(2)
    )
    return ServiceState(
        version=n, spec_hash=body["metadata"]["annotations"][naming.SPEC_HASH], ready_pods=pods
    )


def run(
    versions: list[ModelVersion],
    *,
    m: Model | str | None = "default",
    artifacts: dict[str, ArtifactVerdict] | None = None,
    deployments: list[DeploymentState] | None = None,
    service: ServiceState | None = None,
) -> Plan:
    the_model = model() if m == "default" else m
    arts = {v.metadata.name: OK for v in versions}
    arts.update(artifacts or {})
    return plan(
        namespace="ns",
        model_name="m",
        model=the_model,  # type: ignore[arg-type]
        versions=versions,
        artifacts=arts,
        deployments=deployments or [],
        service=service,
        defaults=DEFAULTS,
        now=NOW,
    )


def phase(p: Plan, name: str) -> tuple[Phase | None, Stage | None]:
    st = p.version_status[name]
    return st.phase, st.stage


def ready_message(p: Plan, name: str) -> str:
    return next(c for c in p.version_status[name].conditions if c.type == "Ready").message


def ready(p: Plan, name: str) -> tuple[str, str]:
    c = next(c for c in p.version_status[name].conditions if c.type == "Ready")
    return c.status, c.reason


@pytest.mark.parametrize(
    ("desired", "verdict", "expected_phase", "expected_stage", "reason"),
    [
        ("None", Verdict.VERIFIED, Phase.READY, Stage.NONE, "Registered"),
        ("Staging", Verdict.VERIFIED, Phase.READY, Stage.STAGING, "Staged"),
        ("Staging", Verdict.FAILED, Phase.BLOCKED, Stage.NONE, "DigestMismatch"),
        ("Staging", Verdict.VERIFYING, Phase.VERIFYING, Stage.NONE, "Verifying"),
        ("Staging", Verdict.UNKNOWN, Phase.VERIFYING, Stage.NONE, "StoreUnavailable"),
        ("Staging", Verdict.PENDING, Phase.PENDING, Stage.NONE, "Verifying"),
        ("Archived", Verdict.SKIPPED, Phase.ARCHIVED, Stage.ARCHIVED, "Archived"),
        ("Production", Verdict.FAILED, Phase.BLOCKED, Stage.NONE, "DigestMismatch"),
        ("Production", Verdict.VERIFIED, Phase.ROLLING, Stage.NONE, "Rolling"),
    ],
)
def test_single_version_table(
    desired: str, verdict: Verdict, expected_phase: Phase, expected_stage: Stage, reason: str
) -> None:
    reasons = {
        Verdict.FAILED: "DigestMismatch",
        Verdict.UNKNOWN: "StoreUnavailable",
        Verdict.VERIFYING: "Verifying",
    }
    art = ArtifactVerdict(verdict, reasons.get(verdict, ""), "why")
    p = run([version(1, desired)], artifacts={"m-v1": art})
    assert phase(p, "m-v1") == (expected_phase, expected_stage)
    assert ready(p, "m-v1")[1] == reason


def test_gates_block_staging_and_name_the_failure() -> None:
    m = model(gates=[{"metric": "auc", "min": 0.8}, {"metric": "latency", "max": 50}])
    p = run([version(1, "Staging", {"auc": 0.7})], m=m)
    assert phase(p, "m-v1") == (Phase.BLOCKED, Stage.NONE)
    msg = next(c for c in p.version_status["m-v1"].conditions if c.type == "Ready").message
    assert "auc=0.7 is below the minimum 0.8" in msg
    assert "'latency' is missing" in msg
    gates = p.version_status["m-v1"].gates
    assert [(g.metric, g.passed, g.actual) for g in gates] == [
        ("auc", False, 0.7),
        ("latency", False, None),
    ]
    assert not p.apply_deployments


def test_first_promotion_creates_deployment_but_no_service_until_available() -> None:
    p = run([version(1, "Production")])
    assert [d["metadata"]["name"] for d in p.apply_deployments] == ["m-v1"]
    assert p.apply_service is None
    assert p.serving_version is None
    p = run([version(1, "Production")], deployments=[dep(1)])
    assert p.apply_deployments == []
    assert p.apply_service is not None
    assert p.apply_service["spec"]["selector"] == {
        naming.MODEL_LABEL: "m",
        naming.VERSION_LABEL: "1",
    }
    # The Service exists from this pass on, but it has no endpoints yet: not Serving.
    assert phase(p, "m-v1")[0] is Phase.ROLLING
    assert p.model_status is not None
    assert p.model_status.production_version is None
    p = run([version(1, "Production")], deployments=[dep(1)], service=svc(1, endpoints=()))
    assert phase(p, "m-v1")[0] is Phase.ROLLING
    assert "waiting until its endpoints" in ready_message(p, "m-v1")
    p = run([version(1, "Production")], deployments=[dep(1)], service=svc(1))
    assert phase(p, "m-v1") == (Phase.SERVING, Stage.PRODUCTION)
    assert p.model_status is not None
    assert p.model_status.production_version == 1
    assert p.model_status.endpoint == "http://m.ns.svc:80"


def test_blue_green_switch_waits_for_available_then_removes_old() -> None:
    serving = {"phase": "Serving", "stage": "Production"}
    vs = [version(1, "Production", status=serving), version(2, "Production")]
    p = run(vs, deployments=[dep(1), dep(2, available=False)], service=svc(1))
    assert p.serving_version == 1
    assert p.apply_service is None
    assert p.delete_deployments == []
    assert phase(p, "m-v1") == (Phase.SERVING, Stage.PRODUCTION)
    assert phase(p, "m-v2")[0] is Phase.ROLLING
    p = run(vs, deployments=[dep(1), dep(2)], service=svc(1))
    assert p.serving_version == 2
    assert p.apply_service is not None
    assert p.apply_service["spec"]["selector"][naming.VERSION_LABEL] == "2"
    # The old Deployment stays, and keeps its status, while the Service's endpoints still lead to
    # its pods: requests still go there.
    assert p.delete_deployments == []
    assert phase(p, "m-v1") == (Phase.SERVING, Stage.PRODUCTION)
    assert phase(p, "m-v2")[0] is Phase.ROLLING
    p = run(vs, deployments=[dep(1), dep(2)], service=svc(2, endpoints=(1, 2)))
    assert p.delete_deployments == []
    assert phase(p, "m-v2")[0] is Phase.ROLLING
    p = run(vs, deployments=[dep(1), dep(2)], service=svc(2, endpoints=()))
    assert p.delete_deployments == []  # no ready endpoint at all: nothing has moved yet
    p = run(vs, deployments=[dep(1), dep(2)], service=svc(2))
    assert p.delete_deployments == ["m-v1"]
    assert phase(p, "m-v2") == (Phase.SERVING, Stage.PRODUCTION)
    assert phase(p, "m-v1") == (Phase.SUPERSEDED, Stage.NONE)
    assert any(e.type == "Warning" and e.name == "m-v1" for e in p.events)


def test_missed_deadline_fails_new_version_and_old_keeps_serving() -> None:
    vs = [version(1, "Production"), version(2, "Production")]
    p = run(vs, deployments=[dep(1), dep(2, available=False, exceeded=True)], service=svc(1))
    assert p.serving_version == 1
    assert p.delete_deployments == ["m-v2"]
    assert phase(p, "m-v2")[0] is Phase.FAILED
    assert p.version_status["m-v2"].failed_generation == 1
    assert (
        "progressDeadlineSeconds=300"
        in next(c for c in p.version_status["m-v2"].conditions if c.type == "Ready").message
    )
    # Next pass: the failed version is not retried for this generation; v1 keeps serving.
    v2 = version(2, "Production", status=p.version_status["m-v2"].wire())
    p = run([vs[0], v2], deployments=[dep(1)], service=svc(1))
    assert p.apply_deployments == []
    assert p.serving_version == 1
    assert "m-v2" not in p.version_status  # converged: nothing to write


def test_highest_eligible_wins_and_ineligible_higher_is_blocked() -> None:
    vs = [version(1, "Production"), version(2, "Production"), version(3, "Production")]
    arts = {"m-v3": ArtifactVerdict(Verdict.FAILED, "ArtifactNotFound", "missing")}
    p = run(vs, artifacts=arts, deployments=[dep(2)], service=svc(2))
    assert p.serving_version == 2
    assert phase(p, "m-v3")[0] is Phase.BLOCKED
    assert phase(p, "m-v1")[0] is Phase.SUPERSEDED
    assert not p.apply_deployments


def test_rollback_by_archiving_hands_over_to_next_highest() -> None:
    vs = [version(1, "Production"), version(2, "Archived")]
    p = run(vs, deployments=[dep(2)], service=svc(2))
    # v1 rolls up while v2 keeps serving (blue/green), then takes over.
    assert p.serving_version == 2
    assert [d["metadata"]["name"] for d in p.apply_deployments] == ["m-v1"]
    assert phase(p, "m-v2") == (Phase.SERVING, Stage.PRODUCTION)
    p = run(vs, deployments=[dep(2), dep(1)], service=svc(2))
    assert p.serving_version == 1
    assert p.delete_deployments == []
    assert phase(p, "m-v2") == (Phase.ARCHIVED, Stage.ARCHIVED)
    p = run(vs, deployments=[dep(2), dep(1)], service=svc(1))
    assert p.delete_deployments == ["m-v2"]


def test_endpoints_are_read_from_the_services_own_ready_slices() -> None:
    body = builders.build_service(model(), 2)

    def ep(pod: str, ready: bool | None = True) -> dict[str, Any]:
        return {"targetRef": {"kind": "Pod", "name": pod}, "conditions": {"ready": ready}}

    slices = [
        {"metadata": {"labels": {SERVICE_NAME_LABEL: "m"}}, "endpoints": [ep("m-v2-a-1")]},
        {"metadata": {"labels": {SERVICE_NAME_LABEL: "m"}}, "endpoints": [ep("m-v1-a-1", False)]},
        {"metadata": {"labels": {SERVICE_NAME_LABEL: "other"}}, "endpoints": [ep("m-v1-b-1")]},
    ]
    state = service_state(body, slices)
    assert state.version == 2
    assert state.ready_pods == {"m-v2-a-1"}
    assert endpoints_moved(state, "m-v2")
    assert not endpoints_moved(state, "m-v1")
    # "m-v12-..." is not a pod of "m-v1".
    v12 = [{"metadata": {"labels": {SERVICE_NAME_LABEL: "m"}}, "endpoints": [ep("m-v12-a-1")]}]
    assert not endpoints_moved(service_state(body, v12), "m-v1")


def test_nothing_left_removes_service_and_deployments() -> None:
    p = run([version(1, "Archived")], deployments=[dep(1)], service=svc(1))
    assert p.delete_service == "m"
    assert p.delete_deployments == ["m-v1"]
    assert p.serving_version is None
    assert p.model_status is not None
    assert p.model_status.production_version is None


def test_model_missing_blocks_versions_and_removes_children() -> None:
    p = run([version(1, "Production")], m=None, deployments=[dep(1)], service=svc(1))
    assert phase(p, "m-v1")[0] is Phase.BLOCKED
    assert ready(p, "m-v1") == ("False", "ModelNotFound")
    assert p.delete_service == "m"
    assert p.delete_deployments == ["m-v1"]
    assert p.model_status is None


def test_store_outage_does_not_withdraw_the_serving_version() -> None:
    unknown = ArtifactVerdict(Verdict.UNKNOWN, "StoreUnavailable", "down")
    p = run(
        [version(1, "Production")],
        artifacts={"m-v1": unknown},
        deployments=[dep(1)],
        service=svc(1),
    )
    assert p.serving_version == 1
    assert p.delete_service is None
    assert p.delete_deployments == []


def test_converged_state_writes_nothing_and_posts_nothing() -> None:
    vs = [version(1, "Production")]
    first = run(vs, deployments=[dep(1)], service=svc(1))
    again = [version(1, "Production", status=first.version_status["m-v1"].wire())]
    m = model(**(first.model_status.wire() if first.model_status else {}))
    second = run(again, m=m, deployments=[dep(1)], service=svc(1))
    assert second.version_status == {}
    assert second.model_status is None
    assert second.events == []
    assert second.apply_deployments == []
    assert second.apply_service is None


def test_history_is_bounded_and_newest_last() -> None:
    history = [{"stage": "None", "phase": "Ready", "at": f"t{i}", "reason": "x"} for i in range(20)]
    p = run([version(1, "Staging", status={"history": history, "stage": "None", "phase": "Ready"})])
    h = p.version_status["m-v1"].history
    assert len(h) == 20
    assert h[-1].stage is Stage.STAGING
    assert h[0].at == "t1"


def test_deployment_state_reads_available_and_deadline() -> None:
    body: dict[str, Any] = {
        "metadata": {"name": "m-v1", "generation": 2, "labels": {naming.VERSION_LABEL: "1"}},
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": 2,
            "updatedReplicas": 2,
            "availableReplicas": 2,
            "readyReplicas": 2,
            "conditions": [{"type": "Available", "status": "True"}],
        },
    }
    assert deployment_state(body).available
    body["status"]["availableReplicas"] = 1
    assert not deployment_state(body).available
    body["status"]["conditions"].append(
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
    )
    st = deployment_state(body)
    assert st.deadline_exceeded
    assert st.version == 1


def test_aliases_that_resolve_are_published_and_the_others_are_named() -> None:
    m = model()
    m.spec.aliases = {"champion": 1, "old": 2, "typo": 9}
    vs = [
        version(1, "Production"),
        version(2, "Archived"),
    ]
    first = run(vs, m=m, deployments=[dep(1)], service=svc(1))
    st = first.model_status
    assert st is not None
    assert st.aliases == {"champion": 1}
    cond = next(c for c in st.conditions if c.type == "AliasesResolved")
    assert (cond.status, cond.reason) == ("False", "AliasNotResolved")
    assert "'old' of m points at version 2, which is Archived" in cond.message
    assert "'typo' of m points at version 9, which does not exist" in cond.message
    warned = [e for e in first.events if e.reason == "AliasNotResolved"]
    assert [e.type for e in warned] == ["Warning"]
    # Converged: the same verdict is neither written nor announced again.
    again = model(**st.wire())
    again.spec.aliases = dict(m.spec.aliases)
    second = run(vs, m=again, deployments=[dep(1)], service=svc(1))
    assert not [e for e in second.events if e.reason == "AliasNotResolved"]
    # Fixed: the condition turns True; aliases removed: the condition goes.
    again.spec.aliases = {"champion": 1}
    fixed = run(vs, m=again, deployments=[dep(1)], service=svc(1)).model_status
    assert fixed is not None
    cond = next(c for c in fixed.conditions if c.type == "AliasesResolved")
    assert (cond.status, cond.message) == ("True", "@champion -> v1")
    again.spec.aliases = {}
    gone = run(vs, m=again, deployments=[dep(1)], service=svc(1)).model_status
    assert gone is not None
    assert not [c for c in gone.conditions if c.type == "AliasesResolved"]
    assert gone.aliases == {}


def test_a_first_check_writes_no_event_unless_its_outcome_is_news() -> None:
    """Scale: a new version's Verifying is in its status and history, and so is an uneventful
    first verdict (Ready); a Blocked one gets its Warning, and later changes get theirs."""

    m = model()
    checking = ArtifactVerdict(Verdict.VERIFYING, "Verifying", "computing the sha256")

    def run(v: ModelVersion, verdict: ArtifactVerdict) -> tuple[ModelVersion, list[str]]:
        p = plan(
            namespace="ns",
            model_name="m",
            model=m,
            versions=[v],
            artifacts={v.metadata.name: verdict},
            deployments=[],
            service=None,
            defaults=DEFAULTS,
            now=NOW,
        )
        st = p.version_status.get(v.metadata.name, v.status)
        return v.model_copy(update={"status": st}), [
            e.reason for e in p.events if e.kind != "Model"
        ]

    v, events = run(version(1), checking)
    assert v.status.phase is Phase.VERIFYING
    assert [h.phase for h in v.status.history] == [Phase.VERIFYING]
    assert events == []
    first = v
    v, events = run(v, OK)
    assert v.status.phase is Phase.READY
    assert v.status.history[-1].phase is Phase.READY  # the status and its history say it
    assert events == []
    _, events = run(version(1), OK)  # its check was quick: no Verifying was ever written
    assert events == []
    _, events = run(first, ArtifactVerdict(Verdict.FAILED, "DigestMismatch", "sha256 differs"))
    assert events == ["DigestMismatch"]  # a new version that is Blocked gets its Warning
    v, events = run(v, ArtifactVerdict(Verdict.VERIFYING, "Reverifying", "the object changed"))
    assert events == ["Reverifying"]  # a check of a known version is news
    _, events = run(v, OK)
    assert events == ["Registered"]  # ... and so is its outcome


def test_a_model_scaled_to_zero_serves_once_the_service_selects_it() -> None:
    """spec.serving.replicas: 0 (a parked Model): no pod will ever be an endpoint, so the switch
    cannot wait for endpoints to move; the version is Serving once the Service selects it and
    routes to no other pod. It used to stay Rolling for ever (the 10,000-version benchmark)."""
    parked = model().model_copy(deep=True)
    parked.spec.serving.replicas = 0
    vs = [version(1, "Production")]
    zero = replace(dep(1, m=parked), replicas=0, ready_replicas=0)
    p = run(vs, m=parked, deployments=[zero], service=None)
    assert p.apply_service is not None
    assert phase(p, "m-v1")[0] is Phase.ROLLING  # the Service is created in this pass
    p = run(vs, m=parked, deployments=[zero], service=svc(1, endpoints=()))
    assert phase(p, "m-v1") == (Phase.SERVING, Stage.PRODUCTION)
    assert p.model_status is not None
    ready = next(c for c in p.model_status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("True", "Serving")
    # Old pods still behind the Service: not yet.
    p = run(vs, m=parked, deployments=[zero], service=svc(1, endpoints=(0,)))
    assert phase(p, "m-v1")[0] is Phase.ROLLING
