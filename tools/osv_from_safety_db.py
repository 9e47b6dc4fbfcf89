"""Convert PyUp's safety-db (the `safety-db` package on PyPI) to OSV records for modelreg's audit.

    python tools/osv_from_safety_db.py [--packages pyyaml,numpy] [--out FILE.zip|FILE.jsonl]

Reads `safety_db/insecure_full.json` from the installed package (its own `import safety_db` opens
a relative path and fails, so the file is located through the distribution's metadata) and writes
a zip of `<id>.json` members, as osv.dev's `PyPI/all.zip`, or JSON Lines (stdout without --out).

One OSV record per PyUp advisory: the id as is, the CVE as an alias, the advisory text as details,
and no severity (PyUp gives none; none is made up). Each entry of `specs` is a set of intervals.
PyUp writes a constraint list mostly as an intersection in any order ("<1.11.18,>=1.11.17"), and
sometimes as a union ("<2.15.1,>3.0.0,<3.0.0b9": before 2.15.1, or 3.x before 3.0.0b9), so a
string is scanned in order: an upper bound closes the open interval or opens one from "0"; a lower
bound completes an interval that has only an upper bound above it, else opens a new one. `<X` is
`fixed` X, `<=X` `last_affected` X, `>=X` `introduced` X, `==X` one of `versions`. OSV cannot say
`>X` (X excluded), so an interval with one is skipped, as is an empty one (`<0`), and counted.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import zipfile
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

DISTRIBUTION = "safety-db"
DATA_FILE = "safety_db/insecure_full.json"
SUMMARY_MAX = 120

_CONSTRAINT = re.compile(r"^\s*(==|<=|>=|<|>)\s*(\S+?)\s*$")
_NAME_RUNS = re.compile(r"[-_.]+")


class _Interval:
    """One interval of affected versions (a plain class: loadable by path, unregistered)."""

    def __init__(
        self,
        lo: str | None = None,
        lo_exclusive: bool = False,
        hi: str | None = None,
        hi_inclusive: bool = False,
    ) -> None:
        self.lo, self.lo_exclusive, self.hi, self.hi_inclusive = lo, lo_exclusive, hi, hi_inclusive

    def __repr__(self) -> str:
        lo = f"{'>' if self.lo_exclusive else '>='}{self.lo}" if self.lo else ""
        hi = f"{'<=' if self.hi_inclusive else '<'}{self.hi}" if self.hi else ""
        return f"_Interval({','.join(p for p in (lo, hi) if p)})"


def load_installed() -> tuple[dict[str, Any], str]:
    """The installed safety-db's `insecure_full.json`, and the package's version."""
    dist = metadata.distribution(DISTRIBUTION)
    path = Path(str(dist.locate_file(DATA_FILE)))
    return json.loads(path.read_text(encoding="utf-8")), dist.version


def convert(
    data: Mapping[str, Any], *, version: str | None = None, tally: Counter[str] | None = None
) -> list[dict[str, Any]]:
    """OSV records for every advisory in `data` (insecure_full.json's shape), sorted by id.

    `version` is the safety-db version named in `database_specific.source` (the installed one by
    default); `tally` counts what could not be expressed."""
    if version is None:
        try:
            version = metadata.version(DISTRIBUTION)
        except metadata.PackageNotFoundError:
            version = "unknown"
    tally = Counter() if tally is None else tally
    meta = data.get("$meta")
    modified = _modified(meta.get("timestamp") if isinstance(meta, Mapping) else None)
    records: dict[str, dict[str, Any]] = {}
    for package, advisories in data.items():
        if package == "$meta" or not isinstance(advisories, list):
            continue
        for adv in advisories:
            record = _record(package, adv, version, modified, tally)
            if record is None:
                continue
            same = records.get(record["id"])
            if same is None:
                records[record["id"]] = record
            else:  # one id under two package names: one record, both affected
                same["affected"].extend(record["affected"])
    return [records[k] for k in sorted(records)]


def _record(
    package: str, adv: Mapping[str, Any], version: str, modified: str | None, tally: Counter[str]
) -> dict[str, Any] | None:
    ranges: list[dict[str, Any]] = []
    versions: list[str] = []
    for spec in adv.get("specs") or []:
        intervals, pinned = parse_spec(spec, tally)
        versions.extend(v for v in pinned if v not in versions)
        ranges.extend(_events(i) for i in intervals if _expressible(i, tally))
    if not ranges and not versions:
        tally["skipped: advisories with no interval or version left"] += 1
        return None
    affected: dict[str, Any] = {"package": {"ecosystem": "PyPI", "name": package}}
    if ranges:
        affected["ranges"] = ranges
    if versions:
        affected["versions"] = versions
    text = str(adv.get("advisory") or "").strip()
    record: dict[str, Any] = {"id": str(adv["id"])}
    if modified:
        record["modified"] = modified
    aliases = _cves(adv.get("cve"))
    if aliases:
        record["aliases"] = aliases
    record["summary"] = _summary(text)
    record["details"] = text
    record["affected"] = [affected]
    record["database_specific"] = {"source": f"{DISTRIBUTION} {version}"}
    return record


def parse_spec(spec: str, tally: Counter[str] | None = None) -> tuple[list[_Interval], list[str]]:
    """The intervals and the pinned versions (`==`) one PyUp spec string says are affected."""
    intervals: list[_Interval] = []
    pinned: list[str] = []
    current: _Interval | None = None
    for part in spec.split(","):
        if not part.strip():
            continue
        m = _CONSTRAINT.match(part)
        if m is None:
            if tally is not None:
                tally["skipped: constraints not understood"] += 1
            continue
        op, ver = m.groups()
        if op == "==":
            pinned.append(ver)
        elif op in (">=", ">"):
            if (
                current is not None
                and current.lo is None
                and current.hi is not None
                and _less(ver, current.hi)
            ):
                current.lo, current.lo_exclusive = ver, op == ">"
            else:
                current = _Interval(lo=ver, lo_exclusive=op == ">")
                intervals.append(current)
        elif current is not None and current.hi is None:
            current.hi, current.hi_inclusive = ver, op == "<="
        else:
            current = _Interval(hi=ver, hi_inclusive=op == "<=")
            intervals.append(current)
    return intervals, pinned


def _expressible(i: _Interval, tally: Counter[str]) -> bool:
    if i.lo_exclusive:
        tally["skipped: intervals with an exclusive lower bound (>X)"] += 1
        return False
    if i.hi is not None:
        lo, hi = _version(i.lo or "0"), _version(i.hi)
        if lo is not None and hi is not None and (hi < lo or (hi == lo and not i.hi_inclusive)):
            tally["skipped: empty intervals"] += 1
            return False
    return True


def _events(i: _Interval) -> dict[str, Any]:
    events: list[dict[str, str]] = [{"introduced": i.lo or "0"}]
    if i.hi is not None:
        events.append({"last_affected" if i.hi_inclusive else "fixed": i.hi})
    return {"type": "ECOSYSTEM", "events": events}


def _version(raw: str) -> Version | None:
    try:
        return Version(raw)
    except InvalidVersion:
        return None


def _less(a: str, b: str) -> bool:
    """a < b as PEP 440 versions; False when either does not parse."""
    va, vb = _version(a), _version(b)
    return va is not None and vb is not None and va < vb


def _cves(raw: Any) -> list[str]:
    if not isinstance(raw, str):
        return []
    return [c for c in (p.strip().strip('"') for p in raw.split(",")) if c]


def _summary(text: str) -> str:
    line = " ".join(text.split())
    if len(line) <= SUMMARY_MAX:
        return line
    cut = line[: SUMMARY_MAX - 3].rsplit(" ", 1)[0]
    return cut + "..."


def _modified(timestamp: Any) -> str | None:
    if not isinstance(timestamp, int | float):
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalize(name: str) -> str:
    return _NAME_RUNS.sub("-", name).lower()


def only(records: Iterable[dict[str, Any]], packages: set[str]) -> list[dict[str, Any]]:
    """The records that affect one of `packages` (PEP 503 names)."""
    return [
        r
        for r in records
        if any(normalize(a["package"]["name"]) in packages for a in r["affected"])
    ]


def write_zip(records: Iterable[dict[str, Any]], out: Path) -> None:
    """A zip of `<id>.json` members, reproducible: fixed timestamps, sorted."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for r in sorted(records, key=lambda r: str(r["id"])):
            info = zipfile.ZipInfo(f"{r['id']}.json", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, json.dumps(r, indent=2, sort_keys=True) + "\n")


def jsonl(records: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", help="only these packages, comma-separated")
    parser.add_argument(
        "--out", type=Path, help="FILE.zip or FILE.jsonl (default: JSONL on stdout)"
    )
    args = parser.parse_args(argv)
    data, version = load_installed()
    tally: Counter[str] = Counter()
    records = convert(data, version=version, tally=tally)
    advisories = sum(len(v) for k, v in data.items() if k != "$meta" and isinstance(v, list))
    if args.packages:
        records = only(records, {normalize(p) for p in args.packages.split(",") if p.strip()})
    if args.out is None:
        sys.stdout.write(jsonl(records))
    elif args.out.suffix == ".zip":
        write_zip(records, args.out)
    elif args.out.suffix in (".jsonl", ".ndjson"):
        args.out.write_text(jsonl(records), encoding="utf-8")
    else:
        parser.error("--out must end in .zip or .jsonl")
    print(
        f"safety-db {version}: {advisories} advisories, {len(records)} OSV records written"
        + (f" to {args.out}" if args.out else ""),
        file=sys.stderr,
    )
    for what, n in sorted(tally.items()):
        print(f"  {what}: {n}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
