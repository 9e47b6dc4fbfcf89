"""Prometheus metrics of the operator, served by `prometheus_client` on settings.metrics_port.

Updated by the reconciler and the verifier; read by whoever scrapes the operator.
"""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter(
    "modelreg_reconciles_total", "Reconcile passes by kind and result.", ["kind", "result"]
)
RECONCILE_SECONDS = Histogram(
    "modelreg_reconcile_duration_seconds",
    "Duration of one reconcile pass.",
    ["kind"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
VERSIONS_BY_PHASE = Gauge("modelreg_versions", "ModelVersions by phase.", ["phase"])
PROMOTION_SECONDS = Histogram(
    "modelreg_promotion_duration_seconds",
    "From a version starting to roll out to it serving production traffic.",
    buckets=(0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 120, 300, 600),
)
VERIFICATIONS = Counter(
    "modelreg_artifact_verifications_total", "Artifact checks by verdict.", ["verdict"]
)
VERIFICATION_SECONDS = Histogram(
    "modelreg_artifact_verification_duration_seconds",
    "Duration of one artifact check (streaming sha256).",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300),
)

LEADER = Gauge(
    "modelreg_leader", "1 while this replica holds the leader Lease and reconciles, else 0."
)
LEADER_TRANSITIONS = Counter(
    "modelreg_leader_acquisitions_total", "Times this replica took the leader Lease."
)

_totals: Tally[str] = Tally()


def observe_verification(verdict: str, seconds: float) -> None:
    VERIFICATIONS.labels(verdict=verdict).inc()
    VERIFICATION_SECONDS.observe(seconds)


def set_phases(
    key: tuple[str, str], phases: dict[str, str], known: dict[tuple[str, str], dict[str, str]]
) -> None:
    """Replace one Model's contribution to the versions-by-phase gauge."""
    for phase in known.get(key, {}).values():
        _totals[phase] -= 1
    for phase in phases.values():
        _totals[phase] += 1
    if phases:
        known[key] = phases
    else:
        known.pop(key, None)
    for phase, count in _totals.items():
        VERSIONS_BY_PHASE.labels(phase=phase).set(count)


def serve(port: int, host: str) -> None:
    if port:
        start_http_server(port, addr=host)
