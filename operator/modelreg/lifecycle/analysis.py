"""The arithmetic of canary analysis: what one scrape of a runtime's /metrics says about its
inference requests, and the figures of the requests answered between two scrapes.

`modelreg.controller.analyst` scrapes the canary pods' /metrics (the runtime's own metrics,
`modelreg.runtime.metrics`), calls `parse` on each answer and `window` on a step's first scrape
and its latest; the planner judges the `Figures` against `spec.rollout.analysis`. Pure: no I/O,
no clock.

What counts as an error is the server's failure to answer a valid request, the same for both
protocols:

- HTTP: any status >= 500. That includes 503, whether the model is not ready or the executor is
  full (`Overloaded`): a canary that sheds its share of traffic is failing those users. A 429
  (throttling the client asked for) and 4xx in general (wrong model name, bad tensors, body too
  large) are the caller's mistakes and never count; nor does 499 (the client went away).
- gRPC: INTERNAL, UNKNOWN, UNAVAILABLE, DATA_LOSS and DEADLINE_EXCEEDED. RESOURCE_EXHAUSTED is
  ambiguous there: the runtime answers it both for an oversized message (HTTP 413, the
  caller's mistake) and for an overloaded executor (HTTP 503). The overload rejections are
  counted apart in `modelreg_runtime_rejected_requests_total`, so those (endpoint="infer",
  protocol="grpc") are added as errors and the oversized messages are not: overload counts the
  same whichever protocol the client speaks. CANCELLED (the client went away) never counts.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

SHADOW_REQUESTS = "modelreg_shadow_requests"
SHADOW_DURATION = "modelreg_shadow_request_duration_seconds"
REQUESTS = "modelreg_runtime_requests"
DURATION = "modelreg_runtime_request_duration_seconds"
REJECTED = "modelreg_runtime_rejected_requests"
ENDPOINT = "infer"
QUANTILE = 0.99
GRPC_ERRORS = frozenset({"INTERNAL", "UNKNOWN", "UNAVAILABLE", "DATA_LOSS", "DEADLINE_EXCEEDED"})
_REQUIRED = ((REQUESTS, "_total"), (DURATION, "_bucket"))

Buckets = tuple[tuple[float, int], ...]


@dataclass(frozen=True)
class Counters:
    """What one scrape of one pod's /metrics says about inference requests (cumulative)."""

    requests: int  # modelreg_runtime_requests_total, endpoint="infer", every status and protocol
    errors: int  # of those, the server's failures (the module docstring says which)
    buckets: Buckets = ()  # request duration histogram, endpoint="infer": (le, cumulative count)
    # Shadow readings (`parse_shadow`) only: answers compared that differed, and sampled requests
    # not mirrored. There `requests` are the mirrored requests and `errors` the shadow's failures.
    mismatches: int = 0
    dropped: int = 0


@dataclass(frozen=True)
class Figures:
    """The requests answered in a window, for the planner to judge."""

    requests: int
    errors: int
    p99_ms: float | None  # None when no request in the window
    pods: int  # pods that answered the last scrape
    mismatches: int = 0  # shadow readings only (see Counters)
    dropped: int = 0

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


def is_error(status: str) -> bool:
    """Whether a request's `status` label (an HTTP status, or a gRPC code's name) is a failure
    of the server. RESOURCE_EXHAUSTED is not: `parse` counts its overload share apart."""
    if status.isdigit():
        return int(status) >= 500
    return status in GRPC_ERRORS


def parse(text: str) -> Counters:
    """The inference counters of a Prometheus text exposition from the modelreg runtime.

    Raises ValueError when the text is not an exposition, or lacks the runtime's request
    metrics (a runtime that does not export them, or another program on the port). A runtime
    that has answered no inference request yet exports the metrics without samples: zeros.
    """
    requests = errors = 0
    series: dict[tuple[tuple[str, str], ...], dict[float, int]] = defaultdict(dict)
    seen: set[str] = set()
    try:
        for family in text_string_to_metric_families(text):
            name = _family(family.name)
            if name not in (REQUESTS, DURATION, REJECTED):
                continue
            seen.add(name)
            for sample in family.samples:
                labels = sample.labels
                if labels.get("endpoint") != ENDPOINT:
                    continue
                value = _count(sample.value)
                if sample.name == REQUESTS + "_total":
                    requests += value
                    errors += value if is_error(labels.get("status", "")) else 0
                elif sample.name == REJECTED + "_total" and labels.get("protocol") == "grpc":
                    errors += value  # answered RESOURCE_EXHAUSTED, also counted in REQUESTS
                elif sample.name == DURATION + "_bucket":
                    key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
                    series[key][float(labels["le"])] = value
    except (ValueError, KeyError, IndexError, TypeError) as e:  # the parser's, on odd input
        raise ValueError(f"not a Prometheus text exposition: {_short(e)}") from e
    missing = [f"{name}{suffix}" for name, suffix in _REQUIRED if name not in seen]
    if missing:
        raise ValueError(
            f"the metrics have no {' and no '.join(missing)}: not the modelreg runtime's "
            "/metrics, or a runtime that does not export its request metrics"
        )
    parts = [tuple(sorted(buckets.items())) for buckets in series.values()]
    return Counters(requests, errors, _merge(parts))


def parse_shadow(text: str, version: int) -> Counters:
    """The shadow counters of a serving pod's /metrics for the shadow `version`
    (`modelreg.runtime.shadow`): requests = mirrored requests answered or failed (outcomes agree,
    disagree, error), errors = error, mismatches = disagree, dropped = dropped; the buckets are the
    mirrored round trip's. A pod that does not mirror (yet: the serving Deployment is rolling out)
    has no such series: zeros. Raises ValueError when the text is not an exposition."""
    counts: dict[str, int] = defaultdict(int)
    series: dict[tuple[tuple[str, str], ...], dict[float, int]] = defaultdict(dict)
    want = str(version)
    try:
        for family in text_string_to_metric_families(text):
            name = _family(family.name)
            if name not in (SHADOW_REQUESTS, SHADOW_DURATION):
                continue
            for sample in family.samples:
                labels = sample.labels
                if labels.get("version") != want:
                    continue
                value = _count(sample.value)
                if sample.name == SHADOW_REQUESTS + "_total":
                    counts[labels.get("outcome", "")] += value
                elif sample.name == SHADOW_DURATION + "_bucket":
                    key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
                    series[key][float(labels["le"])] = value
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise ValueError(f"not a Prometheus text exposition: {_short(e)}") from e
    parts = [tuple(sorted(buckets.items())) for buckets in series.values()]
    return Counters(
        requests=counts["agree"] + counts["disagree"] + counts["error"],
        errors=counts["error"],
        buckets=_merge(parts),
        mismatches=counts["disagree"],
        dropped=counts["dropped"],
    )


def total(parts: Iterable[Counters]) -> Counters:
    """The sum of counters (of several pods, or of one pod's lives across restarts)."""
    items = list(parts)
    return Counters(
        sum(c.requests for c in items),
        sum(c.errors for c in items),
        _merge(c.buckets for c in items),
        sum(c.mismatches for c in items),
        sum(c.dropped for c in items),
    )


def window(baseline: Mapping[str, Counters], now: Mapping[str, Counters]) -> Figures:
    """The figures of the requests answered between two scrapes, per pod name: `now` minus
    `baseline`. A pod missing from the baseline started after the window opened, and a pod whose
    counters went down restarted: both count from zero. A pod missing from `now` is gone and
    counts for nothing; `pods` is the number of pods in `now`.

    p99 is interpolated linearly within its bucket, as PromQL's histogram_quantile does; when it
    falls in the +Inf bucket it is the highest finite bound (a floor: the true value is above).
    """
    deltas = [_since(baseline.get(pod), counters) for pod, counters in now.items()]
    summed = total(deltas)
    p99 = quantile(QUANTILE, summed.buckets) if summed.requests else None
    return Figures(
        requests=summed.requests,
        errors=summed.errors,
        p99_ms=None if p99 is None else p99 * 1000.0,
        pods=len(now),
        mismatches=summed.mismatches,
        dropped=summed.dropped,
    )


def quantile(q: float, buckets: Buckets) -> float | None:
    """PromQL's histogram_quantile over cumulative buckets ending in +Inf; None when empty."""
    if len(buckets) < 2 or buckets[-1][0] != math.inf:
        return None
    observed = buckets[-1][1]
    if observed <= 0:
        return None
    rank = q * observed
    b = next(i for i, (_, count) in enumerate(buckets) if count >= rank)
    if b == len(buckets) - 1:
        return buckets[-2][0]
    end, count = buckets[b]
    if b == 0:
        if end <= 0:
            return end
        return end * rank / count
    start, below = buckets[b - 1]
    return start + (end - start) * (rank - below) / (count - below)


def restarted(base: Counters, now: Counters) -> bool:
    """Whether a pod's counters went down from `base` to `now`: its process started afresh."""
    if (
        now.requests < base.requests
        or now.errors < base.errors
        or now.mismatches < base.mismatches
        or now.dropped < base.dropped
    ):
        return True
    if base.buckets and [le for le, _ in base.buckets] != [le for le, _ in now.buckets]:
        return True  # another histogram layout: another process
    return any(n < b for (_, n), (_, b) in zip(now.buckets, base.buckets, strict=False))


def _family(name: str) -> str:
    """A family's name without its sample suffix (the parser keeps it on untyped families)."""
    for suffix in ("_total", "_bucket"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _short(e: Exception) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:199] + "…"


def _count(value: float) -> int:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"a counter has the value {value}")
    return int(value)


def _since(base: Counters | None, now: Counters) -> Counters:
    """The pod's requests since `base`, or all of them when it restarted after `base`."""
    if base is None or restarted(base, now):
        return now
    base_at = _at(base.buckets)
    return Counters(
        now.requests - base.requests,
        now.errors - base.errors,
        tuple((le, count - base_at(le)) for le, count in now.buckets),
        now.mismatches - base.mismatches,
        now.dropped - base.dropped,
    )


def _merge(parts: Iterable[Buckets]) -> Buckets:
    """Cumulative buckets summed over series. Series of one layout (the runtime has one) sum
    exactly; on differing layouts each series counts, at a bound it lacks, what its highest bound
    below holds (never more than the truth)."""
    items = [p for p in parts if p]
    bounds = sorted({le for p in items for le, _ in p})
    lookups = [_at(p) for p in items]
    merged: list[tuple[float, int]] = []
    running = 0
    for le in bounds:
        running = max(running, sum(at(le) for at in lookups))  # cumulative: never decreasing
        merged.append((le, running))
    return tuple(merged)


def _at(buckets: Buckets) -> Callable[[float], int]:
    """The cumulative count of a histogram at any bound: that of its highest bound <= le."""
    exact = dict(buckets)

    def at(le: float) -> int:
        found = exact.get(le)
        if found is not None:
            return found
        below = [count for bound, count in buckets if bound <= le]
        return below[-1] if below else 0

    return at
