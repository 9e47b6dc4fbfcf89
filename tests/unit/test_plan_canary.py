"""spec.rollout Canary in the planner: steps, replica shares, analysis, rollback. Pass by pass,
feeding each plan's statuses back as the API server would."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from modelreg.api.models import Model, ModelVersion, Phase
from modelreg.lifecycle import builders, canary, naming
from modelreg.lifecycle.plan import DeploymentState, Plan, deployment_state, plan, service_state
from tests.unit.test_plan import DEFAULTS, OK, version

T0 = datetime(2026, 12, 4, 12, 0, 0)
ROLLOUT = {
    "strategy": "Canary",
    "steps": [25, 50, 100],
    "stepSeconds": 10,
    "analysis": {"maxErrorRate": 0.05, "maxP99LatencyMs": 200, "minRequests": 10},
}


def model(rollout: dict[str, Any] | None = None, replicas: int = 3) -> Model:
    return Model.model_validate(
        {
            "metadata": {"name": "m", "namespace": "ns", "uid": "model-uid", "generation": 1},
            "spec": {
                "storage": {"uri": "s3://models/m/", "secretRef": {"name": "s3"}},
                "serving": {"replicas": replicas},
                "rollout": rollout or ROLLOUT,
            },
        }
    )


def complete(body: dict[str, Any], ready: int | None = None) -> DeploymentState:
    """The Deployment the planner wrote, once the API server and its pods have caught up."""
    n = int(body["spec"]["replicas"])
    ready = n if ready is None else ready
    live = {
        **body,
        "metadata": {**body["metadata"], "generation": 1, "uid": body["metadata"]["name"]},
        "status": {
            "observedGeneration": 1,
            "replicas": n,
            "updatedReplicas": n,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [{"type": "Available", "status": "True" if ready == n else "False"}],
        },
    }
    return deployment_state(live)


@dataclass
class World:
    """The objects the API server holds, updated from each plan."""

    m: Model
    versions: list[ModelVersion]
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    service: dict[str, Any] | None = None
    now: datetime = T0
    events: list[tuple[str, str]] = field(default_factory=list)

    def pass_(self, measured: canary.Measured | None = None, ready: bool = True) -> Plan:
        deps = [complete(b) if ready else complete(b, 0) for b in self.deployments.values()]
        p = plan(
            namespace="ns",
            model_name="m",
            model=self.m,
            versions=self.versions,
            artifacts={v.metadata.name: OK for v in self.versions},
            deployments=deps,
            service=service_state(self.service, [self.slice(ready)]) if self.service else None,
            defaults=DEFAULTS,
            now=self.now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            measured=measured,
        )
        for b in p.apply_deployments:
            self.deployments[b["metadata"]["name"]] = b
        for name in p.delete_deployments:
            self.deployments.pop(name, None)
        if p.apply_service is not None:
            self.service = p.apply_service
        if p.model_status is not None:
            self.m = self.m.model_copy(update={"status": p.model_status})
        self.versions = [
            v.model_copy(update={"status": p.version_status[v.metadata.name]})
            if v.metadata.name in p.version_status
            else v
            for v in self.versions
        ]
        self.events += [(e.reason, e.message) for e in p.events]
        return p

    def slice(self, ready: bool) -> dict[str, Any]:
        """The Service's EndpointSlice: the ready pods of the Deployments its selector matches."""
        assert self.service is not None
        selector = self.service["spec"]["selector"]
        endpoints = []
        for name, body in self.deployments.items():
            labels = body["spec"]["template"]["metadata"]["labels"]
            if all(labels.get(k) == v for k, v in selector.items()):
                endpoints += [
                    {
                        "targetRef": {"kind": "Pod", "name": f"{name}-abc-{i}"},
                        "conditions": {"ready": ready},
                    }
                    for i in range(int(body["spec"]["replicas"]))
                ]
        return {"metadata": {"labels": {"kubernetes.io/service-name": "m"}}, "endpoints": endpoints}

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def selector(self) -> dict[str, str]:
        assert self.service is not None
        return dict(self.service["spec"]["selector"])

    def replicas(self, n: int) -> int | None:
        body = self.deployments.get(f"m-v{n}")
        return int(body["spec"]["replicas"]) if body else None

    def phase(self, n: int) -> Phase | None:
        return next(v.status.phase for v in self.versions if v.spec.version == n)


def serving_v1(m: Model) -> World:
    """v1 serves with 3 replicas; v2 has just been promoted."""
    w = World(m, [version(1, "Production")])
    w.pass_()
    w.pass_()  # v1 Available: the Service is created
    w.pass_()
    assert w.phase(1) is Phase.SERVING
    # v2 asks for Production, v1 keeps asking until v2 serves (what `modelreg promote` does).
    w.versions = [w.versions[0], version(2, "Production")]
    return w


def figures(w: World, requests: int, errors: int, p99: float = 5.0) -> canary.Measured:
    st = w.m.status.canary
    assert st is not None
    assert st.step_started_at is not None
    return canary.Measured(st.version, st.step - 1, st.step_started_at, requests, errors, p99)


def test_a_good_canary_walks_every_step_then_switches() -> None:
    w = serving_v1(model())
    w.pass_(ready=False)  # v2's Deployment is written; its pods are starting
    assert w.replicas(2) == 1, "25% beside 3 stable pods: 1 canary pod (1 of 4)"
    assert w.replicas(1) == 3, "the stable version keeps its full count"
    assert w.selector() == {naming.MODEL_LABEL: "m"}, "the Service selects both versions' pods"
    st = w.m.status.canary
    assert st is not None
    assert (st.version, st.stable, st.step, st.weight, st.step_started_at) == (2, 1, 1, 25, None)
    assert w.phase(2) is Phase.ROLLING
    assert w.phase(1) is Phase.SERVING

    w.pass_()  # the canary pod is ready: the step's clock starts
    st = w.m.status.canary
    assert st is not None
    assert st.step_started_at == "2026-12-04T12:00:00Z"
    assert st.share == 0.25
    w.tick(5)
    p = w.pass_(figures(w, 40, 1))  # 2.5% errors, within 5%; the step is not over
    assert w.replicas(2) == 1
    assert p.wake_after == 5
    assert w.m.status.canary is not None
    assert w.m.status.canary.requests == 40
    assert "40 requests, 1 errors (2.5%)" in w.m.status.canary.message
    w.tick(6)
    w.pass_(figures(w, 90, 2))  # step 1 is over: step 2 (50%) scales the canary to 3
    assert w.replicas(2) == 3
    assert w.m.status.canary is not None
    assert (w.m.status.canary.step, w.m.status.canary.weight) == (2, 50)
    assert w.m.status.canary.step_started_at is None, "the new step waits for its pods"
    w.pass_()
    w.tick(11)
    w.pass_(figures(w, 200, 0))  # step 2 over: the last step (100)
    assert w.m.status.canary is not None
    assert w.m.status.canary.step == 3
    w.pass_()  # all 3 canary pods ready at 100%: the Service switches to v2 alone
    assert w.selector() == naming.selector_labels("m", 2)
    assert w.m.status.canary is None
    w.pass_()  # the endpoints are v2's alone: v2 is Serving, v1's Deployment goes
    assert w.m.status.production_version == 2
    assert w.phase(2) is Phase.SERVING
    w.pass_()
    assert set(w.deployments) == {"m-v2"}
    steps = [msg for reason, msg in w.events if reason == "CanaryStep"]
    assert [s.split(":")[1].split("(")[0].strip() for s in steps] == [
        "step 1/3",
        "step 2/3",
        "step 3/3",
    ]


def test_a_breach_rolls_back_at_once_with_the_figures() -> None:
    w = serving_v1(model())
    w.pass_()
    w.pass_()  # the step's clock starts
    w.tick(2)
    w.pass_(figures(w, 60, 24))  # 40% errors: well above 5%, before the step's time is up
    assert "m-v2" not in w.deployments, "the canary's Deployment is deleted"
    assert w.selector() == naming.selector_labels("m", 1), "v1 takes all traffic again"
    assert w.phase(2) is Phase.FAILED
    ready = next(c for c in w.versions[1].status.conditions if c.type == "Ready")
    assert ready.reason == "RolloutFailed"
    assert "canary analysis failed at step 1/3 (25%" in ready.message
    assert "error rate 40.0% (24 of 60 requests) is above maxErrorRate 5.0%" in ready.message
    assert "version 1 takes all traffic again" in ready.message
    assert w.m.status.canary is None
    # Failed for this generation: the next passes do not start it again.
    w.pass_()
    w.pass_()
    assert "m-v2" not in w.deployments
    assert w.phase(2) is Phase.FAILED


def test_latency_is_judged_too_and_nothing_is_judged_before_min_requests() -> None:
    w = serving_v1(model())
    w.pass_()
    w.pass_()
    w.pass_(figures(w, 9, 9, p99=900))  # 9 < minRequests: not judged yet
    assert "m-v2" in w.deployments
    w.pass_(figures(w, 30, 0, p99=450.0))
    assert w.phase(2) is Phase.FAILED
    ready = next(c for c in w.versions[1].status.conditions if c.type == "Ready")
    assert "p99 latency 450.0 ms is above maxP99LatencyMs 200 ms" in ready.message


def test_a_step_does_not_end_without_enough_requests() -> None:
    w = serving_v1(model())
    w.pass_()
    w.pass_()
    w.tick(30)
    w.pass_(figures(w, 3, 0))
    assert w.m.status.canary is not None
    assert w.m.status.canary.step == 1, "no evidence yet: the step holds"


def test_figures_of_another_window_are_not_used() -> None:
    w = serving_v1(model())
    w.pass_()
    w.pass_()
    st = w.m.status.canary
    assert st is not None
    stale = canary.Measured(2, 0, "2026-12-04T11:00:00Z", 100, 100, 5.0)
    w.pass_(stale)
    assert w.phase(2) is Phase.ROLLING, "errors measured in an older window do not count"


@pytest.mark.parametrize(
    ("stable", "weight", "want"),
    [
        (3, 25, 1),
        (3, 50, 3),
        (3, 75, 3),
        (1, 10, 1),
        (4, 20, 1),
        (10, 10, 1),
        (10, 30, 4),
        (2, 100, 2),
    ],
)
def test_canary_replicas(stable: int, weight: int, want: int) -> None:
    assert canary.canary_replicas(stable, weight) == want


def test_without_a_serving_version_a_canary_model_rolls_out_blue_green() -> None:
    w = World(model(), [version(1, "Production")])
    w.pass_()
    assert w.replicas(1) == 3
    w.pass_()
    assert w.selector() == naming.selector_labels("m", 1)
    assert w.m.status.canary is None


def test_blue_green_stays_the_default() -> None:
    m = Model.model_validate({"metadata": {"name": "m", "namespace": "ns", "uid": "u"}, "spec": {}})
    assert m.spec.rollout.strategy.value == "BlueGreen"
    assert builders.build_service(m, 1)["spec"]["selector"] == naming.selector_labels("m", 1)
