"""Leader election on a coordination.k8s.io/v1 Lease: the rules, pure (no I/O, no clock).

`modelreg.controller.leader` reads the Lease, calls `decide` and writes what it says, with the
Lease's resourceVersion as a precondition: of two replicas that decide to take an expired Lease at
once, the API server lets one write succeed and refuses the other (409), which stays a standby.

Expiry is judged as client-go's leaderelection does it, without trusting another machine's clock:
a standby notes *when it first saw* the current record (holder and renewTime) on its own monotonic
clock, and takes the Lease only when that record has not changed for the lease duration. A leader
stays one only while its last successful renewal is younger than the renew deadline (shorter than
the duration), so it stops writing before any standby may take over: that is the fencing
(`holds`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class Record:
    """What the Lease's spec says (resource_version: its metadata's)."""

    holder: str
    duration_seconds: int
    renew_time: str | None
    acquire_time: str | None
    transitions: int
    resource_version: str


@dataclass(frozen=True)
class Seen:
    """A record as this replica first saw it, on its own monotonic clock."""

    holder: str
    renew_time: str | None
    at: float


class Act(enum.StrEnum):
    CREATE = "create"  # no Lease yet
    RENEW = "renew"  # ours: renew it
    TAKE = "take"  # released, or expired: take it
    WAIT = "wait"  # another replica holds it


@dataclass(frozen=True)
class Decision:
    act: Act
    spec: dict[str, object] | None = None  # the Lease spec to write (CREATE, RENEW, TAKE)
    wait_seconds: float = 0.0  # WAIT: when the current record would expire, at the earliest
    holder: str = ""  # WAIT: who holds it


def seen(previous: Seen | None, record: Record | None, now: float) -> Seen | None:
    """The record as first seen: a changed holder or renewTime restarts the clock."""
    if record is None:
        return None
    if (
        previous is not None
        and previous.holder == record.holder
        and previous.renew_time == record.renew_time
    ):
        return previous
    return Seen(record.holder, record.renew_time, now)


def decide(
    record: Record | None,
    first_seen: Seen | None,
    *,
    me: str,
    now: float,
    wall: str,
    duration_seconds: int,
) -> Decision:
    """What this replica does with the Lease now. `now` is its monotonic clock, `wall` the
    current time as RFC 3339 with microseconds (what the Lease's times hold)."""
    fresh: dict[str, object] = {
        "holderIdentity": me,
        "leaseDurationSeconds": duration_seconds,
        "acquireTime": wall,
        "renewTime": wall,
    }
    if record is None:
        return Decision(Act.CREATE, {**fresh, "leaseTransitions": 0})
    if record.holder == me:
        return Decision(
            Act.RENEW,
            {
                "holderIdentity": me,
                "leaseDurationSeconds": duration_seconds,
                "acquireTime": record.acquire_time or wall,
                "renewTime": wall,
                "leaseTransitions": record.transitions,
            },
        )
    taken = {**fresh, "leaseTransitions": record.transitions + 1}
    if not record.holder:
        return Decision(Act.TAKE, taken)  # released on a clean shutdown
    duration = max(1, record.duration_seconds)
    since = now - first_seen.at if first_seen is not None else 0.0
    if since >= duration:
        return Decision(Act.TAKE, taken)
    return Decision(Act.WAIT, wait_seconds=duration - since, holder=record.holder)


def holds(last_renewed: float | None, now: float, renew_deadline_seconds: float) -> bool:
    """Whether a leader may still write: its last successful renewal (monotonic) is younger than
    the renew deadline. After a pause (SIGSTOP, a long GC, a partition) it is not, and it stops
    writing before a standby can have taken over (the deadline is shorter than the duration)."""
    return last_renewed is not None and now - last_renewed < renew_deadline_seconds


def released(record: Record, wall: str) -> dict[str, object]:
    """The spec a leader writes on a clean shutdown: no holder, so a standby takes over at its
    next try instead of waiting out the duration."""
    return {
        "holderIdentity": "",
        "leaseDurationSeconds": 1,
        "acquireTime": record.acquire_time,
        "renewTime": wall,
        "leaseTransitions": record.transitions,
    }
