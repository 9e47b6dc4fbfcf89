"""Registry depth, end to end (issue 13): aliases, search and artifact download.

Against the real API server (the CRD's CEL rules), the real operator process (status.aliases, the
AliasesResolved condition and its Event) and the real S3 server (the downloaded bytes, and a
tampered object refused). Driven through the `modelreg` command as a user would, and the SDK for
`models:/` resolution.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.helpers import S3, Kubectl, OperatorProcess, wait_for
from tests.e2e.test_cli import Cli, cli, model_file
from tests.e2e.test_sdk import client_for, key_of
from tests.e2e.test_sdk_helpers import apply_model, storage

__all__ = ["cli"]  # the fixture, re-exported so pytest finds it here


def _model(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    return kubectl.get("model", name, namespace) or {}


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    conds = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conds if c.get("type") == type_), {})


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
    cond = _condition(_model(kubectl, namespace, "iris"), "AliasesResolved")
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
        c = _condition(m, "AliasesResolved")
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
            _condition(_model(kubectl, namespace, "iris"), "AliasesResolved").get("status")
            == "True"
        ),
        timeout=60,
        what="AliasesResolved True again",
    )
    for alias in ("champion", "challenger"):
        assert cli("alias", "rm", "iris", alias).code == 0
    wait_for(
        lambda: (
            not _condition(_model(kubectl, namespace, "iris"), "AliasesResolved")
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
