"""Unit tests of the `modelreg` CLI (modelreg.cli.main.run) over the SDK with in-memory adapter fakes:
output formats, exit codes, `error:` messages without tracebacks, and the promote/rollback flows.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import platform
from pathlib import Path

import pytest
import yaml

from modelreg.cli import output
from modelreg.cli.main import run
from modelreg.sdk.client import Client
from tests.unit.sdk.fakes import FakeKube, standard


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def env() -> tuple[Client, FakeKube]:
    client, kube, _st, _clock = standard()
    return client, kube


def cli(client: Client, *argv: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), make_client=lambda _a: client, out=out, err=err)
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    p = tmp_path / "model.onnx"
    p.write_bytes(b"x" * 4096)
    return p


def test_register_list_get(env: tuple[Client, FakeKube], model_file: Path, tmp_path: Path) -> None:
    client, kube = env
    metrics = tmp_path / "m.json"
    metrics.write_text('{"auc": 0.91, "latency_p99_ms": 20}')
    r = cli(
        client,
        "register",
        "credit",
        str(model_file),
        "--metrics-file",
        str(metrics),
        "-m",
        "f1=0.5",
        "-p",
        "C=1",
        "-l",
        "run=abc",
        "--framework",
        "sklearn",
        "--no-progress",
    )
    assert r.code == 0, r.err
    assert r.out.startswith("registered credit-v1: s3://models/credit/1/model.onnx sha256:")
    assert kube.mv("credit-v1")["spec"]["metrics"] == {
        "auc": 0.91,
        "latency_p99_ms": 20.0,
        "f1": 0.5,
    }

    r = cli(client, "list", "credit")
    lines = r.out.splitlines()
    assert lines[0].split() == ["MODEL", "VERSION", "DESIRED", "STAGE", "PHASE", "METRICS", "AGE"]
    # The gated metric (auc) comes first.
    assert lines[1].split()[:6] == [
        "credit",
        "1",
        "None",
        "<none>",
        "<none>",
        "auc=0.91,f1=0.5,latency_p99_ms=20",
    ]

    r = cli(client, "-o", "json", "list")
    assert [mv["metadata"]["name"] for mv in json.loads(r.out)] == ["credit-v1"]
    r = cli(client, "get", "credit", "1", "-o", "yaml")
    assert yaml.safe_load(r.out)["spec"]["artifact"]["format"] == "onnx"
    r = cli(client, "get", "credit-v1")
    assert "Desired stage: None" in r.out
    assert "  auc             0.91" in r.out.splitlines()
    r = cli(client, "get", "credit")
    assert "Storage:" in r.out
    assert "auc >= 0.8" in r.out
    assert "credit   1" in r.out


def test_exit_codes_and_messages(env: tuple[Client, FakeKube], model_file: Path) -> None:
    client, kube = env
    r = cli(client, "get", "credit", "7")
    assert (r.code, r.err) == (
        3,
        "error: model version 'credit-v7' not found in namespace 'risk'\n",
    )
    r = cli(client, "register", "ghost", str(model_file), "--no-progress")
    assert r.code == 3
    assert r.err.startswith("error: model 'ghost' not found")
    r = cli(client, "register", "credit", "/nonexistent/model.onnx")
    assert r.code == 2
    assert "no such file or directory" in r.err
    r = cli(client, "register", "credit", str(model_file), "-m", "auc=high")
    assert r.code == 2
    assert "is not a number" in r.err
    r = cli(client, "promote", "credit")
    assert r.code == 2
    assert "names no version" in r.err
    r = cli(client, "frobnicate")
    assert r.code == 2
    kube.add_model("bare")
    r = cli(client, "register", "bare", str(model_file))
    assert r.code == 5
    assert "has no spec.storage" in r.err
    assert "Traceback" not in r.err


def test_register_environment(
    env: tuple[Client, FakeKube], model_file: Path, tmp_path: Path
) -> None:
    client, kube = env
    req = tmp_path / "requirements.txt"
    req.write_text("# pip freeze\nscikit-learn==1.3.0\nnumpy==1.26.4\n")
    image = "ghcr.io/acme/train@sha256:" + "c" * 64
    r = cli(
        client,
        "register",
        "credit",
        str(model_file),
        "--requirements",
        str(req),
        "--python",
        "3.11.7",
        "--image",
        image,
        "--no-progress",
    )
    assert r.code == 0, r.err
    assert kube.mv("credit-v1")["spec"]["environment"] == {
        "python": "3.11.7",
        "packages": ["numpy==1.26.4", "scikit-learn==1.3.0"],
        "image": image,
    }
    assert f"environment: python 3.11.7, 2 package(s), image {image}" in r.err

    r = cli(client, "register", "credit", str(model_file), "--capture-env", "--no-progress")
    assert r.code == 0, r.err
    captured = kube.mv("credit-v2")["spec"]["environment"]
    assert captured["python"] == platform.python_version()
    assert f"pydantic=={importlib.metadata.version('pydantic')}" in captured["packages"]


def test_register_environment_errors(
    env: tuple[Client, FakeKube], model_file: Path, tmp_path: Path
) -> None:
    client, kube = env
    req = tmp_path / "requirements.txt"
    req.write_text("numpy==1.26.4\npandas\n")
    r = cli(client, "register", "credit", str(model_file), "--requirements", str(req))
    assert r.code == 2
    assert r.err.startswith(f"error: {req}: 1 requirement is not pinned to one version with ==")
    assert "line 2 'pandas'" in r.err
    assert "Traceback" not in r.err

    r = cli(
        client, "register", "credit", str(model_file), "--capture-env", "--requirements", str(req)
    )
    assert r.code == 2
    assert "--requirements: not allowed with argument --capture-env" in r.err

    r = cli(client, "register", "credit", str(model_file), "--image", "acme/train:latest")
    assert r.code == 2
    assert "error: image 'acme/train:latest' is not pinned by digest" in r.err
    r = cli(client, "register", "credit", str(model_file), "--python", "3")
    assert r.code == 2
    assert "error: python version '3' is not a version" in r.err
    r = cli(client, "register", "credit", str(model_file), "--requirements", str(tmp_path / "no"))
    assert r.code == 2
    assert "no such requirements file" in r.err
    assert not [key for key in kube.objects if key[0] == "modelversions"]


def test_promote_waits_and_archives_previous(
    env: tuple[Client, FakeKube], model_file: Path
) -> None:
    client, kube = env
    cli(client, "register", "credit", str(model_file), "--stage", "Production", "--no-progress")
    cli(client, "register", "credit", str(model_file), "--no-progress")
    kube.set_status("credit-v1", phase="Serving", stage="Production")

    def operator(plural: str, name: str) -> None:
        if name == "credit-v2" and kube.mv(name)["spec"]["stage"] == "Production":
            kube.set_status(name, phase="Serving", stage="Production")

    kube.on_get = operator
    r = cli(client, "promote", "credit", "v2")
    assert r.code == 0, r.err
    assert r.out.splitlines() == [
        "credit-v2: desired stage Production, now Serving",
        "archived credit-v1",
    ]
    assert kube.mv("credit-v1")["spec"]["stage"] == "Archived"


def test_promote_keep_and_no_wait(env: tuple[Client, FakeKube], model_file: Path) -> None:
    client, kube = env
    cli(client, "register", "credit", str(model_file), "--stage", "Production", "--no-progress")
    cli(client, "register", "credit", str(model_file), "--no-progress")
    r = cli(client, "promote", "credit-v2", "--keep", "--no-wait", "-o", "json")
    assert r.code == 0
    data = json.loads(r.out)
    assert data["archived"] == []
    assert data["stillRequestingProduction"] == ["credit-v1"]
    assert kube.mv("credit-v1")["spec"]["stage"] == "Production"


def test_promote_blocked_and_timeout(env: tuple[Client, FakeKube], model_file: Path) -> None:
    client, kube = env
    cli(client, "register", "credit", str(model_file), "--no-progress")

    def blocked(plural: str, name: str) -> None:
        if plural == "modelversions" and kube.mv(name)["spec"]["stage"] == "Production":
            kube.set_status(
                name,
                phase="Blocked",
                conditions=[
                    {
                        "type": "GatesPassed",
                        "status": "False",
                        "reason": "GateFailed",
                        "message": "auc missing",
                    }
                ],
            )

    kube.on_get = blocked
    r = cli(client, "promote", "credit", "1")
    assert r.code == 5
    assert "error: credit-v1 is Blocked: GatesPassed: GateFailed - auc missing" in r.err
    kube.on_get = None
    kube.set_status("credit-v1", phase="Verifying")
    r = cli(client, "wait", "credit-v1", "--for", "phase=Serving", "--timeout", "3")
    assert r.code == 4
    assert "timed out after 3s" in r.err
    r = cli(client, "wait", "credit-v1", "--for", "colour=blue")
    assert r.code == 2


def test_history_compare_verify(
    env: tuple[Client, FakeKube], model_file: Path, tmp_path: Path
) -> None:
    client, kube = env
    cli(client, "register", "credit", str(model_file), "-m", "auc=0.8", "--no-progress")
    cli(
        client,
        "register",
        "credit",
        str(model_file),
        "-m",
        "auc=0.9",
        "-m",
        "loss=0.1",
        "--no-progress",
    )
    kube.set_status(
        "credit-v1",
        history=[
            # written before history entries had `message`: the operator's words were `reason`
            {
                "stage": "Staging",
                "phase": "Ready",
                "at": "2026-01-01T00:00:00Z",
                "reason": "requested",
            },
            {
                "stage": "Staging",
                "phase": "Blocked",
                "at": "2026-01-02T00:00:00Z",
                "by": "alice",
                "requested": "Production",
                "reason": "beats v0",
                "message": "gate auc>=0.95 failed",
            },
        ],
    )
    r = cli(client, "history", "credit")
    rows = [line.split("   ") for line in r.out.splitlines()]
    assert [c.strip() for c in rows[0] if c.strip()] == [
        "TIME", "VERSION", "FROM", "TO", "PHASE", "BY", "WHY"
    ]  # fmt: skip
    assert r.out.splitlines()[1].split() == [
        "2026-01-01T00:00:00Z", "1", "<none>", "Staging", "Ready", "(operator)", "requested"
    ]  # fmt: skip
    assert r.out.splitlines()[2].split() == [
        "2026-01-02T00:00:00Z", "1", "Staging", "Staging", "(asked", "Production)", "Blocked",
        "alice", "beats", "v0", "[gate", "auc>=0.95", "failed]",
    ]  # fmt: skip
    data = json.loads(cli(client, "history", "credit-v1", "-o", "json").out)
    assert data[1] | {"message": ""} == {
        "name": "credit-v1",
        "version": 1,
        "from": "Staging",
        "stage": "Staging",
        "phase": "Blocked",
        "at": "2026-01-02T00:00:00Z",
        "by": "alice",
        "requested": "Production",
        "reason": "beats v0",
        "message": "",
    }
    assert (data[0]["reason"], data[0]["message"], data[0]["by"]) == ("", "requested", None)
    r = cli(client, "compare", "credit")
    rows = [line.split() for line in r.out.splitlines()]
    assert rows[0] == ["METRIC", "V1", "V2"]
    assert ["auc", "0.8", "0.9"] in rows
    assert ["loss", "<none>", "0.1"] in rows
    r = cli(client, "compare", "credit", "1", "2", "-o", "json")
    assert json.loads(r.out)["metrics"]["auc"] == {"v1": 0.8, "v2": 0.9}
    plot = tmp_path / "cmp.png"
    r = cli(client, "compare", "credit", "--plot", str(plot))
    assert r.code == 0, r.err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = cli(client, "verify", "credit", "2")
    assert r.code == 0
    assert "OK: the stored artifact matches" in r.out
    kube.mv("credit-v2")["spec"]["artifact"]["sha256"] = "0" * 64
    r = cli(client, "verify", "credit-v2", "-o", "json")
    assert r.code == 5
    assert json.loads(r.out)["ok"] is False


def test_rollback(env: tuple[Client, FakeKube], model_file: Path) -> None:
    client, kube = env
    cli(client, "register", "credit", str(model_file), "--stage", "Production", "--no-progress")
    cli(client, "register", "credit", str(model_file), "--stage", "Production", "--no-progress")
    kube.objects[("models", "risk", "credit")]["status"] = {"productionVersion": 2}
    r = cli(client, "rollback", "credit", "--no-wait")
    assert (r.code, r.out.strip()) == (
        0,
        "archived credit-v2; credit-v1 takes over production (requested)",
    )
    kube.objects[("models", "risk", "credit")]["status"] = {}
    r = cli(client, "rollback", "credit", "--no-wait")
    assert r.code == 5
    assert "no version of 'credit' is serving production" in r.err


def test_unexpected_errors_are_one_line_unless_debug(env: tuple[Client, FakeKube]) -> None:
    client, kube = env

    def boom(plural: str, name: str) -> None:
        raise RuntimeError("bug")

    kube.on_get = boom
    r = cli(client, "get", "credit-v1")
    assert r.code == 1
    assert r.err.endswith("error: unexpected RuntimeError: bug\n")
    assert "Traceback" not in r.err
    r = cli(client, "get", "credit-v1", "--debug")
    assert "Traceback" in r.err


def test_output_helpers() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 2, tzinfo=UTC)
    assert output.age("2026-01-01T23:59:30Z", now) == "30s"
    assert output.age("2026-01-01T23:00:00Z", now) == "60m"
    assert output.age("2026-01-01T00:00:00Z", now) == "24h"
    assert output.age("2025-12-01T00:00:00Z", now) == "32d"
    assert output.age(None) == "<none>"
    assert output.number(3.0) == "3"
    assert output.number(0.912345) == "0.9123"
    assert output.human_bytes(1536) == "1.5 KiB"
    assert output.table(["a", "bb"], [(1, None)]) == "A   BB\n1   <none>"


def test_serve_hands_its_arguments_to_the_runtime() -> None:
    from modelreg.cli.main import _serve_args

    assert _serve_args(["serve", "--http-port", "9000"]) == ["--http-port", "9000"]
    assert _serve_args(["-n", "serve", "serve", "-h"]) == ["-h"]  # "-n serve": a namespace
    assert _serve_args(["--debug", "-o", "json", "serve"]) == []
    assert _serve_args(["list", "serve"]) is None
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as e:
        run(["serve", "--log-level", "loud"], out=out, err=err)
    assert e.value.code == 2


def test_alias_set_list_rm_and_refs(env: tuple[Client, FakeKube], model_file: Path) -> None:
    client, kube = env
    for _ in range(2):
        assert cli(client, "register", "credit", str(model_file), "--no-progress").code == 0
    kube.set_status("credit-v1", stage="Archived", phase="Archived")
    r = cli(client, "alias", "set", "credit", "champion", "2")
    assert (r.code, r.out.strip()) == (0, "credit@champion -> version 2")
    r = cli(client, "alias", "set", "credit", "old", "1")
    assert r.code == 5
    assert r.err.strip() == (
        "error: alias 'old' of credit points at version 1, which is Archived: "
        "an alias must name a live version"
    )
    assert cli(client, "alias", "set", "credit", "latest", "2").code == 2
    assert cli(client, "get", "credit@champion").out.startswith("Name:")
    assert "credit-v2" in cli(client, "get", "models:/credit@champion").out
    assert "@champion -> v2" in cli(client, "alias", "list", "credit").out
    assert "@champion -> v2" in cli(client, "get", "credit").out
    kube.set_status("credit-v2", stage="Archived", phase="Archived")
    listed = cli(client, "alias", "list", "credit").out
    assert (
        "does not resolve: alias 'champion' of credit points at version 2, which is Archived"
        in listed
    )
    r = cli(client, "get", "credit@champion")
    assert r.code == 5
    assert "it does not resolve" in r.err
    assert cli(client, "alias", "rm", "credit", "champion").code == 0
    r = cli(client, "alias", "rm", "credit", "champion")
    assert r.code == 3
    assert "has no alias 'champion'" in r.err


def test_list_filters(env: tuple[Client, FakeKube], model_file: Path) -> None:
    client, kube = env
    for auc in ("0.85", "0.93"):
        cli(client, "register", "credit", str(model_file), "-m", f"auc={auc}", "--no-progress")
    kube.set_status("credit-v2", stage="Staging", phase="Ready")
    kube.objects[("models", "risk", "credit")]["spec"]["tags"] = {"team": "risk"}

    def names(*args: str) -> list[str]:
        r = cli(client, "list", *args, "-o", "json")
        assert r.code == 0, r.err
        return [v["metadata"]["name"] for v in json.loads(r.out)]

    assert names("--where", "auc>=0.9") == ["credit-v2"]
    assert names("--where", "auc>=0.8", "--where", "auc<0.9") == ["credit-v1"]
    assert names("--stage", "staging") == ["credit-v2"]
    assert names("--phase", "Ready,Serving") == ["credit-v2"]
    assert names("--tag", "team=risk", "credit") == ["credit-v1", "credit-v2"]
    assert names("--tag", "team=fraud") == []
    r = cli(client, "list", "--where", "auc>>1")
    assert r.code == 2
    assert "--where 'auc>>1'" in r.err
    r = cli(client, "list", "--phase", "Shiny")
    assert r.code == 2
    assert "unknown phase 'Shiny'" in r.err


def _onnx_file(path: Path, *, sequence_output: bool = False) -> Path:
    """A real ONNX model: x [N, 4] -> label [N] (INT64), scores [N, 4] (and a sequence output)."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=0),
        helper.make_node("Identity", ["x"], ["scores"]),
    ]
    outputs = [
        helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 4]),
    ]
    if sequence_output:
        nodes.append(helper.make_node("SequenceConstruct", ["x"], ["rows"]))
        outputs.append(helper.make_tensor_sequence_value_info("rows", TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])], outputs
    )
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_register_signature(env: tuple[Client, FakeKube], tmp_path: Path) -> None:
    client, kube = env
    model = _onnx_file(tmp_path / "model.onnx")
    r = cli(client, "register", "credit", str(model), "--no-progress")
    assert r.code == 0, r.err
    assert kube.mv("credit-v1")["spec"]["signature"] == {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "scores", "datatype": "FP32", "shape": [-1, 4]},
        ],
    }
    assert "signature: 1 input(s), 2 output(s)\n" in r.err

    given = tmp_path / "signature.yaml"
    given.write_text(
        "inputs:\n  - {name: features, datatype: FP64, shape: [-1, 4]}\n"
        "outputs:\n  - {name: predict, datatype: INT64, shape: [-1]}\n"
    )
    r = cli(client, "register", "credit", str(model), "--signature", str(given), "--no-progress")
    assert r.code == 0, r.err
    assert kube.mv("credit-v2")["spec"]["signature"] == {
        "inputs": [{"name": "features", "datatype": "FP64", "shape": [-1, 4]}],
        "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]}],
    }
    assert "signature: 1 input(s), 1 output(s)\n" in r.err

    as_json = tmp_path / "signature.json"
    as_json.write_text('{"outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}]}')
    r = cli(client, "register", "credit", str(model), "--signature", str(as_json), "--no-progress")
    assert r.code == 0, r.err
    assert "signature: 0 input(s), 1 output(s)\n" in r.err

    r = cli(client, "register", "credit", str(model), "--no-signature", "--no-progress")
    assert r.code == 0, r.err
    assert "signature" not in kube.mv("credit-v4")["spec"]
    assert "signature" not in r.err

    # Not ONNX: nothing is captured, and nothing said.
    r = cli(client, "register", "credit", str(given), "--format", "skops", "--no-progress")
    assert r.code == 0, r.err
    assert "signature" not in kube.mv("credit-v5")["spec"]
    assert "signature" not in r.err


def test_register_signature_notes_what_auto_leaves_out(
    env: tuple[Client, FakeKube], model_file: Path, tmp_path: Path
) -> None:
    client, kube = env
    model = _onnx_file(tmp_path / "seq.onnx", sequence_output=True)
    r = cli(client, "register", "credit", str(model), "--no-progress")
    assert r.code == 0, r.err
    assert r.err.splitlines()[-2:] == [
        "signature: seq.onnx: output 'rows' left out: it is a sequence of tensors, not a tensor",
        "signature: 1 input(s), 2 output(s)",
    ]
    # model_file holds no ONNX model: registered all the same, without a signature, and said so.
    r = cli(client, "register", "credit", str(model_file), "--no-progress")
    assert r.code == 0, r.err
    assert "signature" not in kube.mv("credit-v2")["spec"]
    (line,) = [x for x in r.err.splitlines() if x.startswith("signature:")]
    assert line.startswith(f"signature: no signature recorded: {model_file}: not an ONNX model")


def test_register_signature_errors(
    env: tuple[Client, FakeKube], model_file: Path, tmp_path: Path
) -> None:
    client, kube = env
    bad = tmp_path / "bad.yaml"
    bad.write_text("inputs:\n  - {name: x, datatype: float32, shape: [-1, 4]}\n")
    r = cli(client, "register", "credit", str(model_file), "--signature", str(bad))
    assert r.code == 2
    assert r.err == (
        f"error: {bad}: inputs[0] ('x'): datatype 'float32' is not one of BOOL, UINT8, UINT16, "
        "UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES\n"
    )
    bad.write_text("inputs: [\n")
    r = cli(client, "register", "credit", str(model_file), "--signature", str(bad))
    assert r.code == 2
    assert r.err.startswith(f"error: {bad}: not valid JSON/YAML")
    r = cli(client, "register", "credit", str(model_file), "--signature", str(tmp_path / "no"))
    assert r.code == 2
    assert (
        r.err == f"error: --signature: cannot read {tmp_path / 'no'}: No such file or directory\n"
    )
    r = cli(
        client, "register", "credit", str(model_file), "--signature", str(bad), "--no-signature"
    )
    assert r.code == 2
    assert "--no-signature: not allowed with argument --signature" in r.err
    assert "Traceback" not in r.err
    assert not [key for key in kube.objects if key[0] == "modelversions"]


def test_describe_model_shows_the_rollout_and_a_canary_under_way() -> None:
    from modelreg.api.models import Model

    m = Model.model_validate(
        {
            "metadata": {"name": "m", "namespace": "ns"},
            "spec": {
                "rollout": {
                    "strategy": "Canary",
                    "steps": [25, 100],
                    "stepSeconds": 30,
                    "analysis": {"maxErrorRate": 0.01, "maxP99LatencyMs": 250},
                },
                "serving": {
                    "resources": {"requests": {"cpu": "100m"}},
                    "autoscaling": {"minReplicas": 2, "maxReplicas": 5},
                },
            },
            "status": {
                "canary": {
                    "version": 3,
                    "stable": 2,
                    "step": 1,
                    "steps": 2,
                    "weight": 25,
                    "canaryReplicas": 1,
                    "stableReplicas": 2,
                    "share": 0.3333,
                    "message": "canary step 1/2 (25%): version 3 has 1 of 3 ready pods (33%)",
                }
            },
        }
    )
    text = output.describe_model(m, [])
    assert (
        "Rollout:     Canary 25%, 100% every 30s (analysis: errors <= 1.0%, p99 <= 250 ms); "
        "autoscaling 2..5 replicas at 80% CPU"
    ) in text
    assert "Canary:      canary step 1/2 (25%): version 3 has 1 of 3 ready pods (33%)" in text
    blue = Model.model_validate({"metadata": {"name": "m", "namespace": "ns"}, "spec": {}})
    assert "Rollout:     BlueGreen\n" in output.describe_model(blue, [])
    assert "Canary:" not in output.describe_model(blue, [])


def test_describe_shows_the_shadow_its_gate_and_the_comparison() -> None:
    from modelreg.api.models import Model, ModelVersion

    m = Model.model_validate(
        {
            "metadata": {"name": "m", "namespace": "ns"},
            "spec": {
                "shadow": {"version": 3, "samplePercent": 25},
                "promotion": {"shadow": {"minAgreement": 0.99, "minRequests": 500}},
            },
            "status": {
                "conditions": [
                    {
                        "type": "Shadowing",
                        "status": "True",
                        "reason": "Mirroring",
                        "message": "version 2 mirrors 25% of its inference requests to version 3",
                    }
                ]
            },
        }
    )
    text = output.describe_model(m, [])
    assert (
        "Shadow:      version 3, 25% of requests: Mirroring: version 2 mirrors 25% of its "
        "inference requests to version 3"
    ) in text
    assert "  shadow: agreement >= 0.99 over >= 500 requests" in text
    mv = ModelVersion.model_validate(
        {
            "metadata": {"name": "m-v3", "namespace": "ns"},
            "spec": {
                "model": "m",
                "version": 3,
                "artifact": {"uri": "s3://b/m/3/model.onnx", "sha256": "a" * 64},
            },
            "status": {
                "shadow": {
                    "servingVersion": 2,
                    "since": "2026-12-05T01:00:00Z",
                    "samplePercent": 25,
                    "requests": 210,
                    "compared": 200,
                    "agreed": 197,
                    "errors": 10,
                    "dropped": 4,
                    "agreement": 0.985,
                    "p99LatencyMs": 12.5,
                }
            },
        }
    )
    text = output.describe_version(mv)
    assert "Shadow:        compared with version 2" in text
    assert "  Agreement    98.50% (197 of 200 compared)" in text
    assert "  Mirrored     210 (10 failed, 4 dropped) at 25% since 2026-12-05T01:00:00Z" in text
    assert "  p99 latency  12.5 ms" in text
