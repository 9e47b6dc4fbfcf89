"""Who may put a model into production: the chart's ValidatingAdmissionPolicy, live.

The policy is installed by the chart (one release for this module, bound by namespaceSelector
only to namespaces labelled for it, so it cannot touch other tests). Users are impersonated with
`kubectl --as/--as-group`: the API server's own authorizer answers the policy's
`check('promote')`, so the grants below are real RoleBindings, not fakes.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.helpers import Kubectl, wait_for
from tests.e2e.test_helm import CHART, Helm, helm, token, uninstall

__all__ = ["helm"]  # the fixture, re-exported so pytest finds it here

SELECTOR_LABEL = "modelreg.dev/e2e-admission"
APPROVERS_GROUP = "model-approvers"


@dataclass
class Policy:
    release: str
    namespace: str  # the release's namespace; also home of the allowed and the rogue SA
    approver_role: str
    operator_sa: str
    gitops_sa: str
    rogue_sa: str


@pytest.fixture(scope="module")
def policy(helm: Helm, kubectl: Kubectl) -> Iterator[Policy]:
    release = f"adm-{token()}"
    ns = f"e2e-admission-{token()}"
    kubectl("create", "namespace", ns)
    kubectl("label", "namespace", ns, f"{SELECTOR_LABEL}={release}")
    kubectl("-n", ns, "create", "serviceaccount", "gitops")
    kubectl("-n", ns, "create", "serviceaccount", "rogue")
    allowed = [{"namespace": ns, "name": "gitops"}]
    selector = {"matchLabels": {SELECTOR_LABEL: release}}
    try:
        helm(
            "install", release, str(CHART), "-n", ns, "--set", "crds.enabled=false",
            "--set-json", f"watchNamespaces={json.dumps([ns])}",
            "--set-json", f"admission.namespaceSelector={json.dumps(selector)}",
            "--set-json", f"admission.allowedServiceAccounts={json.dumps(allowed)}",
        )  # fmt: skip
        yield Policy(
            release=release,
            namespace=ns,
            approver_role=f"{release}-modelreg-approver",
            operator_sa=f"system:serviceaccount:{ns}:{release}-modelreg",
            gitops_sa=f"system:serviceaccount:{ns}:gitops",
            rogue_sa=f"system:serviceaccount:{ns}:rogue",
        )
    finally:
        uninstall(helm, release, ns)
        kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found")


def model_version(model: str, version: int, stage: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelreg.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": f"{model}-v{version}", "namespace": namespace},
        "spec": {
            "model": model,
            "version": version,
            "stage": stage,
            "artifact": {
                "uri": f"s3://models/{model}/{version}/model.onnx",
                "sha256": f"{version:064x}",
            },
            "metrics": {"auc": 0.9},
        },
    }


def as_user(
    kubectl: Kubectl, user: str, *args: str, groups: tuple[str, ...] = (), input: str | None = None
) -> subprocess.CompletedProcess[str]:
    flags = [f"--as={user}", *(f"--as-group={g}" for g in groups)]
    return kubectl.run(*flags, *args, input=input, check=False)


def create_as(
    kubectl: Kubectl, user: str, obj: dict[str, Any], *extra: str, groups: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return as_user(kubectl, user, "create", "-f", "-", *extra, groups=groups, input=json.dumps(obj))


def stage_patch(stage: str) -> str:
    return json.dumps({"spec": {"stage": stage}})


def can_i(
    kubectl: Kubectl, user: str, verb: str, namespace: str, groups: tuple[str, ...] = ()
) -> bool:
    proc = as_user(
        kubectl, user, "auth", "can-i", verb, "modelversions.modelreg.dev", "-n", namespace,
        groups=groups,
    )  # fmt: skip
    return proc.stdout.strip() == "yes"


def denied_by_policy(proc: subprocess.CompletedProcess[str], policy: Policy) -> bool:
    return proc.returncode != 0 and f"{policy.release}-modelreg-production-approval" in proc.stderr


@pytest.fixture
def guarded(kubectl: Kubectl, namespace: str, policy: Policy) -> str:
    """This test's namespace, under the policy: alice edits, bob edits and approves (via group),
    the gitops and rogue service accounts edit, robot may only write status."""
    ns = namespace
    kubectl("label", "namespace", ns, f"{SELECTOR_LABEL}={policy.release}")
    kubectl(
        "-n", ns, "create", "rolebinding", "editors", "--clusterrole=edit",
        "--user=alice", "--user=bob",
        f"--serviceaccount={policy.namespace}:gitops", f"--serviceaccount={policy.namespace}:rogue",
    )  # fmt: skip
    kubectl(
        "-n", ns, "create", "rolebinding", "approvers",
        f"--clusterrole={policy.approver_role}", f"--group={APPROVERS_GROUP}",
    )  # fmt: skip
    kubectl(
        "-n", ns, "create", "role", "status-writer", "--verb=get,patch,update",
        "--resource=modelversions.modelreg.dev/status",
    )  # fmt: skip
    kubectl("-n", ns, "create", "rolebinding", "robot", "--role=status-writer", "--user=robot")
    # The chart's edit role reaches the built-in `edit` through the aggregation controller.
    wait_for(
        lambda: can_i(kubectl, "alice", "create", ns),
        timeout=60,
        what="alice may create modelversions (modelreg-edit aggregated into edit)",
    )
    assert not can_i(kubectl, "alice", "promote", ns)
    assert can_i(kubectl, "bob", "promote", ns, groups=(APPROVERS_GROUP,))
    # The policy and its binding reach the admission plugin a moment after they are created.
    probe = model_version("probe", 1, "Production", ns)
    wait_for(
        lambda: denied_by_policy(create_as(kubectl, "alice", probe, "--dry-run=server"), policy),
        timeout=60,
        what="the production-approval policy to be enforced",
    )
    return ns


# --------------------------------------------------------------------------------------------


def test_editor_without_promote_is_denied_production_and_told_who_may(
    kubectl: Kubectl, guarded: str, policy: Policy
) -> None:
    ns = guarded
    staging = create_as(kubectl, "alice", model_version("churn", 1, "Staging", ns))
    assert staging.returncode == 0, f"alice may register versions: {staging.stderr}"

    created = create_as(kubectl, "alice", model_version("churn", 2, "Production", ns))
    assert created.returncode != 0
    message = created.stderr
    assert f"ValidatingAdmissionPolicy '{policy.release}-modelreg-production-approval'" in message
    assert (
        f"alice may not set or keep spec.stage Production on ModelVersion {ns}/churn-v2" in message
    )
    assert 'the custom RBAC verb "promote" on modelversions.modelreg.dev' in message
    assert f"bind the ClusterRole {policy.approver_role}" in message
    assert policy.gitops_sa in message, "the allowed service accounts are named too"

    patched = as_user(
        kubectl, "alice", "-n", ns, "patch", "mv", "churn-v1", "--type=merge",
        "-p", stage_patch("Production"),
    )  # fmt: skip
    assert denied_by_policy(patched, policy), patched.stderr
    assert kubectl.get("mv", "churn-v2", ns) is None
    live = kubectl.get("mv", "churn-v1", ns)
    assert live is not None
    assert live["spec"]["stage"] == "Staging"


def test_approver_may_promote(kubectl: Kubectl, guarded: str) -> None:
    ns = guarded
    bob = ("bob", (APPROVERS_GROUP,))
    created = create_as(kubectl, bob[0], model_version("churn", 1, "Production", ns), groups=bob[1])
    assert created.returncode == 0, created.stderr
    assert create_as(kubectl, "alice", model_version("churn", 2, "Staging", ns)).returncode == 0
    patched = as_user(
        kubectl, bob[0], "-n", ns, "patch", "mv", "churn-v2", "--type=merge",
        "-p", stage_patch("Production"), groups=bob[1],
    )  # fmt: skip
    assert patched.returncode == 0, patched.stderr
    live = kubectl.get("mv", "churn-v2", ns)
    assert live is not None
    assert live["spec"]["stage"] == "Production"


def test_allowed_service_account_may_promote_and_another_may_not(
    kubectl: Kubectl, guarded: str, policy: Policy
) -> None:
    ns = guarded
    # As Argo CD does: server-side apply of the manifest from Git.
    applied = as_user(
        kubectl, policy.gitops_sa, "apply", "--server-side", "--field-manager=argocd-controller",
        "-f", "-", input=json.dumps(model_version("churn", 1, "Production", ns)),
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    rogue = as_user(
        kubectl, policy.rogue_sa, "apply", "--server-side", "--field-manager=rogue",
        "-f", "-", input=json.dumps(model_version("churn", 2, "Production", ns)),
    )  # fmt: skip
    assert denied_by_policy(rogue, policy), rogue.stderr
    assert f"{policy.rogue_sa} may not set or keep spec.stage Production" in rogue.stderr


def test_status_writes_and_metadata_edits_pass_but_spec_edits_are_gated(
    kubectl: Kubectl, guarded: str, policy: Policy
) -> None:
    ns = guarded
    kubectl.apply(model_version("churn", 1, "Production", ns))  # the admin holds every verb
    status = {"status": {"phase": "Serving", "stage": "Production", "observedGeneration": 1}}
    written = as_user(
        kubectl, "robot", "-n", ns, "patch", "mv", "churn-v1", "--subresource=status",
        "--type=merge", "-p", json.dumps(status),
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    live = kubectl.get("mv", "churn-v1", ns)
    assert live is not None
    assert live["status"]["phase"] == "Serving"

    labelled = as_user(kubectl, "alice", "-n", ns, "label", "mv", "churn-v1", "reviewed=yes")
    assert labelled.returncode == 0, f"a metadata-only edit is no promotion: {labelled.stderr}"

    edited = as_user(
        kubectl, "alice", "-n", ns, "patch", "mv", "churn-v1", "--type=merge",
        "-p", json.dumps({"spec": {"metrics": {"auc": 0.99}}}),
    )  # fmt: skip
    assert denied_by_policy(edited, policy), "changing a Production version's spec needs promote"


def test_operator_service_account_status_writes_pass(kubectl: Kubectl, policy: Policy) -> None:
    """The chart's own operator identity, in the namespace it manages (under the policy too)."""
    ns = policy.namespace
    name = f"m{token()}"
    kubectl.apply(model_version(name, 1, "Production", ns))
    status = {"status": {"phase": "Verifying", "observedGeneration": 1}}
    written = as_user(
        kubectl, policy.operator_sa, "-n", ns, "patch", "mv", f"{name}-v1", "--subresource=status",
        "--type=merge", "-p", json.dumps(status),
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    # ...and it cannot touch the spec at all (no update/patch on modelversions).
    spec = as_user(
        kubectl, policy.operator_sa, "-n", ns, "patch", "mv", f"{name}-v1", "--type=merge",
        "-p", stage_patch("Archived"),
    )  # fmt: skip
    assert spec.returncode != 0
    assert "forbidden" in spec.stderr.lower()


def test_taking_a_version_out_of_production_is_not_gated(kubectl: Kubectl, guarded: str) -> None:
    """Rollback (Archived) is open to editors; only entering Production needs approval."""
    ns = guarded
    kubectl.apply(model_version("churn", 3, "Production", ns))
    archived = as_user(
        kubectl, "alice", "-n", ns, "patch", "mv", "churn-v3", "--type=merge",
        "-p", stage_patch("Archived"),
    )  # fmt: skip
    assert archived.returncode == 0, archived.stderr


def test_policy_binds_only_selected_namespaces(
    kubectl: Kubectl, namespace: str, policy: Policy
) -> None:
    kubectl(
        "-n", namespace, "create", "rolebinding", "editors", "--clusterrole=edit", "--user=alice"
    )
    wait_for(lambda: can_i(kubectl, "alice", "create", namespace), timeout=60, what="alice's edit")
    created = create_as(kubectl, "alice", model_version("churn", 1, "Production", namespace))
    assert created.returncode == 0, (
        "this namespace is not labelled for the release's policy, so the release must not gate it "
        f"(another cluster-wide modelreg policy installed?): {created.stderr}"
    )
