"""Retention and `modelreg gc`, end to end (issue 13): the real operator deletes old versions and
their artifacts in the real S3 server, with Events; gc finds objects no version references."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.helpers import S3, Kubectl, OperatorProcess, wait_for
from tests.e2e.test_cli import Cli, cli, model_file
from tests.e2e.test_sdk_helpers import apply_model, storage

__all__ = ["cli"]  # the fixture, re-exported so pytest finds it here


def _names(kubectl: Kubectl, namespace: str) -> list[str]:
    return sorted(mv["metadata"]["name"] for mv in kubectl.items("modelversions", namespace))


def _events(kubectl: Kubectl, namespace: str, reason: str) -> list[str]:
    return sorted(
        e.get("message", "")
        for e in kubectl.items("events", namespace)
        if e.get("reason") == reason
    )


def _exists(s3: S3, key: str) -> bool:
    try:
        s3.get(key)
    except Exception:
        return False
    return True


def test_retention_deletes_old_versions_and_their_artifacts(
    cli: Cli,
    kubectl: Kubectl,
    namespace: str,
    s3: S3,
    s3_secret: str,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    apply_model(
        kubectl, namespace, "churn", storage_spec=storage(s3, namespace, "churn", s3_secret)
    )
    for n in range(1, 5):
        r = cli("register", "churn", str(model_file(tmp_path, f"m{n}.onnx")), "--wait",
                "--timeout", "60", "--no-progress")  # fmt: skip
        assert r.code == 0, r.err
    for n in (1, 2, 3):
        assert cli("archive", "churn", str(n)).code == 0
    wait_for(
        lambda: all(
            (kubectl.get("mv", f"churn-v{n}", namespace) or {}).get("status", {}).get("phase")
            == "Archived"
            for n in (1, 2, 3)
        ),
        timeout=60,
        what="v1-v3 Archived",
    )
    key = f"{namespace}/churn/{{n}}/m{{n}}.onnx"
    assert all(_exists(s3, key.format(n=n)) for n in (1, 2, 3))

    # Keep the newest Archived one; delete the others with their artifacts.
    kubectl("-n", namespace, "patch", "model", "churn", "--type=merge", "-p", json.dumps(
        {"spec": {"retention": {"keepArchived": 1, "deleteArtifacts": True}}}
    ))  # fmt: skip
    wait_for(
        lambda: _names(kubectl, namespace) == ["churn-v3", "churn-v4"],
        timeout=60,
        what="retention to delete churn-v1 and churn-v2",
    )
    wait_for(
        lambda: len(_events(kubectl, namespace, "ArtifactDeleted")) == 2,
        timeout=30,
        what="two ArtifactDeleted Events",
    )
    assert _events(kubectl, namespace, "VersionDeleted") == [
        f"retention keeps the newest 1 Archived or Superseded versions: deleted churn-v{n} "
        "(Archived)"
        for n in (1, 2)
    ]
    assert not _exists(s3, key.format(n=1))
    assert not _exists(s3, key.format(n=2))
    assert _exists(s3, key.format(n=3))
    assert _exists(s3, key.format(n=4))

    # gc: an object under the prefix that no version references, reported then deleted.
    stray = f"{namespace}/churn/9/left-over.onnx"
    s3.put(stray, b"x" * 2048)
    r = cli("gc", "churn", "--dry-run", "--min-age", "0", "-o", "json")
    assert r.code == 0, r.err
    report: dict[str, Any] = json.loads(r.out)
    assert [o["uri"] for o in report["orphans"]] == [f"s3://{s3.bucket}/{stray}"]
    assert (report["scanned"], report["deleted"]) == (3, [])
    assert _exists(s3, stray)
    r = cli("gc", "churn", "--dry-run")  # the default minimum age leaves a fresh object alone
    assert "1 newer than --min-age left alone" in r.out, r.out
    r = cli("gc", "churn", "--min-age", "0")
    assert r.code == 0, r.err
    assert "deleted 1" in r.out, r.out
    assert not _exists(s3, stray)
    assert _exists(s3, key.format(n=3))
