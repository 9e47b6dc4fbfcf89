"""The vulnerability audit: a version's `spec.environment.packages` against OSV advisories. Pure.

The database is OSV records (https://ossf.github.io/osv-schema/), as osv.dev publishes them: a
.zip of one record per .json member (`PyPI/all.zip`), a JSON record, list or `{"vulns": [...]}`,
or JSON Lines. `parse_database` reads the bytes (bounded: MAX_RECORDS records, MAX_BYTES
uncompressed), `build_index` keeps the PyPI records that are not withdrawn, by PEP 503 name, with
their versions parsed once (PEP 440, `packaging`).

A pinned `name==version` is affected by a record when one of the record's PyPI `affected[]`
entries for that name lists the version in `versions` or contains it in one of its `ranges` of
type ECOSYSTEM or SEMVER (GIT ranges need the repository: ignored). A range is evaluated as the
OSV schema says: `limit` events bound it (exclusive); the other events, sorted by version with
`introduced: "0"` first, are walked: `introduced` (inclusive) makes the version affected,
`fixed` (exclusive) and `last_affected` (inclusive) make it unaffected again. A range with an
event that does not parse as a PEP 440 version, or with no `introduced`, is skipped; a version
in `versions` that does not parse is compared as a string, as is an installed version that does
not parse (which ranges then cannot place).

A finding's severity is the advisory's own rating (GHSA style, the record's `database_specific`
first, then its `affected[]`'s), else the highest rating of its CVSS vectors, else UNKNOWN. The
gate (`AuditGate`) never counts an allowed finding (its id or an alias is in `allow`); it blocks on
any other finding with `block_vulnerable`, and on one above `max_severity`, where UNKNOWN counts
as CRITICAL: an advisory that does not say how bad it is is not known to be less.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cvss import CVSS2, CVSS3, CVSS4, CVSSError
from packaging.version import InvalidVersion, Version

from modelreg.api.models import FINDINGS_MAX, AuditGate, Finding, Severity

MAX_RECORDS = 200_000
MAX_BYTES = 1 << 30  # uncompressed, in total
SUMMARY_FROM_DETAILS = 200
AFFECTED_MAX = 512
MESSAGE_MAX = 600
ALIASES_MAX = 8
ID_MAX = 128

ECOSYSTEM = "PyPI"
RANGE_TYPES = ("ECOSYSTEM", "SEMVER")

# Display order, worst first: UNKNOWN last (it says nothing about the advisory).
_DISPLAY = {
    Severity.CRITICAL: 0,
    Severity.HIGH: 1,
    Severity.MEDIUM: 2,
    Severity.LOW: 3,
    Severity.UNKNOWN: 4,
}
# Gate order: UNKNOWN counts as CRITICAL (fail closed).
_GATE = {
    Severity.LOW: 1,
    Severity.MEDIUM: 2,
    Severity.HIGH: 3,
    Severity.CRITICAL: 4,
    Severity.UNKNOWN: 4,
}
_WORDS = {
    "LOW": Severity.LOW,
    "MODERATE": Severity.MEDIUM,
    "MEDIUM": Severity.MEDIUM,
    "HIGH": Severity.HIGH,
    "CRITICAL": Severity.CRITICAL,
}
_NAME_RUNS = re.compile(r"[-_.]+")


class AdvisoryFormatError(ValueError):
    """The database is not OSV records as this module reads them; the message says where."""


# -- reading the database -------------------------------------------------------------------------


def parse_database(
    data: bytes, name: str, *, max_records: int = MAX_RECORDS, max_bytes: int = MAX_BYTES
) -> list[dict[str, Any]]:
    """The records of the database file `name` (used for its suffix and in messages)."""
    lower = name.lower()
    if lower.endswith(".zip") or data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _parse_zip(data, name, max_records, max_bytes)
    if len(data) > max_bytes:
        raise AdvisoryFormatError(f"{name} is {len(data)} bytes, more than {max_bytes}")
    if not data.strip():
        raise AdvisoryFormatError(f"{name} is empty")
    if lower.endswith((".jsonl", ".ndjson")):
        return _bounded(_parse_lines(data, name), name, max_records)
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        try:
            return _bounded(_parse_lines(data, name, first_error=e), name, max_records)
        except _NotLines:
            raise AdvisoryFormatError(
                f"{name} is not a zip archive, JSON or JSON Lines: {_why(e)}"
            ) from None
    return _bounded(_records_of(doc, name), name, max_records)


class _NotLines(Exception):
    """The first line of a would-be JSON Lines file is not JSON either."""


def _parse_zip(data: bytes, name: str, max_records: int, max_bytes: int) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    total = 0
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                if info.is_dir() or not info.filename.lower().endswith(".json"):
                    continue
                if len(records) >= max_records:
                    raise AdvisoryFormatError(f"{name} holds more than {max_records} records")
                with zf.open(info) as member:
                    body = member.read(max_bytes - total + 1)
                total += len(body)
                if total > max_bytes:
                    raise AdvisoryFormatError(
                        f"{name} holds more than {max_bytes} bytes uncompressed"
                    )
                try:
                    record = json.loads(body)
                except (ValueError, RecursionError) as e:
                    raise AdvisoryFormatError(
                        f"{name}: member {info.filename} is not JSON: {_why(e)}"
                    ) from None
                if not isinstance(record, dict):
                    raise AdvisoryFormatError(
                        f"{name}: member {info.filename} is a JSON {_kind(record)}, "
                        "not an OSV record (an object)"
                    )
                records.append(record)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
        # RuntimeError: an encrypted member; NotImplementedError: an unknown compression method
        raise AdvisoryFormatError(f"{name} is not a readable zip archive: {e}") from None
    if not records:
        raise AdvisoryFormatError(f"{name} is a zip archive with no .json member")
    return records


def _parse_lines(
    data: bytes, name: str, first_error: Exception | None = None
) -> list[dict[str, Any]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        if first_error is not None:
            raise _NotLines from None
        raise AdvisoryFormatError(f"{name} is not UTF-8 text: {_why(e)}") from None
    records: list[dict[str, Any]] = []
    seen_one = False
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as e:
            if first_error is not None and not seen_one:
                raise _NotLines from None
            raise AdvisoryFormatError(f"{name}: line {n} is not JSON: {_why(e)}") from None
        seen_one = True
        if not isinstance(record, dict):
            raise AdvisoryFormatError(
                f"{name}: line {n} is a JSON {_kind(record)}, not an OSV record (an object)"
            )
        records.append(record)
    return records


def _records_of(doc: Any, name: str) -> list[dict[str, Any]]:
    if isinstance(doc, dict) and "vulns" in doc:
        doc = doc["vulns"]
        if not isinstance(doc, list):
            raise AdvisoryFormatError(f"{name}: 'vulns' is a JSON {_kind(doc)}, not a list")
    if isinstance(doc, dict):
        return [doc]
    if not isinstance(doc, list):
        raise AdvisoryFormatError(f"{name} is a JSON {_kind(doc)}, not OSV records")
    for i, record in enumerate(doc):
        if not isinstance(record, dict):
            raise AdvisoryFormatError(
                f"{name}: record {i + 1} is a JSON {_kind(record)}, not an OSV record (an object)"
            )
    return doc


def _bounded(records: list[dict[str, Any]], name: str, max_records: int) -> list[dict[str, Any]]:
    if len(records) > max_records:
        raise AdvisoryFormatError(f"{name} holds {len(records)} records, more than {max_records}")
    return records


def _why(e: Exception) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"{e.msg} at line {e.lineno} column {e.colno}"
    if isinstance(e, UnicodeDecodeError):
        return f"not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start})"
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return str(e)


def _kind(value: Any) -> str:
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
    }.get(type(value), "null")


# -- the index ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Event:
    kind: str  # introduced | fixed | last_affected
    raw: str
    version: Version | None  # None: introduced "0", before every version


@dataclass(frozen=True)
class _Range:
    events: tuple[_Event, ...]  # sorted
    limits: tuple[Version | None, ...]  # exclusive upper bounds; None: "*"


@dataclass(frozen=True)
class _Advisory:
    id: str
    aliases: tuple[str, ...]
    summary: str
    severity: Severity


@dataclass(frozen=True)
class _Affects:
    """What one advisory says about one package: all its affected[] entries for it, merged."""

    advisory: _Advisory
    versions: frozenset[Version]
    other_versions: frozenset[str]  # listed versions that are not PEP 440: compared as strings
    ranges: tuple[_Range, ...]


@dataclass(frozen=True)
class Index:
    records: int  # the records kept: PyPI, not withdrawn
    packages: Mapping[str, tuple[_Affects, ...]]  # by PEP 503 name


def normalize(name: str) -> str:
    """A PyPI name as PEP 503 compares it."""
    return _NAME_RUNS.sub("-", name).lower()


def build_index(records: Iterable[Mapping[str, Any]]) -> Index:
    """The PyPI records that are not withdrawn, by package."""
    by_package: dict[str, list[_Affects]] = {}
    kept = 0
    parse = _Parser()
    for i, record in enumerate(records):
        where = f"record {i + 1}"
        if not isinstance(record, Mapping):
            raise AdvisoryFormatError(f"{where} is not an object")
        rid = record.get("id")
        if not isinstance(rid, str) or not rid.strip():
            raise AdvisoryFormatError(f"{where} has no id")
        if len(rid) > ID_MAX:
            raise AdvisoryFormatError(f"{where}: id {rid[:40]!r}... is longer than {ID_MAX}")
        where = f"record {i + 1} ({rid})"
        affected = record.get("affected")
        if affected is None:
            affected = []
        if not isinstance(affected, list):
            raise AdvisoryFormatError(
                f"{where}: 'affected' is a JSON {_kind(affected)}, not a list"
            )
        if record.get("withdrawn"):
            continue
        entries = _pypi_entries(affected, where)
        if not entries:
            continue
        kept += 1
        advisory = _Advisory(rid, _aliases(record), _summary(record), severity_of(record))
        for package, items in entries.items():
            by_package.setdefault(package, []).append(_merge(advisory, items, where, parse))
    return Index(records=kept, packages={k: tuple(v) for k, v in by_package.items()})


def _pypi_entries(affected: list[Any], where: str) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for n, entry in enumerate(affected):
        if not isinstance(entry, Mapping):
            raise AdvisoryFormatError(f"{where}: affected[{n}] is not an object")
        package = entry.get("package")
        if not isinstance(package, Mapping):
            continue  # a GIT-only entry names no package
        name = package.get("name")
        if package.get("ecosystem") != ECOSYSTEM or not isinstance(name, str) or not name:
            continue
        for key in ("versions", "ranges"):
            if not isinstance(entry.get(key) or [], list):
                raise AdvisoryFormatError(f"{where}: affected[{n}].{key} is not a list")
        out.setdefault(normalize(name), []).append(entry)
    return out


class _Parser:
    """PEP 440 parsing, once per distinct string: records list the same versions again and again
    (osv.dev's list every release of the package), and the index keeps one object of each."""

    def __init__(self) -> None:
        self._seen: dict[str, Version | None] = {}

    def __call__(self, raw: str) -> Version | None:
        try:
            return self._seen[raw]
        except KeyError:
            v = self._seen[raw] = _version(raw)
            return v


def _merge(
    advisory: _Advisory, entries: list[Mapping[str, Any]], where: str, parse: _Parser
) -> _Affects:
    versions: set[Version] = set()
    others: set[str] = set()
    ranges: list[_Range] = []
    for entry in entries:
        for raw in entry.get("versions") or []:
            if isinstance(raw, str):
                v = parse(raw)
                if v is None:
                    others.add(raw)
                else:
                    versions.add(v)
        for r in entry.get("ranges") or []:
            if not isinstance(r, Mapping):
                raise AdvisoryFormatError(f"{where}: a range is not an object")
            parsed_range = _range(r, parse)
            if parsed_range is not None:
                ranges.append(parsed_range)
    return _Affects(advisory, frozenset(versions), frozenset(others), tuple(ranges))


def _range(r: Mapping[str, Any], parse: _Parser) -> _Range | None:
    """The range, ready to evaluate; None when it is not one this module can place a version in."""
    if r.get("type") not in RANGE_TYPES or not isinstance(r.get("events"), list):
        return None
    events: list[_Event] = []
    limits: list[Version | None] = []
    for e in r["events"]:
        if not isinstance(e, Mapping):
            return None
        for kind in ("introduced", "fixed", "last_affected", "limit"):
            raw = e.get(kind)
            if raw is None:
                continue
            if not isinstance(raw, str):
                return None
            if kind == "limit" and raw.strip() == "*":
                limits.append(None)
                continue
            if kind == "introduced" and raw.strip() == "0":
                events.append(_Event(kind, raw, None))
                continue
            v = parse(raw)
            if v is None:
                return None
            if kind == "limit":
                limits.append(v)
            else:
                events.append(_Event(kind, raw, v))
    if not any(e.kind == "introduced" for e in events):
        return None
    events.sort(key=lambda e: (e.version is not None, e.version or Version("0")))
    return _Range(tuple(events), tuple(limits))


def _version(raw: str) -> Version | None:
    try:
        return Version(raw)
    except InvalidVersion:
        return None


def _aliases(record: Mapping[str, Any]) -> tuple[str, ...]:
    raw = record.get("aliases")
    if not isinstance(raw, list):
        return ()
    good = [a for a in raw if isinstance(a, str) and 0 < len(a) <= ID_MAX]
    return tuple(good[:ALIASES_MAX])


def _summary(record: Mapping[str, Any]) -> str:
    text = record.get("summary")
    if not isinstance(text, str) or not text.strip():
        details = record.get("details")
        text = details[:SUMMARY_FROM_DETAILS] if isinstance(details, str) else ""
    return " ".join(text.split())[:512]


# -- severity -------------------------------------------------------------------------------------


def severity_of(record: Mapping[str, Any]) -> Severity:
    """The record's own rating (`database_specific.severity`, then `affected[]`'s
    `ecosystem_specific` / `database_specific`), else the highest rating of its CVSS vectors
    (v4, v3, v2), else UNKNOWN."""
    own = _word(record.get("database_specific"))
    if own is not None:
        return own
    affected = record.get("affected")
    entries = [a for a in affected if isinstance(a, Mapping)] if isinstance(affected, list) else []
    words = [
        w
        for a in entries
        for w in (_word(a.get("ecosystem_specific")), _word(a.get("database_specific")))
        if w is not None
    ]
    if words:
        return max(words, key=_GATE.__getitem__)
    scored: list[Any] = []
    for holder in (record, *entries):
        severity = holder.get("severity")
        if isinstance(severity, list):
            scored.extend(severity)
    ratings = [r for r in map(_cvss, scored) if r is not None]
    if ratings:
        return max(ratings, key=_GATE.__getitem__)
    return Severity.UNKNOWN


def _word(holder: Any) -> Severity | None:
    if not isinstance(holder, Mapping):
        return None
    word = holder.get("severity")
    return _WORDS.get(word.strip().upper()) if isinstance(word, str) else None


def _cvss(entry: Any) -> Severity | None:
    """The qualitative rating of a severity[] entry's CVSS vector; None for anything else."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("score"), str):
        return None
    kind, vector = entry.get("type"), entry["score"].strip()
    try:
        if kind == "CVSS_V4":
            score = float(CVSS4(vector).base_score)
        elif kind == "CVSS_V3":
            score = float(CVSS3(vector).base_score)
        elif kind == "CVSS_V2":
            score = float(CVSS2(vector).base_score)
            return Severity.LOW if score < 4 else Severity.MEDIUM if score < 7 else Severity.HIGH
        else:
            return None
    except (CVSSError, ValueError, KeyError, IndexError, TypeError, ArithmeticError):
        return None
    # v3 and v4 rate 0.0 "None": the lowest rating there is here.
    if score < 4:
        return Severity.LOW
    if score < 7:
        return Severity.MEDIUM
    return Severity.HIGH if score < 9 else Severity.CRITICAL


# -- the audit ------------------------------------------------------------------------------------


def audit(
    packages: Sequence[str], index: Index, *, limit: int | None = FINDINGS_MAX
) -> tuple[list[Finding], int]:
    """The findings on `packages` (`name==version`), worst first, at most `limit` of them (None:
    all), and how many there are. One finding per package and advisory; a string without `==`
    is ignored (the CRD admits none).

    Gate on all of them (`limit=None`), not on the list cut for display: the cut keeps the worst
    by rating, and an allowed finding or an UNKNOWN one past it would be missed."""
    findings: list[Finding] = []
    seen: set[tuple[str, str, str]] = set()
    for spec in packages:
        name, sep, version = spec.partition("==")
        name, version = name.strip(), version.strip()
        if not sep or not name or not version or len(spec) > 128:
            continue
        key = normalize(name)
        parsed = _version(version)
        for affects in index.packages.get(key, ()):
            adv = affects.advisory
            if (key, version, adv.id) in seen:
                continue
            hit = _match(affects, version, parsed)
            if hit is None:
                continue
            seen.add((key, version, adv.id))
            affected, fixed = hit
            findings.append(
                Finding(
                    id=adv.id,
                    aliases=list(adv.aliases),
                    package=name,
                    version=version,
                    affected=affected,
                    fixed=fixed,
                    severity=adv.severity,
                    summary=adv.summary,
                )
            )
    findings.sort(key=_display_key)
    return (findings if limit is None else findings[:limit]), len(findings)


def _display_key(f: Finding) -> tuple[int, str, str]:
    return _DISPLAY[f.severity], f.package.lower(), f.id


def _match(affects: _Affects, raw: str, v: Version | None) -> tuple[str, str | None] | None:
    """(the affected range(s) rendered, the lowest fix above v) when `affects` covers the version."""
    spans: list[str] = []
    fixes: list[_Event] = []
    if v is not None:
        for r in affects.ranges:
            hit = _walk(r, v)
            if hit is None:
                continue
            start, end = hit
            spans.append(_render(start, end, r, v))
            if end is not None and end.kind == "fixed":
                fixes.append(end)
    if not spans and (raw in affects.other_versions or (v is not None and v in affects.versions)):
        spans.append(f"=={raw}")
    if not spans:
        return None
    affected = "; ".join(dict.fromkeys(spans))
    if len(affected) > AFFECTED_MAX:
        affected = affected[: AFFECTED_MAX - 3] + "..."
    fixed = min(fixes, key=lambda e: e.version or Version("0")).raw if fixes else None
    if fixed is not None and len(fixed) > 128:
        fixed = None
    return affected, fixed


def _walk(r: _Range, v: Version) -> tuple[_Event, _Event | None] | None:
    """The OSV evaluation of one range: (the introduced event, the event that ends the interval
    v is in, if any), or None when v is not affected."""
    if r.limits and not any(limit is None or v < limit for limit in r.limits):
        return None
    vulnerable, start = False, 0
    for i, e in enumerate(r.events):
        if e.kind == "introduced":
            if e.version is None or v >= e.version:
                vulnerable, start = True, i
        elif e.version is not None and (
            (e.kind == "fixed" and v >= e.version) or (e.kind == "last_affected" and v > e.version)
        ):
            vulnerable = False
    if not vulnerable:
        return None
    end = next((e for e in r.events[start + 1 :] if e.kind != "introduced"), None)
    return r.events[start], end


def _render(start: _Event, end: _Event | None, r: _Range, v: Version) -> str:
    parts = [] if start.version is None else [f">={start.raw}"]
    if end is not None:
        parts.append(("<" if end.kind == "fixed" else "<=") + end.raw)
    else:
        bounds = [limit for limit in r.limits if limit is not None and v < limit]
        if bounds:
            parts.append(f"<{min(bounds)}")
    return ", ".join(parts) or "all versions"


# -- the gate -------------------------------------------------------------------------------------


def mark_allowed(gate: AuditGate | None, findings: list[Finding]) -> list[Finding]:
    """The findings, each `allowed` exactly when the gate's allow list names its id or an alias
    (case-insensitive)."""
    allow = _allow(gate)
    return [f.model_copy(update={"allowed": _is_allowed(f, allow)}) for f in findings]


def gate_problem(gate: AuditGate | None, findings: list[Finding]) -> str | None:
    """Why the gate blocks a version with these findings, or None when it does not (or there is
    no gate). Allowed findings (by the gate's own allow list) never count. `block_vulnerable`
    blocks on any other finding; `max_severity` on one rated above it, where UNKNOWN counts as
    CRITICAL (fail closed: an advisory that gives no rating is not known to be less). Pass every
    finding (`audit(..., limit=None)`), not the list cut for display."""
    if gate is None:
        return None
    allow = _allow(gate)
    candidates = [f for f in findings if not _is_allowed(f, allow)]
    if gate.block_vulnerable:
        blocking, why = candidates, "and blockVulnerable is set"
    elif gate.max_severity is not None:
        ceiling = _GATE[gate.max_severity]
        blocking = [f for f in candidates if _GATE[f.severity] > ceiling]
        why = f"above {gate.max_severity.value}"
        if any(f.severity is Severity.UNKNOWN for f in blocking):
            why += " (UNKNOWN counts as CRITICAL)"
    else:
        return None
    if not blocking:
        return None
    blocking.sort(key=lambda f: (-_GATE[f.severity], *_display_key(f)))
    n = len(blocking)
    shown = "; ".join(_describe(f) for f in blocking[:3])
    more = f"; and {n - 3} more" if n > 3 else ""
    message = f"{n} finding{'' if n == 1 else 's'} {why}: {shown}{more}"
    return message if len(message) <= MESSAGE_MAX else message[: MESSAGE_MAX - 3] + "..."


def _allow(gate: AuditGate | None) -> frozenset[str]:
    return frozenset(a.casefold() for a in gate.allow) if gate is not None else frozenset()


def _is_allowed(f: Finding, allow: frozenset[str]) -> bool:
    return any(name.casefold() in allow for name in (f.id, *f.aliases))


def _describe(f: Finding) -> str:
    cve = next((a for a in f.aliases if a.upper().startswith("CVE-")), None)
    alias = cve or (f.aliases[0] if f.aliases else None)
    named = f"{f.id} ({alias})" if alias else f.id
    fix = f"fixed in {f.fixed}" if f.fixed else "no fixed version"
    return f"{named} {f.package} {f.version} {f.severity.value}, {fix}"
