"""spec.shadow on the real node: real pods, real traffic through the Service, the serving pods
mirroring a sample of it to the shadow's pods and the in-cluster operator writing the comparison
into the shadow version's status.

- A shadow that is the same model agrees on every compared request; the shadow gate
  (spec.promotion.shadow) then lets it into Production. No live request fails while the serving
  pods roll to start and stop mirroring.
- A shadow that is a different model (other coefficients: other probabilities) disagrees; the gate
  keeps it out of Production with the measured agreement in its condition, and the serving version
  goes on.
- A shadow that is the serving version is refused with a Warning, and no shadow objects are made.
- Removing spec.shadow removes the shadow's Deployment and Service.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import pytest
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from tests.e2e.helpers import Kubectl, wait_for
from tests.e2e.real.conftest import Release, record
from tests.e2e.real.serving import Load, Onnx, answers, cluster_ip, onnx_model
from tests.e2e.real.test_real import apps, serving
from tests.e2e.registry import Registry

__all__ = ["apps", "onnx_model"]  # the fixtures, imported for pytest

GATE = {"minAgreement": 0.99, "minRequests": 40}


def other_model(good: Onnx) -> bytes:
    """A model with the same inputs and outputs whose probabilities differ from `good`'s."""
    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = LogisticRegression(C=1e-4, max_iter=50).fit(X, y)
    onx = to_onnx(est, X[:1], options={LogisticRegression: {"zipmap": False}}, target_opset=17)
    return onx.SerializeToString()


def condition(apps: Registry, model: str) -> dict[str, Any]:
    conds = apps.model_status(model).get("conditions") or []
    return next((c for c in conds if c["type"] == "Shadowing"), {})


def set_shadow(kubectl: Kubectl, body: dict[str, Any], shadow: dict[str, Any] | None) -> None:
    spec = dict(body["spec"])
    if shadow is None:
        spec.pop("shadow", None)
    else:
        spec["shadow"] = shadow
    body["spec"] = spec
    kubectl.apply(body)


def shadow_status(apps: Registry, model: str, n: int) -> dict[str, Any]:
    st: dict[str, Any] = apps.status(model, n).get("shadow") or {}
    return st


def shadow_objects(kubectl: Kubectl, ns: str, model: str) -> tuple[bool, bool]:
    name = f"{model}-shadow"
    return kubectl.get("deployment", name, ns) is not None, kubectl.get(
        "service", name, ns
    ) is not None


@pytest.mark.timeout(900)
def test_a_shadow_is_compared_on_live_traffic_and_gates_production(
    release: Release, apps: Registry, kubectl: Kubectl, onnx_model: Onnx
) -> None:
    model, ns = "shadowed", release.apps
    body = apps.model(model, serving=serving(replicas=1))
    body["spec"]["promotion"] = {"shadow": GATE}
    kubectl.apply(body)
    for n, data in ((1, onnx_model.data), (2, onnx_model.data), (3, other_model(onnx_model))):
        uri, sha = apps.artifact(model, n, data)
        apps.version(model, n, "Production" if n == 1 else "None", uri=uri, sha256=sha)
    apps.wait_phase(model, 1, "Serving", timeout=180)
    host = cluster_ip(kubectl, ns, model)
    expected = onnx_model.expected()
    wait_for(lambda: answers(host, model, onnx_model.request(), expected), timeout=30, what="v1")
    load = Load(host, model, onnx_model.request(), expected, threads=2, max_seconds=600).start()
    try:
        # -- the same model as the shadow: it agrees, and the gate lets it in ------------------
        t0 = time.monotonic()
        set_shadow(kubectl, body, {"version": 2, "samplePercent": 50})
        wait_for(
            lambda: condition(apps, model).get("reason") == "Mirroring",
            timeout=240,
            what="the Model's Shadowing condition to say Mirroring",
        )
        mirroring_after = time.monotonic() - t0
        assert condition(apps, model)["status"] == "True"
        shadow_pods = kubectl.items("pods", ns, f"modelreg.dev/shadow-of={model}")
        assert shadow_pods, "no shadow pod"
        assert all(p["metadata"]["labels"]["modelreg.dev/version"] == "2" for p in shadow_pods)
        # The stable Service leads to the serving pods only: every answer is version 1's.
        assert set(load.versions) == {"1"}, dict(load.versions)

        wait_for(
            lambda: shadow_status(apps, model, 2).get("compared", 0) >= GATE["minRequests"],
            timeout=180,
            what="v2's status.shadow to count the compared requests",
        )
        same = shadow_status(apps, model, 2)
        assert same["servingVersion"] == 1, same
        assert same["agreement"] == 1.0, same
        assert same["agreed"] == same["compared"], same
        assert same["errors"] == 0, same
        assert (same.get("p99LatencyMs") or 0) > 0, same
        live_during = load.total
        # About half of the live requests since mirroring began were mirrored (the counters lag
        # the load by a scrape interval, so only bounds are checked).
        assert 0 < same["requests"] <= live_during, (same, live_during)

        apps.stage(model, 2, "Production")
        apps.wait_phase(model, 2, "Serving", timeout=240)
        load.wait_serving(2)
        # Now the shadow is the serving version: it stops, with a Warning.
        wait_for(
            lambda: condition(apps, model).get("reason") == "ShadowIsServing",
            timeout=60,
            what="the Shadowing condition to say ShadowIsServing",
        )
        wait_for(
            lambda: shadow_objects(kubectl, ns, model) == (False, False),
            timeout=120,
            what="the shadow's Deployment and Service to be removed",
        )
        assert any(
            e.get("reason") == "ShadowIsServing" and e.get("type") == "Warning"
            for e in apps.events(model)
        ), [e.get("reason") for e in apps.events(model)]
        apps.stage(model, 1, "Archived")

        # -- a different model as the shadow: it disagrees, and the gate keeps it out ----------
        set_shadow(kubectl, body, {"version": 3, "samplePercent": 100})
        wait_for(
            lambda: shadow_status(apps, model, 3).get("compared", 0) >= GATE["minRequests"],
            timeout=300,
            what="v3's status.shadow to count the compared requests",
        )
        other = shadow_status(apps, model, 3)
        assert other["servingVersion"] == 2, other
        assert other["agreement"] < 0.5, other
        apps.stage(model, 3, "Production")
        blocked = apps.wait_phase(model, 3, "Blocked", timeout=60)
        ready = next(c for c in blocked["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "ShadowGateFailed", ready
        assert "agreed with version 2 on" in ready["message"], ready
        assert apps.service_version(model) == "2"

        # -- removing spec.shadow removes the shadow's objects ---------------------------------
        set_shadow(kubectl, body, None)
        wait_for(
            lambda: shadow_objects(kubectl, ns, model) == (False, False),
            timeout=120,
            what="the shadow's Deployment and Service to be removed",
        )
        wait_for(lambda: not condition(apps, model), timeout=60, what="no Shadowing condition")
        assert shadow_status(apps, model, 3)["agreement"] == other["agreement"]  # kept
        time.sleep(3)
    finally:
        load.stop()
    print(
        f"shadow: mirroring {mirroring_after:.1f}s after spec.shadow; same model "
        f"{same['agreed']}/{same['compared']} agreed, p99 {same['p99LatencyMs']} ms; other model "
        f"agreement {other['agreement']} over {other['compared']}; live load {load.total} "
        f"requests, {len(load.failures)} failed"
    )
    record("shadow_mirroring_seconds", mirroring_after)
    record("shadow_p99_ms", float(same["p99LatencyMs"]))
    # The serving pods rolled four times (mirror on, promotion, mirror on, mirror off): no live
    # request failed.
    assert not load.failures, f"{len(load.failures)} failed: {load.failures[:5]}"
    assert {"1", "2"} <= set(load.versions), dict(load.versions)


def test_the_serving_version_as_its_own_shadow_is_refused(
    release: Release, apps: Registry, kubectl: Kubectl, onnx_model: Onnx
) -> None:
    model, ns = "selfshadow", release.apps
    body = apps.model(model, serving=serving(replicas=1))
    uri, sha = apps.artifact(model, 1, onnx_model.data)
    apps.version(model, 1, "Production", uri=uri, sha256=sha)
    apps.wait_phase(model, 1, "Serving", timeout=180)
    set_shadow(kubectl, body, {"version": 1})
    wait_for(
        lambda: condition(apps, model).get("reason") == "ShadowIsServing",
        timeout=60,
        what="ShadowIsServing",
    )
    cond = condition(apps, model)
    assert cond["status"] == "False"
    assert "version 1 serves production: it cannot be its own shadow" in cond["message"]
    assert shadow_objects(kubectl, ns, model) == (False, False)
    env = apps.deployments(model)[f"{model}-v1"]["spec"]["template"]["spec"]["containers"][0]
    assert not [e for e in env["env"] if e["name"].startswith("MODELREG_SHADOW")]
