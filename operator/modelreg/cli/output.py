"""Rendering for the `modelreg` CLI: tables, descriptions, ages, JSON and YAML.

Called by `modelreg.cli.main` only. Functions here are pure (objects in, text out), so the tables
are unit-tested without a terminal. Tables follow kubectl's look: upper-case headers, columns
separated by three spaces, `<none>` for absent values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from modelreg.api.models import Model, ModelVersion, Stage
from modelreg.lifecycle import aliases as alias_rules
from modelreg.sdk.client import Comparison, GcReport, HistoryRecord, VerifyReport

NONE = "<none>"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[str(h).upper() for h in headers]] + [
        [NONE if c is None or c == "" else str(c) for c in row] for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=False)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip("\n")


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """kubectl-style age ("45s", "12m", "3h", "5d") of an RFC 3339 timestamp."""
    if not timestamp:
        return NONE
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return NONE
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    seconds = max(seconds, 0)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 2 * 3600:
        return f"{seconds // 60}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def number(value: float | None) -> str:
    if value is None:
        return NONE
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def key_metrics(mv: ModelVersion, preferred: Sequence[str] = (), limit: int = 3) -> str:
    """A few metrics for a table cell: the gated ones first, then alphabetical."""
    names = [m for m in preferred if m in mv.spec.metrics]
    names += sorted(m for m in mv.spec.metrics if m not in names)
    shown = [f"{m}={number(mv.spec.metrics[m])}" for m in names[:limit]]
    if len(names) > limit:
        shown.append("...")
    return ",".join(shown)


def stage_of(value: Stage | None) -> str:
    return value.value if value is not None else NONE


def versions_table(
    versions: Sequence[ModelVersion], gates: Mapping[str, Sequence[str]] | None = None
) -> str:
    rows = [
        (
            mv.spec.model,
            mv.spec.version,
            mv.spec.stage.value,
            stage_of(mv.status.stage),
            mv.status.phase.value if mv.status.phase else NONE,
            key_metrics(mv, (gates or {}).get(mv.spec.model, ())),
            age(mv.metadata.creation_timestamp),
        )
        for mv in versions
    ]
    return table(["model", "version", "desired", "stage", "phase", "metrics", "age"], rows)


def models_table(models: Sequence[Model]) -> str:
    rows = [
        (
            m.metadata.name,
            m.status.production_version,
            m.status.latest_version,
            m.status.endpoint,
            m.spec.storage.uri if m.spec.storage else None,
            age(m.metadata.creation_timestamp),
        )
        for m in models
    ]
    return table(["name", "production", "latest", "endpoint", "storage", "age"], rows)


def _kv(mapping: Mapping[str, object], indent: str = "  ") -> list[str]:
    if not mapping:
        return [f"{indent}{NONE}"]
    width = max(len(k) for k in mapping)
    return [f"{indent}{k.ljust(width)}  {v}" for k, v in mapping.items()]


def describe_version(mv: ModelVersion) -> str:
    s, spec = mv.status, mv.spec
    art = s.artifact
    lines = [
        f"Name:          {mv.metadata.name}",
        f"Namespace:     {mv.metadata.namespace}",
        f"Model:         {spec.model}",
        f"Version:       {spec.version}",
        f"Desired stage: {spec.stage.value}",
        f"Stage:         {stage_of(s.stage)}",
        f"Phase:         {s.phase.value if s.phase else NONE}",
        f"Age:           {age(mv.metadata.creation_timestamp)}",
        f"Framework:     {spec.framework or NONE}",
        f"Description:   {spec.description or NONE}",
        "Artifact:",
        f"  URI:       {spec.artifact.uri}",
        f"  Format:    {spec.artifact.format.value}",
        f"  sha256:    {spec.artifact.sha256}",
        f"  Verified:  {art.verified if art else NONE}"
        + (f" at {art.verified_at}" if art and art.verified_at else ""),
    ]
    if art and art.size_bytes is not None:
        lines.append(f"  Size:      {human_bytes(art.size_bytes)}")
    if art and art.message:
        lines.append(f"  Message:   {art.message}")
    lines.append("Metrics:")
    lines += _kv({k: number(v) for k, v in spec.metrics.items()})
    lines.append("Params:")
    lines += _kv(dict(spec.params))
    lines.append("Lineage:")
    lines += _kv(dict(spec.lineage))
    if s.gates:
        lines.append("Gates:")
        for g in s.gates:
            bound = " ".join(
                x
                for x in (
                    f">= {number(g.min)}" if g.min is not None else "",
                    f"<= {number(g.max)}" if g.max is not None else "",
                )
                if x
            )
            verdict = "passed" if g.passed else "FAILED"
            lines.append(f"  {g.metric} {bound}: actual {number(g.actual)} {verdict}")
    env = spec.environment
    if env is not None:
        lines.append("Environment:")
        lines += _kv(
            {
                "Python": env.python or NONE,
                "Image": env.image or NONE,
                "Packages": f"{len(env.packages)}: "
                + ", ".join(env.packages[:8])
                + (", ..." if len(env.packages) > 8 else "")
                if env.packages
                else NONE,
            }
        )
    if s.audit is not None:
        a = s.audit
        lines.append(
            f"Audit:         {a.findings_total} known vulnerabilities in {a.packages} packages "
            f"({a.database}, {a.advisories} advisories, at {a.audited_at or NONE})"
        )
        if a.findings:
            some_allowed = any(f.allowed for f in a.findings)
            rows = [
                (
                    f.id,
                    ", ".join(f.aliases) or NONE,
                    f"{f.package} {f.version}",
                    f.severity.value,
                    f.fixed or NONE,
                    *(("yes" if f.allowed else "no",) if some_allowed else ()),
                )
                for f in a.findings
            ]
            headers = ["advisory", "aliases", "package", "severity", "fixed"]
            headers += ["allowed"] if some_allowed else []
            lines.append("  " + table(headers, rows).replace("\n", "\n  "))
            if a.findings_total > len(a.findings):
                lines.append(f"  ... and {a.findings_total - len(a.findings)} more")
    if s.shadow is not None:
        sh = s.shadow
        agreement = f"{sh.agreement:.2%}" if sh.agreement is not None else NONE
        lines.append(f"Shadow:        compared with version {sh.serving_version}")
        lines += _kv(
            {
                "Agreement": f"{agreement} ({sh.agreed} of {sh.compared} compared)",
                "Mirrored": f"{sh.requests} ({sh.errors} failed, {sh.dropped} dropped) at "
                f"{number(sh.sample_percent)}% since {sh.since or NONE}",
                "p99 latency": f"{number(sh.p99_latency_ms)} ms"
                if sh.p99_latency_ms is not None
                else NONE,
                **({"Message": sh.message} if sh.message else {}),
            }
        )
    if s.serving and (s.serving.deployment or s.serving.url):
        lines.append("Serving:")
        lines += _kv(
            {
                "Deployment": s.serving.deployment or NONE,
                "Service": s.serving.service or NONE,
                "Ready replicas": s.serving.ready_replicas
                if s.serving.ready_replicas is not None
                else NONE,
                "URL": s.serving.url or NONE,
            }
        )
    if s.conditions:
        lines.append("Conditions:")
        lines.append(
            "  "
            + table(
                ["type", "status", "reason", "message"],
                [(c.type, c.status, c.reason, c.message) for c in s.conditions],
            ).replace("\n", "\n  ")
        )
    return "\n".join(lines)


def _rollout(m: Model) -> str:
    r, auto = m.spec.rollout, m.spec.serving.autoscaling
    text = r.strategy.value
    if r.strategy.value == "Canary":
        text += f" {', '.join(f'{w}%' for w in r.steps)} every {r.step_seconds}s"
        if r.analysis is not None:
            limits = [
                f"errors <= {r.analysis.max_error_rate:.1%}"
                if r.analysis.max_error_rate is not None
                else "",
                f"p99 <= {r.analysis.max_p99_latency_ms:g} ms"
                if r.analysis.max_p99_latency_ms is not None
                else "",
            ]
            text += f" (analysis: {', '.join(x for x in limits if x)})"
    if auto is not None:
        text += (
            f"; autoscaling {auto.min_replicas}..{auto.max_replicas} replicas at "
            f"{auto.target_cpu_utilization}% CPU"
        )
    return text


def describe_model(m: Model, versions: Sequence[ModelVersion]) -> str:
    spec, s = m.spec, m.status
    storage = spec.storage
    lines = [
        f"Name:        {m.metadata.name}",
        f"Namespace:   {m.metadata.namespace}",
        f"Description: {spec.description or NONE}",
        f"Owner:       {spec.owner or NONE}",
        f"Production:  {s.production_version if s.production_version is not None else NONE}",
        f"Latest:      {s.latest_version if s.latest_version is not None else NONE}",
        f"Endpoint:    {s.endpoint or NONE}",
        f"Rollout:     {_rollout(m)}",
    ]
    if s.canary is not None:
        lines.append(f"Canary:      {s.canary.message}")
    if spec.shadow is not None:
        shadowing = next((c for c in s.conditions if c.type == "Shadowing"), None)
        lines.append(
            f"Shadow:      version {spec.shadow.version}, {number(spec.shadow.sample_percent)}% "
            "of requests"
            + (f": {shadowing.reason}: {shadowing.message}" if shadowing is not None else "")
        )
    lines.append("Storage:")
    if storage:
        lines += _kv(
            {
                "URI": storage.uri,
                "Endpoint": storage.endpoint or NONE,
                "Region": storage.region or NONE,
                "Secret": storage.secret_ref.name if storage.secret_ref else NONE,
            }
        )
    else:
        lines.append(f"  {NONE}")
    lines.append("Tags:")
    lines += _kv(spec.tags)
    lines.append("Aliases:")
    lines += ["  " + line for line in aliases_text(m, versions).splitlines()]
    lines.append("Gates:")
    if spec.promotion.gates:
        for g in spec.promotion.gates:
            bounds = [
                f">= {number(g.min)}" if g.min is not None else "",
                f"<= {number(g.max)}" if g.max is not None else "",
            ]
            lines.append(f"  {g.metric} {' '.join(b for b in bounds if b)}")
    audit = spec.promotion.audit
    if audit is not None:
        rule = (
            "no known vulnerability"
            if audit.block_vulnerable
            else f"no finding above {audit.max_severity.value}"
            if audit.max_severity is not None
            else "reported only"
        )
        allowed = f" (allowed: {', '.join(audit.allow)})" if audit.allow else ""
        lines.append(f"  audit: {rule}{allowed}")
    if spec.promotion.shadow is not None:
        sg = spec.promotion.shadow
        lines.append(
            f"  shadow: agreement >= {number(sg.min_agreement)} over >= {sg.min_requests} requests"
        )
    if not spec.promotion.gates and audit is None and spec.promotion.shadow is None:
        lines.append(f"  {NONE}")
    if spec.advisories is not None:
        lines.append(f"Advisories:  {spec.advisories.uri}")
    lines.append("Versions:")
    gated = {m.metadata.name: [g.metric for g in spec.promotion.gates]}
    lines.append("  " + versions_table(versions, gated).replace("\n", "\n  "))
    return "\n".join(lines)


def aliases_text(m: Model, versions: Sequence[ModelVersion]) -> str:
    """One line per alias: the version it names and, when it does not resolve, why."""
    if not m.spec.aliases:
        return NONE
    resolved = alias_rules.resolve(m.metadata.name, m.spec.aliases, versions)
    lines = []
    for alias, n in sorted(m.spec.aliases.items()):
        why = resolved.problems.get(alias)
        lines.append(f"@{alias} -> v{n}" + (f"  (does not resolve: {why})" if why else ""))
    return "\n".join(lines)


def history_table(records: Sequence[HistoryRecord]) -> str:
    """TIME VERSION FROM TO PHASE BY WHY: who asked, and why in their words; the operator's own
    transitions say what it saw. A request whose stage was not reached shows what was asked."""
    rows = []
    for r in records:
        to = r.stage.value
        if r.requested is not None and r.requested is not r.stage:
            to = f"{to} (asked {r.requested.value})"
        why = r.reason or r.message
        if r.reason and r.message and r.requested is not r.stage:
            why = f"{r.reason} [{r.message}]"
        rows.append(
            (
                r.at,
                r.version,
                r.from_stage.value if r.from_stage else None,
                to,
                r.phase.value if r.phase else None,
                r.by or "(operator)",
                why,
            )
        )
    return table(["time", "version", "from", "to", "phase", "by", "why"], rows)


def comparison_table(c: Comparison) -> str:
    headers = ["metric", *[f"v{mv.spec.version}" for mv in c.versions]]
    rows: list[list[object]] = [
        ["(stage)", *[stage_of(mv.status.stage) for mv in c.versions]],
        ["(phase)", *[mv.status.phase.value if mv.status.phase else None for mv in c.versions]],
    ]
    rows += [[m, *[number(c.table[m][mv.spec.version]) for mv in c.versions]] for m in c.metrics]
    return table(headers, rows)


def comparison_data(c: Comparison) -> dict[str, Any]:
    return {
        "model": c.model,
        "versions": [mv.spec.version for mv in c.versions],
        "metrics": {m: {f"v{v}": x for v, x in c.table[m].items()} for m in c.metrics},
    }


def verify_text(r: VerifyReport) -> str:
    verdict = "OK: the stored artifact matches" if r.ok else "MISMATCH: the stored artifact differs"
    return "\n".join(
        [
            f"{r.name}: {verdict}",
            f"  uri:      {r.uri}",
            f"  size:     {human_bytes(r.size_bytes)}",
            f"  expected: {r.expected_sha256}",
            f"  actual:   {r.actual_sha256}",
        ]
    )


def verify_data(r: VerifyReport) -> dict[str, Any]:
    return {
        "name": r.name,
        "uri": r.uri,
        "ok": r.ok,
        "expectedSha256": r.expected_sha256,
        "actualSha256": r.actual_sha256,
        "sizeBytes": r.size_bytes,
    }


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def gc_data(r: GcReport) -> dict[str, Any]:
    return {
        "model": r.model,
        "prefix": r.prefix,
        "scanned": r.scanned,
        "orphans": [{"uri": o.uri, "size": o.size} for o in r.orphans],
        "young": r.young,
        "deleted": r.deleted,
    }


def gc_text(r: GcReport, dry_run: bool) -> str:
    lines = []
    if r.orphans:
        now = datetime.now(UTC)
        rows = [
            (
                o.uri,
                human_bytes(o.size),
                age(datetime.fromtimestamp(o.modified, UTC).isoformat(), now),
            )
            for o in r.orphans
        ]
        lines.append(table(["orphaned artifact", "size", "age"], rows))
    total = human_bytes(sum(o.size for o in r.orphans))
    verb = "would delete" if dry_run else "deleted"
    count = len(r.orphans) if dry_run else len(r.deleted)
    lines.append(
        f"{r.prefix}: {r.scanned} objects, {len(r.orphans)} referenced by no version ({total}); "
        f"{verb} {count}" + (f"; {r.young} newer than --min-age left alone" if r.young else "")
    )
    return "\n".join(lines)
