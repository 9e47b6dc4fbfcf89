"""The vulnerability audit in the planner (status.audit, the Audited condition, the gate) and in
the operator's Auditor (reading a database from a path), without a cluster."""

from __future__ import annotations

import asyncio
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from tools import osv_from_safety_db as tool

from modelreg.api.models import Finding, Model, ModelVersion, Phase, Severity
from modelreg.controller.auditor import Auditor
from modelreg.lifecycle.plan import AuditState, AuditVerdict
from modelreg.settings import OperatorSettings
from tests.unit.test_plan import OK, model, plan, version

DEFAULTS_NOW = "2026-11-24T00:00:00Z"


def gated(**gate: Any) -> Model:
    body = model().model_dump(mode="json", by_alias=True, exclude_none=True)
    body["spec"]["promotion"]["audit"] = gate
    return Model.model_validate(body)


def with_env(mv: ModelVersion, *packages: str) -> ModelVersion:
    body = mv.model_dump(mode="json", by_alias=True, exclude_none=True)
    body["spec"]["environment"] = {"packages": list(packages)}
    return ModelVersion.model_validate(body)


def finding(n: int = 38100, severity: Severity = Severity.UNKNOWN, **kw: Any) -> Finding:
    base: dict[str, Any] = {
        "id": f"pyup.io-{n}",
        "aliases": ["CVE-2020-1747"] if n == 38100 else [],
        "package": "PyYAML",
        "version": "5.3",
        "fixed": "5.3.1",
        "severity": severity,
    }
    return Finding.model_validate({**base, **kw})


def audited(*findings: Finding, packages: int = 1) -> AuditVerdict:
    return AuditVerdict(
        AuditState.AUDITED,
        database="s3://models/osv.zip",
        sha256="ab" * 32,
        advisories=120,
        packages=packages,
        findings=findings,
        total=len(findings),
    )


def run(mvs: list[ModelVersion], m: Model, audits: dict[str, AuditVerdict], **kw: Any) -> Any:
    from tests.unit.test_plan import DEFAULTS

    return plan(
        namespace="ns",
        model_name="m",
        model=m,
        versions=mvs,
        artifacts={mv.metadata.name: OK for mv in mvs},
        deployments=[],
        service=None,
        defaults=DEFAULTS,
        now=DEFAULTS_NOW,
        audits=audits,
        **kw,
    )


def cond(p: Any, name: str, type_: str) -> tuple[str, str, str]:
    c = next(c for c in p.version_status[name].conditions if c.type == type_)
    return c.status, c.reason, c.message


def test_a_finding_above_the_gate_blocks_and_is_recorded() -> None:
    mv = with_env(version(1, "Production"), "PyYAML==5.3")
    p = run([mv], gated(maxSeverity="HIGH"), {"m-v1": audited(finding())})
    st = p.version_status["m-v1"]
    assert st.phase is Phase.BLOCKED
    _status, reason, message = cond(p, "m-v1", "Ready")
    assert reason == "Vulnerable"
    assert "pyup.io-38100" in message
    assert st.audit is not None
    assert [f.id for f in st.audit.findings] == ["pyup.io-38100"]
    assert (st.audit.findings_total, st.audit.audited_at) == (1, DEFAULTS_NOW)
    assert cond(p, "m-v1", "Audited")[:2] == ("False", "VulnerabilitiesFound")
    assert p.apply_deployments == []


def test_unknown_counts_as_critical_but_a_low_finding_passes_a_high_gate() -> None:
    mv = with_env(version(1, "Production"), "PyYAML==5.3")
    p = run([mv], gated(maxSeverity="HIGH"), {"m-v1": audited(finding(severity=Severity.LOW))})
    assert p.version_status["m-v1"].phase is Phase.ROLLING
    p = run([mv], gated(blockVulnerable=True), {"m-v1": audited(finding(severity=Severity.LOW))})
    assert p.version_status["m-v1"].phase is Phase.BLOCKED


def test_allowed_findings_are_reported_and_do_not_gate() -> None:
    mv = with_env(version(1, "Production"), "PyYAML==5.3")
    p = run([mv], gated(maxSeverity="LOW", allow=["cve-2020-1747"]), {"m-v1": audited(finding())})
    st = p.version_status["m-v1"]
    assert st.phase is Phase.ROLLING
    assert st.audit is not None
    assert [f.allowed for f in st.audit.findings] == [True]
    assert "(1 allowed)" in cond(p, "m-v1", "Audited")[2]


def test_the_gate_reads_every_finding_not_only_the_recorded_64() -> None:
    allowed = [finding(n, Severity.CRITICAL, id=f"PYSEC-{n}") for n in range(64)]
    hidden = finding(99999, Severity.UNKNOWN, id="PYSEC-late")  # sorts after the CRITICAL ones
    gate = gated(maxSeverity="HIGH", allow=[f"PYSEC-{n}" for n in range(64)])
    mv = with_env(version(1, "Production"), "PyYAML==5.3")
    p = run([mv], gate, {"m-v1": audited(*allowed, hidden)})
    st = p.version_status["m-v1"]
    assert st.phase is Phase.BLOCKED
    assert "PYSEC-late" in cond(p, "m-v1", "Ready")[2]
    assert st.audit is not None
    assert (len(st.audit.findings), st.audit.findings_total) == (64, 65)


@pytest.mark.parametrize(
    ("verdict", "phase", "reason"),
    [
        (
            AuditVerdict(AuditState.PENDING, database="/db", message="reading"),
            "Verifying",
            "Auditing",
        ),
        (
            AuditVerdict(AuditState.UNAVAILABLE, database="/db", message="/db does not exist"),
            "Blocked",
            "AdvisoriesUnavailable",
        ),
        (AuditVerdict(AuditState.OFF), "Blocked", "AuditNotConfigured"),
    ],
)
def test_a_version_that_cannot_be_audited_is_not_let_through(
    verdict: AuditVerdict, phase: str, reason: str
) -> None:
    mv = with_env(version(1, "Staging"), "PyYAML==6.0.1")
    p = run([mv], gated(maxSeverity="CRITICAL"), {"m-v1": verdict})
    st = p.version_status["m-v1"]
    assert (st.phase.value if st.phase else None, cond(p, "m-v1", "Ready")[1]) == (phase, reason)
    assert st.stage is not None
    assert st.stage.value == "None"


def test_no_packages_no_pass_under_a_gate_but_no_block_without_one() -> None:
    mv = version(1, "Staging")
    p = run([mv], gated(maxSeverity="CRITICAL"), {"m-v1": audited(packages=0)})
    assert cond(p, "m-v1", "Ready")[1] == "NoEnvironment"
    p = run([mv], model(), {"m-v1": audited(packages=0)})
    st = p.version_status["m-v1"]
    assert st.phase is Phase.READY
    assert st.audit is None
    assert cond(p, "m-v1", "Audited")[1] == "NoEnvironment"


def test_without_a_gate_findings_are_reported_only() -> None:
    mv = with_env(version(1, "Production"), "PyYAML==5.3")
    p = run([mv], model(), {"m-v1": audited(finding())})
    st = p.version_status["m-v1"]
    assert st.phase is Phase.ROLLING
    assert st.audit is not None
    assert st.audit.findings_total == 1


def test_an_unchanged_verdict_keeps_its_time_and_writes_nothing() -> None:
    mv = with_env(version(1, "None"), "PyYAML==5.3")
    first = run([mv], model(), {"m-v1": audited(finding())}).version_status["m-v1"]
    body = mv.model_dump(mode="json", by_alias=True, exclude_none=True)
    body["status"] = first.wire()
    again = plan_later(ModelVersion.model_validate(body), {"m-v1": audited(finding())})
    assert "m-v1" not in again.version_status


def plan_later(mv: ModelVersion, audits: dict[str, AuditVerdict]) -> Any:
    from tests.unit.test_plan import DEFAULTS

    return plan(
        namespace="ns",
        model_name="m",
        model=model(),
        versions=[mv],
        artifacts={mv.metadata.name: OK},
        deployments=[],
        service=None,
        defaults=DEFAULTS,
        now="2026-11-24T01:00:00Z",
        audits=audits,
    )


def test_archived_versions_keep_their_last_audit() -> None:
    mv = with_env(version(1, "Archived"), "PyYAML==5.3")
    body = mv.model_dump(mode="json", by_alias=True, exclude_none=True)
    body["status"] = {"audit": {"database": "/db", "packages": 1, "findingsTotal": 3}}
    p = run(
        [ModelVersion.model_validate(body)], model(), {"m-v1": AuditVerdict(AuditState.SKIPPED)}
    )
    st = p.version_status["m-v1"]
    assert st.audit is not None
    assert st.audit.findings_total == 3


# -- the Auditor: a database on a path (the chart's mounted volume) --------------------------------


class _NoStore:
    async def model_store(self, model: Any) -> Any:
        raise AssertionError("a path database needs no object store")


def _real_zip(path: Path) -> Path:
    data, release = tool.load_installed()
    records = tool.convert({"pyyaml": data["pyyaml"]}, version=release)
    with zipfile.ZipFile(path, "w") as z:
        for r in records:
            z.writestr(f"{r['id']}.json", json.dumps(r))
    return path


async def _settle(auditor: Auditor, m: Model, mv: ModelVersion, woke: list[Any]) -> AuditVerdict:
    first = auditor.verdict(m, mv)
    assert first.state is AuditState.PENDING
    for _ in range(200):
        if woke:
            break
        await asyncio.sleep(0.01)
    assert woke == [("ns", "m")]
    return auditor.verdict(m, mv)


def test_the_auditor_reads_a_database_once_and_audits_against_it(tmp_path: Path) -> None:
    db = _real_zip(tmp_path / "osv.zip")
    settings = OperatorSettings(advisory_database=str(db))

    async def go() -> None:
        woke: list[Any] = []
        auditor = Auditor(settings, _NoStore(), woke.append)  # type: ignore[arg-type]
        mv = with_env(version(1, "Staging"), "pyyaml==5.3", "numpy==1.26.4")
        v = await _settle(auditor, model(), mv, woke)
        assert v.state is AuditState.AUDITED
        assert {f.id for f in v.findings} == {"pyup.io-38100", "pyup.io-39611"}
        assert (v.packages, v.total, v.database) == (2, 2, str(db))
        clean = auditor.verdict(model(), with_env(version(2, "Staging"), "pyyaml==5.4.1"))
        assert (clean.state, clean.total) == (AuditState.AUDITED, 0)
        assert auditor.verdict(model(), version(3, "Archived")).state is AuditState.SKIPPED
        await auditor.close()

    asyncio.run(go())


def test_an_unreadable_database_is_said_so_and_retried(tmp_path: Path) -> None:
    settings = OperatorSettings(advisory_database=str(tmp_path / "missing.zip"))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")

    async def go(path: Path, expect: str) -> None:
        woke: list[Any] = []
        s = settings.model_copy(update={"advisory_database": str(path)})
        auditor = Auditor(s, _NoStore(), woke.append)  # type: ignore[arg-type]
        v = await _settle(auditor, model(), with_env(version(1, "Staging"), "pyyaml==5.3"), woke)
        assert v.state is AuditState.UNAVAILABLE
        assert expect in v.message, v.message
        await auditor.close()

    asyncio.run(go(tmp_path / "missing.zip", "does not exist (operator setting advisoryDatabase)"))
    asyncio.run(go(garbage, "is not in OSV format"))


def test_a_directory_of_records_is_a_database(tmp_path: Path) -> None:
    data, release = tool.load_installed()
    for r in tool.convert({"numpy": data["numpy"]}, version=release):
        (tmp_path / f"{r['id']}.json").write_text(json.dumps(r))

    async def go() -> None:
        woke: list[Any] = []
        s = OperatorSettings(advisory_database=str(tmp_path))
        auditor = Auditor(s, _NoStore(), woke.append)  # type: ignore[arg-type]
        v = await _settle(auditor, model(), with_env(version(1, "None"), "numpy==1.16.0"), woke)
        assert [f.id for f in v.findings] == ["pyup.io-36810"]
        await auditor.close()

    asyncio.run(go())
