"""What the pages show, derived from Models and ModelVersions: pure functions, no HTML.

Called by `modelreg.ui.pages` (to render) and `modelreg.ui.server` (the live JSON), so a cell
rendered in the page and the same cell refreshed by the browser always come from one function
(`live_cells`). Nothing here decides policy: gate verdicts come from `modelreg.lifecycle.gates`
(the rule's one home) and stages and phases are the operator's, read from status.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from modelreg.api.models import (
    STAGE_CHANGED_BY,
    STAGE_CHANGED_TO,
    Condition,
    Gate,
    GateResult,
    Model,
    ModelVersion,
    Phase,
    Stage,
)
from modelreg.lifecycle import gates as gate_rules

# The colour class of each phase; the word is always shown too (colour is never the only cue).
_PHASE_STATE = {
    Phase.SERVING: "ok",
    Phase.READY: "ok",
    Phase.PENDING: "busy",
    Phase.VERIFYING: "busy",
    Phase.ROLLING: "busy",
    Phase.BLOCKED: "bad",
    Phase.FAILED: "bad",
    Phase.SUPERSEDED: "muted",
    Phase.ARCHIVED: "muted",
}
_ASKING = (Stage.STAGING, Stage.PRODUCTION)
# Metrics where less is better, when no gate says which way (a `max` gate means lower is better).
_LOWER_IS_BETTER = ("latency", "loss", "error", "mse", "rmse", "mae", "time", "size", "bytes")


@dataclass(frozen=True)
class Shown:
    """A cell's text and its state class (ok, busy, bad, muted, none)."""

    text: str
    state: str = "none"


def phase(mv: ModelVersion) -> Shown:
    p = mv.status.phase
    if p is None:
        return Shown("Pending", "busy") if mv.status.observed_generation is None else Shown("—")
    return Shown(p.value, _PHASE_STATE.get(p, "none"))


def stage(mv: ModelVersion) -> Shown:
    """The stage held, and the one asked for when it differs ("None, asked Production")."""
    held = mv.status.stage.value if mv.status.stage is not None else "None"
    if mv.spec.stage.value != held:
        return Shown(f"{held}, asked {mv.spec.stage.value}", "busy")
    return Shown(held, "ok" if mv.status.stage is Stage.PRODUCTION else "none")


def condition(conditions: Iterable[Condition], kind: str) -> Condition | None:
    return next((c for c in conditions if c.type == kind), None)


def ready(m: Model) -> Shown:
    c = condition(m.status.conditions, "Ready")
    if c is None:
        return Shown("Unknown")
    if c.status == "True":
        return Shown("Ready", "ok")
    return Shown(f"Not ready: {c.reason}" if c.reason else "Not ready", "bad")


def latest(m: Model, versions: Sequence[ModelVersion]) -> int | None:
    mine = [mv.spec.version for mv in versions if mv.spec.model == m.metadata.name]
    known = [*mine, *([m.status.latest_version] if m.status.latest_version else [])]
    return max(known) if known else None


def approved_by(mv: ModelVersion) -> str | None:
    """Who last asked for Staging or Production (stamped by the API server's audit policy)."""
    for h in reversed(mv.status.history):
        if h.by and (h.requested or h.stage) in _ASKING:
            return h.by
    ann = mv.metadata.annotations
    if ann.get(STAGE_CHANGED_BY) and ann.get(STAGE_CHANGED_TO) in {s.value for s in _ASKING}:
        return ann[STAGE_CHANGED_BY]
    return None


def serving_version(m: Model, versions: Sequence[ModelVersion]) -> ModelVersion | None:
    n = m.status.production_version
    return next((mv for mv in versions if mv.spec.version == n), None) if n else None


def replicas(m: Model, versions: Sequence[ModelVersion]) -> Shown:
    """The serving Deployment's ready replicas out of those asked for, from status."""
    mv = serving_version(m, versions)
    if mv is None or mv.status.serving is None:
        return Shown("not serving", "muted")
    ready_n = mv.status.serving.ready_replicas or 0
    auto = m.spec.serving.autoscaling
    wanted = f"{auto.min_replicas}..{auto.max_replicas}" if auto else str(m.spec.serving.replicas)
    state = "ok" if ready_n > 0 else "bad"
    return Shown(f"{ready_n} ready of {wanted}", state)


def in_play(mv: ModelVersion) -> bool:
    """Holds or asks for Staging or Production: what a reader of the Model looks for first."""
    return mv.spec.stage in _ASKING or mv.status.stage in _ASKING


def ranges(numbers: Sequence[int]) -> str:
    """`v1-v3, v5` for [1, 2, 3, 5]: 200 versions stay one short line."""
    out: list[str] = []
    run: list[int] = []
    for n in sorted(numbers):
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            out.append(_run(run))
        run = [n]
    if run:
        out.append(_run(run))
    return ", ".join(out)


def _run(run: list[int]) -> str:
    if len(run) == 1:
        return f"v{run[0]}"
    if len(run) == 2:
        return f"v{run[0]}, v{run[1]}"
    return f"v{run[0]}-v{run[-1]}"


# -- gates ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateRow:
    gate: Gate
    results: list[tuple[int, GateResult]]  # (version, verdict), every version in order

    @property
    def passing(self) -> list[int]:
        return [n for n, r in self.results if r.passed]


def gate_text(g: Gate | GateResult) -> str:
    parts = [
        f">= {g.min:g}" if g.min is not None else "",
        f"<= {g.max:g}" if g.max is not None else "",
    ]
    return f"{g.metric} {' and '.join(p for p in parts if p)}".strip()


def gate_rows(m: Model, versions: Sequence[ModelVersion]) -> list[GateRow]:
    gates = list(m.spec.promotion.gates)
    verdicts = {
        mv.spec.version: gate_rules.evaluate(gates, dict(mv.spec.metrics)) for mv in versions
    }
    return [
        GateRow(g, [(mv.spec.version, verdicts[mv.spec.version][i]) for mv in versions])
        for i, g in enumerate(gates)
    ]


def version_gates(m: Model, mv: ModelVersion) -> list[GateResult]:
    """The operator's verdicts when it has reported them, else the gates evaluated now."""
    if mv.status.gates:
        return list(mv.status.gates)
    return gate_rules.evaluate(list(m.spec.promotion.gates), dict(mv.spec.metrics))


def passes_all(m: Model, mv: ModelVersion) -> bool:
    return all(
        r.passed for r in gate_rules.evaluate(list(m.spec.promotion.gates), dict(mv.spec.metrics))
    )


# -- metrics ----------------------------------------------------------------------------------


def higher_is_better(metric: str, gates: Sequence[Gate] = ()) -> bool:
    for g in gates:
        if g.metric == metric:
            if g.min is not None and g.max is None:
                return True
            if g.max is not None and g.min is None:
                return False
    name = metric.lower()
    return not any(word in name for word in _LOWER_IS_BETTER)


def metric_names(versions: Sequence[ModelVersion], gates: Sequence[Gate] = ()) -> list[str]:
    """Every metric of these versions: the gated ones first, then alphabetical."""
    all_names = {m for mv in versions for m in mv.spec.metrics}
    first = [g.metric for g in gates if g.metric in all_names]
    first = list(dict.fromkeys(first))
    return first + sorted(all_names - set(first))


def best(values: Mapping[int, float | None], higher: bool) -> set[int]:
    """The versions holding the best value (ties all win); none when fewer than two values."""
    known = {n: v for n, v in values.items() if v is not None and math.isfinite(v)}
    if len(known) < 2:
        return set()
    target = max(known.values()) if higher else min(known.values())
    if all(math.isclose(v, target) for v in known.values()):
        return set()  # all equal: nothing stands out
    return {n for n, v in known.items() if math.isclose(v, target)}


def delta(value: float | None, first: float | None) -> str:
    """The difference from the first version compared: "+0.02 (+2.4%)"."""
    if value is None or first is None:
        return ""
    d = value - first
    if d == 0:
        return "±0"
    pct = f" ({d / abs(first):+.1%})" if first else ""
    return f"{d:+.4g}{pct}"


# -- history ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Moment:
    """One entry of the timeline: a version's stage change, who asked, and why."""

    at: str
    version: int
    from_stage: Stage | None
    stage: Stage
    phase: Phase | None
    by: str | None
    requested: Stage | None
    reason: str
    message: str


def timeline(versions: Sequence[ModelVersion], limit: int = 200) -> list[Moment]:
    """Every version's history merged, newest first (at most `limit` entries)."""
    out = [
        Moment(
            at=h.at,
            version=mv.spec.version,
            from_stage=mv.status.history[i - 1].stage if i else None,
            stage=h.stage,
            phase=h.phase,
            by=h.by,
            requested=h.requested,
            reason=h.reason,
            message=h.message,
        )
        for mv in versions
        for i, h in enumerate(mv.status.history)
    ]
    out.sort(key=lambda x: (x.at, x.version), reverse=True)
    return out[:limit]


# -- the list page's search and filters -----------------------------------------------------


def matches(m: Model, versions: Sequence[ModelVersion], q: str, stage_: str, ready_: str) -> bool:
    """The models list's filters: text in name, description, owner or tags; a version holding
    `stage_`; Ready yes/no."""
    if q:
        hay = [m.metadata.name, m.spec.description, m.spec.owner]
        hay += [f"{k}={v}" for k, v in m.spec.tags.items()]
        if not any(q.lower() in h.lower() for h in hay):
            return False
    if stage_:
        mine = [mv for mv in versions if mv.spec.model == m.metadata.name]
        if not any((mv.status.stage or Stage.NONE).value == stage_ for mv in mine):
            return False
    if ready_:
        is_ready = ready(m).state == "ok"
        if is_ready != (ready_ == "yes"):
            return False
    return True


# -- live cells -------------------------------------------------------------------------------


def version_key(model: str, n: int, what: str) -> str:
    return f"{model}/v{n}/{what}"


def model_key(model: str, what: str) -> str:
    return f"{model}/{what}"


def live_cells(models: Sequence[Model], versions: Sequence[ModelVersion]) -> dict[str, Shown]:
    """Every cell the browser refreshes, by key: the same text the page rendered."""
    cells: dict[str, Shown] = {}
    for m in models:
        name = m.metadata.name
        mine = [mv for mv in versions if mv.spec.model == name]
        prod = m.status.production_version
        cells[model_key(name, "production")] = Shown(
            f"v{prod}" if prod else "—", "ok" if prod else "none"
        )
        cells[model_key(name, "ready")] = ready(m)
        cells[model_key(name, "endpoint")] = Shown(m.status.endpoint or "—")
        cells[model_key(name, "replicas")] = replicas(m, mine)
        n = latest(m, versions)
        cells[model_key(name, "latest")] = Shown(f"v{n}" if n else "—")
    for mv in versions:
        name, n = mv.spec.model, mv.spec.version
        cells[version_key(name, n, "phase")] = phase(mv)
        cells[version_key(name, n, "stage")] = stage(mv)
        ready_n = mv.status.serving.ready_replicas if mv.status.serving else None
        cells[version_key(name, n, "replicas")] = Shown(
            str(ready_n) if ready_n is not None else "—", "ok" if ready_n else "none"
        )
    return cells
