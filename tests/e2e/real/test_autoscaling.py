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
import time
from typing import Any

import pytest

from modelreg import Client
from tests.e2e.helpers import Kubectl, wait_for
from tests.e2e.real.conftest import Release, record
from tests.e2e.real.serving import Load, Onnx, answers, cluster_ip, onnx_model
from tests.e2e.real.test_real import apps, serving
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
    def measured() -> dict[str, Any] | None:
        found = the_autoscaler(kubectl, ns, model)
        return found if cpu_utilization(found) is not None else None

    hpa = wait_for(
        measured,
        timeout=120,
        what="the autoscaler's first CPU reading from metrics-server",
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
