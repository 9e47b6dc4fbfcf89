"""Parts every page shares: the frame around it, live cells, links, ages, charts, history.

Called by `modelreg.ui.pages`, `modelreg.ui.version_page` and `modelreg.ui.error_pages`. Pure:
data in, HTML out (see `modelreg.ui.layout` for the escaping rules).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from modelreg.api.models import Model, ModelVersion
from modelreg.cli.output import age
from modelreg.ui import charts, present
from modelreg.ui.layout import Cell, Safe, badge, esc, join, path, tag
from modelreg.ui.present import Shown

MODELS_HREF = "/"


@dataclass(frozen=True)
class Frame:
    """What every page shows around its content."""

    namespace: str
    identity: str
    now: datetime


class Live:
    """The cells of a page that static/live.js refreshes: each carries `data-live="<key>"`."""

    def __init__(self, cells: dict[str, Shown]) -> None:
        self.cells = cells

    def badge(self, key: str) -> Safe:
        shown = self.cells[key]
        return tag("span", badge(shown.text, shown.state), data_live=key)

    def text(self, key: str, cls: str | None = None) -> Safe:
        return tag("span", self.cells[key].text, data_live=key, cls=cls)

    def cell(self, key: str) -> Cell:
        shown = self.cells[key]
        return Cell(badge(shown.text, shown.state), data_live=key)


def when(ts: str | None, frame: Frame) -> Safe:
    """An age with the exact time as its machine-readable value and tooltip."""
    if not ts:
        return esc(None)
    return tag("time", f"{age(ts, frame.now)} ago", datetime=ts, title=ts)


def model_href(name: str) -> str:
    return path("models", name)


def version_href(name: str, n: int) -> str:
    return path("models", name, "versions", n)


def tag_list(tags: dict[str, str]) -> Safe:
    if not tags:
        return esc(None)
    return join((tag("span", f"{k}={v}", cls="tag") for k, v in sorted(tags.items())), " ")


def metric_charts(m: Model, versions: Sequence[ModelVersion], *, bars: bool, best_of: bool) -> Safe:
    gates = list(m.spec.promotion.gates)
    out = []
    for metric in present.metric_names(versions, gates)[:6]:
        values = {mv.spec.version: mv.spec.metrics.get(metric) for mv in versions}
        winners = (
            present.best(values, present.higher_is_better(metric, gates)) if best_of else set()
        )
        points = [charts.Point(f"v{n}", v, n in winners) for n, v in values.items()]
        bounds = [b for g in gates if g.metric == metric for b in (g.min, g.max) if b is not None]
        svg = (charts.bar_chart if bars else charts.line_chart)(metric, points, bounds)
        if svg:
            out.append(
                f'<figure class="chart-box">{svg}<figcaption>{esc(metric)}</figcaption></figure>'
            )
    if not out:
        return tag("p", "No metrics recorded.")
    return Safe(f'<div class="charts">{"".join(out)}</div>')


def timeline(versions: Sequence[ModelVersion], frame: Frame) -> Safe:
    moments = present.timeline(versions, limit=50)
    if not moments:
        return tag("p", "No stage changes yet.")
    items = []
    for x in moments:
        change = f"{x.from_stage.value} → {x.stage.value}" if x.from_stage else f"→ {x.stage.value}"
        if x.requested is not None and x.requested is not x.stage:
            change += f" (asked {x.requested.value})"
        who = x.by or "the operator"
        why = x.reason or x.message
        items.append(
            f"<li><p>{when(x.at, frame)} · <strong>v{x.version}</strong> {esc(change)}"
            f"{' · ' + esc(x.phase.value) if x.phase else ''} · by {esc(who)}</p>"
            + (f'<p class="why">{esc(why)}</p>' if why else "")
            + "</li>"
        )
    return Safe(f'<ol class="timeline">{"".join(items)}</ol>')
