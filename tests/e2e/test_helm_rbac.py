"""The chart's operator RBAC is enough, and least: the real operator, authenticated as the chart's
ServiceAccount, completes a blue/green promotion, and the same identity cannot read Secrets it has
no business with.

The operator runs as a local process (containers never run on kwok nodes) with a kubeconfig that
holds a token of the ServiceAccount the chart created (TokenRequest API), so every API call it
makes is authorized exactly as it would be in the pod. The release uses watchNamespaces, the
least-privilege mode: a Role in the managed namespace and nothing else but CRD discovery.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.helpers import S3, Kubectl, OperatorProcess, wait_for
from tests.e2e.test_helm import CHART, Helm, helm, token, uninstall

__all__ = ["helm"]  # the fixture, re-exported so pytest finds it here

MANAGED_BY = "app.kubernetes.io/managed-by"


def service_account_kubeconfig(kubectl: Kubectl, namespace: str, name: str, path: Path) -> str:
    """A kubeconfig for the same API server that authenticates as the ServiceAccount."""
    bearer = kubectl("-n", namespace, "create", "token", name, "--duration=1h").strip()
    current = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json"))
    cluster = current["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": name, "user": {"token": bearer}}],
        "contexts": [{"name": name, "context": {"cluster": cluster["name"], "user": name}}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return str(path)


@pytest.fixture
def release_namespace(kubectl: Kubectl, namespace: str) -> Iterator[str]:
    ns = f"{namespace[:50]}-sys"
    kubectl("create", "namespace", ns)
    yield ns
    kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found")


@pytest.fixture
def elsewhere(kubectl: Kubectl, namespace: str) -> Iterator[str]:
    """A namespace the operator does not manage, holding a Secret it must not read."""
    ns = f"{namespace[:50]}-other"
    kubectl("create", "namespace", ns)
    kubectl("-n", ns, "create", "secret", "generic", "s3-credentials", "--from-literal=k=v")
    yield ns
    kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found")


def model(name: str, namespace: str, s3: S3, prefix: str, secret: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelreg.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "owner": "team-e2e",
            "storage": {
                "uri": f"s3://{s3.bucket}/{prefix}/",
                "endpoint": s3.endpoint,
                "region": s3.region,
                "secretRef": {"name": secret},
            },
            "promotion": {"gates": [{"metric": "auc", "min": 0.8}]},
            "serving": {"replicas": 1, "progressDeadlineSeconds": 120},
        },
    }


def version(
    name: str, n: int, namespace: str, s3: S3, prefix: str, stage: str = "Production"
) -> dict[str, Any]:
    key = f"{prefix}/{n}/model.onnx"
    sha = s3.put(key, f"modelreg e2e artifact {name} v{n} {secrets.token_hex(8)}".encode())
    return {
        "apiVersion": "modelreg.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": f"{name}-v{n}", "namespace": namespace},
        "spec": {
            "model": name,
            "version": n,
            "stage": stage,
            "artifact": {"uri": f"s3://{s3.bucket}/{key}", "sha256": sha, "format": "onnx"},
            "metrics": {"auc": 0.9},
        },
    }


def phase(kubectl: Kubectl, name: str, namespace: str) -> str | None:
    mv = kubectl.get("mv", name, namespace) or {}
    result: str | None = (mv.get("status") or {}).get("phase")
    return result


def test_operator_as_chart_service_account_promotes_and_is_least_privileged(
    helm: Helm,
    kubectl: Kubectl,
    namespace: str,
    release_namespace: str,
    s3: S3,
    s3_secret: str,
    tmp_path: Path,
) -> None:
    release = f"rbac-{token()}"
    sa = f"{release}-modelreg"
    selector = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    helm(
        "install", release, str(CHART), "-n", release_namespace, "--set", "crds.enabled=false",
        "--set-json", f"watchNamespaces={json.dumps([namespace])}",
        "--set-json", f"admission.namespaceSelector={json.dumps(selector)}",
    )  # fmt: skip
    op: OperatorProcess | None = None
    try:
        kc = service_account_kubeconfig(kubectl, release_namespace, sa, tmp_path / "sa.kubeconfig")
        whoami = json.loads(kubectl("--kubeconfig", kc, "auth", "whoami", "-o", "json"))
        assert whoami["status"]["userInfo"]["username"] == (
            f"system:serviceaccount:{release_namespace}:{sa}"
        )
        op = OperatorProcess(
            kubeconfig=kc, namespaces=[namespace], log_path=tmp_path / "operator.log"
        ).start()

        prefix = f"e2e/{namespace}/fraud"
        kubectl.apply(model("fraud", namespace, s3, prefix, s3_secret))
        kubectl.apply(version("fraud", 1, namespace, s3, prefix))
        wait_for(
            lambda: phase(kubectl, "fraud-v1", namespace) == "Serving",
            timeout=180,
            what="fraud-v1 to serve production (operator as the chart's ServiceAccount)",
        )
        # Blue/green to v2: a new Deployment, the Service switched, the old Deployment deleted.
        kubectl.apply(version("fraud", 2, namespace, s3, prefix))
        wait_for(
            lambda: phase(kubectl, "fraud-v2", namespace) == "Serving",
            timeout=180,
            what="fraud-v2 to take over production",
        )
        wait_for(
            lambda: phase(kubectl, "fraud-v1", namespace) == "Superseded",
            timeout=60,
            what="fraud-v1 to be superseded",
        )
        mdl = kubectl.get("model", "fraud", namespace)
        assert mdl is not None
        assert mdl["status"]["productionVersion"] == 2
        ready = {c["type"]: c["status"] for c in mdl["status"]["conditions"]}
        assert ready.get("Ready") == "True", mdl["status"]
        wait_for(
            lambda: (
                [
                    d["metadata"]["labels"]["modelreg.dev/version"]
                    for d in kubectl.items("deployments", namespace, f"{MANAGED_BY}=modelreg")
                ]
                == ["2"]
            ),
            timeout=60,
            what="only version 2's Deployment to remain",
        )
        (service,) = kubectl.items("services", namespace, f"{MANAGED_BY}=modelreg")
        assert service["metadata"]["labels"]["modelreg.dev/model"] == "fraud"
        ours = [
            e
            for e in kubectl.items("events", namespace)
            if e["involvedObject"]["kind"] in ("Model", "ModelVersion")
        ]
        assert ours, "the operator records Events on Models/ModelVersions"
        log = op.log()
        assert "forbidden" not in log.lower(), "the operator hit an RBAC denial:\n" + log[-5000:]
        assert op.alive(), log[-5000:]
    finally:
        if op is not None:
            op.stop()
            print(f"--- operator log ---\n{op.log()[-20000:]}")
        uninstall(helm, release, release_namespace)


def test_operator_service_account_cannot_read_secrets_it_does_not_manage(
    helm: Helm, kubectl: Kubectl, namespace: str, release_namespace: str, elsewhere: str
) -> None:
    release = f"rbac-{token()}"
    sa = f"system:serviceaccount:{release_namespace}:{release}-modelreg"
    selector = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    kubectl("-n", namespace, "create", "secret", "generic", "creds", "--from-literal=k=v")
    helm(
        "install", release, str(CHART), "-n", release_namespace, "--set", "crds.enabled=false",
        "--set-json", f"watchNamespaces={json.dumps([namespace])}",
        "--set-json", f"admission.namespaceSelector={json.dumps(selector)}",
    )  # fmt: skip
    try:
        # Where it manages Models: it may read a named Secret, never list or watch them.
        readable = kubectl.run(f"--as={sa}", "-n", namespace, "get", "secret", "creds", check=False)
        assert readable.returncode == 0, readable.stderr
        for verb in ("list", "watch"):
            proc = kubectl.run(
                f"--as={sa}", "auth", "can-i", verb, "secrets", "-n", namespace, check=False
            )
            assert proc.stdout.strip() == "no", f"{verb} secrets in {namespace}"
        # Anywhere else: nothing.
        other = kubectl.run(
            f"--as={sa}", "-n", elsewhere, "get", "secret", "s3-credentials", check=False
        )
        assert other.returncode != 0
        assert "Forbidden" in other.stderr
        assert f'cannot get resource "secrets" in API group "" in the namespace "{elsewhere}"' in (
            other.stderr
        )
        cluster = kubectl.run(f"--as={sa}", "get", "secrets", "-A", check=False)
        assert cluster.returncode != 0
        assert "Forbidden" in cluster.stderr
        # Nor the serving objects of namespaces it does not manage.
        for resource in ("deployments.apps", "services", "modelversions.modelreg.dev"):
            proc = kubectl.run(
                f"--as={sa}", "auth", "can-i", "list", resource, "-n", elsewhere, check=False
            )
            assert proc.stdout.strip() == "no", f"list {resource} in {elsewhere}"
    finally:
        uninstall(helm, release, release_namespace)
