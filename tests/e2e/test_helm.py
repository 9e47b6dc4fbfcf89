"""The Helm chart against the real control plane: lint, server-side dry run, install/upgrade/uninstall.

The Model/ModelVersion CRDs are cluster-scoped and shared with every other e2e test (the session
fixture applies them from crds/), so a release here never owns them: the install/upgrade/uninstall
tests use a copy of the chart whose CRDs carry the real schema under a scratch API group unique to
the test. That exercises exactly the chart's CRD templates and the `crds.keep` policy, and deleting
the scratch CRDs afterwards cannot break anyone. The release is scoped to its own namespace
(watchNamespaces, and an admission namespaceSelector) so that its cluster-scoped policy cannot
touch other tests' ModelVersions.

Also holds the `helm` fixture and helpers that test_admission.py and test_helm_rbac.py import.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.helpers import DEV, REPO, Kubectl, Tool, wait_for

CHART = REPO / "charts" / "modelreg"


class Helm(Tool):
    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return super().run(*args, input=input, check=check, timeout=timeout)


@pytest.fixture(scope="session")
def helm(kubeconfig: str) -> Helm:
    binary = DEV / "bin" / "helm"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run 'make tools' (it builds the pinned helm v3)")
    return Helm(kubeconfig=kubeconfig, binary=str(binary))


def token() -> str:
    return secrets.token_hex(3)


def scoped_values(namespace: str) -> list[str]:
    """Values that keep a test release's effects inside `namespace`."""
    selector = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    return [
        "--set-json",
        f"watchNamespaces={json.dumps([namespace])}",
        "--set-json",
        f"admission.namespaceSelector={json.dumps(selector)}",
    ]


def restrict_pod_security(kubectl: Kubectl, namespace: str) -> None:
    kubectl(
        "label", "namespace", namespace, "--overwrite",
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )  # fmt: skip


def release_objects(kubectl: Kubectl, release: str, kind: str) -> list[str]:
    out = kubectl("get", kind, "-A", "-l", f"app.kubernetes.io/instance={release}", "-o", "name")
    return out.split()


def uninstall(helm: Helm, release: str, namespace: str) -> None:
    helm.run("uninstall", release, "-n", namespace, "--wait", "--ignore-not-found", check=False)


def scratch_chart(dest: Path, group: str, *, drop_column: str | None = None) -> Path:
    """A copy of the chart whose CRDs keep the real schema under the scratch API `group`."""
    shutil.copytree(CHART, dest)
    for path in (dest / "files" / "crds").glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        crd["metadata"]["name"] = f"{crd['spec']['names']['plural']}.{group}"
        crd["spec"]["group"] = group
        if drop_column:
            for version in crd["spec"]["versions"]:
                version["additionalPrinterColumns"] = [
                    c for c in version["additionalPrinterColumns"] if c["name"] != drop_column
                ]
        path.write_text(yaml.safe_dump(crd, sort_keys=False))
    return dest


def model_objects(group: str, namespace: str) -> list[dict[str, Any]]:
    api = f"{group}/v1alpha1"
    return [
        {
            "apiVersion": api,
            "kind": "Model",
            "metadata": {"name": "churn", "namespace": namespace},
            "spec": {"owner": "team-e2e", "storage": {"uri": "s3://models/churn/"}},
        },
        {
            "apiVersion": api,
            "kind": "ModelVersion",
            "metadata": {"name": "churn-v1", "namespace": namespace},
            "spec": {
                "model": "churn",
                "version": 1,
                "stage": "Staging",
                "artifact": {"uri": "s3://models/churn/1/model.onnx", "sha256": "ab" * 32},
            },
        },
    ]


def uids(kubectl: Kubectl, group: str, namespace: str) -> dict[str, str]:
    out = {}
    for kind, name in (("models", "churn"), ("modelversions", "churn-v1")):
        obj = kubectl.get(f"{kind}.{group}", name, namespace)
        assert obj is not None, f"{kind}.{group}/{name} is gone"
        out[kind] = obj["metadata"]["uid"]
    return out


@pytest.fixture
def scratch_group(kubectl: Kubectl) -> Iterator[str]:
    group = f"e2e{token()}.modelreg.dev"
    yield group
    kubectl(
        "delete", "crd", f"models.{group}", f"modelversions.{group}",
        "--ignore-not-found", "--wait=false",
    )  # fmt: skip


# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["--set-json", 'watchNamespaces=["team-a","team-b"]', "--set", "crds.keep=false"],
        [
            "--set-json",
            'admission.allowedServiceAccounts=[{"namespace":"argocd","name":"argocd-application-controller"}]',
            "--set", "metrics.serviceMonitor.enabled=true",
            "--set", "crds.enabled=false",
        ],
    ],
    ids=["defaults", "watch-namespaces", "gitops"],
)  # fmt: skip
def test_helm_lint_strict(helm: Helm, values: list[str]) -> None:
    proc = helm.run("lint", "--strict", str(CHART), *values, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout
    assert "[ERROR]" not in proc.stdout


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["__WATCH__"],
        [
            "--set-json",
            'admission.allowedServiceAccounts=[{"namespace":"argocd","name":"argocd-application-controller"}]',
            "--set-json",
            'admission.namespaceSelector={"matchLabels":{"team":"risk"}}',
        ],
    ],
    ids=["defaults", "watch-namespaces", "gitops"],
)
def test_helm_template_passes_server_side_dry_run(
    helm: Helm, kubectl: Kubectl, namespace: str, values: list[str]
) -> None:
    """Every rendered object is accepted by the API server, CEL and Pod Security included."""
    restrict_pod_security(kubectl, namespace)
    if values == ["__WATCH__"]:
        values = ["--set-json", f'watchNamespaces=["{namespace}"]']
    rendered = helm("template", f"dry-{token()}", str(CHART), "--namespace", namespace, *values)
    kinds = {d["kind"] for d in yaml.safe_load_all(rendered) if d}
    assert {"CustomResourceDefinition", "Deployment", "ValidatingAdmissionPolicy"} <= kinds
    proc = kubectl.run(
        "apply", "--server-side", "--dry-run=server", "--force-conflicts",
        "--field-manager=e2e-helm-dry-run",
        "-f", "-", input=rendered, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # The namespace warns on Pod Security "restricted" violations; the Deployment must raise none.
    assert "Warning" not in proc.stderr, proc.stderr
    assert "serverside-applied (server dry run)" in proc.stdout


def test_pod_security_is_enforced_in_test_namespaces(kubectl: Kubectl, namespace: str) -> None:
    """Guards the two tests around it: a namespace labelled restricted really rejects a bad pod."""
    restrict_pod_security(kubectl, namespace)
    bad = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root", "namespace": namespace},
        "spec": {"containers": [{"name": "c", "image": "example.invalid/x:1"}]},
    }
    proc = kubectl.run("create", "--dry-run=server", "-f", "-", input=json.dumps(bad), check=False)
    assert proc.returncode != 0
    assert "violates PodSecurity" in proc.stderr


def test_install_upgrade_uninstall_keeps_models_when_crds_keep(
    helm: Helm, kubectl: Kubectl, namespace: str, scratch_group: str, tmp_path: Path
) -> None:
    group = scratch_group
    release = f"mr-{token()}"
    # The installed chart predates a printer column, so the upgrade has a CRD change to roll out.
    old = scratch_chart(tmp_path / "old", group, drop_column="Phase")
    new = scratch_chart(tmp_path / "new", group)
    restrict_pod_security(kubectl, namespace)
    try:
        out = helm(
            "install", release, str(old), "-n", namespace, "--wait", "--timeout", "180s",
            *scoped_values(namespace),
        )  # fmt: skip
        assert "Uninstalling keeps the CRDs" in out
        assert f"--clusterrole={release}-modelreg-approver" in out
        dep = kubectl.get("deployment", f"{release}-modelreg", namespace)
        assert dep is not None
        assert dep["status"].get("availableReplicas") == 1, dep["status"]
        assert f"clusterrole.rbac.authorization.k8s.io/{release}-modelreg-operator" in (
            release_objects(kubectl, release, "clusterroles")
        )
        kubectl(
            "wait", "--for=condition=Established", "--timeout=60s",
            f"crd/models.{group}", f"crd/modelversions.{group}",
        )  # fmt: skip
        kubectl.apply(model_objects(group, namespace))
        before = uids(kubectl, group, namespace)

        helm(
            "upgrade", release, str(new), "-n", namespace, "--wait", "--timeout", "180s",
            *scoped_values(namespace), "--set", "operator.resources.limits.memory=768Mi",
        )  # fmt: skip
        crd = kubectl.get("crd", f"modelversions.{group}")
        assert crd is not None
        columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
        assert "Phase" in columns, "helm upgrade must upgrade the CRDs (they are templates)"
        dep = kubectl.get("deployment", f"{release}-modelreg", namespace)
        assert dep is not None
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        assert container["resources"]["limits"]["memory"] == "768Mi"
        history = json.loads(helm("history", release, "-n", namespace, "-o", "json"))
        assert [h["status"] for h in history] == ["superseded", "deployed"]
        assert uids(kubectl, group, namespace) == before

        out = helm("uninstall", release, "-n", namespace, "--wait")
        assert "kept due to the resource policy" in out
        for name in (f"models.{group}", f"modelversions.{group}"):
            assert kubectl.get("crd", name) is not None, f"crd {name} was deleted despite crds.keep"
        assert uids(kubectl, group, namespace) == before, "Models/ModelVersions must survive"
        assert kubectl.get("deployment", f"{release}-modelreg", namespace) is None
        for kind in ("clusterroles", "clusterrolebindings", "validatingadmissionpolicies"):
            assert release_objects(kubectl, release, kind) == [], kind
    finally:
        uninstall(helm, release, namespace)


def test_uninstall_without_crds_keep_deletes_crds_and_objects(
    helm: Helm, kubectl: Kubectl, namespace: str, scratch_group: str, tmp_path: Path
) -> None:
    """The counterpart that shows crds.keep is what saves the objects above."""
    group = scratch_group
    release = f"mr-{token()}"
    chart = scratch_chart(tmp_path / "chart", group)
    restrict_pod_security(kubectl, namespace)
    try:
        helm(
            "install", release, str(chart), "-n", namespace, "--wait", "--timeout", "180s",
            *scoped_values(namespace), "--set", "crds.keep=false",
        )  # fmt: skip
        kubectl(
            "wait", "--for=condition=Established", "--timeout=60s",
            f"crd/models.{group}", f"crd/modelversions.{group}",
        )  # fmt: skip
        kubectl.apply(model_objects(group, namespace))
        helm("uninstall", release, "-n", namespace, "--wait")
        wait_for(
            lambda: kubectl.get("crd", f"modelversions.{group}") is None,
            timeout=60,
            what=f"crd modelversions.{group} to be deleted with the release",
        )
    finally:
        uninstall(helm, release, namespace)


def test_admission_policy_type_checks_against_the_crd(
    helm: Helm, kubectl: Kubectl, namespace: str
) -> None:
    """The API server type-checks the policy's CEL against the real ModelVersion schema."""
    release = f"mr-{token()}"
    try:
        helm(
            "install", release, str(CHART), "-n", namespace, "--set", "crds.enabled=false",
            "--set-json",
            'admission.allowedServiceAccounts=[{"namespace":"argocd","name":"argocd-application-controller"}]',
            *scoped_values(namespace),
        )  # fmt: skip
        for policy in ("production-approval", "serving-approval", "status-writer"):
            name = f"{release}-modelreg-{policy}"

            def checked(name: str = name) -> dict[str, Any] | None:
                vap = kubectl.get("validatingadmissionpolicy", name)
                assert vap is not None
                status = vap.get("status") or {}
                done = status.get("observedGeneration") == vap["metadata"]["generation"]
                return status if done else None

            status = wait_for(checked, timeout=60, what=f"type checking of {name}")
            assert not (status.get("typeChecking") or {}).get("expressionWarnings"), status
    finally:
        uninstall(helm, release, namespace)
