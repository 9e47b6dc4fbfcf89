"""Leader election with two real operator processes on one Lease (MODELREG_LEADER_ELECTION).

- SIGKILL of the leader in the middle of a promotion: the standby takes the Lease within the
  lease duration plus a retry period, and the promotion completes, with one Deployment, one
  history entry and one Event per transition (nothing done twice).
- SIGSTOP of the leader (its API access gone, as in a partition): the standby takes over and
  reconciles; the old leader, resumed, writes nothing (its writes are fenced) and exits.
- SIGTERM (a clean shutdown) releases the Lease: the standby takes over at its next try.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import S3, Kubectl, OperatorProcess, wait_for
from tests.e2e.registry import Registry

LEASE = "modelreg-operator"
DURATION, DEADLINE, RETRY = 10, 7, 2  # the chart's defaults


@pytest.fixture
def reg(kubectl: Kubectl, namespace: str, s3: S3, s3_secret: str) -> Registry:
    return Registry(kubectl=kubectl, namespace=namespace, s3=s3, secret=s3_secret)


def replica(kubeconfig: str, namespace: str, tmp_path: Path, name: str) -> OperatorProcess:
    return OperatorProcess(
        kubeconfig=kubeconfig,
        namespaces=[namespace],
        log_path=tmp_path / f"operator-{name}.log",
        extra_env={
            "MODELREG_LEADER_ELECTION": "true",
            "MODELREG_LEADER_NAMESPACE": namespace,
            "MODELREG_LEADER_IDENTITY": name,
            "MODELREG_LEASE_DURATION_SECONDS": str(DURATION),
            "MODELREG_RENEW_DEADLINE_SECONDS": str(DEADLINE),
            "MODELREG_RETRY_PERIOD_SECONDS": str(RETRY),
        },
    )


def holder(kubectl: Kubectl, namespace: str) -> str:
    lease = kubectl.get("lease", LEASE, namespace)
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


def pair(
    kubeconfig: str, namespace: str, kubectl: Kubectl, tmp_path: Path
) -> tuple[OperatorProcess, OperatorProcess]:
    a = replica(kubeconfig, namespace, tmp_path, "replica-a").start()
    wait_for(lambda: holder(kubectl, namespace) == "replica-a", timeout=60, what="a to lead")
    b = replica(kubeconfig, namespace, tmp_path, "replica-b").start()
    wait_for(lambda: "standby, waiting" in b.log(), timeout=30, what="b to wait as a standby")
    return a, b


def counted(kubectl: Kubectl, namespace: str, name: str) -> Counter[tuple[str, str]]:
    """Events about `name` by (reason, message), counting each Event's own repetitions."""
    tally: Counter[tuple[str, str]] = Counter()
    for e in kubectl.items("events", namespace):
        if e.get("involvedObject", {}).get("name") == name:
            tally[str(e.get("reason")), str(e.get("message"))] += int(e.get("count") or 1)
    return tally


def stop_all(*ops: OperatorProcess) -> None:
    for op in ops:
        if op.proc is not None and op.proc.poll() is None:
            op.proc.send_signal(signal.SIGCONT)
        op.kill()
    for op in ops:
        print(f"--- {op.log_path.name} ---\n{op.log()[-6000:]}")


@pytest.mark.timeout(300)
def test_the_standby_takes_over_a_killed_leader_and_finishes_its_promotion(
    kubeconfig: str, namespace: str, kubectl: Kubectl, reg: Registry, tmp_path: Path
) -> None:
    a, b = pair(kubeconfig, namespace, kubectl, tmp_path)
    try:
        reg.model("m")
        reg.version("m", 1, "Production")
        reg.version("m", 2)
        reg.wait_phase("m", 1, "Serving", timeout=90)
        reg.wait_phase("m", 2, "Ready", timeout=60)
        assert "replica-b" not in holder(kubectl, namespace)
        assert "applying Deployment" not in b.log(), "the standby wrote"

        reg.stage("m", 2, "Production")
        wait_for(lambda: "m-v2" in reg.deployments("m"), timeout=30, what="v2's rollout to start")
        a.kill()  # the promotion is in flight
        killed = time.monotonic()
        wait_for(
            lambda: holder(kubectl, namespace) == "replica-b",
            timeout=DURATION + 3 * RETRY + 5,
            interval=0.2,
            what="b to take the Lease",
        )
        takeover = time.monotonic() - killed
        reg.wait_phase("m", 2, "Serving", timeout=120)
        wait_for(
            lambda: set(reg.deployments("m")) == {"m-v2"} and reg.service_version("m") == "2",
            timeout=60,
            what="v2 alone behind the Service",
        )
        history = reg.status("m", 2)["history"]
        phases = Counter(h.get("phase") for h in history)
        assert phases["Serving"] == 1, history
        assert phases["Rolling"] == 1, history
        for name in ("m-v2", "m"):
            twice = {r: n for r, n in counted(kubectl, namespace, name).items() if n > 1}
            assert not twice, (name, twice)
        assert "took the Lease" in b.log()
    finally:
        stop_all(a, b)
    print(f"leader: standby took over {takeover:.1f}s after SIGKILL (lease {DURATION}s)")
    # Expiry is judged on the standby's own clock from when it saw the last renewal: at most the
    # duration after that renewal plus one retry period of the standby's.
    assert takeover <= DURATION + 2 * RETRY + 1, takeover


WATCHED = [("model", "m"), ("mv", "m-v1"), ("mv", "m-v2"), ("deployment", "m-v2"),
           ("service", "m")]  # fmt: skip


def versions_of(kubectl: Kubectl, namespace: str) -> dict[str, str]:
    """Each watched object's resourceVersion (absent: ""): any write changes one."""
    out = {}
    for kind, name in WATCHED:
        obj = kubectl.get(kind, name, namespace)
        out[f"{kind}/{name}"] = (obj or {}).get("metadata", {}).get("resourceVersion", "")
    return out


def quiet(kubectl: Kubectl, namespace: str) -> dict[str, str] | None:
    """The resourceVersions, once they stay the same for 3 s."""
    first = versions_of(kubectl, namespace)
    time.sleep(3)
    return first if versions_of(kubectl, namespace) == first else None


@pytest.mark.timeout(300)
def test_a_paused_leader_is_replaced_and_steps_down_without_writing(
    kubeconfig: str, namespace: str, kubectl: Kubectl, reg: Registry, tmp_path: Path
) -> None:
    a, b = pair(kubeconfig, namespace, kubectl, tmp_path)
    try:
        reg.model("m")
        reg.version("m", 1, "Production")
        reg.version("m", 2)
        reg.wait_phase("m", 1, "Serving", timeout=90)
        assert a.proc is not None
        a.proc.send_signal(signal.SIGSTOP)
        wait_for(
            lambda: holder(kubectl, namespace) == "replica-b",
            timeout=DURATION + 3 * RETRY + 5,
            interval=0.2,
            what="b to take the Lease from the paused a",
        )
        # The new leader reconciles: a promotion made while a is paused completes.
        reg.stage("m", 2, "Production")
        reg.wait_phase("m", 2, "Serving", timeout=120)
        wait_for(lambda: set(reg.deployments("m")) == {"m-v2"}, timeout=60, what="v1 removed")
        # b is done (an idle operator writes nothing): from here on, any change is a's.
        before = wait_for(lambda: quiet(kubectl, namespace), timeout=30, what="b to go idle")
        resumed_at = len(a.log())
        a.proc.send_signal(signal.SIGCONT)
        a.proc.wait(timeout=60)  # it steps down: the process ends, to restart as a standby
        after = a.log()[resumed_at:]
        assert "lost the leadership" in after, after[-3000:]
        assert a.proc.returncode == 1, a.proc.returncode
        # Its caches were stale (v1 serving). Whether its loop got to plan a write before its
        # elector saw the deadline passed is a matter of scheduling; a write it tried was refused
        # before it was sent, and none reached the API server.
        fenced = after.count("Fenced: not writing")
        assert versions_of(kubectl, namespace) == before, (fenced, after[-3000:])
        assert "took the" not in after, after[-3000:]
        time.sleep(2 * RETRY)
        assert holder(kubectl, namespace) == "replica-b"
        assert reg.service_version("m") == "2"
        assert set(reg.deployments("m")) == {"m-v2"}
        assert reg.status("m", 2)["phase"] == "Serving"
        print(f"leader: paused a resumed, {fenced} writes fenced, exited 1")
    finally:
        stop_all(a, b)


@pytest.mark.timeout(180)
def test_a_clean_shutdown_hands_the_lease_over_at_once(
    kubeconfig: str, namespace: str, kubectl: Kubectl, tmp_path: Path
) -> None:
    a, b = pair(kubeconfig, namespace, kubectl, tmp_path)
    try:
        a.stop()  # SIGTERM
        assert a.proc is not None
        assert a.proc.returncode == 0, a.log()[-3000:]
        assert "released the Lease" in a.log()
        stopped = time.monotonic()
        wait_for(
            lambda: holder(kubectl, namespace) == "replica-b",
            timeout=2 * RETRY + 5,
            interval=0.2,
            what="b to take the released Lease",
        )
        handover = time.monotonic() - stopped
        lease: dict[str, Any] = kubectl.get("lease", LEASE, namespace) or {}
        assert lease["spec"]["leaseTransitions"] == 1, json.dumps(lease["spec"])
    finally:
        stop_all(a, b)
    print(f"leader: released Lease taken {handover:.1f}s after SIGTERM")
    assert handover <= RETRY + 1.5, handover
