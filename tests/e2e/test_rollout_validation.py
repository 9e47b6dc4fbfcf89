"""The API server refuses a bad spec.rollout, spec.shadow or spec.serving (canary, shadow, gRPC
port, batching) with a message that says what is wrong: the CRD's CEL rules and strict field validation, live."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.helpers import Kubectl

CANARY = {"strategy": "Canary", "steps": [25, 100]}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"rollout": {**CANARY, "steps": [10, 50]}},
            "spec.rollout.steps must end at 100",
        ),
        (
            {"rollout": {**CANARY, "steps": [50, 20, 100]}},
            "spec.rollout.steps must increase",
        ),
        (
            {"rollout": {**CANARY, "steps": [50, 50, 100]}},
            "spec.rollout.steps must increase",
        ),
        (
            {"rollout": {**CANARY, "analysis": {"minRequests": 5}}},
            "spec.rollout.analysis needs maxErrorRate, maxP99LatencyMs or both",
        ),
        (
            {
                "rollout": {**CANARY, "analysis": {"maxErrorRate": 0.1}},
                "serving": {"runtime": "mlserver"},
            },
            "only the builtin runtime exports: it cannot judge spec.serving.runtime mlserver",
        ),
        (
            {"rollout": {**CANARY, "analysis": {"maxCpu": 0.5, "maxErrorRate": 0.1}}},
            'unknown field "spec.rollout.analysis.maxCpu"',
        ),
        (
            {"rollout": {"strategy": "Linear"}},
            'spec.rollout.strategy: Unsupported value: "Linear"',
        ),
        (
            {"serving": {"port": 9000, "grpcPort": 9000}},
            "spec.serving.grpcPort and spec.serving.port must differ",
        ),
        (
            {"serving": {"grpcPort": 80}},
            "spec.serving.grpcPort must be 0 (off) or a port from 1024 to 65535",
        ),
        ({"serving": {"batching": {"maxBatchSize": 0}}}, "spec.serving.batching.maxBatchSize"),
        (
            {"rollout": {**CANARY, "analysis": {"maxP99LatencyMs": 0}}},
            "spec.rollout.analysis.maxP99LatencyMs must be at least 0.001",
        ),
        ({"shadow": {"samplePercent": 10}}, "spec.shadow.version: Required value"),
        (
            {"shadow": {"version": 2, "samplePercent": 0}},
            "spec.shadow.samplePercent must be from 0.01 to 100",
        ),
        (
            {"shadow": {"version": 2, "samplePercent": 150}},
            "spec.shadow.samplePercent in body should be less than or equal to 100",
        ),
        (
            {"shadow": {"version": 2, "tolerance": -1}},
            "spec.shadow.tolerance in body should be greater than or equal to 0",
        ),
        (
            {"shadow": {"version": 2}, "serving": {"runtime": "mlserver"}},
            "spec.shadow needs the builtin runtime",
        ),
        (
            {"promotion": {"shadow": {"minAgreement": 1.5}}},
            "spec.promotion.shadow.minAgreement in body should be less than or equal to 1",
        ),
        ({"promotion": {"shadow": {"minRequests": 5}}}, "spec.promotion.shadow.minAgreement"),
    ],
)
def test_a_bad_rollout_or_serving_spec_is_refused_with_its_reason(
    kubectl: Kubectl, namespace: str, spec: dict[str, Any], message: str
) -> None:
    body = {
        "apiVersion": "modelreg.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "refused", "namespace": namespace},
        "spec": spec,
    }
    proc = kubectl.run("apply", "-f", "-", input=json.dumps(body), check=False)
    assert proc.returncode != 0, proc.stdout
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert kubectl.get("mdl", "refused", namespace) is None, "nothing was stored"


def test_a_good_canary_spec_is_stored_as_written(kubectl: Kubectl, namespace: str) -> None:
    rollout = {
        "strategy": "Canary",
        "steps": [10, 30, 100],
        "stepSeconds": 45,
        "analysis": {"maxErrorRate": 0.02, "maxP99LatencyMs": 300, "minRequests": 50},
    }
    body = {
        "apiVersion": "modelreg.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "kept", "namespace": namespace},
        "spec": {"rollout": rollout},
    }
    kubectl.apply(body)
    stored = kubectl.get("mdl", "kept", namespace)
    assert stored is not None
    assert stored["spec"]["rollout"] == rollout
