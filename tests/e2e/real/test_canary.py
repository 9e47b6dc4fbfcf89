"""spec.rollout Canary on the real node: real pods, real traffic through the Service, the analysis
read by the in-cluster operator from the canary pods' own /metrics.

- A good version walks every step (25%, 50%, 100%) while a bounded load runs, the Model's
  status.canary shows each step with its measured figures, then it serves alone: no request fails.
- A version that answers 500 on a share of requests (a model built for it: it fails on requests
  whose first feature is huge) is rolled back at its first step: Failed, with the measured error
  rate in its condition; the stable version takes all traffic again; the only failed requests are
  poisoned ones that reached the canary's share of pods, and none after the rollback.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.helpers import Kubectl, wait_for
from tests.e2e.real.conftest import Release, record
from tests.e2e.real.serving import (
    Load,
    Onnx,
    answers,
    cluster_ip,
    failing_sometimes,
    onnx_model,
    poisoned,
)
from tests.e2e.real.test_real import apps, serving
from tests.e2e.registry import Registry

__all__ = ["apps", "onnx_model"]  # the fixtures, imported for pytest

ROLLOUT = {
    "strategy": "Canary",
    "steps": [25, 50, 100],
    "stepSeconds": 8,
    "analysis": {"maxErrorRate": 0.05, "maxP99LatencyMs": 2000, "minRequests": 30},
}


def canary_status(apps: Registry, model: str) -> dict[str, Any] | None:
    st: dict[str, Any] | None = apps.model_status(model).get("canary")
    return st


@pytest.mark.timeout(900)
def test_a_good_canary_walks_every_step_and_a_bad_one_is_rolled_back(
    release: Release, apps: Registry, kubectl: Kubectl, onnx_model: Onnx
) -> None:
    model, ns = "canary", release.apps
    body = apps.model(model, serving=serving(replicas=2))
    body["spec"]["rollout"] = ROLLOUT
    kubectl.apply(body)
    bad = failing_sometimes(onnx_model)
    for n, data in ((1, onnx_model.data), (2, onnx_model.data), (3, bad)):
        uri, sha = apps.artifact(model, n, data)
        apps.version(model, n, "Production" if n == 1 else "None", uri=uri, sha256=sha)
    apps.wait_phase(model, 1, "Serving", timeout=180)
    host = cluster_ip(kubectl, ns, model)
    expected = onnx_model.expected()
    wait_for(lambda: answers(host, model, onnx_model.request(), expected), timeout=30, what="v1")
    poison = poisoned(onnx_model)
    load = Load(host, model, onnx_model.request(), expected, threads=2, max_seconds=600).start()
    # Requests the bad version fails on; the good versions answer them.
    risky = Load(host, model, poison.request(), poison.expected(), threads=2, max_seconds=600)
    risky.start()
    try:
        # -- a good canary: every step, then it serves alone ---------------------------------
        apps.stage(model, 2, "Production")
        seen: dict[int, dict[str, Any]] = {}

        def walked() -> bool:
            st = canary_status(apps, model)
            if st is not None and st.get("version") == 2:
                if st.get("requests") is not None:
                    seen[int(st["step"])] = st
                else:
                    seen.setdefault(int(st["step"]), st)
            return apps.status(model, 2).get("phase") == "Serving"

        wait_for(walked, timeout=300, interval=0.5, what="v2 to walk its canary steps to Serving")
        # Step 3 (100%) needs no more pods than step 2 here (2 beside 2): the switch comes at once.
        assert sorted(seen)[:2] == [1, 2], seen
        assert set(seen) <= {1, 2, 3}, seen
        assert seen[2]["requests"] is not None, seen[2]
        assert (seen[2]["weight"], seen[2]["canaryReplicas"]) == (50, 2), seen[2]
        first = seen[1]
        assert (first["weight"], first["canaryReplicas"], first["stableReplicas"]) == (25, 1, 2)
        assert first["requests"] is not None, first
        assert first["requests"] > 0, first
        assert first["errors"] == 0, first
        assert "canary step 1/3 (25%)" in first["message"], first
        assert apps.service_version(model) == "2"
        assert canary_status(apps, model) is None
        load.wait_serving(2)
        wait_for(
            lambda: set(apps.deployments(model)) == {f"{model}-v2"}, timeout=120, what="v2 alone"
        )
        apps.stage(model, 1, "Archived")
        assert not load.failures, f"{len(load.failures)} failed: {load.failures[:5]}"
        assert not risky.failures, f"{len(risky.failures)} failed: {risky.failures[:5]}"
        assert {"1", "2"} <= set(load.versions), dict(load.versions)

        # -- a bad canary: rolled back at its first step -----------------------------------
        before = risky.total
        apps.stage(model, 3, "Production")
        t0 = time.monotonic()
        status = apps.wait_phase(model, 3, "Failed", timeout=240)
        rolled_back_in = time.monotonic() - t0
        failed_at_rollback = len(risky.failures)
        during = risky.total - before
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert "canary analysis failed at step 1/3 (25%" in ready["message"], ready
        assert "is above maxErrorRate 5.0%" in ready["message"], ready
        assert "version 2 takes all traffic again" in ready["message"], ready
        assert apps.service_version(model) == "2"
        wait_for(
            lambda: f"{model}-v3" not in apps.deployments(model), timeout=60, what="v3 removed"
        )
        assert canary_status(apps, model) is None
        time.sleep(5)  # no failure after the rollback
        assert len(risky.failures) == failed_at_rollback, risky.failures[failed_at_rollback:][:5]
    finally:
        load.stop()
        risky.stop()
    print(
        f"canary: good walk {sorted(seen)}, first step {seen[1].get('requests')} requests; "
        f"bad rolled back in {rolled_back_in:.1f}s; poisoned requests during it {during}, "
        f"failed {failed_at_rollback}; clean load {load.total} requests, {len(load.failures)} "
        "failed"
    )
    record("canary_rollback_seconds", rolled_back_in)
    record("canary_failed_requests", failed_at_rollback)
    # Users saw errors only within the canary's share: poisoned requests that reached its one pod
    # of three, and every one of them an HTTP 500 from the bad version.
    assert failed_at_rollback > 0, "the bad canary never got traffic: nothing was proven"
    assert all("HTTP 500" in f for f in risky.failures), risky.failures[:5]
    assert failed_at_rollback <= 0.6 * during, (failed_at_rollback, during)
    assert not load.failures, f"clean requests failed: {load.failures[:5]}"
