"""Canary rollouts (spec.rollout.strategy Canary): the step a canary is at, its replica count, and
the verdict of its analysis. Pure: called by the planner with what the reconciler measured.

Traffic is split without a mesh, as Argo Rollouts does with plain Services: during a canary the
stable Service selects every serving pod of the Model, and the share of requests that reach the
canary is (about) the share of its ready pods. The stable version keeps its full count `T`; the
canary gets `c = round(T * w / (100 - w))` pods for a step of `w` percent, at least 1 and at most
`T`, so the shares a Model can have are c / (c + T): with T = 3, 25% is 1 pod of 4, 50% is 3 of 6.
The last step (100) brings the canary to `T` pods and, once they are all ready, the Service
switches to the canary alone, as a blue/green switch does.

A step's clock starts when its pods are all ready. It ends after `stepSeconds` and, with an
analysis, once the canary answered `minRequests` requests in it. The analysis is judged all along
the step from the canary pods' own /metrics (request counts by status, the latency histogram,
measured since the step's clock started): a breach rolls the canary back at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from modelreg.api.models import Analysis, CanaryStatus, Rollout


@dataclass(frozen=True)
class Measured:
    """The canary's figures over one step's window, as the reconciler's analyst measured them."""

    version: int
    step: int  # index into spec.rollout.steps
    started_at: str
    requests: int
    errors: int
    p99_ms: float | None
    problem: str | None = None  # a pod that did not answer its scrape, say

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


@dataclass(frozen=True)
class Step:
    """Where the canary stands after this pass."""

    index: int  # into spec.rollout.steps
    replicas: int  # the canary Deployment's count for that step
    started_at: str | None  # None until the step's pods are all ready
    switch: bool = False  # the last step is ready: the Service goes to the canary alone
    failed: str | None = None  # the analysis was breached: why, with the figures
    wake_after: float | None = None  # when the step's time is up, in seconds


def canary_replicas(stable: int, weight: int) -> int:
    """The canary's pods for a step of `weight` percent beside `stable` stable pods."""
    if weight >= 100:
        return max(stable, 1)
    return max(1, min(stable, round(stable * weight / (100 - weight))))


def breach(analysis: Analysis | None, m: Measured | None) -> str | None:
    """Why the figures breach the analysis, or None. Judged once the step has minRequests."""
    if analysis is None or m is None or m.requests < analysis.min_requests:
        return None
    problems = []
    rate = m.error_rate
    if analysis.max_error_rate is not None and rate is not None and rate > analysis.max_error_rate:
        problems.append(
            f"error rate {rate:.1%} ({m.errors} of {m.requests} requests) is above "
            f"maxErrorRate {analysis.max_error_rate:.1%}"
        )
    limit = analysis.max_p99_latency_ms
    if limit is not None and m.p99_ms is not None and m.p99_ms > limit:
        problems.append(f"p99 latency {m.p99_ms:.1f} ms is above maxP99LatencyMs {limit:g} ms")
    return "; ".join(problems) or None


def advance(
    rollout: Rollout,
    *,
    old: CanaryStatus | None,
    version: int,
    stable: int,
    stable_replicas: int,
    ready_at: int | None,
    measured: Measured | None,
    now: str,
) -> Step:
    """The canary's step after this pass.

    `old` is the Model's status.canary (used only if it is about this version and this stable one);
    `ready_at` is the replica count at which the canary Deployment is complete (all pods ready and
    current), None when it is not; `measured` the analyst's figures (used only if they are for the
    step and window at hand)."""
    steps = rollout.steps
    same = old is not None and old.version == version and old.stable == stable
    index = min(old.step - 1, len(steps) - 1) if same and old is not None else 0
    started = old.step_started_at if same and old is not None else None
    replicas = canary_replicas(stable_replicas, steps[index])
    if ready_at != replicas:
        # The step's pods are not all ready (yet, or any more): its clock waits for them.
        return Step(index, replicas, started)
    if steps[index] >= 100:
        return Step(index, replicas, started or now, switch=True)
    if started is None:
        return Step(index, replicas, now)
    window = measured if _for(measured, version, index, started) else None
    why = breach(rollout.analysis, window)
    if why is not None:
        return Step(index, replicas, started, failed=why)
    left = rollout.step_seconds - _seconds(started, now)
    enough = rollout.analysis is None or (
        window is not None and window.requests >= rollout.analysis.min_requests
    )
    if left > 0 or not enough:
        return Step(index, replicas, started, wake_after=max(left, 0.0) if left > 0 else None)
    nxt = index + 1
    return Step(nxt, canary_replicas(stable_replicas, steps[nxt]), None)


def status(
    rollout: Rollout,
    step: Step,
    *,
    version: int,
    stable: int,
    stable_replicas: int,
    ready_canary: int,
    ready_stable: int,
    measured: Measured | None,
) -> CanaryStatus:
    """status.canary for a step (its figures only when they are the step's own)."""
    weight = rollout.steps[step.index]
    total = ready_canary + ready_stable
    share = ready_canary / total if total else 0.0
    m = (
        measured
        if step.started_at and _for(measured, version, step.index, step.started_at)
        else None
    )
    head = (
        f"canary step {step.index + 1}/{len(rollout.steps)} ({weight}%): version {version} has "
        f"{ready_canary} of {total} ready pods ({share:.0%}), version {stable} the rest"
    )
    if step.started_at is None:
        body = f"; waiting for its {step.replicas} pod(s) to be ready"
    elif m is None:
        body = "; measuring"
    else:
        rate = m.error_rate
        body = f"; {m.requests} requests, {m.errors} errors" + (
            f" ({rate:.1%})" if rate is not None else ""
        )
        if m.p99_ms is not None:
            body += f", p99 {m.p99_ms:.1f} ms"
    if m is not None and m.problem:
        body += f" (metrics: {m.problem})"
    return CanaryStatus(
        version=version,
        stable=stable,
        step=step.index + 1,
        steps=len(rollout.steps),
        weight=weight,
        canary_replicas=step.replicas,
        stable_replicas=stable_replicas,
        share=round(share, 4),
        step_started_at=step.started_at,
        requests=m.requests if m else None,
        errors=m.errors if m else None,
        error_rate=round(m.error_rate, 6) if m and m.error_rate is not None else None,
        p99_latency_ms=round(m.p99_ms, 3) if m and m.p99_ms is not None else None,
        message=head + body,
    )


def _for(m: Measured | None, version: int, index: int, started: str) -> bool:
    return m is not None and (m.version, m.step, m.started_at) == (version, index, started)


def _seconds(since: str, now: str) -> float:
    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    try:
        return (parse(now) - parse(since)).total_seconds()
    except ValueError:
        return 0.0
