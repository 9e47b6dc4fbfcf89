"""Safe in a shared cluster (issue 11): the operator never harms what it does not own, never plans
from partial knowledge, and never drops production by accident. Real API server, controller-manager,
kwok nodes and S3 server; one operator process per test, watching only the test's namespace."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import (
    DEV,
    REPO,
    S3,
    Kubectl,
    OperatorProcess,
    hold_pods_unready_stage,
    restart_apiserver,
    wait_for,
)
from tests.e2e.registry import Registry


@pytest.fixture
def reg(
    kubectl: Kubectl, namespace: str, s3: S3, s3_secret: str, operator: OperatorProcess
) -> Registry:
    return Registry(kubectl=kubectl, namespace=namespace, s3=s3, secret=s3_secret)


def _model_ready(reg: Registry, model: str) -> dict[str, Any]:
    for c in reg.model_status(model).get("conditions", []):
        if c["type"] == "Ready":
            return dict(c)
    return {}


def _wait_model_reason(
    reg: Registry, model: str, reason: str, timeout: float = 60
) -> dict[str, Any]:
    return wait_for(
        lambda: (c := _model_ready(reg, model)).get("reason") == reason and c,
        timeout=timeout,
        what=f"Model {model} Ready reason {reason} (now {_model_ready(reg, model)})",
    )


def _container(dep: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = dep["spec"]["template"]["spec"]["containers"][0]
    return container


def _managers(kubectl: Kubectl, kind: str, name: str, namespace: str) -> dict[str, str]:
    out = kubectl("-n", namespace, "get", kind, name, "-o", "json", "--show-managed-fields")
    return {m["manager"]: m["operation"] for m in json.loads(out)["metadata"]["managedFields"]}


def _event_reasons(reg: Registry, name: str) -> list[str]:
    return [e["reason"] for e in reg.events(name)]


# -- 1. server-side apply: what the Model no longer sets leaves the Deployment ------------------


def test_fields_removed_from_the_model_leave_the_deployment(reg: Registry) -> None:
    serving = {
        "runtime": "custom",
        "image": "example.invalid/custom:1",
        "command": ["python", "-m", "server"],
        "env": [{"name": "KEEP", "value": "1"}, {"name": "DROP", "value": "2"}],
        "nodeSelector": {"pool": "models", "zone": "a"},
        "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
    }
    model = reg.model(serving=serving)
    reg.version("credit", 1, "Production")
    dep = wait_for(lambda: reg.deployments("credit").get("credit-v1"), timeout=60, what="credit-v1")
    c = _container(dep)
    assert c["command"] == ["python", "-m", "server"]
    assert {e["name"] for e in c["env"]} >= {"KEEP", "DROP"}
    # The model volume is bounded by the artifact's size (4 KiB + headroom).
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["model"]["emptyDir"] == {"sizeLimit": "17Mi"}
    owner = dep["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"]) for o in owner] == [("Model", "credit")]
    managers = _managers(reg.kubectl, "deployment", "credit-v1", reg.namespace)
    assert managers.get("modelreg") == "Apply"

    model["spec"]["serving"] = {
        "runtime": "custom",
        "image": "example.invalid/custom:1",
        "env": [{"name": "KEEP", "value": "1"}],
        "nodeSelector": {"pool": "models"},
        "resources": {"limits": {"cpu": "1"}},
    }
    reg.kubectl.apply(model)

    def updated() -> dict[str, Any] | None:
        d = reg.deployments("credit").get("credit-v1")
        if d is None:
            return None
        c = _container(d)
        names = {e["name"] for e in c.get("env", [])}
        return d if "DROP" not in names and "command" not in c else None

    dep = wait_for(updated, timeout=60, what="the Deployment without DROP and command")
    c = _container(dep)
    assert "KEEP" in {e["name"] for e in c["env"]}
    assert dep["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "models"}
    assert c["resources"]["limits"] == {"cpu": "1"}


# -- 2. never take over an object the operator did not create ----------------------------------


def test_a_service_the_operator_did_not_create_is_never_touched(
    reg: Registry, kubectl: Kubectl, namespace: str
) -> None:
    theirs = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "credit", "namespace": namespace, "labels": {"team": "other"}},
        "spec": {"selector": {"app": "someone-else"}, "ports": [{"port": 80}]},
    }
    kubectl.apply(theirs)
    reg.model()
    reg.version("credit", 1, "Production")
    cond = _wait_model_reason(reg, "credit", "NameConflict")
    assert cond["status"] == "False"
    assert f"Service {namespace}/credit" in cond["message"]
    st = reg.wait_phase("credit", 1, "Blocked")
    assert reg.condition("credit", 1, "Ready")["reason"] == "NameConflict"
    assert "NameConflict" in _event_reasons(reg, "credit")
    time.sleep(3)
    svc = kubectl.get("service", "credit", namespace)
    assert svc is not None
    assert svc["spec"]["selector"] == {"app": "someone-else"}
    assert "ownerReferences" not in svc["metadata"]
    assert "modelreg" not in _managers(kubectl, "service", "credit", namespace)
    assert reg.deployments("credit") == {}  # nothing is served while the name is taken
    assert st["stage"] == "None"

    # Deleting the Model leaves their Service alone (it was never adopted).
    kubectl("-n", namespace, "delete", "mdl", "credit", "--wait=true")
    time.sleep(3)
    assert kubectl.get("service", "credit", namespace) is not None


def test_a_deployment_in_a_versions_place_is_never_touched_and_the_conflict_clears(
    reg: Registry, kubectl: Kubectl, namespace: str
) -> None:
    theirs = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "credit-v1", "namespace": namespace},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "theirs"}},
            "template": {
                "metadata": {"labels": {"app": "theirs"}},
                "spec": {"containers": [{"name": "c", "image": "example.invalid/theirs:1"}]},
            },
        },
    }
    kubectl.apply(theirs)
    reg.model()
    reg.version("credit", 1, "Production")
    cond = _wait_model_reason(reg, "credit", "NameConflict")
    assert f"Deployment {namespace}/credit-v1" in cond["message"]
    dep = kubectl.get("deployment", "credit-v1", namespace)
    assert dep is not None
    assert dep["spec"]["selector"] == {"matchLabels": {"app": "theirs"}}
    assert "ownerReferences" not in dep["metadata"]
    # Once their Deployment is gone, the version is served (the operator looks again by itself).
    kubectl("-n", namespace, "delete", "deployment", "credit-v1", "--wait=true")
    reg.wait_phase("credit", 1, "Serving", timeout=120)
    assert _model_ready(reg, "credit")["status"] == "True"


# -- 3. never plan from partial knowledge ------------------------------------------------------


def _widen_stage_enum(kubectl: Kubectl) -> None:
    """What a newer CRD kept after an operator downgrade looks like: a stage value this operator
    does not know. The installed CRD accepts it; the operator's schema rejects it."""
    crd = kubectl.get("crd", "modelversions.modelreg.dev")
    assert crd is not None
    stage = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["stage"]
    if "Shadow" not in stage["enum"]:
        path = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/stage/enum/-"
        kubectl(
            "patch",
            "crd",
            "modelversions.modelreg.dev",
            "--type=json",
            "-p",
            json.dumps([{"op": "add", "path": path, "value": "Shadow"}]),
        )


def _restore_crds(kubectl: Kubectl) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))


def test_an_unreadable_serving_version_freezes_its_model(
    reg: Registry, kubectl: Kubectl, namespace: str
) -> None:
    reg.model()
    reg.version("credit", 1, "Production")
    reg.wait_phase("credit", 1, "Serving", timeout=90)
    _widen_stage_enum(kubectl)
    try:
        wait_for(
            lambda: (
                kubectl.run(
                    "-n",
                    namespace,
                    "patch",
                    "mv",
                    "credit-v1",
                    "--type=merge",
                    "-p",
                    '{"spec":{"stage":"Shadow"}}',
                    check=False,
                ).returncode
                == 0
            ),
            timeout=30,
            what="the widened CRD to accept stage Shadow",
        )
        cond = _wait_model_reason(reg, "credit", "Unreadable")
        assert cond["status"] == "False"
        assert "ModelVersion credit-v1" in cond["message"]
        assert "spec.stage" in cond["message"]
        assert "Unreadable" in _event_reasons(reg, "credit-v1")
        time.sleep(5)  # the old operator tore production down here: it must all still be there
        assert set(reg.deployments("credit")) == {"credit-v1"}
        assert reg.service_version("credit") == "1"
        assert reg.model_status("credit").get("productionVersion") == 1
        reg.stage("credit", 1, "Production")
    finally:
        kubectl(
            "-n",
            namespace,
            "patch",
            "mv",
            "credit-v1",
            "--type=merge",
            "-p",
            '{"spec":{"stage":"Production"}}',
            check=False,
        )
        _restore_crds(kubectl)
    cond = _wait_model_reason(reg, "credit", "Serving")
    assert cond["status"] == "True"


# -- 4. a refused child write is a condition, not a retry loop that blocks every status ---------


def test_a_refused_deployment_is_invalid_serving_spec_and_other_statuses_go_on(
    reg: Registry, operator: OperatorProcess
) -> None:
    bad = {"resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}}
    model = reg.model(serving=bad)
    reg.model("other")
    reg.version("credit", 1, "Production")
    reg.version("credit", 2, "Staging")
    reg.version("other", 1, "Production")
    st = reg.wait_phase("credit", 1, "Failed", timeout=60)
    ready = reg.condition("credit", 1, "Ready")
    assert ready["reason"] == "InvalidServingSpec"
    assert "less than or equal to cpu limit" in ready["message"]
    assert st["stage"] == "None"
    assert _model_ready(reg, "credit")["reason"] == "InvalidServingSpec"
    reg.wait_phase("credit", 2, "Ready", timeout=60)  # the other version's status is written
    reg.wait_phase("other", 1, "Serving", timeout=90)
    refusals = operator.log().count("the API server refused Deployment")
    time.sleep(8)
    assert operator.log().count("the API server refused Deployment") == refusals  # no retry loop
    # A fixed Model is a new attempt.
    model["spec"]["serving"] = {"replicas": 1}
    reg.kubectl.apply(model)
    reg.wait_phase("credit", 1, "Serving", timeout=90)


# -- 5. GitOps replace hands over; no successor withdraws, with an Event ------------------------


def test_deleting_the_serving_version_hands_over_then_withdraws(
    reg: Registry, kubectl: Kubectl, namespace: str
) -> None:
    reg.model()
    reg.version("credit", 3, "Production")
    reg.wait_phase("credit", 3, "Serving", timeout=90)
    stage = f"hold-{namespace}"
    kubectl.apply(hold_pods_unready_stage(stage, "modelreg.dev/model", "credit"))
    try:
        reg.version("credit", 4, "Production")  # v4.yaml added ...
        reg.wait_phase("credit", 4, "Rolling", timeout=60)
        kubectl("-n", namespace, "delete", "mv", "credit-v3", "--wait=true")  # ... v3.yaml pruned
        time.sleep(5)
        assert reg.service_version("credit") == "3"
        assert set(reg.deployments("credit")) == {"credit-v3", "credit-v4"}
        assert reg.model_status("credit").get("productionVersion") == 3
    finally:
        kubectl("delete", "stage", stage, "--ignore-not-found")
    kubectl("-n", namespace, "delete", "pods", "-l", "modelreg.dev/version=4", "--wait=false")
    reg.wait_phase("credit", 4, "Serving", timeout=90)
    wait_for(
        lambda: set(reg.deployments("credit")) == {"credit-v4"},
        timeout=60,
        what="v3's Deployment removed after the hand-over",
    )
    # The serving version deleted with no successor: production is withdrawn, and says so, but
    # only after the grace period (withdrawGraceSeconds, 30 s by default): a change written object
    # by object (v4 pruned, then v5 added) must not take production down between two writes.
    deleted = time.monotonic()
    kubectl("-n", namespace, "delete", "mv", "credit-v4", "--wait=true")
    withdrawing = wait_for(
        lambda: reg.model_status("credit").get("withdrawAt") and reg.model_status("credit"),
        timeout=20,
        what="the Model recording when production is withdrawn",
    )
    ready = next(c for c in withdrawing["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Withdrawing"), ready
    assert withdrawing["withdrawAt"] in ready["message"], ready
    assert reg.service_version("credit") == "4"
    assert "WithdrawScheduled" in _event_reasons(reg, "credit")
    wait_for(
        lambda: (
            kubectl.get("service", "credit", namespace) is None and not reg.deployments("credit")
        ),
        timeout=90,
        what="production withdrawn",
    )
    assert time.monotonic() - deleted >= 29, "withdrawn before the grace period ended"
    assert "ProductionWithdrawn" in _event_reasons(reg, "credit")
    status = reg.model_status("credit")
    assert status.get("productionVersion") is None
    assert status.get("withdrawAt") is None


# -- 7. serving health is true; repeated Events are counted, not duplicated -------------------


def test_a_serving_deployment_without_ready_pods_is_unavailable_and_recovers(
    reg: Registry, kubectl: Kubectl, namespace: str
) -> None:
    reg.model()
    reg.version("credit", 1, "Production")
    reg.wait_phase("credit", 1, "Serving", timeout=90)
    stage = f"hold-{namespace}"
    for _attempt in range(2):
        kubectl.apply(hold_pods_unready_stage(stage, "modelreg.dev/model", "credit"))
        try:
            kubectl("-n", namespace, "delete", "pods", "-l", "modelreg.dev/model=credit")
            wait_for(
                lambda: reg.condition("credit", 1, "Serving").get("reason") == "Unavailable",
                timeout=60,
                what="Serving False Unavailable",
            )
            assert reg.condition("credit", 1, "Serving")["status"] == "False"
            cond = _wait_model_reason(reg, "credit", "Unavailable")
            assert cond["status"] == "False"
        finally:
            kubectl("delete", "stage", stage, "--ignore-not-found")
        kubectl(
            "-n", namespace, "delete", "pods", "-l", "modelreg.dev/model=credit", "--wait=false"
        )
        _wait_model_reason(reg, "credit", "Serving", timeout=90)
        assert reg.condition("credit", 1, "Serving")["status"] == "True"
    unavailable = [e for e in reg.events("credit") if e["reason"] == "Unavailable"]
    assert len(unavailable) == 1, unavailable
    assert unavailable[0]["count"] == 2


# -- 8, 9. Model-level changes are rollouts; a fixed Model retries a failed rollout -------------


def test_a_stalled_model_change_is_failed_and_the_old_pods_serve_until_fixed(
    reg: Registry, kubectl: Kubectl, namespace: str
) -> None:
    model = reg.model(serving={"progressDeadlineSeconds": 10})
    reg.version("credit", 1, "Production")
    reg.wait_phase("credit", 1, "Serving", timeout=90)
    old_pods = {
        p["metadata"]["name"] for p in kubectl.items("pods", namespace, "modelreg.dev/version=1")
    }
    stage = f"hold-{namespace}"
    kubectl.apply(hold_pods_unready_stage(stage, "modelreg.dev/model", "credit"))
    try:
        model["spec"]["serving"]["env"] = [{"name": "FEATURE", "value": "on"}]
        reg.kubectl.apply(model)
        wait_for(
            lambda: reg.condition("credit", 1, "Ready").get("reason") == "RolloutFailed",
            timeout=90,
            what="v1 RolloutFailed after the Model change",
        )
        st = reg.status("credit", 1)
        assert st["phase"] == "Serving"
        assert st["failedSpecHash"]
        assert _model_ready(reg, "credit")["reason"] == "RolloutFailed"
        ready_pods = {
            p["metadata"]["name"]
            for p in kubectl.items("pods", namespace, "modelreg.dev/version=1")
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
        }
        assert ready_pods & old_pods, "the previous ReplicaSet keeps serving"
    finally:
        kubectl("delete", "stage", stage, "--ignore-not-found")
    model["spec"]["serving"]["env"] = [{"name": "FEATURE", "value": "fixed"}]
    reg.kubectl.apply(model)
    wait_for(
        lambda: reg.condition("credit", 1, "Ready").get("reason") == "Serving",
        timeout=90,
        what="v1 Serving again after the fix",
    )


def test_a_failed_rollout_is_retried_after_fixing_the_model(
    reg: Registry, kubectl: Kubectl, namespace: str
) -> None:
    model = reg.model(serving={"progressDeadlineSeconds": 10})
    stage = f"hold-{namespace}"
    kubectl.apply(hold_pods_unready_stage(stage, "modelreg.dev/model", "credit"))
    try:
        reg.version("credit", 1, "Production")
        reg.wait_phase("credit", 1, "Failed", timeout=90)
    finally:
        kubectl("delete", "stage", stage, "--ignore-not-found")
    model["spec"]["serving"]["progressDeadlineSeconds"] = 60
    reg.kubectl.apply(model)  # the version itself is unchanged
    reg.wait_phase("credit", 1, "Serving", timeout=90)


def test_an_operator_upgrade_does_not_reroll_serving_deployments(
    reg: Registry, kubeconfig: str, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    reg.model()
    reg.version("credit", 1, "Production")
    reg.wait_phase("credit", 1, "Serving", timeout=90)
    image = _container(reg.deployments("credit")["credit-v1"])["image"]
    assert reg.status("credit", 1)["defaultImage"] == {"runtime": "builtin", "image": image}
    operator.stop()
    upgraded = OperatorProcess(
        kubeconfig=kubeconfig,
        namespaces=[namespace],
        log_path=tmp_path / "upgraded.log",
        extra_env={"MODELREG_SERVING_IMAGE": "ghcr.io/modelreg/modelreg:9.9.9"},
    ).start()
    try:
        reg.version("credit", 2, "Staging")
        reg.wait_phase("credit", 2, "Ready", timeout=60)  # the new operator has reconciled
        time.sleep(3)
        assert _container(reg.deployments("credit")["credit-v1"])["image"] == image
        reg.stage("credit", 2, "Production")
        d2 = wait_for(lambda: reg.deployments("credit").get("credit-v2"), timeout=60, what="v2")
        assert _container(d2)["image"] == "ghcr.io/modelreg/modelreg:9.9.9"
    finally:
        upgraded.stop()


# -- watch gaps: what was deleted meanwhile is dropped ------------------------------------------


def _compact_etcd() -> None:
    """Compact the local etcd to its current revision (through its gRPC gateway on loopback)."""
    pid = (DEV / "kwok" / "clusters" / "modelreg" / "pids" / "etcd.pid").read_text().strip()
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    url = next(
        a.decode().split("=", 1)[1].split(",")[0]
        for a in argv
        if a.startswith(b"--advertise-client-urls=")
    )

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(  # noqa: S310 - loopback etcd
            f"{url}{path}", data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback etcd
            out: dict[str, Any] = json.loads(resp.read())
            return out

    revision = int(post("/v3/kv/range", {"key": "Zm9v"})["header"]["revision"])
    post("/v3/kv/compaction", {"revision": revision, "physical": True})


def test_objects_deleted_during_a_watch_gap_are_dropped(
    reg: Registry, kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> None:
    reg.model()
    reg.version("credit", 1, "Production")
    reg.wait_phase("credit", 1, "Serving", timeout=90)
    assert operator.proc is not None
    os.kill(operator.proc.pid, signal.SIGSTOP)
    try:
        restart_apiserver(kubectl)  # the operator's watches are cut and it cannot see that yet
        kubectl("-n", namespace, "delete", "mv", "credit-v1", "--wait=true")
        _compact_etcd()  # so the watch cannot resume from where it was: 410 Gone, a re-list
    finally:
        os.kill(operator.proc.pid, signal.SIGCONT)
    wait_for(
        lambda: (
            kubectl.get("service", "credit", namespace) is None and not reg.deployments("credit")
        ),
        timeout=120,
        what="the deleted version's production withdrawn after the re-list",
    )
    assert "deleted during a watch gap" in operator.log()


# -- 6. promote and rollback from the SDK never leave production empty -------------------------


def test_promote_and_rollback_never_leave_production_empty(
    reg: Registry, kubectl: Kubectl, kubeconfig: str, namespace: str
) -> None:
    from modelreg.sdk import errors
    from modelreg.sdk.client import Client

    client = Client(kubeconfig=kubeconfig, namespace=namespace, env={}, poll_interval=0.25)
    reg.model(gates=[{"metric": "auc", "min": 0.8}], serving={"progressDeadlineSeconds": 10})
    reg.version("credit", 1, "Production", metrics={"auc": 0.9})
    reg.wait_phase("credit", 1, "Serving", timeout=90)
    reg.version("credit", 2, metrics={"auc": 0.9})
    client.promote("credit", 2, archive_previous=True, wait=True, timeout=120)
    assert reg.service_version("credit") == "2"

    # A Blocked target: nothing changes, and the error says who serves.
    reg.version("credit", 3, metrics={"auc": 0.5})
    reg.wait_phase("credit", 3, "Ready", timeout=60)
    with pytest.raises(errors.VersionBlocked) as blocked:
        client.rollback("credit", to=3, wait=True, timeout=120)
    assert "GatesFailed" in str(blocked.value)
    assert "credit-v2 keeps serving production" in str(blocked.value)
    assert reg.service_version("credit") == "2"
    assert reg.mv("credit", 2)["spec"]["stage"] == "Production"
    assert reg.mv("credit", 3)["spec"]["stage"] == "None"
    assert reg.status("credit", 2)["phase"] == "Serving"

    # A target whose rollout fails: the version that served goes on serving.
    stage = f"hold-{namespace}"
    kubectl.apply(hold_pods_unready_stage(stage, "modelreg.dev/model", "credit"))
    try:
        with pytest.raises(errors.VersionBlocked) as failed:
            client.rollback("credit", to=1, wait=True, timeout=120)
    finally:
        kubectl("delete", "stage", stage, "--ignore-not-found")
    assert "credit-v2 keeps serving production" in str(failed.value)
    assert reg.service_version("credit") == "2"
    assert reg.mv("credit", 2)["spec"]["stage"] == "Production"
    wait_for(
        lambda: (
            reg.status("credit", 2).get("phase") == "Serving"
            and reg.condition("credit", 2, "Ready").get("status") == "True"
        ),
        timeout=60,
        what="v2 Serving and Ready again",
    )
    assert reg.model_status("credit")["productionVersion"] == 2


def test_a_deployment_of_an_older_operator_is_handed_to_its_model(
    reg: Registry, kubectl: Kubectl, namespace: str
) -> None:
    reg.model()
    reg.version("credit", 1, "Production")
    reg.wait_phase("credit", 1, "Serving", timeout=90)
    mv = reg.mv("credit", 1)
    legacy = [
        {
            "apiVersion": "modelreg.dev/v1alpha1",
            "kind": "ModelVersion",
            "name": "credit-v1",
            "uid": mv["metadata"]["uid"],
            "controller": True,
        }
    ]
    kubectl(
        "-n",
        namespace,
        "patch",
        "deployment",
        "credit-v1",
        "--type=json",
        "-p",
        json.dumps([{"op": "replace", "path": "/metadata/ownerReferences", "value": legacy}]),
    )
    wait_for(
        lambda: (
            [
                o["kind"]
                for o in reg.deployments("credit")["credit-v1"]["metadata"]["ownerReferences"]
            ]
            == ["Model"]
        ),
        timeout=60,
        what="the Deployment handed to the Model",
    )
    assert _model_ready(reg, "credit")["reason"] == "Serving"


def test_the_operator_refuses_an_impersonating_kubeconfig(kubeconfig: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    import yaml

    config = yaml.safe_load(Path(kubeconfig).read_text())
    for user in config["users"]:
        user["user"]["as"] = "alice"
    path = tmp_path / "alice.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [sys.executable, "-m", "modelreg.controller"],
        env={**os.environ, "KUBECONFIG": str(path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert "impersonates 'alice'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_labelled_deployment_with_another_controller_is_never_touched(
    reg: Registry, kubectl: Kubectl, namespace: str
) -> None:
    """modelreg's labels are not enough: a tenant's Deployment dressed up as a child is left alone."""
    kubectl("-n", namespace, "create", "configmap", "decoy")
    decoy = kubectl.get("configmap", "decoy", namespace)
    assert decoy is not None
    labels = {
        "app.kubernetes.io/managed-by": "modelreg",
        "modelreg.dev/model": "credit",
        "modelreg.dev/version": "1",
    }
    theirs = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "credit-v1",
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "decoy",
                    "uid": decoy["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "theirs"}},
            "template": {
                "metadata": {"labels": {"app": "theirs"}},
                "spec": {"containers": [{"name": "c", "image": "example.invalid/theirs:1"}]},
            },
        },
    }
    kubectl.apply(theirs)
    reg.model()
    reg.version("credit", 1, "Production")
    cond = _wait_model_reason(reg, "credit", "NameConflict")
    assert "controlled by ConfigMap decoy" in cond["message"]
    reg.stage("credit", 1, "Archived")  # nothing asks for Production: still not deleted
    time.sleep(5)
    dep = kubectl.get("deployment", "credit-v1", namespace)
    assert dep is not None
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "example.invalid/theirs:1"
    assert "modelreg" not in _managers(kubectl, "deployment", "credit-v1", namespace)
