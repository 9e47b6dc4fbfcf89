"""Registry depth, end to end (issue 13): aliases, who asked for a stage, search and download.

Against the real API server (the CRD's CEL rules), the real operator process (status.aliases, the
AliasesResolved condition and its Event) and the real S3 server (the downloaded bytes, and a
tampered object refused). Driven through the `modelreg` command as a user would, and the SDK for
`models:/` resolution.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.e2e.helpers import S3, Kubectl, OperatorProcess, condition, wait_for
from tests.e2e.test_cli import Cli, cli, model_file
from tests.e2e.test_helm import CHART, Helm, helm, token
from tests.e2e.test_sdk import client_for, key_of
from tests.e2e.test_sdk_helpers import apply_model, storage

__all__ = ["cli", "helm"]  # the fixtures, re-exported so pytest finds them here


def _model(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    return kubectl.get("model", name, namespace) or {}


def _events(kubectl: Kubectl, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    return [
        e
        for e in kubectl.items("events", namespace)
        if e.get("reason") == reason and (e.get("involvedObject") or {}).get("name") == name
    ]


def test_aliases_follow_the_version_life(
    cli: Cli,
    kubeconfig: str,
    kubectl: Kubectl,
    namespace: str,
    s3: S3,
    s3_secret: str,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    apply_model(kubectl, namespace, "iris", storage_spec=storage(s3, namespace, "iris", s3_secret))
    for n, auc in enumerate(("0.81", "0.92", "0.95"), start=1):
        r = cli("register", "iris", str(model_file(tmp_path, f"m{n}.onnx")), "-m", f"auc={auc}",
                "--wait", "--timeout", "60", "--no-progress")  # fmt: skip
        assert r.code == 0, r.err

    r = cli("alias", "set", "iris", "champion", "2")
    assert (r.code, r.out.strip()) == (0, "iris@champion -> version 2"), r.err
    r = cli("alias", "set", "iris", "challenger", "3")
    assert r.code == 0, r.err

    # The operator publishes the aliases that resolve.
    def published() -> bool:
        st = _model(kubectl, namespace, "iris").get("status") or {}
        return bool(st.get("aliases") == {"champion": 2, "challenger": 3})

    wait_for(published, timeout=60, what="status.aliases of iris")
    cond = condition(_model(kubectl, namespace, "iris"), "AliasesResolved")
    assert (cond["status"], cond["reason"]) == ("True", "Resolved"), cond
    assert cond["message"] == "@challenger -> v3, @champion -> v2"

    client = client_for(kubeconfig, namespace, s3)
    assert client.resolve("models:/iris@champion") == ("iris", 2)
    assert client.get("models:/iris@challenger").spec.version == 3
    r = cli("get", "iris", "@champion", "-o", "json")
    assert json.loads(r.out)["metadata"]["name"] == "iris-v2", r.err
    assert "@champion -> v2" in cli("get", "iris").out

    # Refused before anything is written: an alias on an Archived version, a reserved name.
    r = cli("archive", "iris", "1")
    assert r.code == 0, r.err
    wait_for(
        lambda: (
            (kubectl.get("mv", "iris-v1", namespace) or {}).get("status", {}).get("phase")
            == "Archived"
        ),
        timeout=60,
        what="iris-v1 Archived",
    )
    r = cli("alias", "set", "iris", "old", "1")
    assert r.code == 5
    assert r.err.strip() == (
        "error: alias 'old' of iris points at version 1, which is Archived: "
        "an alias must name a live version"
    )
    r = cli("alias", "set", "iris", "latest", "2")
    assert r.code == 2
    assert "reserved" in r.err
    # The API server's own rule, for whoever writes the Model directly (kubectl, Argo CD).
    patch = json.dumps({"spec": {"aliases": {"v7": 2}}})
    denied = kubectl.run("-n", namespace, "patch", "model", "iris", "--type=merge", "-p", patch,
                         check=False)  # fmt: skip
    assert denied.returncode != 0
    assert "'latest' and v<N> are reserved" in denied.stderr

    # The alias follows its version: archived, it stops resolving, and the operator says why.
    r = cli("archive", "iris", "2")
    assert r.code == 0, r.err

    def unresolved() -> dict[str, Any] | None:
        m = _model(kubectl, namespace, "iris")
        c = condition(m, "AliasesResolved")
        ok = c.get("status") == "False" and m["status"].get("aliases") == {"challenger": 3}
        return c if ok else None

    cond = wait_for(unresolved, timeout=60, what="champion unresolved after v2 is archived")
    assert cond["reason"] == "AliasNotResolved"
    assert cond["message"] == "alias 'champion' of iris points at version 2, which is Archived"
    events = wait_for(
        lambda: _events(kubectl, namespace, "iris", "AliasNotResolved"),
        timeout=30,
        what="the AliasNotResolved Event",
    )
    assert events[0]["type"] == "Warning"
    r = cli("get", "iris@champion")
    assert r.code == 5
    assert "which is Archived: it does not resolve" in r.err
    r = cli("alias", "list", "iris")
    assert "@champion -> v2  (does not resolve: alias 'champion' of iris points at version 2, " \
        "which is Archived)" in r.out  # fmt: skip

    # Moving it to a live version heals the condition; removing the last alias drops it.
    assert cli("alias", "set", "iris", "champion", "3").code == 0
    wait_for(
        lambda: (
            condition(_model(kubectl, namespace, "iris"), "AliasesResolved").get("status") == "True"
        ),
        timeout=60,
        what="AliasesResolved True again",
    )
    for alias in ("champion", "challenger"):
        assert cli("alias", "rm", "iris", alias).code == 0
    wait_for(
        lambda: (
            not condition(_model(kubectl, namespace, "iris"), "AliasesResolved")
            and not (_model(kubectl, namespace, "iris")["status"].get("aliases"))
        ),
        timeout=60,
        what="no aliases, no AliasesResolved condition",
    )
    r = cli("alias", "rm", "iris", "champion")
    assert r.code == 3
    assert "has no alias 'champion'" in r.err


def test_search_and_download(
    cli: Cli,
    kubectl: Kubectl,
    namespace: str,
    s3: S3,
    s3_secret: str,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    for name, tags in (("fraud", {"team": "risk"}), ("churn", {"team": "growth"})):
        apply_model(kubectl, namespace, name, storage_spec=storage(s3, namespace, name, s3_secret))
        kubectl("-n", namespace, "patch", "model", name, "--type=merge",
                "-p", json.dumps({"spec": {"tags": tags}}))  # fmt: skip
    files = {}
    for name, aucs in (("fraud", ("0.86", "0.94")), ("churn", ("0.91",))):
        for n, auc in enumerate(aucs, start=1):
            files[(name, n)] = model_file(tmp_path, f"{name}{n}.onnx")
            r = cli("register", name, str(files[(name, n)]), "-m", f"auc={auc}", "--wait",
                    "--timeout", "60", "--no-progress")  # fmt: skip
            assert r.code == 0, r.err
    assert cli("promote", "fraud", "2", "--timeout", "120").code == 0
    assert cli("alias", "set", "fraud", "champion", "2").code == 0

    def names(*args: str) -> list[str]:
        r = cli("list", *args, "-o", "json")
        assert r.code == 0, r.err
        return [v["metadata"]["name"] for v in json.loads(r.out)]

    assert names("--where", "auc>=0.9") == ["churn-v1", "fraud-v2"]
    assert names("--where", "auc>=0.9", "--tag", "team=risk") == ["fraud-v2"]
    assert names("--stage", "Production") == ["fraud-v2"]
    assert names("--phase", "Serving") == ["fraud-v2"]
    assert names("--alias", "champion") == ["fraud-v2"]
    assert names("--tag", "team") == ["churn-v1", "fraud-v1", "fraud-v2"]
    assert names("fraud", "--where", "auc<0.9") == ["fraud-v1"]
    r = cli("list", "--where", "auc>=high")
    assert r.code == 2
    assert "'high' is not a number" in r.err
    r = cli("get", "fraud")
    assert "team  risk" in r.out

    # Download by alias: the very bytes registered, written where asked.
    out = tmp_path / "out"
    out.mkdir()
    r = cli("download", "fraud", "@champion", "--out", str(out))
    assert r.code == 0, r.err
    got = out / files[("fraud", 2)].name  # the artifact's own file name
    assert r.out.strip() == f"wrote {got}"
    assert got.read_bytes() == files[("fraud", 2)].read_bytes()
    r = cli("download", "models:/churn/1", "--out", str(tmp_path / "churn.onnx"), "-o", "json")
    assert json.loads(r.out) == {"path": str(tmp_path / "churn.onnx")}
    assert (tmp_path / "churn.onnx").read_bytes() == files[("churn", 1)].read_bytes()

    # A tampered object is refused and nothing is left behind.
    mv = kubectl.get("mv", "churn-v1", namespace) or {}
    s3.put(key_of(mv["spec"]["artifact"]["uri"], s3), b"not the model")
    dest = tmp_path / "tampered.onnx"
    r = cli("download", "churn-v1", "--out", str(dest))
    assert r.code == 5, (r.out, r.err)
    assert "sha256" in r.err
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tampered")] == []


STAMP = "modelreg.dev/stage-changed-"
AUDIT_LABEL = "modelreg.dev/e2e-stage-audit"


def _stamp(kubectl: Kubectl, namespace: str, name: str) -> dict[str, str]:
    ann = ((kubectl.get("mv", name, namespace) or {}).get("metadata") or {}).get("annotations")
    return {k[len(STAMP) :]: v for k, v in (ann or {}).items() if k.startswith(STAMP)}


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_who_asked_is_stamped_by_the_api_server_and_kept_in_history(
    cli: Cli,
    helm: Helm,
    kubectl: Kubectl,
    namespace: str,
    s3: S3,
    s3_secret: str,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    """The chart's stage-audit MutatingAdmissionPolicy on the real API server, users impersonated
    (`--as`): it names whoever the API server authenticated, a forged stamp is set back, and the
    real operator copies each request once into status.history, which `modelreg history` shows."""
    release = f"audit-{token()}"
    selector = {"matchLabels": {AUDIT_LABEL: release}}
    rendered = helm(
        "template", release, str(CHART), "--show-only", "templates/stage-audit.yaml",
        "--set-json", f"stageAudit.namespaceSelector={json.dumps(selector)}",
    )  # fmt: skip
    kubectl.run("apply", "-f", "-", input=rendered)
    try:
        kubectl("label", "namespace", namespace, f"{AUDIT_LABEL}={release}")
        probe = {
            "apiVersion": "modelreg.dev/v1alpha1",
            "kind": "ModelVersion",
            "metadata": {"name": "probe-v1", "namespace": namespace},
            "spec": {"model": "probe", "version": 1,
                     "artifact": {"uri": "s3://models/probe/1/m.onnx", "sha256": "0" * 64}},
        }  # fmt: skip

        def policy_active() -> bool:
            out = kubectl.run("-n", namespace, "create", "--dry-run=server", "-o", "json",
                              "-f", "-", input=json.dumps(probe), check=False)  # fmt: skip
            ann = json.loads(out.stdout or "{}").get("metadata", {}).get("annotations") or {}
            return out.returncode == 0 and f"{STAMP}by" in ann

        wait_for(policy_active, timeout=30, what="the stage-audit policy to be in force")
        me = kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").strip()
        admins = ("--as-group", "system:masters")
        apply_model(
            kubectl, namespace, "iris", storage_spec=storage(s3, namespace, "iris", s3_secret)
        )
        r = cli("register", "iris", str(model_file(tmp_path, "m1.onnx")), "--wait", "--timeout", "60",
                "--no-progress")  # fmt: skip
        assert r.code == 0, r.err
        assert _stamp(kubectl, namespace, "iris-v1") | {"at": ""} == {
            "by": me,
            "to": "None",
            "at": "",
        }

        before = _utc_now()
        r = cli("promote", "iris", "1", "--reason", "beats the May baseline", "--as", "alice",
                *admins, "--timeout", "90")  # fmt: skip
        assert r.code == 0, r.err
        after = _utc_now()
        stamp = _stamp(kubectl, namespace, "iris-v1")
        assert (stamp["by"], stamp["to"], stamp["reason"]) == (
            "alice", "Production", "beats the May baseline"
        )  # fmt: skip
        assert before <= stamp["at"] <= after, (before, stamp, after)

        # Forgery: mallory rewrites the stamp (set back), then changes the stage while claiming
        # to be alice, with alice's words (the stamp names mallory; the old reason is not hers).
        forged = kubectl.run("--as", "mallory", *admins, "-n", namespace, "annotate", "mv", "iris-v1",
                             f"{STAMP}by=alice", f"{STAMP}to=Archived", f"{STAMP}at-", "--overwrite",
                             check=False)  # fmt: skip
        assert forged.returncode == 0, forged.stderr
        assert _stamp(kubectl, namespace, "iris-v1") == stamp
        patch = {"metadata": {"annotations": {f"{STAMP}by": "alice", f"{STAMP}reason": "alice said so"}},
                 "spec": {"stage": "Archived"}}  # fmt: skip
        archived = kubectl.run("--as", "mallory", *admins, "-n", namespace, "patch", "mv", "iris-v1",
                               "--type=merge", "-p", json.dumps(patch), check=False)  # fmt: skip
        assert archived.returncode == 0, archived.stderr
        assert _stamp(kubectl, namespace, "iris-v1") | {"at": ""} == {
            "by": "mallory",
            "to": "Archived",
            "at": "",
        }

        def requests() -> list[tuple[str, str, str]]:
            r = cli("history", "iris-v1", "-o", "json")
            assert r.code == 0, r.err
            return [(h["by"], h["requested"], h["reason"]) for h in json.loads(r.out) if h["by"]]

        expected = [
            (me, "None", ""),
            ("alice", "Production", "beats the May baseline"),
            ("mallory", "Archived", ""),
        ]
        wait_for(lambda: requests() == expected, timeout=60, what="the three requests in history")
        entries = json.loads(cli("history", "iris-v1", "-o", "json").out)
        promoted = next(h for h in entries if h["by"] == "alice")
        assert promoted["at"] == stamp["at"]
        assert promoted["from"] == "None"
        table = cli("history", "iris-v1").out
        for seen in ("alice", "beats the May baseline", "mallory"):
            assert seen in table, table
        assert "alice said so" not in table, table

        # Each request is recorded once: another reconcile of the Model (a new version that is
        # verified) leaves v1's history as it was.
        r = cli("register", "iris", str(model_file(tmp_path, "m2.onnx")), "--wait", "--timeout", "60",
                "--no-progress")  # fmt: skip
        assert r.code == 0, r.err
        assert json.loads(cli("history", "iris-v1", "-o", "json").out) == entries
    finally:
        kubectl.run("delete", "-f", "-", "--ignore-not-found", input=rendered, check=False)
