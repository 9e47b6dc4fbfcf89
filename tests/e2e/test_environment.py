"""Smoke tests proving the local environment is real: scheduling, RBAC, CEL, S3 and kwok stages."""

from __future__ import annotations

import hashlib
import json
import os
import secrets

from tests.e2e.helpers import S3, Kubectl, hold_pods_unready_stage, wait_for


def _deployment(name: str, replicas: int = 2, labels: dict[str, str] | None = None) -> dict:
    labels = {"app": name, **(labels or {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": "example.invalid/app:1"}]},
            },
        },
    }


def test_deployment_becomes_available_on_kwok_nodes(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(_deployment("web", replicas=2), "-n", namespace)

    def available() -> int:
        dep = kubectl.get("deployment", "web", namespace) or {}
        return int(dep.get("status", {}).get("availableReplicas") or 0) >= 2

    wait_for(available, timeout=90, what="2 available replicas")
    pods = kubectl.items("pods", namespace, "app=web")
    assert len(pods) == 2
    assert {p["spec"]["nodeName"] for p in pods} <= {
        n["metadata"]["name"] for n in json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    }
    assert all(p["status"]["phase"] == "Running" for p in pods)


def test_rbac_denies_an_impersonated_user_without_rights(kubectl: Kubectl, namespace: str) -> None:
    proc = kubectl.run("--as=mallory", "-n", namespace, "get", "pods", check=False)
    assert proc.returncode != 0
    assert "Forbidden" in proc.stderr
    assert 'User "mallory" cannot list resource "pods"' in proc.stderr
    # The same request as the admin (system:masters) succeeds: the denial is RBAC, not a broken API.
    kubectl("-n", namespace, "get", "pods")


def test_crd_cel_rule_rejects_a_bad_object_with_its_message(
    kubectl: Kubectl, namespace: str
) -> None:
    group = "smoke.modelreg.dev"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "min": {"type": "integer"},
                                        "max": {"type": "integer"},
                                    },
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": "self.min <= self.max",
                                            "message": "min must not exceed max",
                                        }
                                    ],
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    kubectl.apply(crd)
    kubectl("wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=60s")
    good = {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": "ok"},
        "spec": {"min": 1, "max": 2},
    }
    bad = {**good, "metadata": {"name": "bad"}, "spec": {"min": 3, "max": 2}}
    wait_for(
        lambda: (
            kubectl.run(
                "apply", "-n", namespace, "-f", "-", input=json.dumps(good), check=False
            ).returncode
            == 0
        ),
        timeout=30,
        what="the Widget API to serve",
    )
    proc = kubectl.run("apply", "-n", namespace, "-f", "-", input=json.dumps(bad), check=False)
    assert proc.returncode != 0
    assert "min must not exceed max" in proc.stderr
    assert kubectl.get("widget", "bad", namespace) is None


def test_s3_roundtrip_is_byte_identical(s3: S3) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    key = f"smoke/{secrets.token_hex(4)}/blob.bin"
    digest = s3.put(key, data)
    back = s3.get(key)
    assert back == data
    assert hashlib.sha256(back).hexdigest() == digest
    s3.client().delete_object(Bucket=s3.bucket, Key=key)


def test_kwok_stage_holds_labelled_pods_unready(kubectl: Kubectl, namespace: str) -> None:
    stage = f"hold-{namespace}"
    kubectl.apply(hold_pods_unready_stage(stage, "smoke.modelreg.dev/hold", namespace))
    try:
        kubectl.apply(
            _deployment("held", 1, {"smoke.modelreg.dev/hold": namespace}), "-n", namespace
        )
        kubectl.apply(_deployment("free", 1), "-n", namespace)

        def pod_of(app: str) -> dict | None:
            pods = kubectl.items("pods", namespace, f"app={app}")
            return pods[0] if pods and pods[0].get("status", {}).get("phase") == "Running" else None

        held = wait_for(lambda: pod_of("held"), timeout=60, what="the held pod to run")
        wait_for(lambda: pod_of("free"), timeout=60, what="the free pod to run")
        ready = {c["type"]: c["status"] for c in held["status"].get("conditions", [])}
        assert ready.get("Ready") == "False"
        free = kubectl.get("deployment", "free", namespace) or {}
        wait_for(
            lambda: (
                (kubectl.get("deployment", "free", namespace) or {})
                .get("status", {})
                .get("availableReplicas")
            ),
            timeout=60,
            what="the free deployment to become available",
        )
        dep = kubectl.get("deployment", "held", namespace) or {}
        assert not dep.get("status", {}).get("availableReplicas")
        assert free
    finally:
        kubectl("delete", "stage", stage, "--ignore-not-found")
