"""spec.serving.autoscaling in the planner: one HorizontalPodAutoscaler that follows promotions."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from modelreg.api.models import Model
from modelreg.lifecycle import builders, naming
from modelreg.lifecycle.plan import (
    AutoscalerState,
    DeploymentState,
    Owner,
    Plan,
    autoscaler_state,
    deployment_state,
    plan,
)
from tests.unit.test_plan import DEFAULTS, NOW, OK, svc, version

AUTO = {"minReplicas": 2, "maxReplicas": 6, "targetCpuUtilization": 60}


def model(autoscaling: dict[str, Any] | None = AUTO) -> Model:
    serving: dict[str, Any] = {"resources": {"requests": {"cpu": "100m"}}}
    if autoscaling is not None:
        serving["autoscaling"] = autoscaling
    return Model.model_validate(
        {
            "metadata": {"name": "m", "namespace": "ns", "uid": "model-uid", "generation": 1},
            "spec": {
                "storage": {"uri": "s3://models/m/", "secretRef": {"name": "s3"}},
                "serving": serving,
            },
        }
    )


def dep(m: Model, n: int, *, replicas: int, available: bool = True) -> DeploymentState:
    """Version n's Deployment as the API server shows it once the autoscaler set `replicas`."""
    body = builders.build_deployment(m, version(n, "Production"), DEFAULTS, replicas=replicas)
    body["status"] = {
        "observedGeneration": 1,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas if available else 0,
        "availableReplicas": replicas if available else 0,
        "conditions": [{"type": "Available", "status": "True" if available else "False"}],
    }
    body["metadata"]["generation"] = 1
    return deployment_state(body)


def hpa(m: Model, n: int) -> AutoscalerState:
    return autoscaler_state(builders.build_autoscaler(m, n))


def run(m: Model, versions: list[Any], deps: list[DeploymentState], **kw: Any) -> Plan:
    return plan(
        namespace="ns",
        model_name="m",
        model=m,
        versions=versions,
        artifacts={v.metadata.name: OK for v in versions},
        deployments=deps,
        service=kw.pop("service", None),
        defaults=DEFAULTS,
        now=NOW,
        **kw,
    )


def test_the_autoscaler_targets_the_serving_deployment() -> None:
    m = model()
    p = run(m, [version(1, "Production")], [dep(m, 1, replicas=2)], service=svc(1))
    body = p.apply_autoscaler
    assert body is not None
    assert body["apiVersion"] == "autoscaling/v2"
    assert body["metadata"]["name"] == naming.autoscaler_name("m") == "m"
    assert body["metadata"]["ownerReferences"][0]["uid"] == "model-uid"
    assert body["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "m-v1",
    }
    assert (body["spec"]["minReplicas"], body["spec"]["maxReplicas"]) == (2, 6)
    target = body["spec"]["metrics"][0]["resource"]["target"]
    assert target == {"type": "Utilization", "averageUtilization": 60}
    assert body["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_an_unchanged_autoscaler_is_not_written_again() -> None:
    m = model()
    p = run(
        m,
        [version(1, "Production")],
        [dep(m, 1, replicas=4)],
        service=svc(1),
        autoscaler=hpa(m, 1),
    )
    assert p.apply_autoscaler is None
    assert p.delete_autoscaler is None
    # The autoscaler's count (4) is no change of spec: the Deployment is not written back to 2.
    assert p.apply_deployments == []


def test_a_new_version_starts_at_the_serving_count_and_the_autoscaler_waits_for_the_switch() -> (
    None
):
    m = model()
    versions = [version(1, "Archived"), version(2, "Production")]
    # v1 serves with 5 replicas (the autoscaler's doing); v2 is promoted.
    p = run(m, versions, [dep(m, 1, replicas=5)], service=svc(1), autoscaler=hpa(m, 1))
    [body] = p.apply_deployments
    assert body["metadata"]["name"] == "m-v2"
    assert body["spec"]["replicas"] == 5, "a promotion must not drop capacity"
    assert p.apply_autoscaler is None, "the autoscaler stays on v1 until the Service switches"

    # v2 is Available: the Service switches and the autoscaler moves with it, in the same pass.
    deps = [dep(m, 1, replicas=5), dep(m, 2, replicas=5)]
    p = run(m, versions, deps, service=svc(1), autoscaler=hpa(m, 1))
    assert p.serving_version == 2
    assert p.apply_service is not None
    assert p.apply_autoscaler is not None
    assert p.apply_autoscaler["spec"]["scaleTargetRef"]["name"] == "m-v2"


def test_the_start_count_stays_within_min_and_max() -> None:
    auto = model().spec.serving.autoscaling
    assert auto is not None
    assert builders.start_replicas(auto, None) == 2
    assert builders.start_replicas(auto, 1) == 2
    assert builders.start_replicas(auto, 4) == 4
    assert builders.start_replicas(auto, 9) == 6


def test_the_first_rollout_starts_at_min_replicas() -> None:
    m = model()
    p = run(m, [version(1, "Production")], [])
    [body] = p.apply_deployments
    assert body["spec"]["replicas"] == 2
    assert p.apply_autoscaler is None, "nothing serves yet"


def test_turning_autoscaling_off_deletes_the_autoscaler_and_restores_replicas() -> None:
    on, off = model(), model(None)
    p = run(
        off,
        [version(1, "Production")],
        [dep(on, 1, replicas=4)],
        service=svc(1),
        autoscaler=replace(hpa(on, 1), uid="hpa-uid"),
    )
    assert p.delete_autoscaler == "m"
    assert p.delete_autoscaler_uid == "hpa-uid"
    [body] = p.apply_deployments
    assert body["spec"]["replicas"] == 1, "spec.serving.replicas again"


def test_withdrawing_production_deletes_the_autoscaler() -> None:
    m = model()
    p = run(
        m, [version(1, "Archived")], [dep(m, 1, replicas=2)], service=svc(1), autoscaler=hpa(m, 1)
    )
    assert p.delete_service is not None
    assert p.delete_autoscaler == "m"


def test_changing_the_targets_rewrites_the_autoscaler() -> None:
    old, new = model(), model({**AUTO, "maxReplicas": 10})
    p = run(
        new,
        [version(1, "Production")],
        [dep(new, 1, replicas=3)],
        service=svc(1),
        autoscaler=hpa(old, 1),
    )
    assert p.apply_autoscaler is not None
    assert p.apply_autoscaler["spec"]["maxReplicas"] == 10


def test_a_foreign_autoscaler_with_the_name_is_reported_and_left_alone() -> None:
    m = model()
    foreign = replace(hpa(m, 1), owner=Owner("apps/v1", "Deployment", "someone", "x"))
    p = run(
        m, [version(1, "Production")], [dep(m, 1, replicas=2)], service=svc(1), autoscaler=foreign
    )
    assert p.apply_autoscaler is None
    assert p.delete_autoscaler is None
    assert "HorizontalPodAutoscaler ns/m" in p.conflicts[("HorizontalPodAutoscaler", "m")]
    ready = {c.type: c for c in p.model_status.conditions} if p.model_status else {}
    assert "controlled by Deployment someone" in ready["Ready"].message
