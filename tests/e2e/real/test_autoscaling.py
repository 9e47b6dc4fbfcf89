"""spec.serving.autoscaling on the real node, with metrics-server (tools/node.sh) and the real
kube-controller-manager's HorizontalPodAutoscaler controller.

- Bounded load through the Service drives the serving pods' CPU (measured by the kubelet, read by
  metrics-server) over the target: the autoscaler scales the serving Deployment up.
- A promotion under that load: the new version's Deployment starts at the scaled-up count, the one
  autoscaler moves to it when the Service switches, the old Deployment goes, and not one request
  fails.
- With the load stopped the autoscaler scales the new Deployment down: it follows the promotion.
- Bad input (min above max, no CPU request) is refused by the API server with a clear message.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from demo.devenv import ON_REAL_NODE

from modelreg import Client
from tests.e2e.helpers import Kubectl, wait_for
from tests.e2e.real.conftest import Release, record
from tests.e2e.real.serving import Load, Onnx, answers, cluster_ip, onnx_model
from tests.e2e.real.test_real import apps, ready_serving_pods, serving
from tests.e2e.registry import Registry

__all__ = ["apps", "onnx_model"]  # the fixtures, imported for pytest

# The runtime idles at a few millicores; a small request makes the load's share plain to see.
RESOURCES = {"requests": {"cpu": "25m", "memory": "128Mi"}, "limits": {"cpu": "500m"}}
AUTOSCALING = {
    "minReplicas": 1,
    "maxReplicas": 3,
    "targetCpuUtilization": 50,
    "scaleDownStabilizationSeconds": 0,
}


def autoscalers(kubectl: Kubectl, namespace: str, model: str) -> list[dict[str, Any]]:
    return kubectl.items("hpa", namespace, f"modelreg.dev/model={model}")


def the_autoscaler(kubectl: Kubectl, namespace: str, model: str) -> dict[str, Any]:
    found = autoscalers(kubectl, namespace, model)
    assert len(found) == 1, f"one HorizontalPodAutoscaler per Model, found {len(found)}"
    return found[0]


def cpu_utilization(hpa: dict[str, Any]) -> int | None:
    for m in hpa.get("status", {}).get("currentMetrics") or []:
        current = (m.get("resource") or {}).get("current") or {}
        if "averageUtilization" in current:
            return int(current["averageUtilization"])
    return None


def first_reading(
    kubectl: Kubectl,
    namespace: str,
    model: str,
    reading: Callable[[dict[str, Any]], float | None],
    what: str,
) -> dict[str, Any]:
    """The Model's autoscaler once `reading` finds a value in its status."""

    def read() -> dict[str, Any] | None:
        found = the_autoscaler(kubectl, namespace, model)
        return found if reading(found) is not None else None

    found: dict[str, Any] = wait_for(read, timeout=120, what=what)
    return found


@pytest.mark.timeout(900)
def test_the_autoscaler_scales_and_follows_a_promotion_under_load(
    release: Release, apps: Registry, kubectl: Kubectl, onnx_model: Onnx
) -> None:
    model, ns = "scaled", release.apps
    apps.model(model, serving=serving(resources=RESOURCES, autoscaling=AUTOSCALING))
    client = Client(kubeconfig=kubectl.kubeconfig, namespace=ns)
    for n in (1, 2):
        uri, sha = apps.artifact(model, n, onnx_model.data)
        apps.version(model, n, "Production" if n == 1 else "None", uri=uri, sha256=sha)
    apps.wait_phase(model, 1, "Serving", timeout=180)
    hpa = the_autoscaler(kubectl, ns, model)
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"{model}-v1"
    assert hpa["metadata"]["ownerReferences"][0]["kind"] == "Model"

    # metrics-server answers for the serving pod: the autoscaler reads its utilization.
    hpa = first_reading(
        kubectl,
        ns,
        model,
        cpu_utilization,
        "the autoscaler's first CPU reading from metrics-server",
    )
    idle = cpu_utilization(hpa)
    assert idle is not None, hpa["status"]
    assert idle < AUTOSCALING["targetCpuUtilization"], hpa["status"]

    host = cluster_ip(kubectl, ns, model)
    expected = onnx_model.expected()
    wait_for(
        lambda: answers(host, model, onnx_model.request(), expected), timeout=30, what="an answer"
    )
    load = Load(host, model, onnx_model.request(), expected, threads=4, max_seconds=420).start()
    try:
        t0 = time.monotonic()
        wait_for(
            lambda: (
                (apps.deployments(model)[f"{model}-v1"].get("status", {}).get("readyReplicas") or 0)
                >= 2
            ),
            timeout=240,
            what=f"the autoscaler to scale {model}-v1 up under load",
        )
        record("autoscaler_scale_up_seconds", time.monotonic() - t0)
        busy = cpu_utilization(the_autoscaler(kubectl, ns, model))
        scaled = int(apps.deployments(model)[f"{model}-v1"]["spec"]["replicas"])

        client.promote(model, 2, archive_previous=True, wait=False)
        v2 = wait_for(
            lambda: apps.deployments(model).get(f"{model}-v2"),
            timeout=120,
            what=f"{model}-v2's Deployment",
        )
        # A promotion never drops capacity: v2 starts at v1's scaled-up count (or more, if the
        # autoscaler went on scaling v1 meanwhile).
        assert int(v2["spec"]["replicas"]) >= scaled >= 2, (v2["spec"]["replicas"], scaled)
        apps.wait_phase(model, 2, "Serving", timeout=240)
        load.wait_serving(2)
        client.archive(model, 1)  # what promote(archive_previous=True, wait=True) does after this
        wait_for(
            lambda: set(apps.deployments(model)) == {f"{model}-v2"},
            timeout=120,
            what=f"only {model}-v2's Deployment left",
        )
        hpa = the_autoscaler(kubectl, ns, model)
        assert hpa["spec"]["scaleTargetRef"]["name"] == f"{model}-v2", hpa["spec"]
    finally:
        load.stop()
    print(
        f"autoscaling: idle {idle}%, under load {busy}%, v1 scaled to {scaled}; "
        f"{load.total} requests, {len(load.failures)} failed, by version {dict(load.versions)}"
    )
    record("autoscaling_load_requests", load.total)
    assert not load.failures, f"{len(load.failures)} of {load.total} failed: {load.failures[:10]}"
    assert {"1", "2"} <= set(load.versions), dict(load.versions)

    # Idle again: the autoscaler, now on v2, brings it back to minReplicas.
    wait_for(
        lambda: int(apps.deployments(model)[f"{model}-v2"]["spec"]["replicas"]) == 1,
        timeout=240,
        what=f"the autoscaler to scale {model}-v2 down once the load stopped",
    )
    assert the_autoscaler(kubectl, ns, model)["spec"]["scaleTargetRef"]["name"] == f"{model}-v2"

    # Withdrawn from production: the autoscaler goes with the Service, nothing is left behind.
    client.archive(model, 2)
    wait_for(
        lambda: not autoscalers(kubectl, ns, model) and not apps.deployments(model),
        timeout=120,
        what="the autoscaler and the Deployment removed with production",
    )


# Scaled on requests in flight alone: a CPU target it cannot reach (the limit is 4x the request),
# and a CPU limit that makes the one pod the bottleneck, so the load's requests wait in it.
IN_FLIGHT = {
    "minReplicas": 1,
    "maxReplicas": 3,
    "targetCpuUtilization": 1000,
    "targetInFlight": 0.5,
    "scaleDownStabilizationSeconds": 0,
}
SLOW = {"requests": {"cpu": "25m", "memory": "128Mi"}, "limits": {"cpu": "100m"}}
CUSTOM = "/apis/custom.metrics.k8s.io/v1beta2"


@pytest.fixture(scope="module")
def release_values() -> dict[str, object]:
    """This module's release also serves the custom metrics API (one APIService per cluster)."""
    return {"metricsApi": {"enabled": True, **ON_REAL_NODE}}


def quantity(q: str) -> float:
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


def in_flight(hpa: dict[str, Any]) -> float | None:
    for m in hpa.get("status", {}).get("currentMetrics") or []:
        if m.get("type") == "Pods":
            current = (m.get("pods") or {}).get("current") or {}
            if "averageValue" in current:
                return quantity(current["averageValue"])
    return None


def apiservice_available(kubectl: Kubectl) -> bool:
    found = kubectl.get("apiservice", "v1beta2.custom.metrics.k8s.io")
    conds = (found or {}).get("status", {}).get("conditions") or []
    return any(c["type"] == "Available" and c["status"] == "True" for c in conds)


@pytest.mark.timeout(900)
def test_the_autoscaler_scales_on_requests_in_flight_through_the_custom_metrics_api(
    release: Release, apps: Registry, kubectl: Kubectl, onnx_model: Onnx
) -> None:
    """metricsApi.enabled: the chart's pod serves custom.metrics.k8s.io behind the aggregator
    (its own certificate, its CA written into the APIService); targetInFlight becomes a Pods
    metric that the real HorizontalPodAutoscaler controller reads through the API server."""
    model, ns = "inflight", release.apps
    wait_for(
        lambda: apiservice_available(kubectl),
        timeout=180,
        what="the APIService v1beta2.custom.metrics.k8s.io Available (the chart's pod)",
    )
    apps.model(model, serving=serving(resources=SLOW, autoscaling=IN_FLIGHT))
    uri, sha = apps.artifact(model, 1, onnx_model.data)
    apps.version(model, 1, "Production", uri=uri, sha256=sha)
    apps.wait_phase(model, 1, "Serving", timeout=240)
    hpa = the_autoscaler(kubectl, ns, model)
    assert [m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "modelreg_requests_in_flight"},
                "target": {"type": "AverageValue", "averageValue": "500m"},
            },
        }
    ], hpa["spec"]["metrics"]

    # Through the API server, as the autoscaler reads it: the one serving pod, idle.
    path = f"{CUSTOM}/namespaces/{ns}/pods/*/modelreg_requests_in_flight"
    raw = json.loads(kubectl("get", "--raw", f"{path}?labelSelector=modelreg.dev/model%3D{model}"))
    pods = ready_serving_pods(kubectl, ns, model, 1)
    assert [i["describedObject"]["name"] for i in raw["items"]] == [
        p["metadata"]["name"] for p in pods
    ], raw
    assert quantity(raw["items"][0]["value"]) < 1, raw
    # A user the API server does not let read it is refused there...
    denied = kubectl.run("--as", "nobody", "get", "--raw", path, check=False)
    assert denied.returncode != 0, denied.stdout
    assert "Forbidden" in denied.stderr, denied.stderr
    # ...and the server believes no user header without the front proxy's certificate.
    server = kubectl.items("pods", release.system, "app.kubernetes.io/component=metrics-api")[0]
    direct = subprocess.run(
        ["curl", "-sk", "-H", "X-Remote-User: kwok-admin",
         f"https://{server['status']['podIP']}:6443{path}"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert '"code": 401' in direct.stdout, direct.stdout + direct.stderr

    hpa = first_reading(kubectl, ns, model, in_flight, "the autoscaler's first in-flight reading")
    idle = in_flight(hpa)
    assert idle is not None, hpa["status"]
    assert idle < 0.5, hpa["status"]

    host = cluster_ip(kubectl, ns, model)
    expected = onnx_model.expected()
    wait_for(
        lambda: answers(host, model, onnx_model.request(), expected), timeout=30, what="an answer"
    )
    load = Load(host, model, onnx_model.request(), expected, threads=6, max_seconds=420).start()
    busy: list[tuple[float | None, int | None]] = []
    try:
        t0 = time.monotonic()

        def scaled_up() -> bool:
            h = the_autoscaler(kubectl, ns, model)
            busy.append((in_flight(h), cpu_utilization(h)))
            ready = apps.deployments(model)[f"{model}-v1"].get("status", {}).get("readyReplicas")
            return (ready or 0) >= 2

        wait_for(scaled_up, timeout=300, what=f"the autoscaler to scale {model}-v1 on in-flight")
        record("autoscaler_in_flight_scale_up_seconds", time.monotonic() - t0)
    finally:
        load.stop()
    print(f"in-flight autoscaling: idle {idle}, readings (in flight, cpu %) {busy[-10:]}")
    peak = max((v for v, _ in busy if v is not None), default=None)
    assert peak is not None, busy
    assert peak > 0.5, busy
    # The CPU target (1000 %) was never the reason: the pods' limit keeps them under 400 %.
    assert all(c is None or c < 1000 for _, c in busy), busy
    assert not load.failures, f"{len(load.failures)} of {load.total} failed: {load.failures[:10]}"
    record("autoscaler_in_flight_peak", peak)

    wait_for(
        lambda: int(apps.deployments(model)[f"{model}-v1"]["spec"]["replicas"]) == 1,
        timeout=240,
        what=f"the autoscaler to scale {model}-v1 down with nothing in flight",
    )


@pytest.mark.parametrize(
    ("autoscaling", "resources", "message"),
    [
        (
            {"minReplicas": 4, "maxReplicas": 2},
            RESOURCES,
            "spec.serving.autoscaling: minReplicas must not exceed maxReplicas",
        ),
        (
            {"maxReplicas": 2},
            {"limits": {"cpu": "1"}},
            "spec.serving.autoscaling needs spec.serving.resources.requests.cpu",
        ),
        ({"minReplicas": 2}, RESOURCES, "spec.serving.autoscaling.maxReplicas: Required value"),
        (
            {"maxReplicas": 2, "targetInFlight": 0},
            RESOURCES,
            "spec.serving.autoscaling.targetInFlight: Invalid value",
        ),
    ],
)
def test_bad_autoscaling_is_refused_with_a_clear_message(
    release: Release,
    kubectl: Kubectl,
    autoscaling: dict[str, Any],
    resources: dict[str, Any],
    message: str,
) -> None:
    body = {
        "apiVersion": "modelreg.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "badscale", "namespace": release.apps},
        "spec": {"serving": {"resources": resources, "autoscaling": autoscaling}},
    }
    proc = kubectl.run("apply", "-f", "-", input=json.dumps(body), check=False)
    assert proc.returncode != 0, proc.stdout
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
