"""GitOps drift: Git's manifests stay exactly as applied while the operator converges.

manifests/samples is applied as Argo CD applies it (server-side apply, one field manager, its
tracking label), through a small kustomize overlay that points the sample Model at this run's S3
server and artifacts. After the operator has converged, the same rendered files are applied again
with a server-side dry run: nothing Git owns may change, `kubectl diff --server-side` must be
empty, and no other field manager may own spec or labels. The Lua health checks of
manifests/argocd then read the live objects as Argo CD would.

With MODELREG_CAPTURE_FIXTURES=1 the converged objects are saved as
tests/e2e/fixtures/argocd-health/captured-*.json, which the unit test then checks as well.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.helpers import REPO, S3, Kubectl, OperatorProcess, wait_for
from tests.e2e.test_argocd_health_live import save_captured
from tests.unit.test_argocd_health import evaluate, health_scripts

SAMPLES = REPO / "manifests" / "samples"
MANAGER = "argocd-controller"
TRACKING_LABEL = "app.kubernetes.io/instance"
APP = "modelreg-samples"


def overlay(tmp: Path, namespace: str, s3: S3) -> Path:
    """A kustomization over manifests/samples for this run (uploads the artifacts it names)."""
    prefix = f"e2e/{namespace}/iris"
    patches: list[dict[str, Any]] = [
        {
            "target": {"kind": "Model", "name": "iris"},
            "patch": json.dumps(
                [
                    {
                        "op": "replace",
                        "path": "/spec/storage/uri",
                        "value": f"s3://{s3.bucket}/{prefix}/",
                    },
                    {"op": "replace", "path": "/spec/storage/endpoint", "value": s3.endpoint},
                    {"op": "replace", "path": "/spec/storage/region", "value": s3.region},
                ]
            ),
        }
    ]
    for n in (1, 2):
        key = f"{prefix}/{n}/model.onnx"
        sha = s3.put(key, f"iris sample artifact v{n} for {namespace}".encode())
        patches.append(
            {
                "target": {"kind": "ModelVersion", "name": f"iris-v{n}"},
                "patch": json.dumps(
                    [
                        {
                            "op": "replace",
                            "path": "/spec/artifact/uri",
                            "value": f"s3://{s3.bucket}/{key}",
                        },
                        {"op": "replace", "path": "/spec/artifact/sha256", "value": sha},
                    ]
                ),
            }
        )
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": namespace,
        "resources": [os.path.relpath(SAMPLES, tmp)],
        "labels": [{"pairs": {TRACKING_LABEL: APP}, "includeSelectors": False}],
        "patches": patches,
    }
    (tmp / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return tmp


def phase(kubectl: Kubectl, name: str, namespace: str) -> str | None:
    mv = kubectl.get("mv", name, namespace) or {}
    result: str | None = (mv.get("status") or {}).get("phase")
    return result


def model_ready(kubectl: Kubectl, namespace: str) -> bool:
    mdl = kubectl.get("model", "iris", namespace) or {}
    conditions = (mdl.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def owns(fields: dict[str, Any], *path: str) -> bool:
    """Whether a managedFields fieldsV1 tree contains the path (e.g. "f:spec")."""
    node: Any = fields
    for step in path:
        if not isinstance(node, dict) or step not in node:
            return False
        node = node[step]
    return True


def live(kubectl: Kubectl, namespace: str) -> dict[str, dict[str, Any]]:
    out = {}
    for kind, name in (("model", "iris"), ("mv", "iris-v1"), ("mv", "iris-v2")):
        obj = json.loads(
            kubectl("-n", namespace, "get", kind, name, "-o", "json", "--show-managed-fields")
        )
        out[f"{obj['kind']}/{name}"] = obj
    return out


def test_samples_converge_without_drift_and_report_healthy(
    kubectl: Kubectl,
    namespace: str,
    s3: S3,
    s3_secret: str,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    assert s3_secret == "s3-credentials", "the samples name this Secret"
    rendered = kubectl("kustomize", str(overlay(tmp_path, namespace, s3)))
    apply = ["apply", "--server-side", f"--field-manager={MANAGER}", "-f", "-"]
    kubectl(*apply, input=rendered)

    wait_for(
        lambda: phase(kubectl, "iris-v1", namespace) == "Serving",
        timeout=180,
        what="iris-v1 Serving",
    )
    wait_for(
        lambda: phase(kubectl, "iris-v2", namespace) == "Ready", timeout=120, what="iris-v2 Ready"
    )
    wait_for(lambda: model_ready(kubectl, namespace), timeout=60, what="Model iris Ready")
    before = live(kubectl, namespace)

    # 1. Argo CD's view: a server-side diff of Git against the cluster is empty.
    diff = kubectl.run(
        "diff",
        "--server-side",
        f"--field-manager={MANAGER}",
        "-f",
        "-",
        input=rendered,
        check=False,
    )
    assert diff.returncode == 0, f"kubectl diff found drift:\n{diff.stdout}{diff.stderr}"

    # 2. Re-applying Git (dry run) changes nothing Git owns, and bumps no generation.
    dry = json.loads(kubectl(*apply, "--dry-run=server", "-o", "json", input=rendered))
    results = dry["items"] if dry.get("kind") == "List" else [dry]
    assert len(results) == 3
    for obj in results:
        key = f"{obj['kind']}/{obj['metadata']['name']}"
        now = before[key]
        assert obj["spec"] == now["spec"], key
        assert obj["metadata"].get("labels") == now["metadata"].get("labels"), key
        assert obj["metadata"]["generation"] == now["metadata"]["generation"], key

    # 3. Nobody but Git owns spec or labels; the operator wrote status (and at most annotations).
    for key, obj in before.items():
        assert obj["metadata"]["generation"] == 1, f"{key}: spec changed after apply"
        assert obj["metadata"]["labels"] == {TRACKING_LABEL: APP}, key
        for entry in obj["metadata"]["managedFields"]:
            if entry["manager"] == MANAGER:
                continue
            fields = entry.get("fieldsV1", {})
            where = f"{key}: field manager {entry['manager']!r} ({entry['operation']})"
            assert not owns(fields, "f:spec"), f"{where} owns spec"
            assert not owns(fields, "f:metadata", "f:labels"), f"{where} owns labels"
        writers = {
            e["manager"]
            for e in obj["metadata"]["managedFields"]
            if e.get("subresource") == "status"
        }
        assert writers, f"{key}: nobody wrote status"

    # 4. Children carry the operator's labels, never Git's tracking label (Argo would prune them).
    children = kubectl.items("deployments", namespace, "app.kubernetes.io/managed-by=modelreg")
    children += kubectl.items("services", namespace, "app.kubernetes.io/managed-by=modelreg")
    assert children, "the operator created no serving objects"
    for child in children:
        assert TRACKING_LABEL not in child["metadata"].get("labels", {}), child["metadata"]

    # 5. Argo CD's health, from the Lua checks over the live objects.
    scripts = health_scripts()
    for key, obj in before.items():
        health = evaluate(scripts[obj["kind"]], obj)
        assert health["status"] == "Healthy", f"{key}: {health}"

    if os.environ.get("MODELREG_CAPTURE_FIXTURES") == "1":
        capture(before)


def capture(objs: dict[str, dict[str, Any]]) -> None:
    for obj in objs.values():
        status = obj.get("status") or {}
        ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
        tag = f"{status.get('phase', '')}-{ready.get('reason', '')}".strip("-").lower()
        save_captured(obj, tag if obj["kind"] == "ModelVersion" else "ready")


def test_argocd_applications_point_at_this_repository(kubectl: Kubectl, tmp_path: Path) -> None:
    """The app of apps builds; each Application's path exists here; the chart accepts its values."""
    from tests.e2e.test_helm import CHART, Helm

    apps = [
        d for d in yaml.safe_load_all(kubectl("kustomize", str(REPO / "manifests" / "argocd"))) if d
    ]
    assert {a["metadata"]["name"] for a in apps} == {"modelreg", "modelreg-samples"}
    waves = {
        a["metadata"]["name"]: int(a["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
        for a in apps
    }
    assert waves["modelreg"] < waves["modelreg-samples"], "CRDs and operator before the samples"
    for app in apps:
        assert (REPO / app["spec"]["source"]["path"]).is_dir(), app["spec"]["source"]
    (chart_app,) = [a for a in apps if a["spec"]["source"]["path"] == "charts/modelreg"]
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(chart_app["spec"]["source"]["helm"]["valuesObject"]))
    helm = Helm(kubeconfig=kubectl.kubeconfig, binary=str(REPO / ".dev" / "bin" / "helm"))
    rendered = helm("template", "modelreg", str(CHART), "-n", "modelreg-system", "-f", str(values))
    crds = [
        d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "CustomResourceDefinition"
    ]
    assert crds
    for crd in crds:
        assert crd["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "-1"
    assert "system:serviceaccount:argocd:argocd-application-controller" in rendered


def test_samples_pass_server_side_validation(kubectl: Kubectl, namespace: str) -> None:
    """manifests/samples as committed: valid against the CRDs' schema and CEL rules."""
    proc = kubectl.run(
        "apply", "--server-side", "--dry-run=server", "-n", namespace,
        "-k", str(SAMPLES), check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("serverside-applied (server dry run)") == 3, proc.stdout
