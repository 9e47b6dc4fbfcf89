"""spec.shadow and spec.promotion.shadow in the planner: the shadow's Deployment and Service, the
serving pods' mirror environment, status.shadow, the Shadowing condition and the gate. Pass by
pass, feeding each plan's objects and statuses back as the API server would."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelreg.api.models import Model, ModelVersion, Phase, Stage
from modelreg.lifecycle import naming, shadow
from modelreg.lifecycle.plan import Plan, plan, service_state
from tests.unit.test_plan import DEFAULTS, OK, version
from tests.unit.test_plan_canary import complete

NOW = "2026-12-05T01:00:00Z"
IP = "10.96.0.50"


def model(shadow_spec: dict[str, Any] | None, gate: dict[str, Any] | None = None) -> Model:
    spec: dict[str, Any] = {
        "storage": {"uri": "s3://models/m/", "secretRef": {"name": "s3"}},
        "serving": {"replicas": 2},
    }
    if shadow_spec is not None:
        spec["shadow"] = shadow_spec
    if gate is not None:
        spec["promotion"] = {"shadow": gate}
    return Model.model_validate(
        {
            "metadata": {"name": "m", "namespace": "ns", "uid": "model-uid", "generation": 1},
            "spec": spec,
        }
    )


def env_of(body: dict[str, Any]) -> dict[str, str]:
    container = body["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container["env"]}


@dataclass
class World:
    m: Model
    versions: list[ModelVersion]
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)  # Deployment names, in order

    def pass_(self, measured: shadow.Measured | None = None, available: bool = True) -> Plan:
        stable = self.services.get("m")
        shadow_svc = self.services.get("m-shadow")
        p = plan(
            namespace="ns",
            model_name="m",
            model=self.m,
            versions=self.versions,
            artifacts={v.metadata.name: OK for v in self.versions},
            deployments=[
                complete(b, None if available or n == "m-v1" else 0)
                for n, b in self.deployments.items()
            ],
            service=service_state(stable, [self.slice()]) if stable else None,
            shadow_service=service_state(shadow_svc) if shadow_svc else None,
            defaults=DEFAULTS,
            now=NOW,
            shadow_measured=measured,
        )
        for b in p.apply_deployments:
            self.deployments[b["metadata"]["name"]] = b
            self.applied.append(b["metadata"]["name"])
        for name in p.delete_deployments:
            self.deployments.pop(name, None)
        for svc in (p.apply_service, p.apply_shadow_service):
            if svc is not None:
                # The API server allocates the ClusterIP.
                self.services[svc["metadata"]["name"]] = {
                    **svc,
                    "spec": {**svc["spec"], "clusterIP": IP},
                }
        for name in (p.delete_service, p.delete_shadow_service):
            if name is not None:
                self.services.pop(name, None)
        if p.model_status is not None:
            self.m = self.m.model_copy(update={"status": p.model_status})
        self.versions = [
            v.model_copy(update={"status": p.version_status[v.metadata.name]})
            if v.metadata.name in p.version_status
            else v
            for v in self.versions
        ]
        self.events += [(e.type, e.reason, e.message) for e in p.events]
        return p

    def slice(self) -> dict[str, Any]:
        """The stable Service's EndpointSlice: the pods its selector matches."""
        selector = self.services["m"]["spec"]["selector"]
        endpoints = []
        for name, body in self.deployments.items():
            labels = body["spec"]["template"]["metadata"]["labels"]
            if all(labels.get(k) == v for k, v in selector.items()):
                endpoints += [
                    {"targetRef": {"kind": "Pod", "name": f"{name}-abc-{i}"}, "conditions": {}}
                    for i in range(int(body["spec"]["replicas"]))
                ]
        return {"metadata": {"labels": {"kubernetes.io/service-name": "m"}}, "endpoints": endpoints}

    def status(self, n: int) -> Any:
        return next(v.status for v in self.versions if v.spec.version == n)

    def condition(self) -> Any:
        return next((c for c in self.m.status.conditions if c.type == shadow.SHADOWING), None)

    def settle(self, passes: int = 6, **kw: Any) -> None:
        for _ in range(passes):
            self.pass_(**kw)

    def set_model(self, m: Model) -> None:
        self.m = m.model_copy(update={"status": self.m.status})

    def set_stage(self, n: int, stage: str) -> None:
        self.versions = [
            v.model_copy(update={"spec": v.spec.model_copy(update={"stage": Stage(stage)})})
            if v.spec.version == n
            else v
            for v in self.versions
        ]


def serving_v1(shadow_spec: dict[str, Any] | None, **kw: Any) -> World:
    """v1 serves production; v2 and v3 are registered and verified."""
    w = World(model(None, **kw), [version(1, "Production"), version(2), version(3)])
    w.settle()
    assert w.status(1).phase is Phase.SERVING
    w.set_model(model(shadow_spec, **kw))
    return w


def measured(requests: int, errors: int, mismatches: int, version: int = 2) -> shadow.Measured:
    return shadow.Measured(
        version=version,
        serving=1,
        requests=requests,
        errors=errors,
        mismatches=mismatches,
        dropped=3,
        p99_ms=12.3456,
    )


def test_a_shadow_runs_beside_production_and_the_serving_pods_mirror_to_it() -> None:
    w = serving_v1({"version": 2, "samplePercent": 25, "tolerance": 0.001})
    before = env_of(w.deployments["m-v1"])
    assert "MODELREG_SHADOW_URL" not in before

    w.pass_(available=False)  # the shadow's Deployment and Service are created, not Available
    dep = w.deployments["m-shadow"]
    assert dep["metadata"]["labels"][naming.ROLE_LABEL] == "shadow"
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    # No serving Service (a canary's selects every pod with the model label) picks shadow pods.
    assert naming.MODEL_LABEL not in pod_labels
    assert pod_labels[naming.VERSION_LABEL] == "2"
    assert dep["spec"]["selector"]["matchLabels"] == {naming.SHADOW_OF: "m"}
    assert dep["spec"]["replicas"] == 1
    assert env_of(dep)["MODELREG_MODEL_VERSION"] == "2"
    assert "MODELREG_SHADOW_URL" not in env_of(dep)
    assert w.services["m-shadow"]["spec"]["selector"] == {naming.SHADOW_OF: "m"}
    assert env_of(w.deployments["m-v1"]) == before  # not into a shadow that is not up yet
    cond = w.condition()
    assert (cond.status, cond.reason) == ("False", "Starting")
    assert w.status(1).phase is Phase.SERVING

    w.pass_()  # the shadow is Available: the serving Deployment gets the mirror, once
    mirror = env_of(w.deployments["m-v1"])
    assert mirror["MODELREG_SHADOW_URL"] == f"http://{IP}:80"
    assert mirror["MODELREG_SHADOW_GRPC_TARGET"] == f"{IP}:9000"
    assert mirror["MODELREG_SHADOW_VERSION"] == "2"
    assert mirror["MODELREG_SHADOW_SAMPLE_PERCENT"] == "25"
    assert mirror["MODELREG_SHADOW_TOLERANCE"] == "0.001"
    cond = w.condition()
    assert (cond.status, cond.reason) == ("True", "Mirroring")
    assert "mirrors 25% of its inference requests to version 2" in cond.message
    assert w.m.status.shadow is not None
    assert (w.m.status.shadow.version, w.m.status.shadow.serving_version) == (2, 1)
    st = w.status(2).shadow
    assert st is not None
    assert (st.serving_version, st.since, st.compared) == (1, NOW, 0)
    assert st.agreement is None
    assert w.status(1).phase is Phase.SERVING
    assert w.status(2).phase is Phase.READY

    applied = len(w.applied)
    w.settle()
    assert len(w.applied) == applied  # converged: nothing more is written

    w.pass_(measured=measured(requests=200, errors=10, mismatches=5))
    st = w.status(2).shadow
    assert st is not None
    assert (st.requests, st.compared, st.agreed, st.errors, st.dropped) == (200, 190, 185, 10, 3)
    assert st.agreement == round(185 / 190, 6)
    assert st.p99_latency_ms == 12.346
    assert st.updated_at == NOW
    assert [e for e in w.events if e[1] == "ShadowMirroring"]


def test_removing_the_shadow_removes_its_objects_and_the_mirror_and_keeps_the_figures() -> None:
    w = serving_v1({"version": 2})
    w.settle()
    w.pass_(measured=measured(100, 0, 1))
    w.set_model(model(None))
    w.settle()
    assert "m-shadow" not in w.deployments
    assert "m-shadow" not in w.services
    assert "MODELREG_SHADOW_URL" not in env_of(w.deployments["m-v1"])
    assert w.condition() is None
    assert w.m.status.shadow is None
    kept = w.status(2).shadow
    assert kept is not None
    assert kept.agreed == 99


def test_a_new_shadow_version_rolls_the_serving_pods_once() -> None:
    w = serving_v1({"version": 2})
    w.settle()
    rolls = w.applied.count("m-v1")
    w.set_model(model({"version": 3}))
    w.pass_(available=False)  # the shadow Deployment switches to v3, not Available yet
    assert env_of(w.deployments["m-shadow"])["MODELREG_MODEL_VERSION"] == "3"
    assert env_of(w.deployments["m-v1"])["MODELREG_SHADOW_VERSION"] == "2"  # until v3 is up
    assert "mirror to version 2 until it is Available" in w.condition().message
    w.settle()
    assert env_of(w.deployments["m-v1"])["MODELREG_SHADOW_VERSION"] == "3"
    assert w.applied.count("m-v1") == rolls + 1
    assert w.m.status.shadow is not None
    assert w.m.status.shadow.version == 3


def test_the_serving_version_cannot_be_its_own_shadow() -> None:
    w = serving_v1({"version": 1})
    w.settle()
    assert "m-shadow" not in w.deployments
    assert "m-shadow" not in w.services
    assert "MODELREG_SHADOW_URL" not in env_of(w.deployments["m-v1"])
    cond = w.condition()
    assert (cond.status, cond.reason) == ("False", "ShadowIsServing")
    assert "version 1 serves production: it cannot be its own shadow" in cond.message
    warnings = [e for e in w.events if e[0] == "Warning" and e[1] == "ShadowIsServing"]
    assert len(warnings) == 1  # once, not every pass


def test_an_unknown_shadow_version_or_no_production_is_said() -> None:
    w = serving_v1({"version": 9})
    w.settle()
    assert "m-shadow" not in w.deployments
    assert w.condition().reason == "ShadowVersionNotFound"
    assert "no ModelVersion m-v9" in w.condition().message

    w = World(model({"version": 2}), [version(1), version(2)])
    w.settle()
    assert "m-shadow" not in w.deployments
    assert w.condition().reason == "NoServingVersion"


def test_the_shadow_gate_blocks_production_until_agreement_is_shown() -> None:
    gate = {"minAgreement": 0.99, "minRequests": 100}
    w = serving_v1(None, gate=gate)
    w.settle()
    w.set_stage(2, "Production")
    w.settle()
    st = w.status(2)
    assert st.phase is Phase.BLOCKED
    ready = next(c for c in st.conditions if c.type == "Ready")
    assert ready.reason == "ShadowGateFailed"
    assert "none is recorded: set spec.shadow.version: 2" in ready.message
    assert w.status(1).phase is Phase.SERVING

    w.set_model(model({"version": 2}, gate=gate))
    w.settle()
    # The gate reads the status the pass before wrote (its write brings the next pass).
    w.settle(2, measured=measured(60, 0, 0))
    assert "60 requests have been compared" in _ready(w, 2).message
    w.settle(2, measured=measured(400, 0, 20))
    assert "agreed with version 1 on 380 of 400 compared requests" in _ready(w, 2).message
    assert w.status(2).phase is Phase.BLOCKED

    w.settle(2, measured=measured(1000, 0, 5))  # 0.995
    w.settle()
    assert w.status(2).phase is Phase.SERVING
    assert w.status(1).phase is Phase.SUPERSEDED
    # Now the shadow is the serving version: it stops, and the Model says so.
    assert "m-shadow" not in w.deployments
    assert "m-shadow" not in w.services
    assert "MODELREG_SHADOW_URL" not in env_of(w.deployments["m-v2"])
    assert w.condition().reason == "ShadowIsServing"
    # A rollback to the version that served before is not held back by the gate.
    w.set_stage(2, "Archived")
    w.settle()
    assert w.status(1).phase is Phase.SERVING


def test_the_gate_does_not_hold_back_the_first_production_version() -> None:
    w = World(model(None, gate={"minAgreement": 0.99}), [version(1, "Production")])
    w.settle()
    assert w.status(1).phase is Phase.SERVING


def _ready(w: World, n: int) -> Any:
    return next(c for c in w.status(n).conditions if c.type == "Ready")
