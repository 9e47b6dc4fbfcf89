"""The page of one ModelVersion: artifact, metrics, gates, params, lineage, environment and
audit, conditions, history and Events. Pure: data -> HTML.

Called by `modelreg.ui.server`; shares its frame and parts with `modelreg.ui.pages`.
"""

from __future__ import annotations

from collections.abc import Sequence

from modelreg.api.models import Model, ModelVersion
from modelreg.cli.output import human_bytes, number
from modelreg.sdk.client import EventRecord
from modelreg.ui import present
from modelreg.ui.layout import Cell, Safe, badge, dl, esc, join, page, path, section, table, tag
from modelreg.ui.parts import MODELS_HREF, Frame, Live, model_href, timeline, when


def _mapping(caption: str, values: dict[str, str], empty: str) -> Safe:
    return table(
        caption, ["Key", "Value"], sorted(values.items()), empty=empty, caption_hidden=True
    )


def _environment(mv: ModelVersion) -> Safe:
    env = mv.spec.environment
    parts = []
    if env is None:
        parts.append(tag("p", "No training environment recorded."))
    else:
        parts.append(
            dl(
                [
                    ("Python", env.python),
                    ("Image", env.image),
                    ("Packages", f"{len(env.packages)} pinned"),
                ]
            )
        )
        if env.packages:
            items = "".join(f"<li>{esc(p)}</li>" for p in env.packages[:100])
            more = (
                f"<li>… and {len(env.packages) - 100} more</li>" if len(env.packages) > 100 else ""
            )
            parts.append(
                Safe(
                    "<details><summary>Packages</summary>"
                    f'<ul class="packages">{items}{more}</ul></details>'
                )
            )
    a = mv.status.audit
    if a is not None:
        parts.append(
            tag(
                "p",
                f"Audit: {a.findings_total} known vulnerabilities in {a.packages} packages "
                f"(database {a.database}, {a.advisories if a.advisories is not None else '?'} advisories).",
            )
        )
        rows = [
            [
                f.id,
                f"{f.package} {f.version}",
                badge(
                    f.severity.value,
                    "bad" if f.severity.value in ("HIGH", "CRITICAL", "UNKNOWN") else "busy",
                ),
                f.fixed,
                "yes" if f.allowed else "no",
                f.summary,
            ]
            for f in a.findings
        ]
        parts.append(
            table(
                "Audit findings",
                ["Advisory", "Package", "Severity", "Fixed in", "Allowed", "Summary"],
                rows,
                empty="No findings.",
            )
        )
    return join(parts)


def _events(events: Sequence[EventRecord] | None, frame: Frame, why: str) -> Safe:
    if events is None:
        return tag("p", why or "Events could not be read.", cls="notice")
    rows = [
        [
            badge(e.type, "bad" if e.type == "Warning" else "none"),
            e.reason,
            e.message,
            e.count,
            when(e.last, frame),
            e.source,
        ]
        for e in events
    ]
    return table(
        "Events",
        ["Type", "Reason", "Message", "Count", "Last seen", "From"],
        rows,
        empty="No events.",
        caption_hidden=True,
    )


def version_page(
    m: Model,
    mv: ModelVersion,
    events: Sequence[EventRecord] | None,
    frame: Frame,
    *,
    events_problem: str = "",
) -> Safe:
    name, n = m.metadata.name, mv.spec.version
    live = Live(present.live_cells([m], [mv]))
    art, spec = mv.status.artifact, mv.spec
    verified = None
    if art is not None:
        verified = "yes" if art.verified else f"no{': ' + art.message if art.message else ''}"
    facts = dl(
        [
            ("Stage", live.badge(present.version_key(name, n, "stage"))),
            ("Phase", live.badge(present.version_key(name, n, "phase"))),
            ("Ready replicas", live.text(present.version_key(name, n, "replicas"))),
            ("Created", when(mv.metadata.creation_timestamp, frame)),
            ("Approved by", present.approved_by(mv)),
            ("Framework", spec.framework or None),
            ("Description", spec.description or None),
        ]
    )
    artifact = dl(
        [
            ("URI", tag("span", spec.artifact.uri, cls="mono")),
            ("Format", spec.artifact.format.value),
            ("sha256", tag("span", spec.artifact.sha256, cls="mono")),
            ("Size", human_bytes(art.size_bytes) if art and art.size_bytes is not None else None),
            ("Verified", verified),
            ("Verified at", art.verified_at if art else None),
        ]
    )
    gates = [
        [
            g.metric,
            present.gate_text(g),
            number(g.actual),
            badge("passed" if g.passed else "failed", "ok" if g.passed else "bad"),
            g.message or None,
        ]
        for g in present.version_gates(m, mv)
    ]
    metrics = [[k, Cell(number(v), cls="num")] for k, v in sorted(spec.metrics.items())]
    conditions = [
        [
            c.type,
            badge(
                c.status, "ok" if c.status == "True" else "bad" if c.status == "False" else "none"
            ),
            c.reason or None,
            c.message or None,
            when(c.last_transition_time, frame),
        ]
        for c in mv.status.conditions
    ]
    body = (
        facts
        + section("Artifact", artifact, ident="artifact")
        + section(
            "Metrics",
            table(
                "Metrics", ["Metric", "Value"], metrics, empty="No metrics.", caption_hidden=True
            ),
            ident="metrics",
        )
        + section(
            "Gates",
            table(
                "Gates",
                ["Metric", "Rule", "Actual", "Verdict", "Message"],
                gates,
                empty="The Model defines no gates.",
                caption_hidden=True,
            ),
            ident="gates",
        )
        + section("Params", _mapping("Params", dict(spec.params), "No params."), ident="params")
        + section(
            "Lineage",
            _mapping("Lineage", dict(spec.lineage), "No lineage recorded."),
            ident="lineage",
        )
        + section("Environment and audit", _environment(mv), ident="environment")
        + section(
            "Conditions",
            table(
                "Conditions",
                ["Type", "Status", "Reason", "Message", "Changed"],
                conditions,
                empty="The operator has not reported yet.",
                caption_hidden=True,
            ),
            ident="conditions",
        )
        + section("History", timeline([mv], frame), ident="history")
        + section("Events", _events(events, frame, events_problem), ident="events")
    )
    return page(
        f"{name} v{n}",
        body,
        crumbs=[(MODELS_HREF, "Models"), (model_href(name), name)],
        namespace=frame.namespace,
        identity=frame.identity,
        live_url=path("api", "live", "models", name),
    )
