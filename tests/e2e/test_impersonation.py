"""The CLI and SDK act as whom the kubeconfig (or --as/--as-group) says, as kubectl does.

The real API server answers who we are (a SelfSubjectReview, what `kubectl auth whoami` asks),
and the chart's production-approval policy, installed by tests/e2e/test_admission.py's fixtures,
denies alice's promote whether she is named by the kubeconfig's `as` or by `--as`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from modelreg.adapters import kube as k
from modelreg.adapters.impersonation import Impersonation
from tests.e2e.helpers import REPO, Kubectl
from tests.e2e.test_admission import (
    APPROVERS_GROUP,
    Policy,
    create_as,
    guarded,
    helm,
    model_version,
    policy,
)

__all__ = ["guarded", "helm", "policy"]  # the fixtures, re-exported so pytest finds them here


def impersonating_kubeconfig(kubectl: Kubectl, path: Path, **fields: Any) -> str:
    """The admin's kubeconfig with impersonation fields added to its user."""
    cfg = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json"))
    cfg["users"][0]["user"].update(fields)
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)
    return str(path)


def who(api: client.ApiClient) -> dict[str, Any]:
    review = client.AuthenticationV1Api(api).create_self_subject_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    )
    info: dict[str, Any] = api.sanitize_for_serialization(review)["status"]["userInfo"]
    return info


def test_the_api_server_sees_the_impersonated_user_and_each_group(
    kubectl: Kubectl, tmp_path: Path
) -> None:
    admin = json.loads(kubectl("auth", "whoami", "-o", "json"))["status"]["userInfo"]
    kc = impersonating_kubeconfig(
        kubectl, tmp_path / "as-alice", **{"as": "alice", "as-groups": ["team-a", "team-b"]}
    )
    seen = who(k.api_client(kc))
    assert seen["username"] == "alice", f"still {seen['username']} (admin is {admin['username']})"
    assert set(seen["groups"]) == {"team-a", "team-b", "system:authenticated"}

    # Flags (the SDK's as_user/as_groups) override the kubeconfig's fields.
    flagged = Impersonation(user="bob", groups=(APPROVERS_GROUP, "on-call"))
    seen = who(k.api_client(kc, impersonate=flagged))
    assert seen["username"] == "bob"
    assert set(seen["groups"]) == {APPROVERS_GROUP, "on-call", "system:authenticated"}
    # Without impersonation, the admin.
    assert who(k.api_client(kubectl.kubeconfig))["username"] == admin["username"]

    # Why each group is its own header line: one comma-joined value is ONE group to the server.
    joined = json.loads(
        kubectl("--as=alice", "--as-group=team-a,team-b", "auth", "whoami", "-o", "json")
    )["status"]["userInfo"]
    assert "team-a,team-b" in joined["groups"]
    assert "team-a" not in joined["groups"]


def cli(kubeconfig: str, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KUBECONFIG": kubeconfig,
        "PYTHONPATH": str(REPO / "operator"),
    }
    return subprocess.run(
        [sys.executable, "-m", "modelreg.cli.main", "--kubeconfig", kubeconfig, "-n", namespace,
         *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


def test_cli_promote_as_alice_is_denied_by_the_approval_policy(
    kubectl: Kubectl, guarded: str, policy: Policy, tmp_path: Path
) -> None:
    ns = guarded
    staged = create_as(kubectl, "alice", model_version("churn", 1, "Staging", ns))
    assert staged.returncode == 0, staged.stderr
    denial = f"alice may not set or keep spec.stage Production on ModelVersion {ns}/churn-v1"

    as_alice = impersonating_kubeconfig(kubectl, tmp_path / "as-alice", **{"as": "alice"})
    by_kubeconfig = cli(as_alice, ns, "promote", "churn", "1", "--no-wait")
    assert by_kubeconfig.returncode == 6, by_kubeconfig.stderr  # permission denied
    assert denial in by_kubeconfig.stderr
    assert "Traceback" not in by_kubeconfig.stderr

    by_flag = cli(kubectl.kubeconfig, ns, "promote", "churn", "1", "--no-wait", "--as", "alice")
    assert by_flag.returncode == 6, by_flag.stderr
    assert denial in by_flag.stderr
    live = kubectl.get("mv", "churn-v1", ns)
    assert live is not None
    assert live["spec"]["stage"] == "Staging"

    # bob, an approver through his group, passes the same policy through the same path.
    by_bob = cli(
        as_alice, ns, "promote", "churn", "1", "--no-wait",
        "--as", "bob", "--as-group", APPROVERS_GROUP, "--as-group", "team-b",
    )  # fmt: skip
    assert by_bob.returncode == 0, by_bob.stderr
    live = kubectl.get("mv", "churn-v1", ns)
    assert live is not None
    assert live["spec"]["stage"] == "Production"
