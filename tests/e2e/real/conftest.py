"""Fixtures of the real tier: a real worker node, the locally built image, the chart installed.

Everything here runs as users run it. The image is built by `tools/image.sh` (no registry) and
imported into the node's containerd; the chart is installed with `helm install` into a namespace
that enforces the Pod Security "restricted" profile; the operator runs in its pod under its own
ServiceAccount, and the serving pods run on the real node. When the node or the image cannot be
had, the tests FAIL with the reason (tools/cluster.sh wrote it); they never skip.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from demo.devenv import ON_REAL_NODE
from demo.devenv import REAL_NODE as NODE

from tests.e2e.helpers import DEV, REPO, S3, Kubectl, wait_for
from tests.e2e.test_helm import CHART, Helm, helm

__all__ = ["helm"]  # the fixture, re-exported so pytest finds it here

IMAGE = "ghcr.io/modelreg/modelreg:0.1.0"
MEASUREMENTS = DEV / "measurements" / "real.json"


def record(name: str, value: float) -> None:
    """Keep a measured figure for the README (the latest run's), in .dev/measurements/real.json."""
    MEASUREMENTS.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(MEASUREMENTS.read_text()) if MEASUREMENTS.exists() else {}
    data[name] = round(value, 2)
    MEASUREMENTS.write_text(json.dumps(data, indent=1, sort_keys=True))


RESTRICTED = "pod-security.kubernetes.io/enforce=restricted"
# Container states that no waiting cures.
BROKEN = {
    "CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull",
    "CreateContainerError", "CreateContainerConfigError", "InvalidImageName", "RunContainerError",
}  # fmt: skip


@pytest.fixture(scope="session")
def real_node(kubectl: Kubectl) -> str:
    node = kubectl.get("node", NODE)
    if node is None:
        reason = DEV / "no-node-reason"
        why = reason.read_text().strip() if reason.exists() else "tools/cluster.sh did not start it"
        pytest.fail(f"no real node {NODE!r} in the cluster: {why}")
    ready = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}.get("Ready")
    assert ready == "True", f"node {NODE} is not Ready: {json.dumps(node['status'], indent=1)}"
    return NODE


@pytest.fixture(scope="session")
def image(real_node: str) -> str:
    """The one image, built (cached by content) and imported into the node's containerd."""
    proc = subprocess.run(
        ["bash", str(REPO / "tools" / "image.sh")],
        capture_output=True,
        text=True,
        timeout=2400,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"tools/image.sh failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    listed = subprocess.run(
        [
            str(DEV / "bin" / "ctr"),
            "--address",
            str(DEV / "node" / "run" / "containerd.sock"),
            "-n",
            "k8s.io",
            "images",
            "ls",
            "-q",
            f"name=={IMAGE}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert IMAGE in listed.stdout, f"the node's containerd does not list {IMAGE}: {listed.stderr}"
    return IMAGE


@pytest.fixture(scope="session")
def node_s3(s3: S3, real_node: str) -> S3:
    """The S3 server as pods see it: by the node's bridge address, never loopback."""
    where = f"with a real node .dev/s3.env must name the S3 server by the bridge address, not {s3.endpoint}"
    assert "127.0.0.1" not in s3.endpoint, where
    assert "localhost" not in s3.endpoint, where
    return s3


@dataclass
class Release:
    name: str
    system: str  # the operator's namespace
    apps: str  # the namespace it watches, where Models live
    helm: Helm
    kubectl: Kubectl

    @property
    def fullname(self) -> str:
        """The chart's full name: its Deployment and ServiceAccount."""
        return f"{self.name}-modelreg"

    def operator_pod(self) -> dict[str, object]:
        pods = self.kubectl.items("pods", self.system, "app.kubernetes.io/component=operator")
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        assert len(live) == 1, (
            f"expected one operator pod, found {[p['metadata']['name'] for p in pods]}"
        )
        return live[0]

    def operator_ready(self) -> str | None:
        """The Ready operator pod's name; fails at once, with the reason, if it cannot start."""
        pods = self.kubectl.items("pods", self.system, "app.kubernetes.io/component=operator")
        for p in pods:
            if p["metadata"].get("deletionTimestamp"):
                continue
            for cs in p["status"].get("containerStatuses") or []:
                waiting = (cs.get("state") or {}).get("waiting") or {}
                if waiting.get("reason") in BROKEN or cs.get("restartCount", 0) >= 2:
                    previous = self.kubectl.run(
                        "-n", self.system, "logs", p["metadata"]["name"], "--previous", "--tail=40",
                        check=False,
                    ).stdout  # fmt: skip
                    pytest.fail(
                        f"the operator pod {p['metadata']['name']} cannot start: "
                        f"{waiting.get('reason')}: {waiting.get('message')}; "
                        f"restarts {cs.get('restartCount')}; last log:\n{previous}"
                    )
            conds = {c["type"]: c["status"] for c in p["status"].get("conditions", [])}
            if p["status"].get("phase") == "Running" and conds.get("Ready") == "True":
                return str(p["metadata"]["name"])
        return None

    def logs(self) -> str:
        return self.kubectl.run(
            "-n", self.system, "logs", "deploy/" + self.fullname, "--tail=-1", check=False
        ).stdout


def _namespace(kubectl: Kubectl, name: str) -> None:
    kubectl("create", "namespace", name)
    kubectl(
        "label", "namespace", name, RESTRICTED, "pod-security.kubernetes.io/enforce-version=latest"
    )


@pytest.fixture(scope="module")
def release_values() -> dict[str, object]:
    """Chart values a test module adds to the release's (override it in the module)."""
    return {}


@pytest.fixture(scope="module")
def release(
    helm: Helm,
    kubectl: Kubectl,
    image: str,
    node_s3: S3,
    tmp_path_factory: pytest.TempPathFactory,
    release_values: dict[str, object],
) -> Iterator[Release]:
    """`helm install` of charts/modelreg with the local image, watching one apps namespace."""
    tag = secrets.token_hex(3)
    rel = Release(
        name=f"mr-{tag}",
        system=f"real-sys-{tag}",
        apps=f"real-apps-{tag}",
        helm=helm,
        kubectl=kubectl,
    )
    _namespace(kubectl, rel.system)
    _namespace(kubectl, rel.apps)
    repo, _, version = image.rpartition(":")
    values = {
        "image": {"repository": repo, "tag": version, "pullPolicy": "IfNotPresent"},
        "watchNamespaces": [rel.apps],
        "operator": ON_REAL_NODE,
        # Cluster-scoped objects of several releases in one cluster must not clash.
        "crds": {"enabled": False},
        "admission": {"enabled": False},
        "rbac": {"aggregateToDefaultRoles": False, "approver": False},
        # The web UI in the cluster, read-only, showing the apps namespace (test_real.py).
        "ui": {"enabled": True, "namespace": rel.apps, **ON_REAL_NODE},
        **release_values,
    }
    path: Path = tmp_path_factory.mktemp("release") / "values.json"
    path.write_text(json.dumps(values))
    t0 = time.monotonic()
    helm("install", rel.name, str(CHART), "-n", rel.system, "-f", str(path))
    try:
        wait_for(rel.operator_ready, timeout=180, what=f"the operator pod in {rel.system} Ready")
        record("helm_install_to_operator_ready_seconds", time.monotonic() - t0)
        yield rel
    finally:
        print(f"--- operator log ({rel.name}) ---\n{rel.logs()[-20000:]}")
        helm.run("uninstall", rel.name, "-n", rel.system, "--wait", check=False)
        for ns in (rel.apps, rel.system):
            kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found")
