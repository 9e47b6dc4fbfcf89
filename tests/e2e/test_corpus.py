"""The bad-input corpus (tests/e2e/corpus/): every case is rejected by the API server with a clear
message, or accepted and Blocked with a precise reason. The operator never crashes, and a control
Model serving beside the corpus is never disturbed.

Each file's first YAML document states the expected outcome; the others are applied in order
(two documents of one object: created, then updated, for the rules on changes):
  expect: rejected | blocked
  message: a substring of the API server's error (rejected) or of the Ready condition (blocked)
  name, reason: the ModelVersion that must end Blocked, and its Ready reason
  then: an action after applying (`delete-model NAME`)
  roundtrip: spec fields that must read back byte-identical
"""

from __future__ import annotations

import json
from pathlib import Path
from string import Template
from typing import Any

import pytest
import yaml

from tests.e2e.helpers import S3, Kubectl, OperatorProcess, wait_for
from tests.e2e.registry import Registry

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(CORPUS.glob("*.yaml"))


def test_corpus_has_the_required_cases() -> None:
    names = " ".join(p.stem for p in CASES)
    for needed in (
        "wrong-name",
        "missing-model",
        "unknown-stage",
        "sha256-wrong-length",
        "uri-outside-prefix",
        "uri-dotdot",
        "uri-other-scheme",
        "secretref-other-namespace",
        "secret-missing",
        "huge-metrics-map",
        "unicode-and-metacharacters",
        "version-zero",
        "version-negative",
        "model-deleted-while-promoting",
        "serving-env-reserved",
        "metrics-rewritten",
        "params-rewritten",
        "credentials-required",
    ):
        assert needed in names, needed


@pytest.fixture
def control(
    kubectl: Kubectl, namespace: str, s3: S3, s3_secret: str, operator: OperatorProcess
) -> Registry:
    reg = Registry(kubectl=kubectl, namespace=namespace, s3=s3, secret=s3_secret)
    reg.model("control")
    reg.version("control", 1, "Production")
    reg.wait_phase("control", 1, "Serving", timeout=90)
    reg.model("credit", gates=[{"metric": "auc", "min": 0.5}])
    return reg


def _load(path: Path, values: dict[str, str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    text = Template(path.read_text()).safe_substitute(values)
    docs = [d for d in yaml.safe_load_all(text) if d]
    return docs[0], docs[1:]


def test_bad_inputs(
    control: Registry, kubectl: Kubectl, namespace: str, s3: S3, operator: OperatorProcess
) -> None:
    _, sha = control.artifact("credit", 1, b"corpus artifact")
    for model in ("nosecret", "doomed"):
        control.artifact(model, 1, b"corpus artifact")
    values = {"NS": namespace, "BUCKET": s3.bucket, "ENDPOINT": s3.endpoint, "SHA": sha}
    control_dep = control.deployments("control")["control-v1"]["metadata"]["uid"]
    failures: list[str] = []
    blocked: list[tuple[Path, dict[str, Any]]] = []
    for path in CASES:
        expect, objects = _load(path, values)
        for obj in objects:
            obj["metadata"]["namespace"] = namespace
        proc = kubectl.run(
            "apply", "-f", "-", input=yaml.safe_dump_all(objects, allow_unicode=True), check=False
        )
        if expect["expect"] == "rejected":
            if proc.returncode == 0:
                failures.append(f"{path.name}: accepted, expected a rejection")
            elif expect["message"] not in proc.stderr:
                failures.append(
                    f"{path.name}: rejected without {expect['message']!r}:\n{proc.stderr}"
                )
            continue
        if proc.returncode != 0:
            failures.append(f"{path.name}: rejected, expected Blocked:\n{proc.stderr}")
            continue
        then = expect.get("then", "")
        if then.startswith("delete-model "):
            kubectl("-n", namespace, "delete", "mdl", then.split()[1], "--wait=false")
        blocked.append((path, expect))
    for path, expect in blocked:
        name = expect["name"]

        def ready(n: str = name) -> dict[str, Any] | None:
            mv = kubectl.get("mv", n, namespace) or {}
            st = mv.get("status", {})
            conds = {c["type"]: c for c in st.get("conditions", [])}
            return conds.get("Ready") if st.get("phase") == "Blocked" else None

        try:
            cond = wait_for(ready, timeout=60, what=f"{name} Blocked")
        except AssertionError as e:
            failures.append(f"{path.name}: {e}")
            continue
        if cond["reason"] != expect["reason"] or expect["message"] not in cond["message"]:
            failures.append(f"{path.name}: Blocked with {cond['reason']}: {cond['message']!r}")
        for field, value in (expect.get("roundtrip") or {}).items():
            got = (kubectl.get("mv", name, namespace) or {})["spec"].get(field)
            if got != value:
                failures.append(f"{path.name}: spec.{field} came back as {json.dumps(got)}")
        model = name.rsplit("-v", 1)[0]
        if control.deployments(model):
            failures.append(f"{path.name}: a Blocked version got a Deployment")
    assert not failures, "\n".join(failures)
    # Nothing else was affected, and the operator is alive and never crashed.
    assert control.status("control", 1)["phase"] == "Serving"
    assert control.deployments("control")["control-v1"]["metadata"]["uid"] == control_dep
    assert control.service_version("control") == "1"
    assert operator.alive()
    assert "Traceback" not in operator.log()
