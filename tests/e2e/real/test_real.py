"""The product on a real node, installed as users install it (see conftest.py).

- The operator pod runs in-cluster under its ServiceAccount in a restricted namespace.
- A version applied with kubectl is verified, rolled out on the real node (the serving pod pulls
  its artifact from the S3 server, verifies it and passes real probes) and answers an OIP v2
  prediction through the stable Service's ClusterIP equal to onnxruntime's on the same input.
- Blue/green under load: 10 promotions and 2 rollbacks while a bounded load generator sends
  requests through the Service, each on a new connection, and not one fails; then a version whose
  artifact passes verification but crashes the runtime ends Failed and the old one keeps serving.
- The operator pod force-deleted mid-promotion comes back and converges with no duplicate Events.
- The operator's ServiceAccount gets 403 for Secrets outside its namespaces, from inside its pod.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from collections import Counter
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient  # type: ignore[import-untyped]

from modelreg import Client
from tests.e2e.helpers import REPO, S3, Kubectl, wait_for
from tests.e2e.real.conftest import NODE, ON_REAL_NODE, Release, record
from tests.e2e.real.serving import Load, Onnx, answers, cluster_ip, infer, matches, onnx_model
from tests.e2e.registry import Registry

__all__ = ["onnx_model"]  # the fixture, imported for pytest


@pytest.fixture(scope="module")
def apps(release: Release, kubectl: Kubectl, node_s3: S3) -> Registry:
    kubectl(
        "-n", release.apps, "create", "secret", "generic", "s3-credentials",
        f"--from-literal=AWS_ACCESS_KEY_ID={node_s3.access_key_id}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={node_s3.secret_access_key}",
    )  # fmt: skip
    return Registry(kubectl=kubectl, namespace=release.apps, s3=node_s3, secret="s3-credentials")


def serving(**extra: Any) -> dict[str, Any]:
    return {"replicas": 1, **ON_REAL_NODE, **extra}


def ready_serving_pods(
    kubectl: Kubectl, namespace: str, model: str, n: int
) -> list[dict[str, Any]]:
    pods = kubectl.items("pods", namespace, f"modelreg.dev/model={model},modelreg.dev/version={n}")
    out = []
    for p in pods:
        statuses = p["status"].get("containerStatuses") or []
        if p["spec"].get("nodeName") == NODE and statuses and all(s.get("ready") for s in statuses):
            out.append(p)
    return out


# ------------------------------------------------------------------------------------------------


def test_operator_runs_in_cluster_under_its_service_account(
    release: Release, kubectl: Kubectl
) -> None:
    pod = release.operator_pod()
    spec: dict[str, Any] = pod["spec"]  # type: ignore[assignment]
    assert spec["nodeName"] == NODE, "the operator pod must run on the real node"
    assert spec["serviceAccountName"] == release.fullname
    (container,) = spec["containers"]
    assert container["image"] == "ghcr.io/modelreg/modelreg:0.1.0"
    assert container["command"] == ["python", "-m", "modelreg.controller"]
    assert not spec.get("hostNetwork")
    assert not any("hostPath" in v for v in spec.get("volumes", []))
    status: dict[str, Any] = pod["status"]  # type: ignore[assignment]
    assert all(s["ready"] for s in status["containerStatuses"])
    # The namespace enforces "restricted": a privileged pod is refused there.
    bad = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged", "namespace": release.system},
        "spec": {
            **ON_REAL_NODE,
            "containers": [
                {
                    "name": "c",
                    "image": "ghcr.io/modelreg/modelreg:0.1.0",
                    "securityContext": {"privileged": True},
                }
            ],
        },
    }
    proc = kubectl.run("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert proc.returncode != 0, proc.stdout
    assert "violates PodSecurity" in proc.stderr, proc.stderr


def test_kubectl_apply_to_a_correct_prediction_through_the_service(
    release: Release, apps: Registry, kubectl: Kubectl, onnx_model: Onnx
) -> None:
    apps.model("iris", serving=serving())
    uri, sha = apps.artifact("iris", 1, onnx_model.data)
    expected = onnx_model.expected()
    t0 = time.monotonic()
    apps.version("iris", 1, "Production", uri=uri, sha256=sha)
    status = apps.wait_phase("iris", 1, "Serving", timeout=180)
    assert status["artifact"]["verified"] is True
    # Sealed with the key the operator keeps in its own namespace (created on its first start).
    assert status["artifact"].get("seal"), status["artifact"]
    seal = kubectl.get("secret", f"{release.fullname}-seal", release.system)
    assert seal is not None, "the operator did not create its seal Secret"
    assert set(seal.get("data", {})) == {"key"}
    pods = ready_serving_pods(kubectl, release.apps, "iris", 1)
    assert len(pods) == 1, "the serving pod must be Ready on the real node"
    assert pods[0]["status"]["containerStatuses"][0]["restartCount"] == 0
    host = cluster_ip(kubectl, release.apps, "iris")

    wait_for(
        lambda: answers(host, "iris", onnx_model.request(), expected),
        timeout=60,
        what="a correct prediction through the Service",
    )
    record("apply_to_first_prediction_seconds", time.monotonic() - t0)
    code, doc = infer(host, "iris", onnx_model.request())
    assert code == 200, doc
    assert matches(doc, expected), doc
    assert doc["model_name"] == "iris"
    assert str(doc["model_version"]) == "1"
    # The operator in its pod did this: its log shows the reconcile, in-cluster.
    assert "iris" in release.logs()


def test_grpc_prediction_through_the_service_with_tritonclient(
    release: Release, apps: Registry, kubectl: Kubectl, onnx_model: Onnx
) -> None:
    """The Open Inference Protocol v2 over gRPC, from the serving pod through the Service's grpc
    port, with Triton's own gRPC client: health, metadata, and infer with raw tensors."""
    model = "iris-grpc"
    apps.model(model, serving=serving())
    uri, sha = apps.artifact(model, 1, onnx_model.data)
    apps.version(model, 1, "Production", uri=uri, sha256=sha)
    apps.wait_phase(model, 1, "Serving", timeout=180)
    svc = kubectl.get("service", model, release.apps)
    assert svc is not None
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["grpc"]["port"] == 9000, ports
    assert ports["grpc"].get("appProtocol") == "grpc", ports
    host = f"{svc['spec']['clusterIP']}:9000"
    client = grpcclient.InferenceServerClient(url=host)
    try:
        wait_for(lambda: _grpc_ready(client, model), timeout=60, what="the model ready over gRPC")
        meta = client.get_model_metadata(model, as_json=True)
        assert meta["name"] == model
        assert meta["versions"] == ["1"], meta
        expected = onnx_model.expected()
        inp = grpcclient.InferInput("X", list(onnx_model.sample.shape), "FP32")
        inp.set_data_from_numpy(onnx_model.sample)
        result = client.infer(model, [inp])
        for name, want in expected.items():
            got = result.as_numpy(name)
            assert got is not None, f"no output {name} in {result.get_response(as_json=True)}"
            assert np.allclose(got.reshape(want.shape), want, rtol=1e-5, atol=1e-6), name
        assert result.get_response(as_json=True)["model_version"] == "1"
        # An unknown model is NOT_FOUND with the server's message, as over REST's 404.
        with pytest.raises(grpcclient.InferenceServerException) as err:
            client.infer("no-such-model", [inp])
        assert err.value.status() == "StatusCode.NOT_FOUND", err.value
    finally:
        client.close()


def _grpc_ready(client: Any, model: str) -> bool:
    try:
        return bool(client.is_server_ready() and client.is_model_ready(model))
    except grpcclient.InferenceServerException:  # not reachable yet (kube-proxy's rules)
        return False


@pytest.mark.timeout(1500)
def test_blue_green_under_load_then_a_real_failed_rollout(
    release: Release, apps: Registry, kubectl: Kubectl, onnx_model: Onnx
) -> None:
    model = "bluegreen"
    apps.model(model, serving=serving(progressDeadlineSeconds=45))
    client = Client(kubeconfig=kubectl.kubeconfig, namespace=release.apps)
    for n in range(1, 12):
        uri, sha = apps.artifact(model, n, onnx_model.data)
        apps.version(model, n, "Production" if n == 1 else "None", uri=uri, sha256=sha)
    apps.wait_phase(model, 1, "Serving", timeout=180)
    host = cluster_ip(kubectl, release.apps, model)
    # A Service that has just been created reaches kube-proxy's rules within its sync period (1 s):
    # the load starts once the first answer comes, and from then on not one request may fail.
    expected = onnx_model.expected()
    wait_for(
        lambda: answers(host, model, onnx_model.request(), expected),
        timeout=30,
        what="the first answer through the new Service",
    )
    load = Load(host, model, onnx_model.request(), expected).start()
    try:
        load.wait_serving(1)
        for n in range(2, 12):
            client.promote(model, n, archive_previous=True, wait=True, timeout=180)
            load.wait_serving(n)
            # Drained: the old Deployment goes only after the Service's endpoints moved.
            wait_for(
                lambda n=n: set(apps.deployments(model)) == {f"{model}-v{n}"},
                timeout=90,
                what=f"only {model}-v{n}'s Deployment left",
            )
        for back_to in (10, 9):
            client.rollback(model, wait=True, timeout=180)
            load.wait_serving(back_to)
        # A real failed rollout: the artifact passes verification (its sha256 is right) but it is
        # not a model, so the runtime exits at load and the pod never becomes ready.
        uri, sha = apps.artifact(model, 12, b"this is not an onnx model\n" * 64)
        apps.version(model, 12, "Production", uri=uri, sha256=sha)
        status = apps.wait_phase(model, 12, "Failed", timeout=240)
        assert apps.status(model, 12)["artifact"]["verified"] is True
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert "progressDeadlineSeconds=45" in ready["message"], ready
        assert apps.service_version(model) == "9"
        assert apps.status(model, 9)["phase"] == "Serving"
        time.sleep(3)  # answers keep coming from the version that still serves
        assert load.last_version == "9"
    finally:
        load.stop()
    print(
        f"load: {load.total} requests, {len(load.failures)} failed, by version {dict(load.versions)}"
    )
    record("load_requests", load.total)
    record("load_failed", len(load.failures))
    assert not load.failures, (
        f"{len(load.failures)} of {load.total} requests failed: {load.failures[:10]}"
    )
    assert load.total >= 2000, f"only {load.total} requests were sent"
    assert {str(n) for n in range(1, 12)} <= set(load.versions), dict(load.versions)


def test_operator_pod_force_deleted_mid_promotion_converges(
    release: Release, apps: Registry, kubectl: Kubectl, onnx_model: Onnx
) -> None:
    model = "killed"
    apps.model(model, serving=serving())
    for n in (1, 2):
        uri, sha = apps.artifact(model, n, onnx_model.data)
        apps.version(model, n, "Production" if n == 1 else "None", uri=uri, sha256=sha)
    apps.wait_phase(model, 1, "Serving", timeout=180)
    apps.stage(model, 2, "Production")
    wait_for(lambda: f"{model}-v2" in apps.deployments(model), timeout=60, what="v2's Deployment")
    verified = wait_for(
        lambda: (a := apps.status(model, 2).get("artifact") or {}).get("seal") and a,
        timeout=60,
        what="v2's sealed verdict",
    )
    old = release.operator_pod()["metadata"]["name"]  # type: ignore[index]
    kubectl("-n", release.system, "delete", "pod", old, "--force", "--grace-period=0")
    new = wait_for(
        lambda: (name := release.operator_ready()) and name != old and name,
        timeout=180,
        what="a new operator pod Ready",
    )
    assert new != old
    apps.wait_phase(model, 2, "Serving", timeout=180)
    wait_for(
        lambda: set(apps.deployments(model)) == {f"{model}-v2"}, timeout=90, what="one Deployment"
    )
    assert apps.service_version(model) == "2"
    # The new pod read the same seal key from the Secret: it trusted v2's verdict, not re-hashed it.
    assert apps.status(model, 2)["artifact"] == verified
    time.sleep(5)  # let a late duplicate show up if there is one
    seen: Counter[tuple[str, str, str]] = Counter()
    for name in (f"{model}-v1", f"{model}-v2", model):
        for e in apps.events(name):
            seen[(name, e["reason"], e["message"])] += int(e.get("count") or 1)
    dupes = {k: v for k, v in seen.items() if v > 1}
    assert not dupes, f"duplicate Events after the operator pod restarted: {dupes}"


def test_operator_service_account_cannot_read_secrets_elsewhere(
    release: Release, apps: Registry, kubectl: Kubectl
) -> None:
    elsewhere = f"{release.apps}-other"
    kubectl("create", "namespace", elsewhere)
    try:
        kubectl("-n", elsewhere, "create", "secret", "generic", "private", "--from-literal=k=v")
        probe = (
            "from kubernetes import client, config\n"
            "config.load_incluster_config()\n"
            "api = client.CoreV1Api()\n"
            f"for ns, name in (({release.apps!r}, 's3-credentials'), ({elsewhere!r}, 'private')):\n"
            "    try:\n"
            "        api.read_namespaced_secret(name, ns)\n"
            "        print(ns, 200)\n"
            "    except client.ApiException as e:\n"
            "        print(ns, e.status)\n"
        )
        pod = release.operator_pod()["metadata"]["name"]  # type: ignore[index]
        out = kubectl("-n", release.system, "exec", pod, "--", "python", "-c", probe)
        results = dict(line.split() for line in out.strip().splitlines())
        # Its own watch namespace: allowed (the control that shows the probe can succeed).
        assert results[release.apps] == "200", out
        assert results[elsewhere] == "403", out
    finally:
        kubectl("delete", "namespace", elsewhere, "--wait=false", "--ignore-not-found")


OURS = (
    "kube-apiserver", "etcd", "kube-controller", "kube-scheduler", "kwok", "versitygw", "socat",
    "containerd", "kubelet", "kube-proxy", "metrics-server", "python",
)  # fmt: skip


def test_no_listener_outside_loopback_and_the_bridge(real_node: str) -> None:
    """Every TCP listener of the environment is on 127.0.0.1 or the node's bridge address."""
    ip = subprocess.run(
        ["bash", str(REPO / "tools" / "node.sh"), "ip"], capture_output=True, text=True, check=True
    ).stdout.strip()
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    bad, seen_bridge = [], False
    for line in out.splitlines():
        cols = line.split()
        addr = cols[3].rsplit(":", 1)[0].strip("[]")
        procs = cols[5] if len(cols) > 5 else ""
        if not any(f'(("{name}' in procs for name in OURS):
            continue  # not this environment's (the machine's own services)
        seen_bridge |= addr == ip
        if addr != ip and not addr.startswith("127.") and addr != "::1":
            bad.append(line)
    assert not bad, "listeners outside loopback and the bridge address:\n" + "\n".join(bad)
    assert seen_bridge, f"nothing listens on the bridge address {ip}:\n{out}"


def test_a_pull_never_leaves_the_machine(release: Release, kubectl: Kubectl) -> None:
    """An image the node does not have fails at once: every registry is a dead loopback port."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "pull", "namespace": release.apps},
        "spec": {
            **ON_REAL_NODE,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "c",
                    "image": "docker.io/library/busybox:1.36",
                    "imagePullPolicy": "Always",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "runAsUser": 1000,
                    },
                }
            ],
        },
    }
    kubectl.apply(pod)

    def pull_failed() -> str | None:
        for e in kubectl.items("events", release.apps):
            if e["involvedObject"].get("name") == "pull" and e["reason"] == "Failed":
                return str(e["message"])
        return None

    message = wait_for(pull_failed, timeout=60, what="the pull of an absent image to fail")
    assert "127.0.0.1:9" in message, message
    kubectl("-n", release.apps, "delete", "pod", "pull", "--wait=false")


def test_the_chart_runs_the_web_ui_read_only_under_its_own_role(
    release: Release, kubectl: Kubectl, apps: Registry
) -> None:
    """ui.enabled: a real pod that passes its probes, serves the registry of the apps namespace
    through its ClusterIP Service, and whose ServiceAccount may read and never write."""
    name = f"{release.fullname}-ui"
    apps.model("seen-by-the-ui")

    def ready() -> bool:
        d = kubectl.get("deployment", name, release.system) or {}
        return int((d.get("status") or {}).get("readyReplicas") or 0) == 1

    wait_for(ready, timeout=180, what=f"the UI Deployment {name} Ready (its probes pass)")
    pods = kubectl.items("pods", release.system, "app.kubernetes.io/component=ui")
    assert [p["spec"]["nodeName"] for p in pods] == [NODE]
    ip = cluster_ip(kubectl, release.system, name)

    def page(path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection(ip, 8765, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def listed() -> tuple[int, str] | None:
        got = page("/")
        return got if "seen-by-the-ui" in got[1] else None

    status, html = wait_for(listed, timeout=30, what="the models list to show the new Model")
    assert status == 200
    assert release.apps in html
    status, html = page("/models/seen-by-the-ui")
    assert status == 200, html[:500]
    assert page("/models/no-such-model")[0] == 404
    sa = f"system:serviceaccount:{release.system}:{name}"
    for verb, resource, allowed in [
        ("list", "modelversions.modelreg.dev", "yes"),
        ("watch", "models.modelreg.dev", "yes"),
        ("patch", "modelversions.modelreg.dev", "no"),
        ("create", "models.modelreg.dev", "no"),
        ("get", "secrets", "no"),
    ]:
        proc = kubectl.run("auth", "can-i", verb, resource, "-n", release.apps, "--as", sa,
                           check=False)  # fmt: skip
        assert proc.stdout.strip() == allowed, (verb, resource, proc.stdout, proc.stderr)
