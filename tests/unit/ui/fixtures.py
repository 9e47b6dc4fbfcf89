"""Deterministic registry data for the UI's tests and screenshots, behind the SDK's KubeAPI fake.

`registry_kube()` fills tests/unit/sdk/fakes.FakeKube (plus Events and API-server-shaped
Forbidden refusals) with fixed names, metrics, histories and timestamps; `NOW` is the "now" the
pages compute ages from. Used by tests/unit/ui and by `make screenshots` (tests/unit/ui/shots.py),
so the committed PNGs and the tests see the very same objects.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from modelreg.adapters import kube as k
from modelreg.sdk.client import Client
from tests.unit.sdk.fakes import FakeKube

Body = dict[str, Any]
NS = "risk"
NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
MODEL = "credit-scoring"


def forbidden_message(user: str, verb: str, plural: str, group: str, namespace: str) -> str:
    """The API server's RBAC refusal, word for word (k8s.io/apiserver forbiddenMessage)."""
    qualified = f"{plural}.{group}" if group else plural
    in_group = f' in API group "{group}"' if group else ""
    return (
        f'{qualified} is forbidden: User "{user}" cannot {verb} resource "{plural}"'
        f'{in_group} in the namespace "{namespace}"'
    )


class RegistryKube(FakeKube):
    """FakeKube with Events and per-resource refusals shaped like the real API server's."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Body] = []
        self.refuse: dict[str, str] = {}  # plural -> the user refused
        self.lists = 0

    def _check(self, verb: str, plural: str, namespace: str) -> None:
        user = self.refuse.get(plural)
        if user is not None:
            group = "" if plural == "events" else "modelreg.dev"
            raise k.Forbidden(forbidden_message(user, verb, plural, group, namespace), 403)

    def get_object(self, plural: str, namespace: str, name: str) -> Body:
        self._check("get", plural, namespace)
        return super().get_object(plural, namespace, name)

    def list_objects(self, plural: str, namespace: str, label_selector: str = "") -> list[Body]:
        self._check("list", plural, namespace)
        self.lists += 1
        return super().list_objects(plural, namespace, label_selector)

    def list_events(self, namespace: str, involved_name: str) -> list[Body]:
        self._check("list", "events", namespace)
        return [
            copy.deepcopy(e)
            for e in self.events
            if e["involvedObject"]["name"] == involved_name
            and e["metadata"]["namespace"] == namespace
        ]

    def put_model(self, name: str, spec: Body, status: Body, created: str) -> None:
        self.objects[("models", NS, name)] = {
            "apiVersion": "modelreg.dev/v1alpha1",
            "kind": "Model",
            "metadata": {
                "name": name,
                "namespace": NS,
                "generation": 1,
                "creationTimestamp": created,
            },
            "spec": spec,
            "status": status,
        }

    def put_version(self, model: str, n: int, spec: Body, status: Body, created: str) -> None:
        name = f"{model}-v{n}"
        self.objects[("modelversions", NS, name)] = {
            "apiVersion": "modelreg.dev/v1alpha1",
            "kind": "ModelVersion",
            "metadata": {
                "name": name,
                "namespace": NS,
                "generation": 2,
                "creationTimestamp": created,
            },
            "spec": {
                "model": model,
                "version": n,
                "artifact": {
                    "uri": f"s3://models/{model}/{n}/model.onnx",
                    "sha256": f"{n:02d}"
                    + "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f0"[:62],
                    "format": "onnx",
                },
                **spec,
            },
            "status": {"observedGeneration": 2, **status},
        }

    def set_phase(
        self, model: str, n: int, phase: str, stage: str, ready: int | None = None
    ) -> None:
        """Move a version on (what the operator would write), for the live-update tests."""
        st = self.objects[("modelversions", NS, f"{model}-v{n}")]["status"]
        st["phase"] = phase
        st["stage"] = stage
        if ready is not None:
            st["serving"] = {**st.get("serving", {}), "readyReplicas": ready}


def _ok(kind: str, reason: str, message: str, at: str) -> Body:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": at,
    }


def _history(*entries: tuple[str, str, str | None, str | None, str]) -> list[Body]:
    out = []
    for at, stage, by, requested, why in entries:
        entry: Body = {"at": at, "stage": stage}
        if by:
            entry["by"] = by
            entry["reason"] = why
        else:
            entry["message"] = why
        if requested:
            entry["requested"] = requested
        out.append(entry)
    return out


GATES = [{"metric": "auc", "min": 0.8}, {"metric": "latency_p99_ms", "max": 50}]
# (version, auc, latency, f1, created day, phase, stage, desired)
_CREDIT = [
    (1, 0.78, 31.0, 0.70, "2026-10-02", "Archived", "Archived", "Archived"),
    (2, 0.83, 44.0, 0.74, "2026-10-09", "Archived", "Archived", "Archived"),
    (3, 0.86, 58.0, 0.77, "2026-10-20", "Blocked", "None", "Production"),
    (4, 0.88, 35.0, 0.79, "2026-11-03", "Superseded", "Archived", "Archived"),
    (5, 0.91, 27.0, 0.82, "2026-11-14", "Serving", "Production", "Production"),
    (6, 0.93, 24.0, 0.84, "2026-11-28", "Ready", "Staging", "Staging"),
]


def _credit_version(kube: RegistryKube, row: tuple[Any, ...]) -> None:
    n, auc, latency, f1, day, phase, stage, desired = row
    at = f"{day}T09:30:00Z"
    passed = auc >= 0.8 and latency <= 50
    status: Body = {
        "phase": phase,
        "stage": stage,
        "artifact": {
            "verified": True,
            "uri": f"s3://models/{MODEL}/{n}/model.onnx",
            "sizeBytes": 1_843_200 + n * 40_960,
            "verifiedAt": f"{day}T09:30:04Z",
        },
        "gates": [
            {
                "metric": "auc",
                "min": 0.8,
                "actual": auc,
                "passed": auc >= 0.8,
                "message": "" if auc >= 0.8 else f"auc={auc:g} is below the minimum 0.8",
            },
            {
                "metric": "latency_p99_ms",
                "max": 50,
                "actual": latency,
                "passed": latency <= 50,
                "message": ""
                if latency <= 50
                else f"latency_p99_ms={latency:g} is above the maximum 50",
            },
        ],
        "conditions": [
            _ok(
                "ArtifactVerified",
                "Verified",
                "sha256 matches the stored object",
                f"{day}T09:30:04Z",
            ),
            {
                "type": "GatesPassed",
                "status": "True" if passed else "False",
                "reason": "Passed" if passed else "GateFailed",
                "message": "all 2 gates passed"
                if passed
                else "gates failed: latency_p99_ms=58 is above the maximum 50",
                "lastTransitionTime": f"{day}T09:30:04Z",
            },
            {
                "type": "Ready",
                "status": "True" if phase in ("Serving", "Ready") else "False",
                "reason": phase,
                "message": f"the version is {phase}",
                "lastTransitionTime": f"{day}T09:31:00Z",
            },
        ],
        "history": _history((f"{day}T09:30:04Z", "None", None, None, "artifact verified")),
    }
    if n == 5:
        status["serving"] = {
            "deployment": f"{MODEL}-v5",
            "service": MODEL,
            "readyReplicas": 2,
            "url": f"http://{MODEL}.{NS}.svc:80",
        }
        status["history"] += _history(
            (
                "2026-11-15T10:02:00Z",
                "Staging",
                "alice",
                "Staging",
                "shadow agreement 99.1% over 12k requests",
            ),
            (
                "2026-11-18T08:15:00Z",
                "Production",
                "bob",
                "Production",
                "approved in CAB-2291: better AUC, lower p99",
            ),
        )
    if n == 4:
        status["history"] += _history(
            ("2026-11-05T14:00:00Z", "Production", "alice", "Production", "quarterly refresh"),
            ("2026-11-18T08:16:30Z", "Archived", None, None, "v5 took over production"),
        )
    if n == 6:
        status["history"] += _history(
            (
                "2026-11-29T16:40:00Z",
                "Staging",
                "carol",
                "Staging",
                "candidate: retrained on November data",
            ),
        )
    if n == 3:
        status["history"] += _history(
            ("2026-10-21T11:00:00Z", "None", "alice", "Production", "try the wider feature set"),
        )
    spec: Body = {
        "stage": desired,
        "framework": "sklearn",
        "description": f"gradient boosting, run {n}",
        "metrics": {"auc": auc, "latency_p99_ms": latency, "f1": f1},
        "params": {"max_depth": str(4 + n % 3), "learning_rate": "0.1" if n < 5 else "0.05"},
        "lineage": {
            "run": f"mlflow-run-{1000 + n}",
            "dataset": f"s3://data/loans/2026-{9 + n // 3:02d}/",
            "gitCommit": f"a1b2c3{n}",
        },
    }
    if n >= 5:
        spec["environment"] = {
            "python": "3.11.7",
            "packages": [
                "numpy==1.26.4",
                "scikit-learn==1.5.2",
                "skl2onnx==1.17.0",
                "onnx==1.16.1",
            ],
        }
        status["audit"] = {
            "database": "s3://models/advisories/osv.zip",
            "advisories": 4210,
            "auditedAt": f"{day}T09:30:06Z",
            "packages": 4,
            "findings": []
            if n == 6
            else [
                {
                    "id": "GHSA-5545-2q6w-2gh6",
                    "aliases": ["CVE-2024-5206"],
                    "package": "scikit-learn",
                    "version": "1.5.2",
                    "affected": "<1.5.0",
                    "severity": "MEDIUM",
                    "allowed": True,
                    "summary": "sensitive data leakage in TfidfVectorizer",
                },
            ],
            "findingsTotal": 0 if n == 6 else 1,
        }
    kube.put_version(MODEL, n, spec, status, at)


def registry_kube() -> RegistryKube:
    """The fixed registry: three Models, credit-scoring with six versions in every state."""
    kube = RegistryKube()
    kube.put_model(
        MODEL,
        {
            "description": "Credit scoring for consumer loans",
            "owner": "team-risk",
            "tags": {"domain": "finance", "tier": "1"},
            "storage": {"uri": f"s3://models/{MODEL}/", "secretRef": {"name": "s3-credentials"}},
            "promotion": {"gates": GATES},
            "serving": {"replicas": 2},
            "aliases": {"champion": 5, "challenger": 6, "legacy": 1},
        },
        {
            "productionVersion": 5,
            "latestVersion": 6,
            "endpoint": f"http://{MODEL}.{NS}.svc:80",
            "aliases": {"champion": 5, "challenger": 6},
            "conditions": [_ok("Ready", "Serving", "v5 serves production", "2026-11-18T08:16:30Z")],
        },
        "2026-10-01T08:00:00Z",
    )
    for row in _CREDIT:
        _credit_version(kube, row)
    kube.put_model(
        "fraud-detection",
        {
            "description": "Card fraud, real time",
            "owner": "team-payments",
            "tags": {"domain": "payments"},
            "promotion": {"gates": [{"metric": "recall", "min": 0.9}]},
        },
        {
            "productionVersion": 2,
            "latestVersion": 3,
            "endpoint": f"http://fraud-detection.{NS}.svc:80",
            "conditions": [_ok("Ready", "Serving", "v2 serves production", "2026-11-20T10:00:00Z")],
        },
        "2026-09-12T08:00:00Z",
    )
    for n, recall, phase, stage in (
        (1, 0.87, "Archived", "Archived"),
        (2, 0.92, "Serving", "Production"),
        (3, 0.94, "Verifying", "None"),
    ):
        kube.put_version(
            "fraud-detection",
            n,
            {
                "stage": stage if stage != "None" else "None",
                "framework": "xgboost",
                "metrics": {"recall": recall, "precision": 0.8 + n / 100},
            },
            {
                "phase": phase,
                "stage": stage,
                **(
                    {"serving": {"deployment": f"fraud-detection-v{n}", "readyReplicas": 1}}
                    if phase == "Serving"
                    else {}
                ),
            },
            f"2026-11-{10 + n * 5:02d}T08:00:00Z",
        )
    kube.put_model(
        "churn",
        {
            "description": "Customer churn propensity",
            "owner": "team-growth",
            "tags": {"domain": "marketing"},
        },
        {
            "latestVersion": 1,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "NoProductionVersion",
                    "message": "no version asks for Production",
                    "lastTransitionTime": "2026-11-25T08:00:00Z",
                }
            ],
        },
        "2026-11-25T08:00:00Z",
    )
    kube.put_version(
        "churn",
        1,
        {"stage": "None", "framework": "lightgbm", "metrics": {"auc": 0.74}},
        {"phase": "Ready", "stage": "None"},
        "2026-11-25T08:05:00Z",
    )
    kube.events = [
        _event(
            f"{MODEL}-v5",
            "Normal",
            "Verified",
            "artifact sha256 matches (1.8 MiB)",
            "2026-11-14T09:30:04Z",
            1,
        ),
        _event(
            f"{MODEL}-v5",
            "Normal",
            "Rolling",
            f"Deployment {MODEL}-v5 rolling out (blue/green)",
            "2026-11-18T08:15:05Z",
            1,
        ),
        _event(
            f"{MODEL}-v5",
            "Normal",
            "Serving",
            f"Service {MODEL} switched to v5; 2 of 2 replicas ready",
            "2026-11-18T08:16:30Z",
            1,
        ),
        _event(
            f"{MODEL}-v3",
            "Warning",
            "Blocked",
            "gates failed: latency_p99_ms=58 is above the maximum 50",
            "2026-10-21T11:00:02Z",
            3,
        ),
    ]
    return kube


def _event(name: str, kind: str, reason: str, message: str, at: str, count: int) -> Body:
    return {
        "metadata": {"name": f"{name}.{reason.lower()}", "namespace": NS},
        "involvedObject": {"kind": "ModelVersion", "name": name, "namespace": NS},
        "type": kind,
        "reason": reason,
        "message": message,
        "count": count,
        "firstTimestamp": at,
        "lastTimestamp": at,
        "source": {"component": "modelreg"},
    }


def registry_client(kube: RegistryKube | None = None) -> tuple[Client, RegistryKube]:
    kube = kube or registry_kube()
    return Client(namespace=NS, kube=kube, env={}), kube
