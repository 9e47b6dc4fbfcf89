"""The `modelreg` command end to end, run as a real process (the installed entry point, and as a
kubectl plugin through the real kubectl), against the real control plane, S3 server and operator.

Checks what scripts rely on: stdout carries the result (table, JSON, YAML), stderr the progress
and `error: ...` lines, and the exit codes are the documented ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.e2e.helpers import DEV, REPO, S3, Kubectl, OperatorProcess
from tests.e2e.test_sdk_helpers import apply_model, storage


@dataclass
class Run:
    code: int
    out: str
    err: str


@dataclass
class Cli:
    kubeconfig: str
    namespace: str
    s3: S3

    def env(self) -> dict[str, str]:
        venv_bin = str(Path(sys.executable).parent)
        return {
            **os.environ,
            "KUBECONFIG": self.kubeconfig,
            "PATH": f"{venv_bin}:{DEV / 'bin'}:{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(REPO / "operator"),
            # The user's own credentials are not needed: the Model's Secret is readable.
            "AWS_ACCESS_KEY_ID": "",
            "AWS_SECRET_ACCESS_KEY": "",
        }

    def __call__(self, *args: str, timeout: float = 300) -> Run:
        cmd = [sys.executable, "-m", "modelreg.cli.main", "-n", self.namespace, *args]
        return self._run(cmd, timeout)

    def plugin(self, *args: str) -> Run:
        """`kubectl modelreg ...`: kubectl finds kubectl-modelreg on PATH."""
        kubectl = str(DEV / "bin" / "kubectl")
        return self._run([kubectl, "modelreg", "-n", self.namespace, *args], 120)

    def _run(self, cmd: list[str], timeout: float) -> Run:
        p = subprocess.run(
            cmd, capture_output=True, text=True, env=self.env(), timeout=timeout, check=False
        )
        return Run(p.returncode, p.stdout, p.stderr)


@pytest.fixture
def cli(kubeconfig: str, namespace: str, s3: S3) -> Cli:
    return Cli(kubeconfig, namespace, s3)


def model_file(tmp_path: Path, name: str, size: int = 8192) -> Path:
    p = tmp_path / name
    p.write_bytes(os.urandom(size))
    return p


def test_cli_lifecycle(
    cli: Cli,
    kubectl: Kubectl,
    namespace: str,
    s3: S3,
    s3_secret: str,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    apply_model(
        kubectl,
        namespace,
        "credit",
        storage_spec=storage(s3, namespace, "credit", s3_secret),
        gates=[{"metric": "auc", "min": 0.8}],
    )
    one = model_file(tmp_path, "model.onnx")
    r = cli("register", "credit", str(one), "-m", "auc=0.85", "-m", "latency_p99_ms=30",
            "-p", "C=1", "-l", "run=r1", "--framework", "sklearn", "--wait", "--timeout", "60")  # fmt: skip
    assert r.code == 0, r.err
    assert r.out.startswith("registered credit-v1: s3://")
    assert "(Ready)" in r.out
    assert "uploading model.onnx: uploaded 8.0 KiB" in r.err  # not a terminal: one summary line
    r = cli("register", "credit", str(model_file(tmp_path, "v2.onnx")), "-m", "auc=0.93",
            "-m", "latency_p99_ms=18", "-o", "json")  # fmt: skip
    assert r.code == 0, r.err
    assert json.loads(r.out)["spec"]["version"] == 2

    r = cli("promote", "credit", "1", "--timeout", "120")
    assert r.code == 0, r.err
    assert r.out.strip() == "credit-v1: desired stage Production, now Serving"
    r = cli("promote", "credit-v2", "--timeout", "120")
    assert r.code == 0, r.err
    assert r.out.splitlines() == [
        "credit-v2: desired stage Production, now Serving",
        "archived credit-v1",
    ]

    r = cli("list", "credit")
    rows = [line.split() for line in r.out.splitlines()]
    assert rows[0] == ["MODEL", "VERSION", "DESIRED", "STAGE", "PHASE", "METRICS", "AGE"]
    assert rows[1][:5] == ["credit", "1", "Archived", "Archived", "Archived"]
    assert rows[2][:6] == ["credit", "2", "Production", "Production", "Serving",
                           "auc=0.93,latency_p99_ms=18"]  # fmt: skip
    r = cli("get", "credit-v2", "-o", "yaml")
    doc = yaml.safe_load(r.out)
    assert doc["status"]["phase"] == "Serving"
    assert doc["spec"]["lineage"] == {}
    r = cli("get", "credit")
    assert "Production:  2" in r.out
    assert f"Endpoint:    http://credit.{namespace}.svc:80" in r.out
    r = cli("models", "-o", "json")
    assert [m["metadata"]["name"] for m in json.loads(r.out)] == ["credit"]

    r = cli("history", "credit", "2", "-o", "json")
    assert [h["stage"] for h in json.loads(r.out)][-1] == "Production"
    plot = tmp_path / "compare.png"
    r = cli("compare", "credit", "--plot", str(plot))
    assert r.code == 0, r.err
    assert ["auc", "0.85", "0.93"] in [line.split() for line in r.out.splitlines()]
    assert plot.read_bytes()[:4] == b"\x89PNG"
    r = cli("verify", "credit", "2")
    assert r.code == 0
    assert "OK: the stored artifact matches" in r.out

    r = cli("rollback", "credit", "--timeout", "120")
    assert r.code == 0, r.err
    assert r.out.strip() == "archived credit-v2; credit-v1 takes over production (Serving)"

    # The same binary as a kubectl plugin.
    r = cli.plugin("list", "credit", "-o", "json")
    assert r.code == 0, r.err
    assert [mv["status"]["phase"] for mv in json.loads(r.out)] == ["Serving", "Archived"]


def test_cli_exit_codes(
    cli: Cli,
    kubectl: Kubectl,
    namespace: str,
    s3: S3,
    s3_secret: str,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    apply_model(
        kubectl,
        namespace,
        "credit",
        storage_spec=storage(s3, namespace, "credit", s3_secret),
        gates=[{"metric": "auc", "min": 0.8}],
    )
    f = model_file(tmp_path, "model.onnx")

    r = cli("get", "credit", "9")
    assert (r.code, r.err) == (
        3,
        f"error: model version 'credit-v9' not found in namespace '{namespace}'\n",
    )
    r = cli("register", "ghost", str(f))
    assert r.code == 3
    assert r.err.startswith("error: model 'ghost' not found")
    r = cli("register", "credit", str(tmp_path / "missing.onnx"))
    assert r.code == 2
    r = cli("list", "--output", "xml")
    assert r.code == 2
    apply_model(kubectl, namespace, "bare", storage_spec=None)
    r = cli("register", "bare", str(f))
    assert r.code == 5
    assert "has no spec.storage" in r.err

    assert cli("register", "credit", str(f), "-m", "auc=0.5").code == 0
    r = cli("promote", "credit", "1", "--timeout", "60")
    assert r.code == 5
    assert (
        "error: credit-v1 is Blocked: GatesPassed: GatesFailed - gates failed: auc=0.5 is below"
        in r.err
    )
    r = cli("wait", "credit-v1", "--for", "phase=Serving", "--timeout", "2")
    assert r.code == 5  # Blocked: waiting longer would not help
    r = cli("wait", "credit-v1", "--for", "phase=Blocked", "--timeout", "30")
    assert r.code == 0

    s3.client().put_object(Bucket=s3.bucket, Key=f"{namespace}/credit/1/model.onnx", Body=b"x")
    r = cli("verify", "credit-v1", "-o", "json")
    assert r.code == 5
    assert json.loads(r.out)["ok"] is False
    s3.client().delete_object(Bucket=s3.bucket, Key=f"{namespace}/credit/1/model.onnx")
    r = cli("verify", "credit-v1")
    assert r.code == 3
    assert "Traceback" not in r.err


def test_cli_wait_timeout_without_operator(
    cli: Cli, kubectl: Kubectl, namespace: str, s3: S3, s3_secret: str, tmp_path: Path
) -> None:
    apply_model(
        kubectl, namespace, "credit", storage_spec=storage(s3, namespace, "credit", s3_secret)
    )
    assert cli("register", "credit", str(model_file(tmp_path, "m.onnx"))).code == 0
    r = cli("wait", "credit", "1", "--for", "condition=Ready", "--timeout", "2")
    assert r.code == 4
    assert "timed out after 2s" in r.err
