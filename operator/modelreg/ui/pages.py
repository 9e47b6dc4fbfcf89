"""The UI's main pages: Models, one Model, Compare. Pure: data -> HTML.

Called by `modelreg.ui.server` with objects the SDK read and a `Frame` (namespace, identity, and
the "now" ages are computed from, injected so screenshots are stable). Text comes from
`modelreg.ui.present` and the CLI's own formatting (`modelreg.cli.output`), so the UI and
`modelreg get` say the same thing the same way. Cells the browser refreshes carry
`data-live="<key>"` (`present.live_cells`, static/live.js). The version page is
`modelreg.ui.version_page`, the error pages `modelreg.ui.error_pages`.
"""

from __future__ import annotations

from collections.abc import Sequence

from modelreg.api.models import Gate, Model, ModelVersion, Stage
from modelreg.cli.output import number
from modelreg.lifecycle import aliases as alias_rules
from modelreg.ui import present
from modelreg.ui.layout import (
    Cell,
    Safe,
    attrs,
    dl,
    esc,
    join,
    link,
    page,
    path,
    section,
    table,
    tag,
)
from modelreg.ui.parts import (
    MODELS_HREF,
    Frame,
    Live,
    metric_charts,
    model_href,
    tag_list,
    timeline,
    version_href,
    when,
)

# -- Models -------------------------------------------------------------------------------------


def _select(name: str, label: str, options: Sequence[tuple[str, str]], chosen: str) -> Safe:
    opts = "".join(
        tag("option", text, value=value, selected=value == chosen) for value, text in options
    )
    return Safe(
        f'<div class="field"><label for="f-{name}">{esc(label)}</label>'
        f'<select id="f-{name}" name="{name}">{opts}</select></div>'
    )


def models_page(
    models: Sequence[Model],
    versions: Sequence[ModelVersion],
    frame: Frame,
    *,
    q: str = "",
    stage: str = "",
    ready: str = "",
) -> Safe:
    stages = [("", "any"), *((s.value, s.value) for s in Stage)]
    form = Safe(
        '<form class="filters" method="get" action="/" role="search">'
        f'<div class="field"><label for="f-q">Search</label>'
        f'<input id="f-q" name="q" type="search"{attrs({"value": q})} '
        'placeholder="name, owner, tag"></div>'
        + _select("stage", "A version in stage", stages, stage)
        + _select("ready", "Ready", [("", "any"), ("yes", "yes"), ("no", "no")], ready)
        + '<div class="field"><button type="submit">Filter</button></div>'
        + (f'<div class="field">{link("/", "Clear")}</div>' if q or stage or ready else "")
        + "</form>"
    )
    shown = [m for m in models if present.matches(m, versions, q, stage, ready)]
    live = Live(present.live_cells(shown, versions))
    rows = []
    for m in shown:
        name = m.metadata.name
        rows.append(
            [
                Cell(link(model_href(name), name), header=True),
                live.cell(present.model_key(name, "production")),
                live.text(present.model_key(name, "latest")),
                live.cell(present.model_key(name, "ready")),
                live.text(present.model_key(name, "endpoint"), cls="mono"),
                tag_list(m.spec.tags),
                m.spec.owner or None,
            ]
        )
    count = (
        f"{len(shown)} of {len(models)} models"
        if len(shown) != len(models)
        else f"{len(models)} models"
    )
    body = form + table(
        f"Models in namespace {frame.namespace}: {count}",
        ["Model", "Production", "Latest", "Ready", "Endpoint", "Tags", "Owner"],
        rows,
        empty="No models match." if models else "No models in this namespace.",
    )
    return page(
        "Models",
        body,
        namespace=frame.namespace,
        identity=frame.identity,
        live_url="/api/live",
    )


# -- Model --------------------------------------------------------------------------------------


SHOWN_VERSIONS = 50


def _versions_table(
    m: Model, versions: Sequence[ModelVersion], frame: Frame, *, show_all: bool
) -> Safe:
    """The newest versions (all of them with `show_all`), and always those holding or asking
    for Staging or Production, so a promotion under way is on the page."""
    name = m.metadata.name
    gates = list(m.spec.promotion.gates)
    metrics = present.metric_names(versions, gates)[:3]
    live = Live(present.live_cells([m], versions))
    newest = {mv.spec.version for mv in versions[-SHOWN_VERSIONS:]}
    shown = [mv for mv in versions if show_all or mv.spec.version in newest or present.in_play(mv)]
    rows = []
    for mv in reversed(shown):
        n = mv.spec.version
        rows.append(
            [
                Cell(link(version_href(name, n), f"v{n}"), header=True),
                live.cell(present.version_key(name, n, "stage")),
                live.cell(present.version_key(name, n, "phase")),
                *[Cell(number(mv.spec.metrics.get(x)), cls="num") for x in metrics],
                when(mv.metadata.creation_timestamp, frame),
                present.approved_by(mv),
            ]
        )
    more = Safe("")
    if len(shown) < len(versions):
        more = tag(
            "p",
            link(
                f"{model_href(name)}?versions=all#versions-title",
                f"Show all {len(versions)} versions",
            ),
        )
    elif len(versions) > SHOWN_VERSIONS:
        more = tag(
            "p", link(f"{model_href(name)}#versions-title", f"Show the newest {SHOWN_VERSIONS}")
        )
    caption = f"Versions of {name}, newest first"
    if len(shown) < len(versions):
        caption += f" ({len(shown)} of {len(versions)})"
    return (
        table(
            caption,
            ["Version", "Stage", "Phase", *metrics, "Age", "Approved by"],
            rows,
            empty="No versions yet.",
        )
        + more
        + _compare_form(m, versions)
    )


def _compare_form(m: Model, versions: Sequence[ModelVersion]) -> Safe:
    if len(versions) < 2:
        return Safe("")
    recent = [mv.spec.version for mv in versions][-12:]
    checks = "".join(
        f'<label class="check"><input type="checkbox" name="v" value="{n}"'
        f"{' checked' if n in recent[-2:] else ''}> v{n}</label>"
        for n in reversed(recent)
    )
    return Safe(
        f'<form class="compare" method="get" action="{path("models", m.metadata.name, "compare")}">'
        f"<fieldset><legend>Compare versions</legend>{checks}"
        '<button type="submit">Compare</button></fieldset></form>'
    )


def _gates_section(m: Model, versions: Sequence[ModelVersion]) -> Safe:
    rows_ = present.gate_rows(m, versions)
    if not rows_:
        return tag(
            "p", "The Model defines no promotion gates: every verified version may be promoted."
        )
    rows = []
    for row in rows_:
        passing = row.passing
        failing = [n for n, r in row.results if not r.passed]
        rows.append(
            [
                present.gate_text(row.gate),
                present.ranges(passing) or None,
                present.ranges(failing) or None,
            ]
        )
    everyone = [mv.spec.version for mv in versions if present.passes_all(m, mv)]
    summary = tag(
        "p",
        f"Versions passing every gate: {present.ranges(everyone) or 'none'}.",
    )
    return (
        table(
            "Promotion gates and the versions that pass each", ["Gate", "Passing", "Failing"], rows
        )
        + summary
    )


def _aliases(m: Model, versions: Sequence[ModelVersion]) -> Safe:
    if not m.spec.aliases:
        return tag("p", "No aliases.")
    resolved = alias_rules.resolve(m.metadata.name, m.spec.aliases, versions)
    rows = [
        [
            f"@{alias}",
            link(version_href(m.metadata.name, n), f"v{n}"),
            resolved.problems.get(alias) or "resolves",
        ]
        for alias, n in sorted(m.spec.aliases.items())
    ]
    return table("Aliases", ["Alias", "Version", "Status"], rows, caption_hidden=True)


def model_page(
    m: Model, versions: Sequence[ModelVersion], frame: Frame, *, show_all: bool = False
) -> Safe:
    name = m.metadata.name
    live = Live(present.live_cells([m], versions))
    serving = present.serving_version(m, versions)
    status = serving.status.serving if serving else None
    facts = dl(
        [
            ("Description", m.spec.description or None),
            ("Owner", m.spec.owner or None),
            ("Tags", tag_list(m.spec.tags)),
            ("Production", live.badge(present.model_key(name, "production"))),
            ("Ready", live.badge(present.model_key(name, "ready"))),
            ("Endpoint", live.text(present.model_key(name, "endpoint"), cls="mono")),
            ("Storage", m.spec.storage.uri if m.spec.storage else None),
            ("Rollout", m.spec.rollout.strategy.value),
        ]
    )
    serving_link = (
        link(version_href(name, serving.spec.version), f"v{serving.spec.version}")
        if serving
        else None
    )
    serving_block = Safe(
        '<div class="serving" id="serving">'
        + dl(
            [
                ("Serving version", serving_link),
                ("Deployment", status.deployment if status else None),
                ("Ready replicas", live.badge(present.model_key(name, "replicas"))),
                ("URL", status.url if status else None),
            ]
        )
        + "</div>"
    )
    body = (
        facts
        + section("Serving", serving_block, ident="serving-h")
        + section(
            "Versions", _versions_table(m, versions, frame, show_all=show_all), ident="versions"
        )
        + section(
            "Metrics across versions",
            metric_charts(m, versions, bars=False, best_of=True),
            ident="metrics",
        )
        + section("Promotion gates", _gates_section(m, versions), ident="gates")
        + section("Aliases", _aliases(m, versions), ident="aliases")
        + section("History", timeline(versions, frame), ident="history")
    )
    return page(
        name,
        body,
        crumbs=[(MODELS_HREF, "Models")],
        namespace=frame.namespace,
        identity=frame.identity,
        live_url=path("api", "live", "models", name),
    )


# -- Compare ------------------------------------------------------------------------------------


def _metric_row(
    metric: str, versions: Sequence[ModelVersion], gates: Sequence[Gate]
) -> list[object]:
    """One metric across the compared versions: the best marked, deltas against the first."""
    values = {mv.spec.version: mv.spec.metrics.get(metric) for mv in versions}
    higher = present.higher_is_better(metric, gates)
    winners = present.best(values, higher)
    way = "higher" if higher else "lower"
    row: list[object] = [
        Cell(Safe(f'{esc(metric)} <span class="hint">({way} is better)</span>'), header=True)
    ]
    first = versions[0].spec.metrics.get(metric)
    for i, mv in enumerate(versions):
        v = values[mv.spec.version]
        d = present.delta(v, first) if i else ""
        won = mv.spec.version in winners
        text = Safe(
            f"{esc(number(v))}"
            + (f' <span class="delta">{esc(d)}</span>' if d else "")
            + (' <span class="best-mark">best</span>' if won else "")
        )
        row.append(Cell(text, cls="num best" if won else "num"))
    return row


def compare_page(m: Model, versions: Sequence[ModelVersion], frame: Frame) -> Safe:
    name = m.metadata.name
    gates = list(m.spec.promotion.gates)
    live = Live(present.live_cells([m], versions))
    heads = [f"v{mv.spec.version}" for mv in versions]
    first = versions[0]
    rows: list[list[object]] = [
        [
            "Stage",
            *[live.cell(present.version_key(name, mv.spec.version, "stage")) for mv in versions],
        ],
        [
            "Phase",
            *[live.cell(present.version_key(name, mv.spec.version, "phase")) for mv in versions],
        ],
        ["Passes every gate", *["yes" if present.passes_all(m, mv) else "no" for mv in versions]],
    ]
    rows += [
        _metric_row(metric, versions, gates) for metric in present.metric_names(versions, gates)
    ]
    rows.append(["Framework", *[mv.spec.framework or None for mv in versions]])
    rows.append(["Created", *[when(mv.metadata.creation_timestamp, frame) for mv in versions]])
    rows.append(["Approved by", *[present.approved_by(mv) for mv in versions]])
    for param in sorted({p for mv in versions for p in mv.spec.params}):
        vals = [mv.spec.params.get(param) for mv in versions]
        differs = len(set(vals)) > 1
        rows.append(
            [
                Cell(f"param {param}", header=True),
                *[Cell(v, cls="differs" if differs else None) for v in vals],
            ]
        )
    links = join(
        (link(version_href(name, mv.spec.version), f"v{mv.spec.version}") for mv in versions), ", "
    )
    body = (
        tag(
            "p",
            Safe(
                f"Versions {links}; differences are against v{first.spec.version}; the best "
                "value of each metric is marked."
            ),
        )
        + table(f"Versions of {name} side by side", ["", *heads], rows, cls="compare-table")
        + section("Charts", metric_charts(m, versions, bars=True, best_of=True), ident="charts")
    )
    return page(
        f"Compare {name} " + ", ".join(heads),
        body,
        crumbs=[(MODELS_HREF, "Models"), (model_href(name), name)],
        namespace=frame.namespace,
        identity=frame.identity,
        live_url=path("api", "live", "models", name),
    )
