"""Leader election: the Lease rules (lifecycle/lease.py) and the elector (controller/leader.py)
with a fake Lease store at the adapter boundary that keeps resourceVersions as the API server does
(a write at a stale one is a 409), and a clock the tests move."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from modelreg.adapters import kube as k8s
from modelreg.controller.leader import Elector, record_of
from modelreg.lifecycle import lease
from modelreg.settings import OperatorSettings


def rec(holder: str, renew: str = "t0", transitions: int = 0) -> lease.Record:
    return lease.Record(holder, 10, renew, "t0", transitions, "1")


def test_a_missing_lease_is_created_and_our_own_renewed() -> None:
    d = lease.decide(None, None, me="a", now=0, wall="w", duration_seconds=10)
    assert d.act is lease.Act.CREATE
    assert d.spec == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 10,
        "acquireTime": "w",
        "renewTime": "w",
        "leaseTransitions": 0,
    }
    d = lease.decide(rec("a", transitions=3), None, me="a", now=0, wall="w2", duration_seconds=10)
    assert d.act is lease.Act.RENEW
    assert d.spec is not None
    assert (d.spec["acquireTime"], d.spec["renewTime"], d.spec["leaseTransitions"]) == (
        "t0",
        "w2",
        3,
    )


def test_another_holder_is_waited_out_on_our_own_clock() -> None:
    r = rec("b")
    seen = lease.seen(None, r, now=100.0)
    d = lease.decide(r, seen, me="a", now=104.0, wall="w", duration_seconds=10)
    assert (d.act, d.holder, d.wait_seconds) == (lease.Act.WAIT, "b", 6.0)
    # b renews: a new record restarts the clock, whatever the times in it say.
    renewed = rec("b", renew="t1")
    seen = lease.seen(seen, renewed, now=109.0)
    assert seen is not None
    assert seen.at == 109.0
    assert lease.decide(renewed, seen, me="a", now=118.0, wall="w", duration_seconds=10).act is (
        lease.Act.WAIT
    )
    # unchanged for the whole duration: expired, taken with one more transition
    d = lease.decide(renewed, seen, me="a", now=119.0, wall="w", duration_seconds=10)
    assert d.act is lease.Act.TAKE
    assert d.spec is not None
    assert (d.spec["holderIdentity"], d.spec["leaseTransitions"]) == ("a", 1)


def test_a_released_lease_is_taken_at_once() -> None:
    d = lease.decide(rec(""), None, me="a", now=0, wall="w", duration_seconds=10)
    assert d.act is lease.Act.TAKE


@pytest.mark.parametrize(
    ("last", "now", "holds"),
    [(None, 5.0, False), (0.0, 6.9, True), (0.0, 7.0, False), (0.0, 30.0, False)],
)
def test_a_leader_writes_only_within_the_renew_deadline(
    last: float | None, now: float, holds: bool
) -> None:
    assert lease.holds(last, now, 7.0) is holds


def test_the_deadline_must_come_before_expiry() -> None:
    with pytest.raises(ValueError, match="must be shorter than lease_duration_seconds"):
        OperatorSettings(leader_election=True, lease_duration_seconds=5, renew_deadline_seconds=5)
    with pytest.raises(ValueError, match="retry_period_seconds"):
        OperatorSettings(leader_election=True, renew_deadline_seconds=2, retry_period_seconds=3)


# ------------------------------------------------------------------------------------------------
# The elector, against a fake Lease store


@dataclass
class Leases:
    """One Lease as the API server keeps it: a resourceVersion per write, 409 on a stale one."""

    body: dict[str, Any] | None = None
    rv: int = 0
    down: bool = False
    writes: list[str] = field(default_factory=list)

    def _store(self, spec: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        self.body = {"metadata": {"resourceVersion": str(self.rv)}, "spec": dict(spec)}
        self.writes.append(str(spec["holderIdentity"]))
        return self.body


@dataclass
class FakeKube:
    leases: Leases
    fence: Any = None

    async def call(self, fn: Any, *args: Any) -> Any:
        await asyncio.sleep(0)
        return fn(*args)

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.leases.down:
            raise k8s.Unavailable("cannot reach the Kubernetes API server")
        return self.leases.body

    def create_lease(self, namespace: str, name: str, spec: Any, labels: Any) -> dict[str, Any]:
        if self.leases.body is not None:
            raise k8s.Conflict("already exists", 409)
        return self.leases._store(spec)

    def replace_lease(
        self, namespace: str, name: str, spec: Any, rv: str, labels: Any
    ) -> dict[str, Any]:
        if self.leases.down:
            raise k8s.Unavailable("cannot reach the Kubernetes API server")
        assert self.leases.body is not None
        if rv != self.leases.body["metadata"]["resourceVersion"]:
            raise k8s.Conflict("the object has been modified", 409)
        return self.leases._store(spec)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def elector(kube: FakeKube, me: str, clock: Clock) -> Elector:
    return Elector(
        kube,  # type: ignore[arg-type]
        namespace="ns",
        name="op",
        identity=me,
        duration_seconds=10,
        renew_deadline_seconds=7,
        retry_seconds=0.01,
        clock=clock,
        wall=lambda: f"w{clock.t}",
    )


def test_one_of_two_racing_replicas_takes_the_lease_and_the_other_waits() -> None:
    async def go() -> None:
        leases, clock = Leases(), Clock()
        a, b = elector(FakeKube(leases), "a", clock), elector(FakeKube(leases), "b", clock)
        results = await asyncio.gather(a.attempt(), b.attempt())
        assert sorted(results) == [False, True]
        winner, loser = (a, b) if results[0] else (b, a)
        assert winner.fence() is None
        assert loser.fence() is not None
        assert "does not hold the Lease ns/op" in str(loser.fence())
        assert leases.writes == [winner.identity]

    asyncio.run(go())


def test_a_dead_leader_is_replaced_after_the_duration_and_a_paused_one_is_fenced() -> None:
    async def go() -> None:
        leases, clock = Leases(), Clock()
        a, b = elector(FakeKube(leases), "a", clock), elector(FakeKube(leases), "b", clock)
        assert await a.attempt()
        assert not await b.attempt()  # b sees a's record now
        clock.t += 6
        assert a.fence() is None  # renewed 6 s ago: within the deadline
        clock.t += 1.5
        fenced = a.fence()  # a was paused: 7.5 s without a renewal
        assert fenced is not None
        assert "more than the renew deadline of 7s" in fenced
        assert not await b.attempt()  # 7.5 s since b saw the record: not expired yet
        clock.t += 2.5
        assert await b.attempt()  # 10 s unchanged: b takes it
        assert record_of(leases.body) == lease.Record("b", 10, f"w{clock.t}", f"w{clock.t}", 1, "2")
        # a resumes: its renewal finds b's record, and keep() ends its leadership
        why = await asyncio.wait_for(a.keep(), timeout=5)
        assert why == "another replica holds the Lease ns/op: b"
        assert a.fence() is not None

    asyncio.run(go())


def test_a_leader_that_cannot_renew_within_the_deadline_gives_up() -> None:
    async def go() -> None:
        leases, clock = Leases(), Clock()
        a = elector(FakeKube(leases), "a", clock)
        assert await a.attempt()
        leases.down = True

        async def later() -> None:
            await asyncio.sleep(0.05)
            clock.t += 8  # the API server stayed unreachable past the deadline

        mover = asyncio.create_task(later())
        why = await asyncio.wait_for(a.keep(), timeout=5)
        await mover
        assert why.startswith("could not renew the Lease ns/op within 7s")
        assert "cannot reach the Kubernetes API server" in why

    asyncio.run(go())


def test_release_lets_the_standby_take_over_at_its_next_try() -> None:
    async def go() -> None:
        leases, clock = Leases(), Clock()
        a, b = elector(FakeKube(leases), "a", clock), elector(FakeKube(leases), "b", clock)
        assert await a.attempt()
        assert not await b.attempt()
        await a.release()
        assert leases.body is not None
        assert leases.body["spec"]["holderIdentity"] == ""
        assert a.fence() is not None
        assert await b.attempt()  # no wait for the duration

    asyncio.run(go())


def test_writes_are_fenced_in_the_adapter_but_the_lease_is_not() -> None:
    class Api:
        def __init__(self) -> None:
            self.sent: list[str] = []

        def patch_namespaced_service(self, *a: Any, **kw: Any) -> None:
            self.sent.append("patch")

        def read_namespaced_service(self, *a: Any, **kw: Any) -> None:
            self.sent.append("read")

    kube = k8s.Kube.__new__(k8s.Kube)
    kube.timeout, kube.requests = 1.0, 0
    kube._lock = __import__("threading").Lock()
    kube.coordination = object()
    api = Api()
    kube.fence = lambda: "a does not hold the Lease ns/op"
    with pytest.raises(k8s.Fenced, match="not writing \\(patch_namespaced_service\\)"):
        kube._do(api.patch_namespaced_service, "x")
    kube._do(api.read_namespaced_service, "x")  # reads are never fenced
    assert api.sent == ["read"]
    kube.fence = lambda: None
    kube._do(api.patch_namespaced_service, "x")
    assert api.sent == ["read", "patch"]
