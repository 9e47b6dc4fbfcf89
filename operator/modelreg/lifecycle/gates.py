"""Promotion gates: every Model gate evaluated against a version's metrics. Pure."""

from __future__ import annotations

import math

from modelreg.api.models import Gate, GateResult


def evaluate(gates: list[Gate], metrics: dict[str, float]) -> list[GateResult]:
    """One result per gate; a missing or non-finite metric fails its gate and says so."""
    results = []
    for gate in gates:
        actual = metrics.get(gate.metric)
        if actual is None:
            results.append(
                GateResult(
                    metric=gate.metric,
                    min=gate.min,
                    max=gate.max,
                    actual=None,
                    passed=False,
                    message=f"metric {gate.metric!r} is missing from spec.metrics",
                )
            )
            continue
        problems = []
        if not math.isfinite(actual):
            problems.append(f"{gate.metric}={actual} is not a finite number")
        if gate.min is not None and not actual >= gate.min:
            problems.append(f"{gate.metric}={actual:g} is below the minimum {gate.min:g}")
        if gate.max is not None and not actual <= gate.max:
            problems.append(f"{gate.metric}={actual:g} is above the maximum {gate.max:g}")
        results.append(
            GateResult(
                metric=gate.metric,
                min=gate.min,
                max=gate.max,
                actual=actual if math.isfinite(actual) else None,
                passed=not problems,
                message="; ".join(problems),
            )
        )
    return results


def summary(results: list[GateResult]) -> str:
    failed = [r.message for r in results if not r.passed]
    if failed:
        return "gates failed: " + "; ".join(failed)
    if not results:
        return "the Model defines no promotion gates"
    return f"all {len(results)} gates passed"
