"""Who may decide what serves: the chart's ValidatingAdmissionPolicies, live.

production-approval gates spec.stage Production; serving-approval gates a Model's serving,
promotion and storage while one of its versions is in Staging or Production; status-writer lets
only the operator's ServiceAccount write status. The CRD's own CEL rules (immutable metrics and
params, reserved env names) are checked here by impersonation too; the policies' denials are not
in tests/e2e/corpus/, whose runner applies as the admin with no chart installed.

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
            "--set-json", f"tagLabels.namespaceSelector={json.dumps(selector)}",
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


def model(name: str, namespace: str, **serving: Any) -> dict[str, Any]:
    return {
        "apiVersion": "modelreg.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "owner": "team-e2e",
            "storage": {"uri": f"s3://models/{name}/", "secretRef": {"name": "s3-credentials"}},
            "promotion": {"gates": [{"metric": "auc", "min": 0.8}]},
            "serving": {"replicas": 1, **serving},
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


def denied_serving(proc: subprocess.CompletedProcess[str], policy: Policy) -> bool:
    return proc.returncode != 0 and f"{policy.release}-modelreg-serving-approval" in proc.stderr


def denied_status(proc: subprocess.CompletedProcess[str], policy: Policy) -> bool:
    return proc.returncode != 0 and f"{policy.release}-modelreg-status-writer" in proc.stderr


@pytest.fixture
def guarded(kubectl: Kubectl, namespace: str, policy: Policy) -> str:
    """This test's namespace, under the policies: alice edits, bob edits and approves (via
    group), the gitops and rogue service accounts edit, robot and the operator's ServiceAccount
    hold RBAC to write modelversions/status (only the operator passes the status policy)."""
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
    kubectl(
        "-n", ns, "create", "rolebinding", "operator-status", "--role=status-writer",
        f"--serviceaccount={policy.operator_sa.removeprefix('system:serviceaccount:')}",
    )  # fmt: skip
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
    # The other two policies, probed with a real Staging version of a Model "probe": any Model
    # named so is gated (and the version is a param of every Model request here, harmlessly).
    kubectl.apply(model_version("probe", 1, "Staging", ns))
    wait_for(
        lambda: denied_serving(
            create_as(kubectl, "alice", model("probe", ns), "--dry-run=server"), policy
        ),
        timeout=60,
        what="the serving-approval policy to be enforced",
    )
    wait_for(
        lambda: denied_status(
            as_user(
                kubectl, "robot", "-n", ns, "patch", "mv", "probe-v1", "--subresource=status",
                "--type=merge", "-p", '{"status": {"phase": "Serving"}}', "--dry-run=server",
            ),
            policy,
        ),
        timeout=60,
        what="the status-writer policy to be enforced",
    )  # fmt: skip
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


def test_metadata_edits_pass_but_spec_edits_are_gated(
    kubectl: Kubectl, guarded: str, policy: Policy
) -> None:
    ns = guarded
    kubectl.apply(model_version("churn", 1, "Production", ns))  # the admin holds every verb

    labelled = as_user(kubectl, "alice", "-n", ns, "label", "mv", "churn-v1", "reviewed=yes")
    assert labelled.returncode == 0, f"a metadata-only edit is no promotion: {labelled.stderr}"

    edited = as_user(
        kubectl, "alice", "-n", ns, "patch", "mv", "churn-v1", "--type=merge",
        "-p", json.dumps({"spec": {"description": "retrained"}}),
    )  # fmt: skip
    assert denied_by_policy(edited, policy), "changing a Production version's spec needs promote"


def status_patch(
    kubectl: Kubectl, user: str, ns: str, kind: str, name: str, status: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return as_user(
        kubectl, user, "-n", ns, "patch", kind, name, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


def test_status_is_written_by_the_operator_service_account_alone(
    kubectl: Kubectl, guarded: str, policy: Policy
) -> None:
    """A forged status (verified artifact, Serving) is refused to anyone but the operator's
    ServiceAccount: robot holds RBAC for modelversions/status, the admin holds every verb."""
    ns = guarded
    kubectl.apply(model_version("churn", 1, "None", ns))
    kubectl.apply(model("churn", ns))
    forged = {"phase": "Serving", "artifact": {"verified": True}, "observedGeneration": 1}
    robot = status_patch(kubectl, "robot", ns, "mv", "churn-v1", forged)
    assert denied_status(robot, policy), robot.stderr
    assert (
        f"robot may not write the status of ModelVersion {ns}/churn-v1: only the modelreg "
        f"operator ({policy.operator_sa}) may"
    ) in robot.stderr
    admin = json.loads(kubectl("auth", "whoami", "-o", "json"))["status"]["userInfo"]["username"]
    for kind, name, status in (
        ("mv", "churn-v1", forged),
        ("mdl", "churn", {"productionVersion": 1, "observedGeneration": 1}),
    ):
        proc = kubectl.run(
            "-n", ns, "patch", kind, name, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}), check=False,
        )  # fmt: skip
        assert denied_status(proc, policy), f"even the admin ({admin}): {proc.stderr}"
        assert f"{admin} may not write the status of" in proc.stderr
    # alice's roles (edit) grant no status write at all: RBAC refuses before admission.
    alice = status_patch(kubectl, "alice", ns, "mv", "churn-v1", forged)
    assert alice.returncode != 0
    assert "forbidden" in alice.stderr.lower()
    live = kubectl.get("mv", "churn-v1", ns)
    assert live is not None
    assert "phase" not in live.get("status", {}), live.get("status")

    operator = status_patch(kubectl, policy.operator_sa, ns, "mv", "churn-v1", {"phase": "Pending"})
    assert operator.returncode == 0, operator.stderr
    live = kubectl.get("mv", "churn-v1", ns)
    assert live is not None
    assert live["status"]["phase"] == "Pending"


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
    kubectl.apply(model(name, ns))
    model_status = {"status": {"observedGeneration": 1, "latestVersion": 1}}
    written = as_user(
        kubectl, policy.operator_sa, "-n", ns, "patch", "mdl", name, "--subresource=status",
        "--type=merge", "-p", json.dumps(model_status),
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


# --------------------------------------------------------------------------------------------
# What serves: a Model's serving, promotion and storage while a version is staged


def merge_as(
    kubectl: Kubectl,
    user: str,
    ns: str,
    kind: str,
    name: str,
    patch: dict[str, Any],
    groups: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    return as_user(
        kubectl, user, "-n", ns, "patch", kind, name, "--type=merge", "-p", json.dumps(patch),
        groups=groups,
    )  # fmt: skip


WHAT_SERVES = (
    ("serving", {"spec": {"serving": {"image": "evil.example/server:1"}}}),
    ("serving", {"spec": {"serving": {"env": [{"name": "LOG_LEVEL", "value": "debug"}]}}}),
    ("promotion", {"spec": {"promotion": {"gates": []}}}),
    ("storage", {"spec": {"storage": {"endpoint": "http://elsewhere.example:9000"}}}),
)


def test_editor_may_not_change_what_a_staged_model_serves(
    kubectl: Kubectl, guarded: str, policy: Policy
) -> None:
    ns = guarded
    kubectl.apply(model("churn", ns))
    # With no version in Staging or Production, editors shape the Model freely.
    free = merge_as(kubectl, "alice", ns, "mdl", "churn", {"spec": {"serving": {"image": "a:1"}}})
    assert free.returncode == 0, free.stderr
    assert create_as(kubectl, "alice", model_version("churn", 1, "None", ns)).returncode == 0
    free = merge_as(kubectl, "alice", ns, "mdl", "churn", {"spec": {"serving": {"image": "a:2"}}})
    assert free.returncode == 0, f"a version in stage None gates nothing: {free.stderr}"

    assert (
        merge_as(kubectl, "alice", ns, "mv", "churn-v1", {"spec": {"stage": "Staging"}}).returncode
        == 0
    )
    before = kubectl.get("mdl", "churn", ns)
    assert before is not None
    for field, patch in WHAT_SERVES:
        proc = merge_as(kubectl, "alice", ns, "mdl", "churn", patch)
        assert denied_serving(proc, policy), f"{field}: {proc.stderr}"
        assert (
            f"alice may not change spec.serving, spec.promotion or spec.storage of Model "
            f"{ns}/churn while its version churn-v1 is in Staging: they decide what serves; "
            f'only holders of the custom RBAC verb "promote"'
        ) in proc.stderr, proc.stderr
        assert f"bind the ClusterRole {policy.approver_role}" in proc.stderr
    after = kubectl.get("mdl", "churn", ns)
    assert after is not None
    assert after["spec"] == before["spec"]

    # What does not decide what serves stays open to editors.
    for patch in ({"spec": {"description": "churn model"}}, {"spec": {"tags": {"team": "x"}}}):
        proc = merge_as(kubectl, "alice", ns, "mdl", "churn", patch)
        assert proc.returncode == 0, proc.stderr
    labelled = as_user(kubectl, "alice", "-n", ns, "label", "mdl", "churn", "reviewed=yes")
    assert labelled.returncode == 0, labelled.stderr

    # An approver (bob, through his group) may.
    bob = ("bob", (APPROVERS_GROUP,))
    for _field, patch in WHAT_SERVES:
        proc = merge_as(kubectl, bob[0], ns, "mdl", "churn", patch, groups=bob[1])
        assert proc.returncode == 0, proc.stderr
    live = kubectl.get("mdl", "churn", ns)
    assert live is not None
    assert live["spec"]["serving"]["image"] == "evil.example/server:1"


def test_a_production_version_gates_its_model_and_a_delete_and_create_again(
    kubectl: Kubectl, guarded: str, policy: Policy
) -> None:
    ns = guarded
    kubectl.apply(model("fraud", ns))
    kubectl.apply(model_version("fraud", 1, "Production", ns))  # approved (the admin)
    proc = merge_as(kubectl, "alice", ns, "mdl", "fraud", {"spec": {"serving": {"image": "e:1"}}})
    assert denied_serving(proc, policy), proc.stderr
    assert "while its version fraud-v1 is in Production" in proc.stderr

    # Deleting the Model is RBAC's business (edit may); creating it again under the same
    # versions is a change of what serves, and gated.
    deleted = as_user(kubectl, "alice", "-n", ns, "delete", "mdl", "fraud")
    assert deleted.returncode == 0, deleted.stderr
    recreated = create_as(kubectl, "alice", model("fraud", ns, image="evil.example/server:1"))
    assert denied_serving(recreated, policy), recreated.stderr
    assert (
        f"alice may not create Model {ns}/fraud while its version fraud-v1 is in Production"
    ) in recreated.stderr
    assert kubectl.get("mdl", "fraud", ns) is None
    # Another Model's versions gate nothing here.
    other = create_as(kubectl, "alice", model("scoring", ns, image="me/server:1"))
    assert other.returncode == 0, other.stderr


def test_the_stage_a_version_holds_gates_even_after_its_request_moved_on(
    kubectl: Kubectl, guarded: str, policy: Policy
) -> None:
    """Rolled back (spec.stage Archived) but still serving until the operator acts: gated."""
    ns = guarded
    kubectl.apply(model("churn", ns))
    kubectl.apply(model_version("churn", 1, "Archived", ns))
    held = status_patch(kubectl, policy.operator_sa, ns, "mv", "churn-v1", {"stage": "Production"})
    assert held.returncode == 0, held.stderr
    patch = {"spec": {"serving": {"replicas": 3}}}
    proc = merge_as(kubectl, "alice", ns, "mdl", "churn", patch)
    assert denied_serving(proc, policy), proc.stderr
    assert "while its version churn-v1 is in Production" in proc.stderr
    left = status_patch(kubectl, policy.operator_sa, ns, "mv", "churn-v1", {"stage": "Archived"})
    assert left.returncode == 0, left.stderr
    proc = merge_as(kubectl, "alice", ns, "mdl", "churn", patch)
    assert proc.returncode == 0, f"archived for good: {proc.stderr}"


def test_gitops_reapplying_an_unchanged_model_is_not_gated(
    kubectl: Kubectl, guarded: str, policy: Policy
) -> None:
    ns = guarded

    def ssa(user: str, manager: str, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return as_user(
            kubectl, user, "apply", "--server-side", "--force-conflicts",
            f"--field-manager={manager}", "-f", "-", input=json.dumps(obj),
        )  # fmt: skip

    manifest = model("churn", ns, image="me/server:1")
    assert ssa(policy.gitops_sa, "argocd-controller", manifest).returncode == 0
    version = model_version("churn", 1, "Production", ns)
    assert ssa(policy.gitops_sa, "argocd-controller", version).returncode == 0
    # Re-applying the same manifest, by anyone allowed to edit: nothing that serves changes.
    for user, manager in ((policy.gitops_sa, "argocd-controller"), (policy.rogue_sa, "rogue")):
        again = ssa(user, manager, manifest)
        assert again.returncode == 0, again.stderr
    changed = model("churn", ns, image="evil.example/server:1")
    rogue = ssa(policy.rogue_sa, "rogue", changed)
    assert denied_serving(rogue, policy), rogue.stderr
    assert f"{policy.rogue_sa} may not change spec.serving" in rogue.stderr
    synced = ssa(policy.gitops_sa, "argocd-controller", changed)
    assert synced.returncode == 0, f"the allowed GitOps identity syncs Git: {synced.stderr}"


# --------------------------------------------------------------------------------------------
# The CRD's own rules, by impersonation: a version's metrics and params; reserved env names


def test_metrics_and_params_are_immutable_once_set(kubectl: Kubectl, guarded: str) -> None:
    ns = guarded
    mv = model_version("churn", 1, "None", ns)
    mv["spec"]["params"] = {"max_depth": "6"}
    assert create_as(kubectl, "alice", mv).returncode == 0
    for field, patch in (
        ("metrics", {"spec": {"metrics": {"auc": 0.99}}}),
        ("metrics", {"spec": {"metrics": {"auc": 0.9, "f1": 0.8}}}),
        ("params", {"spec": {"params": {"max_depth": "8"}}}),
    ):
        proc = merge_as(kubectl, "alice", ns, "mv", "churn-v1", patch)
        assert proc.returncode != 0, patch
        assert f"spec.{field} is immutable once set" in proc.stderr, proc.stderr
    removed = as_user(
        kubectl, "alice", "-n", ns, "patch", "mv", "churn-v1", "--type=json",
        "-p", json.dumps([{"op": "remove", "path": "/spec/metrics"}]),
    )  # fmt: skip
    assert removed.returncode != 0
    assert "spec.metrics is immutable once set" in removed.stderr, removed.stderr
    live = kubectl.get("mv", "churn-v1", ns)
    assert live is not None
    assert live["spec"]["metrics"] == {"auc": 0.9}
    assert live["spec"]["params"] == {"max_depth": "6"}
    # A version registered without metrics gets them once, then they hold.
    bare = model_version("churn", 2, "None", ns)
    del bare["spec"]["metrics"]
    assert create_as(kubectl, "alice", bare).returncode == 0
    first = merge_as(kubectl, "alice", ns, "mv", "churn-v2", {"spec": {"metrics": {"auc": 0.7}}})
    assert first.returncode == 0, first.stderr
    second = merge_as(kubectl, "alice", ns, "mv", "churn-v2", {"spec": {"metrics": {"auc": 0.9}}})
    assert "spec.metrics is immutable once set" in second.stderr
    # Everything else of a version outside Production stays editable.
    described = merge_as(kubectl, "alice", ns, "mv", "churn-v2", {"spec": {"description": "x"}})
    assert described.returncode == 0, described.stderr


def test_reserved_env_names_are_refused(kubectl: Kubectl, guarded: str) -> None:
    ns = guarded
    for env in (
        {"name": "MODELREG_ALLOW_PICKLE", "value": "true"},
        {"name": "modelreg_allow_pickle", "value": "true"},
        {"name": "AWS_SESSION_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        {"name": "AWS_ENDPOINT_URL_S3", "value": "http://elsewhere.example:9000"},
        {"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": "http://127.0.0.1:1/creds"},
    ):
        proc = create_as(kubectl, "alice", model("churn", ns, env=[env]))
        assert proc.returncode != 0, env
        assert f"spec.serving.env may not set {env['name']}: the name is reserved" in proc.stderr
    allowed = [{"name": "LOG_LEVEL", "value": "debug"}, {"name": "AWS_MAX_ATTEMPTS", "value": "3"}]
    created = create_as(kubectl, "alice", model("churn", ns, env=allowed))
    assert created.returncode == 0, created.stderr
    added = merge_as(
        kubectl, "alice", ns, "mdl", "churn",
        {"spec": {"serving": {"env": [*allowed, {"name": "MODELREG_HTTP_PORT", "value": "1"}]}}},
    )  # fmt: skip
    assert "spec.serving.env may not set MODELREG_HTTP_PORT" in added.stderr, added.stderr


def test_tags_are_mirrored_into_labels_and_cannot_be_forged(kubectl: Kubectl, guarded: str) -> None:
    """The tag-labels MutatingAdmissionPolicy: the API server writes modelreg.dev/tag-<key> from
    spec.tags on every write, for label selectors, whoever writes and whatever they send."""
    ns = guarded
    obj = model("tagged", ns)
    obj["metadata"]["labels"] = {"keep": "me", "modelreg.dev/tag-team": "forged"}
    obj["spec"]["tags"] = {"team": "risk", "use case": "cards", "tier": "gold silver", "pii": ""}
    created = create_as(kubectl, "alice", obj)
    assert created.returncode == 0, created.stderr

    def labels() -> dict[str, str]:
        return dict(
            ((kubectl.get("model", "tagged", ns) or {}).get("metadata") or {}).get("labels") or {}
        )

    # Tags that cannot be labels ("use case": a space in the key; "gold silver" in the value) are
    # left out; the forged value is replaced by the tag's.
    assert labels() == {"keep": "me", "modelreg.dev/tag-team": "risk", "modelreg.dev/tag-pii": ""}
    found = kubectl("-n", ns, "get", "models", "-l", "modelreg.dev/tag-team=risk", "-o", "name")
    assert found.split() == ["model.modelreg.dev/tagged"]

    # A tag changed or removed moves its label; a label added by hand under the prefix goes.
    patched = as_user(kubectl, "alice", "-n", ns, "patch", "model", "tagged", "--type=merge", "-p",
                      json.dumps({"spec": {"tags": {"team": "fraud", "pii": None}}}))  # fmt: skip
    assert patched.returncode == 0, patched.stderr
    assert labels() == {"keep": "me", "modelreg.dev/tag-team": "fraud"}
    forged = as_user(kubectl, "alice", "-n", ns, "label", "model", "tagged",
                     "modelreg.dev/tag-team=risk", "modelreg.dev/tag-owner=mallory", "--overwrite")  # fmt: skip
    assert forged.returncode == 0, forged.stderr
    assert labels() == {"keep": "me", "modelreg.dev/tag-team": "fraud"}
    assert (
        kubectl("-n", ns, "get", "models", "-l", "modelreg.dev/tag-team=risk", "-o", "name") == ""
    )
