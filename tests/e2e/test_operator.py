"""The registry operator end to end: real API server, controller-manager, kwok nodes, S3 server.

Each test runs its own operator process (`python -m modelreg.controller --namespace <ns>`) in a
fresh namespace, so tests that kill it disturb nobody else.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import S3, Kubectl, OperatorProcess, hold_pods_unready_stage, wait_for
from tests.e2e.registry import Registry


@pytest.fixture
def reg(
    kubectl: Kubectl, namespace: str, s3: S3, s3_secret: str, operator: OperatorProcess
) -> Registry:
    return Registry(kubectl=kubectl, namespace=namespace, s3=s3, secret=s3_secret)


def test_register_verify_stage_promote_serve(
    reg: Registry, kubectl: Kubectl, namespace: str
) -> None:
    reg.model(gates=[{"metric": "auc", "min": 0.8}])
    reg.version("credit", 1, "None", metrics={"auc": 0.91})
    st = reg.wait_phase("credit", 1, "Ready")
    assert st["stage"] == "None"
    assert st["artifact"]["verified"] is True
    assert st["artifact"]["sizeBytes"] == 4096
    assert reg.condition("credit", 1, "ArtifactVerified")["status"] == "True"
    assert reg.deployments("credit") == {}

    reg.stage("credit", 1, "Staging")
    st = wait_for(
        lambda: (s := reg.status("credit", 1)).get("stage") == "Staging" and s,
        timeout=30,
        what="Staging",
    )
    assert st["gates"] == [
        {"metric": "auc", "min": 0.8, "actual": 0.91, "passed": True, "message": ""}
    ]

    reg.stage("credit", 1, "Production")
    st = reg.wait_phase("credit", 1, "Serving", timeout=90)
    assert st["stage"] == "Production"
    kubectl("-n", namespace, "wait", "--for=condition=Ready", "mv/credit-v1", "--timeout=30s")
    deps = reg.deployments("credit")
    assert list(deps) == ["credit-v1"]
    dep = deps["credit-v1"]
    assert dep["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "modelreg",
        "modelreg.dev/model": "credit",
        "modelreg.dev/version": "1",
    }
    owner = dep["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Model", "credit")
    assert reg.service_version("credit") == "1"
    svc = kubectl.get("service", "credit", namespace) or {}
    assert svc["metadata"]["ownerReferences"][0]["kind"] == "Model"
    ms = wait_for(
        lambda: (m := reg.model_status("credit")).get("productionVersion") == 1 and m,
        timeout=30,
        what="rollup",
    )
    assert ms["latestVersion"] == 1
    assert ms["endpoint"] == f"http://credit.{namespace}.svc:80"
    assert st["serving"]["url"] == f"http://credit.{namespace}.svc:80"
    stages = [h["stage"] for h in st["history"]]
    assert stages[-1] == "Production"
    assert "Staging" in stages
    reasons = {e["reason"] for e in reg.events("credit-v1")}
    # A new version's uneventful first verdict (Registered) is in its status, not an Event.
    assert {"Staged", "Serving"} <= reasons
    assert "Registered" not in reasons
    # The operator never wrote spec or labels of the user's objects.
    mv = reg.mv("credit", 1)
    assert mv["spec"]["stage"] == "Production"
    assert not mv["metadata"].get("labels")
    assert not mv["metadata"].get("finalizers")


def test_blue_green_switch_waits_for_available(
    reg: Registry, kubectl: Kubectl, namespace: str
) -> None:
    reg.model()
    reg.version("credit", 1, "Production")
    reg.wait_phase("credit", 1, "Serving", timeout=90)
    stage = f"hold-{namespace}"
    kubectl.apply(hold_pods_unready_stage(stage, "modelreg.dev/model", "credit"))
    try:
        reg.version("credit", 2, "Production")
        reg.wait_phase("credit", 2, "Rolling", timeout=60)
        wait_for(
            lambda: kubectl.items("pods", namespace, "modelreg.dev/version=2"),
            timeout=30,
            what="v2 pods",
        )
        time.sleep(2)  # let the held pod settle; the Service must not move meanwhile
        assert reg.service_version("credit") == "1"
        assert set(reg.deployments("credit")) == {"credit-v1", "credit-v2"}
        assert reg.status("credit", 1)["phase"] == "Serving"
    finally:
        kubectl("delete", "stage", stage, "--ignore-not-found")
    # Released: new pods become Ready, the Service switches, the old Deployment goes.
    kubectl("-n", namespace, "delete", "pods", "-l", "modelreg.dev/version=2", "--wait=false")
    reg.wait_phase("credit", 2, "Serving", timeout=90)
    assert reg.service_version("credit") == "2"
    wait_for(
        lambda: set(reg.deployments("credit")) == {"credit-v2"},
        timeout=30,
        what="old Deployment removed",
    )
    st1 = reg.wait_phase("credit", 1, "Superseded")
    assert st1["stage"] == "None"
    assert any(
        e["type"] == "Warning" and e["reason"] == "Superseded" for e in reg.events("credit-v1")
    )
    assert reg.model_status("credit")["productionVersion"] == 2


def test_failed_rollout_keeps_old_version_serving(
    reg: Registry, kubectl: Kubectl, namespace: str
) -> None:
    reg.model(serving={"progressDeadlineSeconds": 5})
    reg.version("credit", 1, "Production")
    reg.wait_phase("credit", 1, "Serving", timeout=90)
    stage = f"hold-{namespace}"
    kubectl.apply(hold_pods_unready_stage(stage, "modelreg.dev/model", "credit"))
    try:
        reg.version("credit", 2, "Production")
        st = reg.wait_phase("credit", 2, "Failed", timeout=120)
    finally:
        kubectl("delete", "stage", stage, "--ignore-not-found")
    ready = reg.condition("credit", 2, "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "RolloutFailed"
    assert "progressDeadlineSeconds=5" in ready["message"]
    assert "version 1 keeps serving" in ready["message"]
    assert st["stage"] != "Production"
    assert reg.service_version("credit") == "1"
    assert reg.status("credit", 1)["phase"] == "Serving"
    wait_for(
        lambda: set(reg.deployments("credit")) == {"credit-v1"},
        timeout=30,
        what="failed Deployment removed",
    )
    assert any(
        e["type"] == "Warning" and e["reason"] == "RolloutFailed" for e in reg.events("credit-v2")
    )


@pytest.mark.parametrize(
    ("case", "reason", "needle"),
    [
        ("mismatch", "DigestMismatch", "sha256 mismatch"),
        ("missing", "ArtifactNotFound", "does not exist"),
        ("prefix", "OutsidePrefix", "is not under the Model's storage prefix"),
        ("gate", "GatesFailed", "auc=0.5 is below the minimum 0.8"),
        ("secret", "SecretNotFound", "'nope' named by Model 'credit'"),
    ],
)
def test_bad_versions_are_blocked_with_a_precise_reason(
    reg: Registry, s3: S3, case: str, reason: str, needle: str
) -> None:
    storage = None
    if case == "secret":
        storage = {
            "uri": reg.prefix("credit"),
            "endpoint": s3.endpoint,
            "secretRef": {"name": "nope"},
        }
    reg.model(gates=[{"metric": "auc", "min": 0.8}], storage=storage)
    if case == "mismatch":
        uri, _ = reg.artifact("credit", 1)
        reg.version("credit", 1, "Production", uri=uri, sha256="f" * 64)
    elif case == "missing":
        reg.version("credit", 1, "Production", upload=False)
    elif case == "prefix":
        key = f"{reg.namespace}/elsewhere/model.onnx"
        sha = s3.put(key, b"x" * 10)
        reg.version("credit", 1, "Production", uri=f"s3://{s3.bucket}/{key}", sha256=sha)
    elif case == "gate":
        reg.version("credit", 1, "Production", metrics={"auc": 0.5})
    else:
        reg.version("credit", 1, "Production")
    reg.wait_phase("credit", 1, "Blocked")
    ready = reg.condition("credit", 1, "Ready")
    assert ready["reason"] == reason
    assert needle in ready["message"]
    if case != "gate":
        assert reg.condition("credit", 1, "ArtifactVerified")["status"] == "False"
    time.sleep(1)
    assert reg.deployments("credit") == {}
    assert reg.service_version("credit") is None
    assert reg.model_status("credit")["conditions"][0]["reason"] == "NoEligibleVersion"


def test_highest_eligible_wins_then_rollback_by_archiving(
    reg: Registry, kubectl: Kubectl, namespace: str
) -> None:
    reg.model()
    reg.version("credit", 1, "Production")
    reg.version("credit", 2, "Production")
    reg.wait_phase("credit", 2, "Serving", timeout=90)
    reg.wait_phase("credit", 1, "Superseded")
    assert reg.service_version("credit") == "2"
    # Rollback: archive the bad version; the next highest asking for Production takes over.
    reg.stage("credit", 2, "Archived")
    reg.wait_phase("credit", 1, "Serving", timeout=90)
    st2 = reg.wait_phase("credit", 2, "Archived")
    assert st2["stage"] == "Archived"
    assert reg.service_version("credit") == "1"
    wait_for(
        lambda: set(reg.deployments("credit")) == {"credit-v1"},
        timeout=30,
        what="v2 Deployment removed",
    )
    history = [(h["stage"], h["phase"]) for h in reg.status("credit", 2)["history"]]
    assert ("Production", "Serving") in history
    assert history[-1] == ("Archived", "Archived")


def test_deleting_versions_and_model_cleans_up(
    reg: Registry, kubectl: Kubectl, namespace: str
) -> None:
    reg.model()
    reg.version("credit", 1, "Production")
    reg.version("credit", 2, "Production")
    reg.wait_phase("credit", 2, "Serving", timeout=90)
    kubectl("-n", namespace, "delete", "mv", "credit-v2")
    reg.wait_phase("credit", 1, "Serving", timeout=90)
    assert reg.service_version("credit") == "1"
    kubectl("-n", namespace, "delete", "mv", "credit-v1")
    wait_for(lambda: reg.service_version("credit") is None, timeout=60, what="Service removed")
    reg.version("credit", 3, "Production")
    reg.wait_phase("credit", 3, "Serving", timeout=90)
    kubectl("-n", namespace, "delete", "mdl", "credit")
    st = reg.wait_phase("credit", 3, "Blocked", timeout=60)
    assert reg.condition("credit", 3, "Ready")["reason"] == "ModelNotFound"
    wait_for(
        lambda: reg.service_version("credit") is None,
        timeout=60,
        what="Service removed with the Model",
    )
    wait_for(lambda: reg.deployments("credit") == {}, timeout=60, what="Deployment removed")
    assert st["artifact"]["verified"] is True
    # Artifacts are never deleted by the operator.
    assert reg.s3.get(f"{namespace}/credit/3/model.onnx")


def test_api_server_rejects_immutable_changes_and_bad_names(
    reg: Registry, kubectl: Kubectl, namespace: str
) -> None:
    reg.model()
    reg.version("credit", 1)
    for patch, message in [
        ({"spec": {"version": 2}}, "spec.version is immutable"),
        ({"spec": {"model": "other"}}, "spec.model is immutable"),
        ({"spec": {"artifact": {"sha256": "b" * 64}}}, "spec.artifact is immutable"),
    ]:
        proc = kubectl.run(
            "-n",
            namespace,
            "patch",
            "mv",
            "credit-v1",
            "--type=merge",
            "-p",
            json.dumps(patch),
            check=False,
        )
        assert proc.returncode != 0
        assert message in proc.stderr, proc.stderr
    body = {
        "apiVersion": "modelreg.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": "credit-v9", "namespace": namespace},
        "spec": {
            "model": "credit",
            "version": 3,
            "artifact": {"uri": "s3://models/x/y", "sha256": "a" * 64},
        },
    }
    proc = kubectl.run("apply", "-f", "-", input=json.dumps(body), check=False)
    assert proc.returncode != 0
    assert "metadata.name must be '<spec.model>-v<spec.version>'" in proc.stderr


def test_operator_killed_mid_promotion_converges(
    reg: Registry, kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> None:
    reg.model()
    reg.version("credit", 1, "Production")
    reg.wait_phase("credit", 1, "Serving", timeout=90)
    reg.version("credit", 2, "Production")
    wait_for(lambda: "credit-v2" in reg.deployments("credit"), timeout=60, what="v2 Deployment")
    operator.kill()
    time.sleep(1)
    operator.start()
    reg.wait_phase("credit", 2, "Serving", timeout=90)
    wait_for(
        lambda: set(reg.deployments("credit")) == {"credit-v2"}, timeout=60, what="one Deployment"
    )
    assert reg.service_version("credit") == "2"
    rs = kubectl.items("replicasets", namespace, "modelreg.dev/version=2")
    assert len(rs) == 1
    for n in (1, 2):
        assert not reg.mv("credit", n)["metadata"].get("finalizers")


def test_secret_never_leaks(
    reg: Registry, kubectl: Kubectl, namespace: str, operator: OperatorProcess, s3: S3
) -> None:
    canary = "LEAKCANARY" + "7" * 20
    kubectl(
        "-n",
        namespace,
        "create",
        "secret",
        "generic",
        "bad-creds",
        f"--from-literal=AWS_ACCESS_KEY_ID={canary}-id",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={canary}",
    )
    reg.model(
        storage={
            "uri": reg.prefix("credit"),
            "endpoint": s3.endpoint,
            "secretRef": {"name": "bad-creds"},
        }
    )
    reg.version("credit", 1, "Production")
    reg.wait_phase("credit", 1, "Blocked", timeout=60)
    # And a version that does get served, so that the generated Deployment is inspected too.
    reg.model("good")
    reg.version("good", 1, "Production")
    reg.wait_phase("good", 1, "Serving", timeout=90)
    dump = kubectl("-n", namespace, "get", "mv,mdl,deploy,svc,events,rs,pods", "-o", "json")
    assert canary not in dump
    assert s3.secret_access_key not in dump
    assert canary not in operator.log()
    assert s3.secret_access_key not in operator.log()
    assert "secretKeyRef" in dump


def _scrape(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback
        body: bytes = r.read()
        return body.decode()


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_liveness_and_no_writes_once_converged(
    kubectl: Kubectl, namespace: str, s3: S3, s3_secret: str, kubeconfig: str, tmp_path: Path
) -> None:
    from tests.e2e.helpers import free_port

    port, live = free_port(), free_port()
    env = {
        "MODELREG_METRICS_PORT": str(port),
        "MODELREG_LIVENESS_ENDPOINT": f"http://127.0.0.1:{live}/healthz",
    }
    op = OperatorProcess(kubeconfig, [namespace], tmp_path / "op.log", extra_env=env).start()
    try:
        reg = Registry(kubectl=kubectl, namespace=namespace, s3=s3, secret=s3_secret)
        reg.model()
        reg.version("credit", 1, "Staging")
        reg.version("credit", 2, "Production")
        reg.wait_phase("credit", 2, "Serving", timeout=90)
        reg.wait_phase("credit", 1, "Ready")
        metrics_url = f"http://127.0.0.1:{port}/metrics"

        def promoted() -> str | None:
            text = _safe_scrape(metrics_url)
            return text if _metric(text, "modelreg_promotion_duration_seconds_count") >= 1 else None

        text = wait_for(promoted, timeout=30, what="a promotion in the metrics")
        assert _metric(text, 'modelreg_reconciles_total{kind="Model",result="ok"}') >= 1
        assert _metric(text, 'modelreg_versions{phase="Serving"}') == 1
        assert _metric(text, "modelreg_artifact_verifications_total") >= 2
        _scrape(
            f"http://127.0.0.1:{live}/healthz"
        )  # kopf's liveness probe answers 200 (raises otherwise)
        # Converged: a restarted operator re-reads everything and writes nothing.
        kinds = "mv,mdl,deploy,svc"
        before = {
            o["metadata"]["name"] + o["kind"]: o["metadata"]["resourceVersion"]
            for o in json.loads(kubectl("-n", namespace, "get", kinds, "-o", "json"))["items"]
        }
        events_before = len(kubectl.items("events", namespace))
        op.stop()
        op.start()
        wait_for(
            lambda: (
                _metric(
                    _safe_scrape(metrics_url), 'modelreg_reconciles_total{kind="Model",result="ok"}'
                )
                >= 1
            ),
            timeout=60,
            what="the restarted operator's first reconcile pass",
        )
        after = {
            o["metadata"]["name"] + o["kind"]: o["metadata"]["resourceVersion"]
            for o in json.loads(kubectl("-n", namespace, "get", kinds, "-o", "json"))["items"]
        }
        assert after == before
        assert len(kubectl.items("events", namespace)) == events_before
    finally:
        op.stop()


def _safe_scrape(url: str) -> str:
    try:
        return _scrape(url)
    except OSError:
        return ""
