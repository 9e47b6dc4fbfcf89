"""Fixtures of the GitOps tier: the real Argo CD (tools/argocd.sh), a git repository it follows,
and the Applications read as Argo CD reports them.

Argo CD is built (cached, `tools/build.sh argocd`) and started when it is not running, with a
short resync period so that "no drift over three resyncs" costs seconds, not minutes; what this
fixture started it stops again. When Argo CD cannot be built or started, the tests FAIL with the
reason; they never skip. The repository is a bare one under .dev/argocd/git/, pushed to with
plain git from a working copy in the test's temporary directory.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.helpers import REPO, Kubectl, wait_for
from tests.e2e.real.conftest import image, node_s3, real_node

__all__ = ["image", "node_s3", "real_node"]  # the real tier's fixtures, re-exported for pytest

ARGOCD = "argocd"  # Argo CD's namespace
RESYNC_SECONDS = 10  # the controller's --app-resync when this fixture starts it


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    proc = subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def _controller_resync() -> int | None:
    """The running application-controller's --app-resync, or None when it is not running."""
    proc = subprocess.run(
        ["pgrep", "-af", "argocd-application-controller"],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in proc.stdout.splitlines():
        found = re.search(r"--app-resync[ =](\d+)", line)
        if found:
            return int(found.group(1))
    return None


@dataclass
class ArgoCD:
    kubectl: Kubectl
    resync: int

    def app(self, name: str) -> dict[str, Any]:
        found = self.kubectl.get("applications.argoproj.io", name, ARGOCD)
        return found or {}

    def state(self, name: str) -> tuple[str, str, str]:
        """(sync status, health status, synced revision) as Argo CD reports them."""
        status = self.app(name).get("status") or {}
        sync = status.get("sync") or {}
        health = status.get("health") or {}
        return (sync.get("status", ""), health.get("status", ""), sync.get("revision", ""))

    def converged(self, name: str, revision: str) -> bool:
        return self.state(name) == ("Synced", "Healthy", revision)

    def wait_converged(self, name: str, revision: str, timeout: float = 240) -> dict[str, Any]:
        wait_for(
            lambda: self.converged(name, revision),
            timeout=timeout,
            interval=0.5,
            what=f"Application {name} Synced and Healthy at {revision[:8]}: {self.describe(name)}",
        )
        return self.app(name)

    def resource(self, app: str, kind: str, name: str) -> dict[str, Any]:
        """The app's entry for one resource: status (Synced/OutOfSync), health {status, message}."""
        for r in (self.app(app).get("status") or {}).get("resources") or []:
            if r.get("kind") == kind and r.get("name") == name:
                return dict(r)
        return {}

    def health(self, app: str, kind: str, name: str) -> tuple[str, str]:
        h = self.resource(app, kind, name).get("health") or {}
        return (h.get("status", ""), h.get("message", ""))

    def describe(self, name: str) -> str:
        """What to print when a wait fails: the state, conditions and the last operation."""
        status = self.app(name).get("status") or {}
        op = status.get("operationState") or {}
        return json.dumps(
            {
                "state": self.state(name),
                "conditions": status.get("conditions"),
                "operation": {"phase": op.get("phase"), "message": op.get("message")},
                "resources": [
                    (r.get("kind"), r.get("name"), r.get("status"), r.get("health"))
                    for r in status.get("resources") or []
                ],
            }
        )[:4000]


@pytest.fixture(scope="session")
def argocd(kubectl: Kubectl, kubeconfig: str) -> Iterator[ArgoCD]:
    if Path(kubeconfig).resolve() != (REPO / ".dev" / "kubeconfig").resolve():
        pytest.fail(
            "the GitOps tier runs Argo CD against the embedded cluster only (.dev/kubeconfig)"
        )
    _run("bash", str(REPO / "tools" / "build.sh"), "argocd", timeout=2400)
    running = _controller_resync()
    if running is None:
        up = {"MODELREG_ARGOCD_RESYNC": str(RESYNC_SECONDS)}
        _run("bash", str(REPO / "tools" / "argocd.sh"), "up", env=up)
    resync = _controller_resync()
    assert resync is not None, "tools/argocd.sh up returned, but no application-controller runs"
    try:
        yield ArgoCD(kubectl=kubectl, resync=resync)
    finally:
        if running is None:
            _run("bash", str(REPO / "tools" / "argocd.sh"), "down")


@dataclass
class GitRepo:
    """A working copy of a bare repository that Argo CD follows; every commit is pushed."""

    url: str
    work: Path
    commits: list[str] = field(default_factory=list)

    def git(self, *args: str) -> str:
        return _run("git", "-C", str(self.work), *args)

    def write(self, path: str, content: str | dict[str, Any] | list[dict[str, Any]]) -> None:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not isinstance(content, str):
            docs = content if isinstance(content, list) else [content]
            content = yaml.safe_dump_all(docs, sort_keys=False)
        target.write_text(content)

    def read(self, path: str) -> dict[str, Any]:
        doc: dict[str, Any] = yaml.safe_load((self.work / path).read_text())
        return doc

    def remove(self, path: str) -> None:
        self.git("rm", "-q", path)

    def commit(self, message: str) -> str:
        """Commit everything and push; returns the new commit's sha."""
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        self.git("push", "-q", "origin", "HEAD:main")
        sha = self.git("rev-parse", "HEAD").strip()
        self.commits.append(sha)
        return sha

    def revert(self, sha: str) -> str:
        self.git("revert", "--no-edit", sha)
        self.git("push", "-q", "origin", "HEAD:main")
        new = self.git("rev-parse", "HEAD").strip()
        self.commits.append(new)
        return new


@pytest.fixture(scope="module")
def git_repo(argocd: ArgoCD, tmp_path_factory: pytest.TempPathFactory) -> GitRepo:
    name = f"gitops-{int(time.time())}"
    url = _run("bash", str(REPO / "tools" / "argocd.sh"), "repo", name).strip()
    work = tmp_path_factory.mktemp("gitops-work")
    _run("git", "clone", "-q", url, str(work))
    for key, value in (("user.name", "modelreg e2e"), ("user.email", "e2e@modelreg.dev")):
        _run("git", "-C", str(work), "config", key, value)
    _run("git", "-C", str(work), "checkout", "-q", "-b", "main")
    return GitRepo(url=url, work=work)
