"""The planner's safety rules (issue 11): ownership, refusals, hand-over, health, failure keys."""

from __future__ import annotations

from dataclasses import replace

from modelreg.api.models import API_VERSION, Model, ModelVersion, Phase, Stage
from modelreg.lifecycle import builders, naming
from modelreg.lifecycle.plan import (
    ArtifactVerdict,
    Owner,
    Plan,
    Rejection,
    Unreadable,
    Verdict,
    foreign_message,
    frozen,
    plan,
)
from tests.unit.test_plan import DEFAULTS, NOW, OK, dep, model, phase, ready, run, svc, version


def model_ready(p: object) -> tuple[str, str, str]:
    status = p.model_status  # type: ignore[attr-defined]
    assert status is not None
    c = next(c for c in status.conditions if c.type == "Ready")
    return c.status, c.reason, c.message


def test_a_labelled_deployment_with_another_controller_is_never_touched() -> None:
    stranger = replace(dep(1), owner=Owner("apps/v1", "ReplicaSet", "x", "u-x"))
    p = run([version(1, "Production")], deployments=[stranger], service=svc(1))
    assert p.apply_deployments == []
    assert "m-v1" not in p.delete_deployments
    assert phase(p, "m-v1")[0] is Phase.BLOCKED
    assert ready(p, "m-v1") == ("False", "NameConflict")
    status, reason, message = model_ready(p)
    assert (status, reason) == ("False", "NameConflict")
    assert "Deployment ns/m-v1" in message
    assert "ReplicaSet x" in message


def test_a_service_held_by_another_object_stops_all_serving() -> None:
    taken = {("Service", "m"): "Service ns/m already exists and is not managed by modelreg"}
    p = plan(
        namespace="ns",
        model_name="m",
        model=model(),
        versions=[version(1, "Production")],
        artifacts={"m-v1": OK},
        deployments=[],
        service=None,
        defaults=DEFAULTS,
        now=NOW,
        conflicts=taken,
    )
    assert p.apply_deployments == []
    assert p.apply_service is None
    assert p.delete_service is None
    assert ready(p, "m-v1") == ("False", "NameConflict")
    assert model_ready(p)[1] == "NameConflict"
    assert any(e.reason == "NameConflict" and e.kind == "Model" for e in p.events)


def test_foreign_message_names_what_is_wrong() -> None:
    assert foreign_message("Service", "ns", "m", {"labels": {}}, "m", "u") is not None
    ours = {
        "labels": {naming.MANAGED_BY: naming.MANAGER},
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": "Model",
                "name": "m",
                "uid": "u",
                "controller": True,
            }
        ],
    }
    assert foreign_message("Service", "ns", "m", ours, "m", "u") is None
    old = foreign_message("Service", "ns", "m", ours, "m", "another-uid")
    assert old is not None
    assert "earlier Model m" in old


def test_a_refused_deployment_fails_that_version_and_others_get_status() -> None:
    body = builders.build_deployment(model(), version(2, "Production"), DEFAULTS)
    refused = {"m-v2": Rejection(body["metadata"]["annotations"][naming.SPEC_HASH], "quota!")}
    p = plan(
        namespace="ns",
        model_name="m",
        model=model(),
        versions=[version(1, "Production", status={"phase": "Serving"}), version(2, "Production")],
        artifacts={"m-v1": OK, "m-v2": OK},
        deployments=[dep(1)],
        service=svc(1),
        defaults=DEFAULTS,
        now=NOW,
        rejected=refused,
    )
    assert p.apply_deployments == []  # not retried with the same spec
    assert ready(p, "m-v2") == ("False", "InvalidServingSpec")
    assert "quota!" in p.version_status["m-v2"].conditions[-1].message
    assert phase(p, "m-v1") == (Phase.SERVING, Stage.PRODUCTION)
    assert model_ready(p)[1] == "InvalidServingSpec"


def test_a_refusal_is_retried_once_the_spec_changes() -> None:
    refused = {"m-v1": Rejection("an-older-hash", "quota!")}
    p = plan(
        namespace="ns",
        model_name="m",
        model=model(),
        versions=[version(1, "Production")],
        artifacts={"m-v1": OK},
        deployments=[],
        service=None,
        defaults=DEFAULTS,
        now=NOW,
        rejected=refused,
    )
    assert [d["metadata"]["name"] for d in p.apply_deployments] == ["m-v1"]


def test_deleting_the_serving_version_hands_over_to_the_rolling_one() -> None:
    # v1 was deleted (Argo CD prune); v2 is rolling out: v1's Deployment and the Service stay.
    p = run(
        [version(2, "Production")], deployments=[dep(1), dep(2, available=False)], service=svc(1)
    )
    assert p.serving_version == 1
    assert p.delete_deployments == []
    assert p.delete_service is None
    assert phase(p, "m-v2")[0] is Phase.ROLLING
    # Once v2 is Available the Service switches, and v1 goes once the endpoints moved.
    p = run([version(2, "Production")], deployments=[dep(1), dep(2)], service=svc(2))
    assert p.delete_deployments == ["m-v1"]


def test_deleting_the_serving_version_without_successor_withdraws_with_an_event() -> None:
    p = run([], deployments=[dep(1)], service=svc(1), m=model(productionVersion=1))
    assert p.serving_version is None
    assert p.delete_service == "m"
    assert p.delete_deployments == ["m-v1"]
    assert any(e.reason == "ProductionWithdrawn" and e.type == "Warning" for e in p.events)


def test_a_demoted_version_keeps_serving_while_its_successor_cannot_take_over() -> None:
    failed = {"failedGeneration": 1}
    p = run(
        [
            version(1, "Archived", status={"phase": "Serving", "stage": "Production"}),
            version(2, "Production", status=failed),
        ],
        deployments=[dep(1)],
        service=svc(1),
    )
    assert p.serving_version == 1
    assert p.delete_deployments == []
    assert p.delete_service is None
    assert ready(p, "m-v1") == ("False", "HandingOver")
    assert model_ready(p)[1] == "HandOverStalled"


def test_a_successor_still_being_verified_is_a_hand_over_in_progress_not_a_stall() -> None:
    """Git archives v1 and promotes v2 in one commit: while v2's artifact is re-checked, v1 keeps
    serving and the Model stays Ready (Argo CD would otherwise flash Degraded); once the check
    fails, the hand-over is stalled."""
    serving = version(1, "Archived", status={"phase": "Serving", "stage": "Production"})
    successor = version(2, "Production")
    for verdict in (Verdict.PENDING, Verdict.VERIFYING):
        art = ArtifactVerdict(verdict, "Verifying", "checking")
        p = run([serving, successor], artifacts={"m-v2": art}, deployments=[dep(1)], service=svc(1))
        assert p.serving_version == 1
        assert p.delete_deployments == []
        status, reason, message = model_ready(p)
        assert (status, reason) == ("True", "Rolling"), message
        assert "v2 (Verifying)" in message
        assert ready(p, "m-v1") == ("False", "HandingOver")
        assert not any(e.reason == "HandOverStalled" for e in p.events)
    for verdict, why in (
        (Verdict.FAILED, "ArtifactNotFound"),
        (Verdict.UNKNOWN, "StoreUnavailable"),
    ):
        art = ArtifactVerdict(verdict, why, "no")
        p = run([serving, successor], artifacts={"m-v2": art}, deployments=[dep(1)], service=svc(1))
        assert p.serving_version == 1
        assert model_ready(p)[:2] == ("False", "HandOverStalled"), verdict


def _graced(m: Model, versions: list[ModelVersion], now: str = NOW) -> Plan:
    return plan(
        namespace="ns",
        model_name="m",
        model=m,
        versions=versions,
        artifacts={v.metadata.name: OK for v in versions},
        deployments=[dep(1)],
        service=svc(1),
        defaults=DEFAULTS,
        now=now,
        withdraw_grace_seconds=30,
    )


def test_production_is_withdrawn_only_after_the_grace_period_when_nobody_asks() -> None:
    """Git archives v1 and promotes v2 in one commit, but Argo CD writes v1 first: for that
    moment nobody asks for Production, and it must not be torn down."""
    archived = version(1, "Archived", status={"phase": "Serving", "stage": "Production"})
    p = _graced(model(productionVersion=1), [archived])
    assert p.serving_version == 1
    assert p.delete_service is None
    assert p.delete_deployments == []
    assert p.wake_after == 30
    assert p.model_status is not None
    assert p.model_status.withdraw_at == "2026-11-24T00:00:30Z"
    status, reason, message = model_ready(p)
    assert (status, reason) == ("True", "Withdrawing")
    assert "keeps serving until 2026-11-24T00:00:30Z" in message
    assert ready(p, "m-v1") == ("False", "HandingOver")
    assert [e.reason for e in p.events if e.kind == "Model"] == ["WithdrawScheduled"]

    # Ten seconds on, the time recorded holds (it does not move with every pass).
    later = _graced(
        model(productionVersion=1, withdrawAt="2026-11-24T00:00:30Z"),
        [archived],
        now="2026-11-24T00:00:10Z",
    )
    assert later.serving_version == 1
    assert later.wake_after == 20
    assert not any(e.reason == "WithdrawScheduled" for e in later.events)

    # The time has come: the Service and the Deployment go, with the Warning.
    gone = _graced(
        model(productionVersion=1, withdrawAt="2026-11-24T00:00:30Z"),
        [archived],
        now="2026-11-24T00:00:30Z",
    )
    assert gone.serving_version is None
    assert gone.delete_service == "m"
    assert gone.delete_deployments == ["m-v1"]
    assert gone.wake_after is None
    assert gone.model_status is not None
    assert gone.model_status.withdraw_at is None
    assert any(e.reason == "ProductionWithdrawn" for e in gone.events)


def test_a_version_asking_again_within_the_grace_cancels_the_withdrawal() -> None:
    archived = version(1, "Archived", status={"phase": "Serving", "stage": "Production"})
    p = _graced(
        model(productionVersion=1, withdrawAt="2026-11-24T00:00:30Z"),
        [archived, version(2, "Production")],
    )
    assert p.serving_version == 1
    assert p.wake_after is None
    assert p.model_status is not None
    assert p.model_status.withdraw_at is None
    assert model_ready(p)[:2] == ("True", "Rolling")
    assert [b["metadata"]["name"] for b in p.apply_deployments] == ["m-v2"]


def test_a_recorded_withdrawal_further_off_than_the_grace_is_brought_in() -> None:
    archived = version(1, "Archived", status={"phase": "Serving", "stage": "Production"})
    p = _graced(model(productionVersion=1, withdrawAt="2026-11-25T00:00:00Z"), [archived])
    assert p.model_status is not None
    assert p.model_status.withdraw_at == "2026-11-24T00:00:30Z"


def test_a_serving_deployment_without_ready_pods_is_unavailable_and_recovers() -> None:
    serving = version(1, "Production", status={"phase": "Serving", "stage": "Production"})
    down = replace(dep(1), ready_replicas=0, available=False)
    p = run([serving], deployments=[down], service=svc(1))
    serving_cond = next(c for c in p.version_status["m-v1"].conditions if c.type == "Serving")
    assert (serving_cond.status, serving_cond.reason) == ("False", "Unavailable")
    assert model_ready(p)[:2] == ("False", "Unavailable")
    assert any(e.reason == "Unavailable" for e in p.events)
    p = run([serving], deployments=[dep(1)], service=svc(1))
    assert ready(p, "m-v1") == ("True", "Serving")


def test_a_stalled_update_of_the_serving_version_is_failed_and_a_fixed_model_retries() -> None:
    serving = version(1, "Production", status={"phase": "Serving", "stage": "Production"})
    stalled = replace(dep(1), deadline_exceeded=True, available=False)
    p = run([serving], deployments=[stalled], service=svc(1))
    st = p.version_status["m-v1"]
    assert st.phase is Phase.SERVING  # the previous pods serve on
    assert ready(p, "m-v1") == ("False", "RolloutFailed")
    assert st.failed_generation == 1
    assert st.failed_spec_hash == stalled.spec_hash
    assert model_ready(p)[1] == "RolloutFailed"


def test_a_failed_rollout_is_retried_when_the_model_changes() -> None:
    mv = version(2, "Production")
    old_hash = builders.build_deployment(model(), mv, DEFAULTS)["metadata"]["annotations"][
        naming.SPEC_HASH
    ]
    failed = version(2, "Production", status={"failedGeneration": 1, "failedSpecHash": old_hash})
    assert run([failed]).apply_deployments == []
    fixed = model()
    fixed.spec.serving.replicas = 2
    p = run([failed], m=fixed)
    assert [d["metadata"]["name"] for d in p.apply_deployments] == ["m-v2"]


def test_the_default_image_is_pinned_until_the_version_leaves_production() -> None:
    mv = version(1, "Production", status={"phase": "Serving", "stage": "Production"})
    p = run([mv], deployments=[dep(1)], service=svc(1))
    pin = p.version_status["m-v1"].default_image
    assert pin is not None
    assert pin.image == "img:1"
    pinned = version(
        1,
        "Production",
        status={
            "phase": "Serving",
            "stage": "Production",
            "defaultImage": {"runtime": "builtin", "image": "img:1"},
        },
    )
    upgraded = builders.ServingDefaults(builtin_image="img:2", mlserver_image="mls:1")
    body = builders.build_deployment(model(), pinned, upgraded, pinned_default="img:1")
    assert body["spec"]["template"]["spec"]["containers"][0]["image"] == "img:1"
    p = plan(
        namespace="ns",
        model_name="m",
        model=model(),
        versions=[pinned],
        artifacts={"m-v1": OK},
        deployments=[dep(1)],
        service=svc(1),
        defaults=upgraded,
        now=NOW,
    )
    assert p.apply_deployments == []  # an operator upgrade does not re-roll it
    archived = version(1, "Archived", status={"defaultImage": {"runtime": "builtin", "image": "x"}})
    st = run([archived]).version_status["m-v1"]
    assert st.default_image is None


def test_the_model_dir_is_bounded_by_the_artifact_size() -> None:
    assert builders.model_dir_limit(None) is None
    assert builders.model_dir_limit(0) == "16Mi"
    assert builders.model_dir_limit(100 * 1024 * 1024) == "126Mi"
    mv = version(1, "Production", status={"artifact": {"verified": True, "sizeBytes": 1024}})
    body = builders.build_deployment(model(), mv, DEFAULTS)
    vols = {v["name"]: v for v in body["spec"]["template"]["spec"]["volumes"]}
    assert vols["model"]["emptyDir"] == {"sizeLimit": "17Mi"}


def test_frozen_changes_only_the_ready_condition_and_warns_once() -> None:
    m = model(productionVersion=1)
    u = Unreadable("ModelVersion", "m-v2", "uid-2", "spec.stage", "Input should be 'None'")
    status, events = frozen("m", "model-uid", 1, m.status, [u], NOW)
    assert status is not None
    assert status.production_version == 1
    c = next(c for c in status.conditions if c.type == "Ready")
    assert (c.status, c.reason) == ("False", "Unreadable")
    assert "ModelVersion m-v2: spec.stage" in c.message
    assert {(e.kind, e.reason) for e in events} == {
        ("ModelVersion", "Unreadable"),
        ("Model", "Unreadable"),
    }
    again, events = frozen("m", "model-uid", 1, status, [u], NOW)
    assert again is None
    assert events == []


def test_a_deployment_of_an_older_operator_is_handed_to_the_model() -> None:
    legacy = replace(dep(1), uid="d-uid", owner=Owner(API_VERSION, "ModelVersion", "m-v1", "uid-1"))
    serving = version(1, "Production", status={"phase": "Serving", "stage": "Production"})
    p = run([serving], deployments=[legacy], service=svc(1))
    assert p.adopt == {"m-v1": "d-uid"}
    assert p.conflicts == {}
    assert phase(p, "m-v1") == (Phase.SERVING, Stage.PRODUCTION)
