"""The Argo CD Lua health checks over live objects the operator drove through every phase.

One Model, versions pushed into Serving, Ready, Archived, Blocked (a failed gate, a sha256
mismatch), Rolling, Failed (kwok holds the new pods unready past progressDeadlineSeconds) and
Superseded. Every state seen while polling, transient ones included, is run through the scripts of
manifests/argocd/argocd-cm.yaml under Lua 5.1 and must match the design's health table.
With MODELREG_CAPTURE_FIXTURES=1 each state is saved as
tests/e2e/fixtures/argocd-health/captured-*.json for the unit test.
"""

from __future__ import annotations

import json
import os
import secrets
from typing import Any

from tests.e2e.helpers import S3, Kubectl, OperatorProcess, hold_pods_unready_stage, wait_for
from tests.unit.test_argocd_health import FIXTURES, evaluate, expected_by_rule, health_scripts

Obj = dict[str, Any]


def save_captured(obj: Obj, tag: str) -> None:
    kept = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "managedFields"}}
    path = FIXTURES / f"captured-{obj['kind'].lower()}-{tag}.json"
    path.write_text(json.dumps(kept, indent=2) + "\n")


class Recorder:
    """Polls ModelVersions and keeps the last object seen in each (name, phase, reason)."""

    def __init__(self, kubectl: Kubectl, namespace: str) -> None:
        self.kubectl = kubectl
        self.namespace = namespace
        self.seen: dict[tuple[str, str, str], Obj] = {}

    def phase(self, name: str) -> str | None:
        obj = self.kubectl.get("mv", name, self.namespace)
        status = (obj or {}).get("status") or {}
        phase: str | None = status.get("phase")
        if obj is not None and phase:
            ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
            self.seen[(name, phase, ready.get("reason", ""))] = obj
        return phase

    def wait(self, name: str, phase: str, timeout: float = 120) -> None:
        wait_for(lambda: self.phase(name) == phase, timeout=timeout, what=f"{name} {phase}")


def test_health_of_live_objects_in_every_phase(
    kubectl: Kubectl, namespace: str, s3: S3, s3_secret: str, operator: OperatorProcess
) -> None:
    # A model name of our own: the kwok Stage below selects pods by model label, cluster-wide.
    model = f"health-{secrets.token_hex(3)}"
    prefix = f"e2e/{namespace}/{model}"
    kubectl.apply(
        {
            "apiVersion": "modelreg.dev/v1alpha1",
            "kind": "Model",
            "metadata": {"name": model, "namespace": namespace},
            "spec": {
                "storage": {
                    "uri": f"s3://{s3.bucket}/{prefix}/",
                    "endpoint": s3.endpoint,
                    "region": s3.region,
                    "secretRef": {"name": s3_secret},
                },
                "promotion": {"gates": [{"metric": "auc", "min": 0.8}]},
                "serving": {"replicas": 1, "progressDeadlineSeconds": 5},
            },
        }
    )

    def version(n: int, stage: str, auc: float = 0.9, sha: str | None = None) -> None:
        key = f"{prefix}/{n}/model.onnx"
        real = s3.put(key, f"{model} v{n}".encode())
        kubectl.apply(
            {
                "apiVersion": "modelreg.dev/v1alpha1",
                "kind": "ModelVersion",
                "metadata": {"name": f"{model}-v{n}", "namespace": namespace},
                "spec": {
                    "model": model,
                    "version": n,
                    "stage": stage,
                    "artifact": {"uri": f"s3://{s3.bucket}/{key}", "sha256": sha or real},
                    "metrics": {"auc": auc},
                },
            }
        )

    rec = Recorder(kubectl, namespace)
    version(1, "Production")
    rec.wait(f"{model}-v1", "Serving")
    version(2, "Staging", auc=0.5)
    version(3, "Staging", sha="0" * 64)
    version(4, "Staging")
    version(5, "Archived")
    rec.wait(f"{model}-v2", "Blocked")
    rec.wait(f"{model}-v3", "Blocked")
    rec.wait(f"{model}-v4", "Ready")
    rec.wait(f"{model}-v5", "Archived")

    stage = f"hold-{model}"
    kubectl.apply(hold_pods_unready_stage(stage, "modelreg.dev/model", model))
    try:
        version(6, "Production")
        rec.wait(f"{model}-v6", "Rolling", timeout=60)
        rec.wait(f"{model}-v6", "Failed", timeout=120)
    finally:
        kubectl("delete", "stage", stage, "--ignore-not-found")
    version(7, "Production")
    rec.wait(f"{model}-v7", "Serving")
    rec.wait(f"{model}-v1", "Superseded", timeout=60)

    wanted = {"Serving", "Blocked", "Ready", "Archived", "Rolling", "Failed", "Superseded"}
    assert wanted <= {phase for _, phase, _ in rec.seen}, sorted(rec.seen)
    scripts = health_scripts()
    capture = os.environ.get("MODELREG_CAPTURE_FIXTURES") == "1"
    for (name, phase, reason), obj in sorted(rec.seen.items()):
        health = evaluate(scripts["ModelVersion"], obj)
        assert health["status"] == expected_by_rule(obj), f"{name} in {phase}: {health}"
        assert health.get("message"), f"{name} in {phase}: no message"
        if health["status"] == "Degraded":
            ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
            assert ready["message"] in health["message"], (name, health)
        if capture:
            save_captured(obj, f"{phase}-{reason}".lower())

    mdl = wait_for(
        lambda: (
            (m := kubectl.get("model", model, namespace))
            and (m.get("status") or {}).get("productionVersion") == 7
            and m
        ),
        timeout=60,
        what=f"Model {model} to report version 7",
    )
    health = evaluate(scripts["Model"], mdl)
    assert health["status"] == "Healthy", health
    if capture:
        save_captured(mdl, "ready")
