"""Environment and vulnerability audit, end to end (issue 13): real advisories, the real operator.

The advisory database is real published data: the PyUp advisories that the `safety-db` package
ships on PyPI, converted to OSV records by tools/osv_from_safety_db.py, zipped as osv.dev
publishes them, and put in the real S3 server. The operator reads it with the Model's own
credentials (no internet), audits each version's spec.environment.packages, records the findings
in status.audit, and the gate keeps a vulnerable version, or one it cannot audit, out of
Production.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

from tools import osv_from_safety_db as tool

from tests.e2e.helpers import S3, Kubectl, OperatorProcess, condition, wait_for
from tests.e2e.test_cli import Cli, cli, model_file
from tests.e2e.test_sdk_helpers import storage

__all__ = ["cli"]  # the fixture, re-exported so pytest finds it here

PACKAGES = ("pyyaml", "numpy", "pillow", "jinja2", "urllib3", "requests")


def osv_zip() -> tuple[bytes, int]:
    """Real advisories (safety-db on PyPI) for a few packages, as an OSV .zip, and their count."""
    data, version = tool.load_installed()
    records = tool.convert({k: v for k, v in data.items() if k in PACKAGES}, version=version)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for r in records:
            z.writestr(f"{r['id']}.json", json.dumps(r))
    return buf.getvalue(), len(records)


def _mv(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    return kubectl.get("mv", name, namespace) or {}


def _requirements(tmp_path: Path, name: str, *pins: str) -> Path:
    p = tmp_path / name
    p.write_text("# pinned by pip freeze\n" + "\n".join(pins) + "\n")
    return p


def test_packages_are_audited_against_real_advisories_and_gate_promotion(
    cli: Cli,
    kubectl: Kubectl,
    namespace: str,
    s3: S3,
    s3_secret: str,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    db_key = f"{namespace}/advisories/osv-pypi.zip"
    data, records = osv_zip()
    s3.put(db_key, data)
    kubectl.apply(
        {
            "apiVersion": "modelreg.dev/v1alpha1",
            "kind": "Model",
            "metadata": {"name": "iris", "namespace": namespace},
            "spec": {
                "storage": storage(s3, namespace, "iris", s3_secret),
                "advisories": {"uri": f"s3://{s3.bucket}/{db_key}"},
                "promotion": {"audit": {"maxSeverity": "HIGH"}},
                "serving": {"replicas": 1},
            },
        }
    )
    # v1 pins PyYAML 5.3: CVE-2020-1747 (fixed in 5.3.1) and CVE-2020-14343 (fixed in 5.4).
    reqs = _requirements(tmp_path, "v1.txt", "PyYAML==5.3", "numpy==1.26.4", "requests==2.31.0")
    r = cli("register", "iris", str(model_file(tmp_path, "m1.onnx")), "--requirements", str(reqs),
            "--python", "3.11.7", "--wait", "--timeout", "60", "--no-progress")  # fmt: skip
    assert r.code == 0, r.err
    env = _mv(kubectl, namespace, "iris-v1")["spec"]["environment"]
    assert env == {
        "python": "3.11.7",
        "packages": ["numpy==1.26.4", "PyYAML==5.3", "requests==2.31.0"],  # sorted by name
    }

    def audited(name: str) -> dict[str, Any]:
        def done() -> bool:
            return bool(condition(_mv(kubectl, namespace, name), "Audited").get("reason"))

        wait_for(done, timeout=60, what=f"the audit of {name}")
        return _mv(kubectl, namespace, name)

    v1 = audited("iris-v1")
    audit = v1["status"]["audit"]
    found = {
        (f["id"], tuple(f["aliases"]), f["package"], f.get("fixed")) for f in audit["findings"]
    }
    assert found == {
        ("pyup.io-38100", ("CVE-2020-1747",), "PyYAML", "5.3.1"),
        ("pyup.io-39611", ("CVE-2020-14343",), "PyYAML", "5.4"),
    }, audit
    assert {f["severity"] for f in audit["findings"]} == {"UNKNOWN"}  # safety-db rates none
    assert (audit["packages"], audit["findingsTotal"]) == (3, 2)
    assert audit["database"] == f"s3://{s3.bucket}/{db_key}"
    assert audit["advisories"] == records  # every converted record of the six packages
    cond = condition(v1, "Audited")
    assert (cond["status"], cond["reason"]) == ("False", "VulnerabilitiesFound"), cond

    # The gate: UNKNOWN counts as CRITICAL, above maxSeverity HIGH. Refused, with the ids.
    r = cli("promote", "iris", "1", "--timeout", "60")
    assert r.code == 5, (r.out, r.err)
    assert "CVE-2020-1747" in r.err, r.err
    v1 = _mv(kubectl, namespace, "iris-v1")
    ready = condition(v1, "Ready")
    assert (v1["status"]["phase"], ready["reason"]) == ("Blocked", "Vulnerable"), ready

    # v2 pins the fixed PyYAML: audited clean, promoted, serves.
    reqs = _requirements(tmp_path, "v2.txt", "PyYAML==5.4.1", "numpy==1.26.4", "requests==2.31.0")
    r = cli("register", "iris", str(model_file(tmp_path, "m2.onnx")), "--requirements", str(reqs),
            "--wait", "--timeout", "60", "--no-progress")  # fmt: skip
    assert r.code == 0, r.err
    cond = condition(audited("iris-v2"), "Audited")
    assert (cond["status"], cond["reason"]) == ("True", "NoKnownVulnerabilities"), cond
    r = cli("promote", "iris", "2", "--timeout", "90")
    assert r.code == 0, r.err

    # Accepting the two advisories by CVE id lets v1 pass the gate; they are still reported.
    kubectl("-n", namespace, "patch", "model", "iris", "--type=merge", "-p", json.dumps(
        {"spec": {"promotion": {"audit": {"allow": ["CVE-2020-1747", "cve-2020-14343"]}}}}
    ))  # fmt: skip
    r = cli("promote", "iris", "1", "--stage", "Staging", "--timeout", "60")
    assert r.code == 0, (r.out, r.err)
    v1 = _mv(kubectl, namespace, "iris-v1")
    assert [f["allowed"] for f in v1["status"]["audit"]["findings"]] == [True, True]

    # A database that cannot be read: the condition says so and the version is not approved.
    kubectl("-n", namespace, "patch", "model", "iris", "--type=merge", "-p", json.dumps(
        {"spec": {"advisories": {"uri": f"s3://{s3.bucket}/{namespace}/advisories/missing.zip"}}}
    ))  # fmt: skip
    reqs = _requirements(tmp_path, "v3.txt", "PyYAML==6.0.1")
    r = cli("register", "iris", str(model_file(tmp_path, "m3.onnx")), "--requirements", str(reqs),
            "--wait", "--timeout", "60", "--no-progress")  # fmt: skip
    assert r.code == 0, r.err
    cond = condition(audited("iris-v3"), "Audited")
    assert (cond["status"], cond["reason"]) == ("False", "AdvisoriesUnavailable"), cond
    assert "missing.zip does not exist in the store" in cond["message"], cond
    r = cli("promote", "iris", "3", "--timeout", "60")
    assert r.code == 5, (r.out, r.err)
    assert "AdvisoriesUnavailable" in r.err or "does not exist in the store" in r.err, r.err
    assert _mv(kubectl, namespace, "iris-v3")["status"]["phase"] == "Blocked"
    # v2 serves on throughout.
    assert _mv(kubectl, namespace, "iris-v2")["status"]["phase"] == "Serving"


def test_environment_bounds_are_the_api_servers(
    kubectl: Kubectl, namespace: str, cli: Cli, tmp_path: Path
) -> None:
    body = {
        "apiVersion": "modelreg.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": "iris-v1", "namespace": namespace},
        "spec": {
            "model": "iris",
            "version": 1,
            "artifact": {"uri": "s3://models/iris/1/model.onnx", "sha256": "0" * 64},
            "environment": {"packages": [f"pkg{i}==1.0" for i in range(513)]},
        },
    }
    proc = kubectl.run("create", "-f", "-", input=json.dumps(body), check=False)
    assert proc.returncode != 0
    assert "spec.environment.packages: Too many: 513: must have at most 512 items" in proc.stderr
    body["spec"]["environment"] = {"packages": ["numpy>=1.2"]}
    proc = kubectl.run("create", "-f", "-", input=json.dumps(body), check=False)
    assert proc.returncode != 0
    assert "spec.environment.packages[0]" in proc.stderr, proc.stderr
    body["spec"]["environment"] = {"packages": ["numpy==1.26.4"]}
    kubectl.run("create", "-f", "-", input=json.dumps(body))
    patch = json.dumps({"spec": {"environment": {"packages": ["numpy==2.0.0"]}}})
    proc = kubectl.run("-n", namespace, "patch", "mv", "iris-v1", "--type=merge", "-p", patch,
                       check=False)  # fmt: skip
    assert proc.returncode != 0
    assert "spec.environment is immutable once set" in proc.stderr, proc.stderr
    # The CLI refuses an unpinned requirements file before anything is written.
    reqs = _requirements(tmp_path, "loose.txt", "numpy==1.26.4", "pandas>=2")
    r = cli("register", "iris", str(model_file(tmp_path, "m.onnx")), "--requirements", str(reqs),
            "--no-progress")  # fmt: skip
    assert r.code == 2, (r.out, r.err)
    assert "line 3" in r.err, r.err
