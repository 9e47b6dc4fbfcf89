"""The vulnerability audit (modelreg.lifecycle.advisories) on real advisories: PyUp's safety-db
2021.7.17 converted to OSV by tools/osv_from_safety_db.py, and GitHub's own OSV records for two
requests advisories. Every version fact asserted here was read off those records first."""

from __future__ import annotations

import copy
import io
import json
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from tools import osv_from_safety_db as tool

from modelreg.api.models import AuditGate, Finding, Severity
from modelreg.lifecycle import advisories
from modelreg.lifecycle.advisories import AdvisoryFormatError


@pytest.fixture(scope="module")
def safety_db() -> dict[str, Any]:
    data, version = tool.load_installed()
    assert version == "2021.7.17"
    return data  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def converted(safety_db: dict[str, Any]) -> tuple[list[dict[str, Any]], Counter[str]]:
    tally: Counter[str] = Counter()
    return tool.convert(safety_db, tally=tally), tally


@pytest.fixture(scope="module")
def records(converted: tuple[list[dict[str, Any]], Counter[str]]) -> list[dict[str, Any]]:
    return converted[0]


@pytest.fixture(scope="module")
def index(records: list[dict[str, Any]]) -> advisories.Index:
    return advisories.build_index(records)


def by_id(records: list[dict[str, Any]], rid: str) -> dict[str, Any]:
    return next(r for r in records if r["id"] == rid)


def found(index: advisories.Index, *packages: str) -> dict[str, Finding]:
    findings, total = advisories.audit(list(packages), index, limit=None)
    assert total == len(findings)
    return {f.id: f for f in findings}


# -- GitHub's OSV records, as github/advisory-database publishes them (trimmed to what is read) ---

GHSA_PROXY_AUTH: dict[str, Any] = {
    "id": "GHSA-j8r2-6x86-q33q",
    "aliases": ["CVE-2023-32681"],
    "summary": "Unintended leak of Proxy-Authorization header in requests",
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:C/C:H/I:N/A:N"}],
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "requests"},
            "ranges": [
                {"type": "ECOSYSTEM", "events": [{"introduced": "2.3.0"}, {"fixed": "2.31.0"}]}
            ],
        }
    ],
    "database_specific": {"cwe_ids": ["CWE-200"], "severity": "MODERATE"},
}
GHSA_AUTH_REDIRECT: dict[str, Any] = {
    "id": "GHSA-x84v-xcm2-53pg",
    "aliases": ["CVE-2018-18074"],
    "summary": "Moderate severity vulnerability that affects requests",
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}],
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "requests"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.20.0"}]}],
            "database_specific": {"last_known_affected_version_range": "<= 2.19.1"},
        }
    ],
    "database_specific": {"cwe_ids": ["CWE-522"], "severity": "HIGH"},
}
# NVD's CVSS v3.1 vector for CVE-2020-1747 (PyYAML full_load): 9.8.
CVE_2020_1747_V3 = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
# The CVSS v4 example vector of the OSV schema's own documentation: 5.1.
OSV_SCHEMA_V4_EXAMPLE = "CVSS:4.0/AV:N/AC:L/AT:N/PR:H/UI:N/VC:L/VI:L/VA:N/SC:N/SI:N/SA:N"


def without_ratings(record: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(record)
    out.pop("database_specific", None)
    return out


# -- the converter on safety-db -------------------------------------------------------------------


def test_the_data_says_what_the_tests_rely_on(safety_db: dict[str, Any]) -> None:
    entries = {e["id"]: e for p in ("pyyaml", "numpy", "pillow", "django") for e in safety_db[p]}
    assert {k: (entries[k]["cve"], entries[k]["specs"]) for k in (
        "pyup.io-38100", "pyup.io-39611", "pyup.io-38639", "pyup.io-36810", "pyup.io-38450",
        "pyup.io-36771",
    )} == {
        "pyup.io-38100": ("CVE-2020-1747", ["<5.3.1"]),
        "pyup.io-39611": ("CVE-2020-14343", ["<5.4"]),
        "pyup.io-38639": ("CVE-2019-20477", [">=5.1,<=5.1.2"]),
        "pyup.io-36810": ("CVE-2019-6446", ["<=1.16.0"]),
        "pyup.io-38450": ("CVE-2020-10379", ["<6.2.3", ">=7.0.0,<7.0.1"]),
        "pyup.io-36771": ("CVE-2019-3498", ["<1.11.18,>=1.11.17"]),
    }  # fmt: skip


def test_a_record_is_the_advisory_in_osv_with_no_severity_made_up(
    records: list[dict[str, Any]],
) -> None:
    r = by_id(records, "pyup.io-38100")
    assert r["aliases"] == ["CVE-2020-1747"]
    assert r["details"].startswith("A vulnerability was discovered in the PyYAML library")
    assert r["affected"] == [
        {
            "package": {"ecosystem": "PyPI", "name": "pyyaml"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "5.3.1"}]}],
        }
    ]
    assert r["database_specific"] == {"source": "safety-db 2021.7.17"}
    assert r["modified"] == "2021-07-01T06:00:02Z"  # the database's $meta timestamp
    assert all("severity" not in x for x in records)
    assert all("severity" not in x["database_specific"] for x in records)
    assert advisories.severity_of(r) is Severity.UNKNOWN


def test_a_spec_string_is_an_intersection_in_any_order_or_a_union() -> None:
    def spans(spec: str) -> list[tuple[str | None, str | None]]:
        return [(i.lo, i.hi) for i in tool.parse_spec(spec)[0]]

    assert spans(">=5.1,<=5.1.2") == [("5.1", "5.1.2")]
    assert spans("<1.11.18,>=1.11.17") == [("1.11.17", "1.11.18")]  # django, pyup.io-36771
    assert spans("<6.2.3,>=7.0.0,<7.0.1") == [(None, "6.2.3"), ("7.0.0", "7.0.1")]
    # marshmallow, pyup.io-36496: before 2.15.1, or 3.x before 3.0.0b9 (a >X: not expressible)
    assert spans("<2.15.1,>3.0.0,<3.0.0b9") == [(None, "2.15.1"), ("3.0.0", "3.0.0b9")]
    assert tool.parse_spec("==3.3.5,==3.3.4,==3.3.3,==3.3.2") == (
        [],
        ["3.3.5", "3.3.4", "3.3.3", "3.3.2"],
    )


def test_what_osv_cannot_say_is_skipped_and_counted(
    records: list[dict[str, Any]], converted: tuple[list[dict[str, Any]], Counter[str]]
) -> None:
    _, tally = converted
    ids = {r["id"] for r in records}
    # '>6.0,<6.2.2' excludes 6.0 itself: OSV has no exclusive lower bound
    assert "pyup.io-37772" not in ids
    # django, pyup.io-25715: ['>=1.8,<1.8b2', '<1.7.6']; the first is empty as written (1.8b2
    # sorts before 1.8), and as OSV events it would read "every version from 1.8 on"
    assert by_id(records, "pyup.io-25715")["affected"][0]["ranges"] == [
        {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.7.6"}]}
    ]
    assert by_id(records, "pyup.io-36496")["affected"][0]["ranges"] == [
        {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.15.1"}]}
    ]
    assert tally["skipped: intervals with an exclusive lower bound (>X)"] == 31
    assert tally["skipped: empty intervals"] == 20
    assert tally["skipped: advisories with no interval or version left"] == 23
    assert len(records) == 2948 - 23


def test_the_cli_writes_a_zip_the_operator_reads(tmp_path: Path) -> None:
    out = tmp_path / "safety.zip"
    assert tool.main(["--packages", "PyYAML,numpy", "--out", str(out)]) == 0
    with zipfile.ZipFile(out) as zf:
        assert "pyup.io-38100.json" in zf.namelist()
    parsed = advisories.parse_database(out.read_bytes(), out.name)
    assert {r["affected"][0]["package"]["name"] for r in parsed} == {"pyyaml", "numpy"}
    assert {"pyup.io-36810", "pyup.io-39611"} <= {r["id"] for r in parsed}


# -- matching -------------------------------------------------------------------------------------


def test_pyyaml_5_3_is_affected_by_the_two_full_load_advisories(index: advisories.Index) -> None:
    hits = found(index, "pyyaml==5.3")
    assert set(hits) == {"pyup.io-38100", "pyup.io-39611"}
    assert (hits["pyup.io-38100"].aliases, hits["pyup.io-38100"].fixed) == (
        ["CVE-2020-1747"],
        "5.3.1",
    )
    assert hits["pyup.io-38100"].affected == "<5.3.1"
    assert (hits["pyup.io-39611"].aliases, hits["pyup.io-39611"].fixed) == (
        ["CVE-2020-14343"],
        "5.4",
    )
    assert hits["pyup.io-39611"].severity is Severity.UNKNOWN
    assert hits["pyup.io-39611"].summary.startswith("A vulnerability was discovered in the PyYAML")
    assert found(index, "pyyaml==5.4") == {}


def test_an_inclusive_range_affects_its_last_version_and_stops_there(
    index: advisories.Index,
) -> None:
    hit = found(index, "pyyaml==5.1.1")["pyup.io-38639"]
    assert (hit.aliases, hit.affected, hit.fixed) == (["CVE-2019-20477"], ">=5.1, <=5.1.2", None)
    assert "pyup.io-38639" in found(index, "pyyaml==5.1.2")
    assert "pyup.io-38639" not in found(index, "pyyaml==5.2")
    assert "pyup.io-38639" not in found(index, "pyyaml==5.0")


def test_last_affected(index: advisories.Index) -> None:
    hit = found(index, "numpy==1.16.0")["pyup.io-36810"]
    assert (hit.affected, hit.fixed) == ("<=1.16.0", None)
    assert "pyup.io-36810" not in found(index, "numpy==1.16.1")


def test_two_intervals_of_one_advisory(index: advisories.Index) -> None:
    def pillow(v: str) -> Finding | None:
        return found(index, f"pillow=={v}").get("pyup.io-38450")

    first, second = pillow("6.2.2"), pillow("7.0.0")
    assert first is not None
    assert (first.affected, first.fixed) == ("<6.2.3", "6.2.3")
    assert second is not None
    assert (second.affected, second.fixed) == (">=7.0.0, <7.0.1", "7.0.1")
    assert pillow("6.2.3") is None
    assert pillow("7.0.1") is None


def test_a_reversed_intersection_is_not_read_as_everything(index: advisories.Index) -> None:
    hit = found(index, "django==1.11.17")["pyup.io-36771"]
    assert (hit.affected, hit.fixed) == (">=1.11.17, <1.11.18", "1.11.18")
    assert "pyup.io-36771" not in found(index, "django==1.11.16")
    assert "pyup.io-36771" not in found(index, "django==3.2")


def test_an_explicit_version_list(index: advisories.Index) -> None:
    hit = found(index, "plone==3.3.4")["pyup.io-25965"]
    assert (hit.affected, hit.fixed) == ("==3.3.4", None)
    assert "pyup.io-25965" not in found(index, "plone==3.3.6")


def test_names_compare_as_pep_503_says(index: advisories.Index) -> None:
    assert set(found(index, "PyYAML==5.3")) == set(found(index, "pyyaml==5.3"))
    assert found(index, "PyYAML==5.3")["pyup.io-38100"].package == "PyYAML"
    assert advisories.normalize("Zope.Interface__x") == "zope-interface-x"
    findings, total = advisories.audit(["PyYAML==5.3", "pyyaml==5.3"], index, limit=None)
    assert total == 2
    assert {f.id for f in findings} == {"pyup.io-38100", "pyup.io-39611"}


def test_the_list_keeps_the_worst_and_counts_them_all(index: advisories.Index) -> None:
    old = ["django==1.2", "pillow==2.0.0", "plone==4.0"]
    everything, total = advisories.audit(old, index, limit=None)
    assert total == len(everything) > 64
    kept, same_total = advisories.audit(old, index)
    assert same_total == total
    assert kept == everything[:64]
    assert [f.package for f in everything] == sorted(f.package for f in everything)  # all UNKNOWN


def test_rated_findings_sort_first_unknown_last(records: list[dict[str, Any]]) -> None:
    # CVE-2018-18074 in two databases: GitHub's record (HIGH) and PyUp's (no rating)
    index = advisories.build_index(
        [by_id(records, "pyup.io-36546"), GHSA_PROXY_AUTH, GHSA_AUTH_REDIRECT]
    )
    findings, total = advisories.audit(["requests==2.19.0"], index)
    assert [(f.id, f.severity, f.fixed) for f in findings] == [
        ("GHSA-x84v-xcm2-53pg", Severity.HIGH, "2.20.0"),
        ("GHSA-j8r2-6x86-q33q", Severity.MEDIUM, "2.31.0"),
        ("pyup.io-36546", Severity.UNKNOWN, None),  # <=2.19.1: last_affected, no fix named
    ]
    assert total == 3
    assert findings[1].affected == ">=2.3.0, <2.31.0"
    assert findings[1].summary == "Unintended leak of Proxy-Authorization header in requests"


def test_malformed_package_strings_are_ignored(index: advisories.Index) -> None:
    assert advisories.audit(["pyyaml", "pyyaml>=5.3", "==5.3"], index) == ([], 0)


# -- reading a database ---------------------------------------------------------------------------


@pytest.fixture
def three(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [by_id(records, i) for i in ("pyup.io-38100", "pyup.io-39611", "pyup.io-36810")]


def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, body in members.items():
            zf.writestr(name, body)
    return buf.getvalue()


def test_every_format_reads_back_the_same_records(three: list[dict[str, Any]]) -> None:
    zip_bytes = zipped({f"PyPI/{r['id']}.json": json.dumps(r).encode() for r in three} | {
        "PyPI/README.txt": b"not a record",
    })  # fmt: skip
    as_list = json.dumps(three).encode()
    as_vulns = json.dumps({"vulns": three}).encode()
    as_lines = "".join(json.dumps(r) + "\n" for r in three).encode()
    parse = advisories.parse_database
    assert parse(zip_bytes, "all.zip") == three
    assert parse(zip_bytes, "database") == three  # a zip by its magic, whatever its name
    assert parse(as_list, "db.json") == three
    assert parse(as_vulns, "query.json") == three
    assert parse(as_lines, "db.jsonl") == three
    assert parse(as_lines, "db.json") == three  # not one JSON document: JSON Lines
    assert parse(json.dumps(three[0]).encode(), "PYSEC.json") == three[:1]


def test_the_bounds_hold_against_a_zip_bomb(three: list[dict[str, Any]]) -> None:
    padded = json.dumps(three[0]).encode() + b" " * (4 << 20)  # 4 MiB that deflate to ~4 KiB
    bomb = zipped({"a.json": padded})
    assert len(bomb) < 64 << 10
    with pytest.raises(AdvisoryFormatError, match=r"more than 1048576 bytes uncompressed"):
        advisories.parse_database(bomb, "all.zip", max_bytes=1 << 20)
    assert advisories.parse_database(bomb, "all.zip", max_bytes=8 << 20) == three[:1]
    many = zipped({f"{r['id']}.json": json.dumps(r).encode() for r in three})
    with pytest.raises(AdvisoryFormatError, match=r"more than 2 records"):
        advisories.parse_database(many, "all.zip", max_records=2)
    with pytest.raises(AdvisoryFormatError, match=r"3 records, more than 2"):
        advisories.parse_database(json.dumps(three).encode(), "db.json", max_records=2)
    with pytest.raises(AdvisoryFormatError, match=r"more than 100"):
        advisories.parse_database(json.dumps(three).encode(), "db.json", max_bytes=100)


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00garbage", "db.json", r"^db\.json is not a zip archive, JSON or JSON Lines: not UTF-8"),
        (b"hello world", "db", r"^db is not a zip archive, JSON or JSON Lines: Expecting value at line 1"),
        (b"PK\x03\x04truncated", "all.zip", r"^all\.zip is not a readable zip archive"),
        (b"", "db.json", r"^db\.json is empty$"),
        (b"42", "db.json", r"^db\.json is a JSON number, not OSV records$"),
        (b'[{"id": "a"}, "b"]', "db.json", r"record 2 is a JSON string"),
        (b'{"vulns": {"id": "a"}}', "db.json", r"'vulns' is a JSON object, not a list"),
        (b'{"id": "a"}\n{"id": "b"}\n{"id": ', "db.jsonl", r"^db\.jsonl: line 3 is not JSON"),
        (b"[" * 100_000, "db.json", r"not a zip archive, JSON or JSON Lines: nested too deeply$"),
    ],
)  # fmt: skip
def test_what_is_not_a_database_says_why(data: bytes, name: str, message: str) -> None:
    with pytest.raises(AdvisoryFormatError, match=message):
        advisories.parse_database(data, name)


def test_a_zip_member_that_is_not_a_record_is_named() -> None:
    with pytest.raises(AdvisoryFormatError, match=r"member PyPI/x\.json is not JSON"):
        advisories.parse_database(zipped({"PyPI/x.json": b"{"}), "all.zip")
    with pytest.raises(AdvisoryFormatError, match=r"member y\.json is a JSON array"):
        advisories.parse_database(zipped({"y.json": b"[]"}), "all.zip")
    with pytest.raises(AdvisoryFormatError, match=r"no \.json member"):
        advisories.parse_database(zipped({"README": b"x"}), "all.zip")


# -- the index ------------------------------------------------------------------------------------


def test_withdrawn_and_other_ecosystems_are_left_out(three: list[dict[str, Any]]) -> None:
    withdrawn = copy.deepcopy(three[0]) | {"withdrawn": "2021-08-01T00:00:00Z"}
    elsewhere = copy.deepcopy(three[1])
    elsewhere["affected"][0]["package"]["ecosystem"] = "npm"
    index = advisories.build_index([withdrawn, elsewhere, three[2]])
    assert index.records == 1
    assert found(index, "pyyaml==5.3") == {}
    assert set(found(index, "numpy==1.16.0")) == {"pyup.io-36810"}


def test_a_record_the_index_cannot_use_is_named() -> None:
    with pytest.raises(AdvisoryFormatError, match=r"^record 2 has no id$"):
        advisories.build_index([GHSA_PROXY_AUTH, {"affected": []}])
    bad = GHSA_AUTH_REDIRECT | {"affected": {"package": {}}}
    with pytest.raises(AdvisoryFormatError, match=r"record 1 \(GHSA-x84v-xcm2-53pg\): 'affected' is a JSON object, not a list"):  # fmt: skip
        advisories.build_index([bad])


def test_a_range_with_an_unparseable_event_is_skipped_and_git_ranges_ignored() -> None:
    record = copy.deepcopy(GHSA_AUTH_REDIRECT)
    record["affected"][0]["ranges"] = [
        {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "not a version"}]},
        {"type": "GIT", "repo": "https://github.com/psf/requests", "events": [{"introduced": "0"}]},
    ]
    assert found(advisories.build_index([record]), "requests==2.19.0") == {}


def test_limit_events_bound_a_range() -> None:
    record = copy.deepcopy(GHSA_PROXY_AUTH)
    record["affected"][0]["ranges"][0]["events"] = [{"introduced": "2.3.0"}, {"limit": "2.20.0"}]
    index = advisories.build_index([record])
    assert found(index, "requests==2.19.1")["GHSA-j8r2-6x86-q33q"].affected == ">=2.3.0, <2.20.0"
    assert found(index, "requests==2.20.0") == {}


# -- severity -------------------------------------------------------------------------------------


def test_the_advisorys_own_rating_comes_first() -> None:
    assert advisories.severity_of(GHSA_PROXY_AUTH) is Severity.MEDIUM  # MODERATE
    assert advisories.severity_of(GHSA_AUTH_REDIRECT) is Severity.HIGH
    lower = copy.deepcopy(GHSA_AUTH_REDIRECT)
    lower["database_specific"]["severity"] = "high"
    assert advisories.severity_of(lower) is Severity.HIGH
    moved = without_ratings(GHSA_AUTH_REDIRECT)
    moved["affected"][0]["ecosystem_specific"] = {"severity": "MODERATE"}
    assert advisories.severity_of(moved) is Severity.MEDIUM  # not the CVSS vector's HIGH


def test_cvss_vectors_are_scored_when_the_advisory_gives_no_rating() -> None:
    assert advisories.severity_of(without_ratings(GHSA_PROXY_AUTH)) is Severity.MEDIUM  # 6.1
    assert advisories.severity_of(without_ratings(GHSA_AUTH_REDIRECT)) is Severity.HIGH  # 7.5

    def rated(*severity: dict[str, str]) -> Severity:
        return advisories.severity_of({"id": "GHSA-6757-jp84-gxfx", "severity": list(severity)})

    assert rated({"type": "CVSS_V3", "score": CVE_2020_1747_V3}) is Severity.CRITICAL  # 9.8
    assert rated({"type": "CVSS_V4", "score": OSV_SCHEMA_V4_EXAMPLE}) is Severity.MEDIUM  # 5.1
    # v2 has no CRITICAL: its worst vector, 10.0, is HIGH
    assert rated({"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:C/I:C/A:C"}) is Severity.HIGH
    both = GHSA_PROXY_AUTH["severity"][0], {"type": "CVSS_V3", "score": CVE_2020_1747_V3}
    assert rated(*both) is Severity.CRITICAL  # the highest
    broken = {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N"}
    assert rated(broken, GHSA_PROXY_AUTH["severity"][0]) is Severity.MEDIUM
    assert rated(broken) is Severity.UNKNOWN
    assert rated({"type": "CVSS_V3", "score": OSV_SCHEMA_V4_EXAMPLE}) is Severity.UNKNOWN


# -- the gate -------------------------------------------------------------------------------------


def test_no_gate_blocks_nothing(index: advisories.Index) -> None:
    findings, _ = advisories.audit(["pyyaml==5.3"], index)
    assert advisories.gate_problem(None, findings) is None
    assert not any(f.allowed for f in advisories.mark_allowed(None, findings))
    assert advisories.gate_problem(AuditGate(), findings) is None


def test_block_vulnerable_blocks_on_any_finding(index: advisories.Index) -> None:
    findings, _ = advisories.audit(["pyyaml==5.3", "numpy==1.16.1"], index)
    gate = AuditGate(block_vulnerable=True)
    assert advisories.gate_problem(gate, findings) == (
        "2 findings and blockVulnerable is set: "
        "pyup.io-38100 (CVE-2020-1747) pyyaml 5.3 UNKNOWN, fixed in 5.3.1; "
        "pyup.io-39611 (CVE-2020-14343) pyyaml 5.3 UNKNOWN, fixed in 5.4"
    )
    assert advisories.gate_problem(gate, []) is None


def test_unknown_counts_as_critical_above_a_max_severity(index: advisories.Index) -> None:
    findings, _ = advisories.audit(["pyyaml==5.3"], index)
    problem = advisories.gate_problem(AuditGate(max_severity=Severity.HIGH), findings)
    assert problem is not None
    assert problem.startswith("2 findings above HIGH (UNKNOWN counts as CRITICAL): pyup.io-38100")
    assert advisories.gate_problem(AuditGate(max_severity=Severity.CRITICAL), findings) is None


def test_max_severity_compares_ratings() -> None:
    index = advisories.build_index([GHSA_PROXY_AUTH, GHSA_AUTH_REDIRECT])
    findings, _ = advisories.audit(["requests==2.19.0"], index)
    assert [(f.id, f.severity) for f in findings] == [
        ("GHSA-x84v-xcm2-53pg", Severity.HIGH),
        ("GHSA-j8r2-6x86-q33q", Severity.MEDIUM),
    ]
    assert advisories.gate_problem(AuditGate(max_severity=Severity.MEDIUM), findings) == (
        "1 finding above MEDIUM: GHSA-x84v-xcm2-53pg (CVE-2018-18074) requests 2.19.0 HIGH, "
        "fixed in 2.20.0"
    )
    assert advisories.gate_problem(AuditGate(max_severity=Severity.HIGH), findings) is None
    low = advisories.gate_problem(AuditGate(max_severity=Severity.LOW), findings)
    assert low is not None
    assert low.startswith("2 findings above LOW: GHSA-x84v")


def test_allowed_findings_never_gate(index: advisories.Index) -> None:
    findings, _ = advisories.audit(["pyyaml==5.3"], index)
    gate = AuditGate(block_vulnerable=True, allow=["pyup.io-38100", "cve-2020-14343"])
    marked = advisories.mark_allowed(gate, findings)
    assert [(f.id, f.allowed) for f in marked] == [("pyup.io-38100", True), ("pyup.io-39611", True)]
    assert advisories.gate_problem(gate, findings) is None
    one = AuditGate(max_severity=Severity.LOW, allow=["CVE-2020-1747"])
    assert [f.allowed for f in advisories.mark_allowed(one, findings)] == [True, False]
    problem = advisories.gate_problem(one, findings)
    assert problem is not None
    assert problem.startswith("1 finding above LOW (UNKNOWN counts as")
    assert "pyup.io-39611" in problem
    assert "pyup.io-38100" not in problem


def test_the_message_names_the_worst_few_and_stays_short(index: advisories.Index) -> None:
    findings, total = advisories.audit(["django==1.2", "pillow==2.0.0"], index, limit=None)
    problem = advisories.gate_problem(AuditGate(block_vulnerable=True), findings)
    assert problem is not None
    assert len(problem) <= 600
    assert problem.startswith(f"{total} findings and blockVulnerable is set: pyup.io-")
    assert problem.count(" django 1.2 UNKNOWN") == 3
    assert problem.endswith(f"; and {total - 3} more")
