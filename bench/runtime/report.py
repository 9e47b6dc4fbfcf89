"""The `runtime` section of bench/RESULTS.md, computed from the measured points.

Called by `bench.runtime.bench` with every `Point` of one run. For each case: a table of every
server configuration at each concurrency (median over rounds), then ratio rows of each modelreg
configuration against the best peer at that concurrency (the peer configuration with the highest
throughput there, MLServer or KServe, whichever it is); then the verdicts: one line per target,
comparing modelreg's defaults row with the best peer; one per case saying where batching pays off
(defaults ÷ batching off at each concurrency); and one per extra modelreg row against the
defaults. Then the per-window detail. Nothing in the section is written by hand.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench.runtime.cases import Case
from bench.runtime.measure import Point
from bench.runtime.servers import MODELREG

DEFAULTS = "defaults"  # no MODELREG_* override: batching at the format's default
BATCHING_OFF = "batching off (BATCH_MAX_SIZE=1)"
PAYS_OFF = 1.05  # defaults ÷ batching off throughput at or above this: batching pays off


def large_batch_config(rows: int) -> str:
    return f"BATCH_MAX_SIZE={rows}"


@dataclass(frozen=True)
class Target:
    case: str
    min_throughput_ratio: float
    p99_no_worse: bool
    text: str


TARGETS = (
    Target("small", 1.5, True, ">= 1.5x the best peer's throughput at no worse p99"),
    Target("xgboost", 1.0, False, ">= the best peer's throughput (parity)"),
)


@dataclass(frozen=True)
class Row:
    family: str
    config: str
    concurrency: int
    rps: float
    p50: float
    p99: float
    cpu_ms: float
    refused: int  # 503s, summed over rounds

    @property
    def label(self) -> str:
        return f"{self.family} {self.config}"


def aggregate(points: Sequence[Point]) -> list[Row]:
    """Median over rounds of each (case-local) configuration and concurrency, in run order."""
    keys = list(dict.fromkeys((p.family, p.config, p.concurrency) for p in points))
    rows = []
    for family, config, conc in keys:
        mine = [p for p in points if (p.family, p.config, p.concurrency) == (family, config, conc)]
        rows.append(
            Row(
                family=family,
                config=config,
                concurrency=conc,
                rps=statistics.median(p.rps for p in mine),
                p50=statistics.median(p.p50_ms for p in mine),
                p99=statistics.median(p.p99_ms for p in mine),
                cpu_ms=statistics.median(p.cpu_ms_per_request for p in mine),
                refused=sum(p.refused for p in mine),
            )
        )
    return rows


def best_peer(rows: Sequence[Row], conc: int) -> Row | None:
    peers = [r for r in rows if r.family != MODELREG and r.concurrency == conc]
    return max(peers, key=lambda r: r.rps) if peers else None


def ours(rows: Sequence[Row], conc: int, config: str = DEFAULTS) -> Row | None:
    return next(
        (r for r in rows if r.family == MODELREG and r.config == config and r.concurrency == conc),
        None,
    )


def _x(value: float) -> str:
    return f"{value:.2f}x"


def case_table(rows: Sequence[Row]) -> list[str]:
    # A column for 503s only when some server refused requests (modelreg sheds load beyond
    # MODELREG_WORKERS + MODELREG_MAX_QUEUE admitted requests, or MODELREG_MAX_QUEUE_BYTES).
    shed = any(r.refused for r in rows)
    lines = [
        "| server | configuration | conc | req/s | p50 (ms) | p99 (ms) | CPU (ms/req) |"
        + (" refused (503) |" if shed else ""),
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if shed else ""),
    ]
    concs = sorted({r.concurrency for r in rows})
    for conc in concs:
        at = [r for r in rows if r.concurrency == conc]
        for r in at:
            lines.append(
                f"| {r.family} | {r.config} | {conc} | {r.rps:.0f} | {r.p50:.2f} | "
                f"{r.p99:.2f} | {r.cpu_ms:.3f} |" + (f" {r.refused} |" if shed else "")
            )
        best = best_peer(rows, conc)
        if best is None:
            continue
        for r in at:
            if r.family != MODELREG:
                continue
            lines.append(
                f"| **modelreg ÷ best peer** | {r.config} ÷ {best.label} | {conc} | "
                f"**{_x(r.rps / best.rps)}** | {_x(r.p50 / best.p50)} | "
                f"{_x(r.p99 / best.p99)} | {_x(r.cpu_ms / best.cpu_ms)} |" + (" |" if shed else "")
            )
    return lines


def verdict_line(target: Target, rows: Sequence[Row]) -> str:
    parts: list[str] = []
    all_met = True
    for conc in sorted({r.concurrency for r in rows}):
        mine, best = ours(rows, conc), best_peer(rows, conc)
        if mine is None or best is None:
            parts.append(f"c={conc}: not measured")
            all_met = False
            continue
        tput, p99 = mine.rps / best.rps, mine.p99 / best.p99
        misses = []
        if tput < target.min_throughput_ratio:
            misses.append(
                f"throughput {_x(tput)}, missed by {_x(target.min_throughput_ratio - tput)}"
            )
        if target.p99_no_worse and p99 > 1.0:
            misses.append(f"p99 {_x(p99)} the peer's, missed by {p99 - 1:.0%}")
        if mine.refused:
            misses.append(f"{mine.refused} requests refused with 503")
        if misses:
            all_met = False
            parts.append(f"c={conc}: **missed** ({'; '.join(misses)})")
        else:
            parts.append(f"c={conc}: met ({_x(tput)}, p99 {_x(p99)})")
    overall = "met" if all_met else "**missed**"
    return f"- {target.case} ({target.text}, modelreg defaults): {overall}. " + "; ".join(parts)


def payoff_line(case: str, rows: Sequence[Row]) -> str | None:
    """Where batching pays off: modelreg defaults ÷ batching off, per concurrency."""
    parts, pays, costs = [], [], []
    for conc in sorted({r.concurrency for r in rows}):
        on, off = ours(rows, conc), ours(rows, conc, BATCHING_OFF)
        if on is None or off is None:
            continue
        tput = on.rps / off.rps
        parts.append(f"c={conc} {_x(tput)} (p99 {_x(on.p99 / off.p99)})")
        if tput >= PAYS_OFF:
            pays.append(f"c={conc}")
        elif tput <= 1 / PAYS_OFF:
            costs.append(f"c={conc}")
    if not parts:
        return None
    summary = (
        f"pays off at {', '.join(pays)}" if pays else f"pays off nowhere (< {_x(PAYS_OFF)})"
    ) + (f", costs throughput at {', '.join(costs)}" if costs else "")
    return (
        f"- {case}: batching {summary}; modelreg defaults ÷ modelreg {BATCHING_OFF}, throughput: "
        + ", ".join(parts)
    )


def config_line(case: str, rows: Sequence[Row], config: str) -> str:
    """An extra modelreg row against the defaults row, per concurrency."""
    parts = []
    for conc in sorted({r.concurrency for r in rows}):
        mine, base = ours(rows, conc, config), ours(rows, conc)
        if mine is not None and base is not None:
            parts.append(f"c={conc} {_x(mine.rps / base.rps)} (p99 {_x(mine.p99 / base.p99)})")
    return f"- {case}: modelreg {config} ÷ modelreg defaults, throughput: " + ", ".join(parts)


def markdown(
    points: Sequence[Point],
    cases: Sequence[Case],
    *,
    method: Sequence[str],
    notes: Sequence[str],
    rounds: int,
) -> str:
    lines = ["## Model server: modelreg runtime vs MLServer and KServe", "", *method, ""]
    verdicts: list[str] = []
    for case in cases:
        mine = [p for p in points if p.case == case.key]
        if not mine:
            continue
        rows = aggregate(mine)
        lines += [f"### {case.title}", "", case.description + ".", "", *case_table(rows), ""]
        for target in TARGETS:
            if target.case == case.key:
                verdicts.append(verdict_line(target, rows))
        payoff = payoff_line(case.key, rows)
        if payoff is not None:
            verdicts.append(payoff)
        for config in dict.fromkeys(r.config for r in rows if r.family == MODELREG):
            if config not in (DEFAULTS, BATCHING_OFF):
                verdicts.append(config_line(case.key, rows, config))
    loads = [p.load_before for p in points]
    cores = os.cpu_count() or 1
    lines += [
        "### Verdicts",
        "",
        *verdicts,
        "",
        f"Load average (1 min) before the measured windows: {min(loads):.2f} to "
        f"{max(loads):.2f} on {cores} cores"
        + (f"; medians over {rounds} rounds." if rounds > 1 else "."),
    ]
    # The benchmark itself keeps about `cores` busy (a server and the client under load).
    if max(loads) > 1.5 * cores:
        lines.append(
            f"**The machine was busy (load average up to {max(loads):.1f} on {cores} cores, of "
            f"which this benchmark accounts for about {cores}): these figures are noisy; rerun "
            "on a quiet machine before relying on the ratios.**"
        )
    lines += [
        "",
        *(f"- {note}" for note in notes),
        "",
        "Per measured window:",
        "",
        "| case | server | configuration | conc | req/s | p50 | p90 | p99 | max (ms) | requests "
        "| refused (503) | server CPU | client CPU (ms/req) | server peak RSS (MiB) "
        "| load avg before |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: |",
    ]
    for p in points:
        lines.append(
            f"| {p.case} | {p.family} | {p.config} | {p.concurrency} | {p.rps:.0f} | "
            f"{p.p50_ms:.2f} | {p.p90_ms:.2f} | {p.p99_ms:.2f} | {p.max_ms:.1f} | {p.ok} | "
            f"{p.refused} | "
            f"{p.cpu_ms_per_request:.3f} | {p.client_cpu_ms_per_request:.3f} | "
            f"{p.peak_rss_mib:.0f} | {p.load_before:.2f} |"
        )
    return "\n".join(lines)
