"""Runtime benchmark: modelreg's model server against MLServer, same model, same client, same body.

Run by `python -m bench.runtime` (and by `python -m bench` through `bench.runtime.main`). Writes
the `runtime` section of bench/RESULTS.md.

What is compared, on this machine, one server at a time, all on 127.0.0.1:
- the model: a scikit-learn LogisticRegression trained on iris (150 x 4), saved twice from the
  same fitted object: ONNX (skl2onnx, no ZipMap) for modelreg, joblib for MLServer's sklearn
  runtime (`mlserver_sklearn.SKLearnModel`, which cannot read ONNX; MLServer ships no ONNX runtime);
- the request: the same bytes for both, one row `[1,4]` FP32 in v2 JSON, no `outputs` field. Each
  server then returns its default outputs: MLServer `predict` (the label), modelreg `label` and
  `probabilities` (a bigger response: modelreg does no less work);
- the load: `loadgen` (bench/runtime/loadgen, Go), closed loop, 8 keep-alive connections, 30 s
  measured after a 3 s warm-up; latency percentiles from every request;
- MLServer 1.7.1 in its own venv (.dev/venv-mlserver, with httptools so uvicorn uses its fast
  parser) with access logs off (`debug: false`, like modelreg's default), run twice: its default
  `parallel_workers: 1` (inference in a worker process) and `parallel_workers: 0` (in the server
  process). The verdict compares modelreg with the better of the two.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import DEV, REPO, log, write_section

SECTION = "runtime"
WORK = DEV / "bench-runtime"
LOADGEN_SRC = REPO / "bench" / "runtime" / "loadgen"
LOADGEN = DEV / "bench-bin" / "loadgen"
ROW = [5.1, 3.5, 1.4, 0.2]
BODY = json.dumps(
    {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": ROW}]},
    separators=(",", ":"),
).encode()


@dataclass
class Run:
    server: str
    config: str
    result: dict[str, Any]
    cpu_seconds: float
    peak_rss_mib: float
    load_before: float

    @property
    def rps(self) -> float:
        return float(self.result["rps"])

    @property
    def p50(self) -> float:
        return float(self.result["p50_ms"])

    @property
    def p99(self) -> float:
        return float(self.result["p99_ms"])


@dataclass
class Server:
    name: str
    config: str
    argv: list[str]
    env: dict[str, str]
    ready_url: str
    infer_url: str
    log_path: Path
    cwd: Path = field(default=REPO)


# ------------------------------------------------------------------------------------------------
# Preparation


def build_loadgen() -> Path:
    sources = [*LOADGEN_SRC.glob("*.go"), LOADGEN_SRC / "go.mod"]
    if LOADGEN.exists() and LOADGEN.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
        return LOADGEN
    go = shutil.which("go") or "/usr/local/go/bin/go"
    LOADGEN.parent.mkdir(parents=True, exist_ok=True)
    log("building the load client (go build bench/runtime/loadgen)")
    subprocess.run(
        [go, "build", "-trimpath", "-o", str(LOADGEN), "."],
        cwd=LOADGEN_SRC,
        check=True,
        timeout=300,
        env={**os.environ, "CGO_ENABLED": "0"},
    )
    return LOADGEN


def train(work: Path) -> tuple[Path, Path, int]:
    """Fit one classifier; save it as ONNX and as joblib. Returns both paths and its label."""
    import joblib
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    est = LogisticRegression(max_iter=500).fit(X.astype(np.float32), y)
    onnx_path = work / "model.onnx"
    onx = to_onnx(
        est,
        X[:1].astype(np.float32),
        options={LogisticRegression: {"zipmap": False}},
        target_opset=17,
    )
    onnx_path.write_bytes(onx.SerializeToString())
    joblib_path = work / "model.joblib"
    joblib.dump(est, joblib_path)
    label = int(est.predict(np.array([ROW], dtype=np.float32))[0])
    return onnx_path, joblib_path, label


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("MODELREG_", "AWS_", "MLSERVER"))
    }


def modelreg_server(onnx_path: Path, work: Path) -> Server:
    port = free_port()
    env = _clean_env()
    env.update(
        {
            "PYTHONPATH": str(REPO / "operator"),
            "MODELREG_MODEL_NAME": "iris",
            "MODELREG_MODEL_VERSION": "1",
            "MODELREG_ARTIFACT_PATH": str(onnx_path),
            "MODELREG_ARTIFACT_SHA256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
            "MODELREG_ARTIFACT_FORMAT": "onnx",
            "MODELREG_HTTP_HOST": "127.0.0.1",
            "MODELREG_HTTP_PORT": str(port),
            "MODELREG_TERMINATION_LOG": str(work / "termination-log"),
        }
    )
    base = f"http://127.0.0.1:{port}"
    return Server(
        name="modelreg",
        config="defaults (1 process, onnxruntime 1 thread)",
        argv=[sys.executable, "-m", "modelreg.runtime"],
        env=env,
        ready_url=base + "/v2/models/iris/ready",
        infer_url=base + "/v2/models/iris/infer",
        log_path=work / "modelreg.log",
    )


def mlserver_server(python: Path, joblib_path: Path, work: Path, parallel_workers: int) -> Server:
    # One directory per configuration: MLServer reads its settings from the model directory.
    model_dir = work / f"mlserver-pw{parallel_workers}"
    model_dir.mkdir(exist_ok=True)
    shutil.copyfile(joblib_path, model_dir / "model.joblib")
    port, grpc, metrics = free_port(), free_port(), free_port()
    (model_dir / "settings.json").write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "http_port": port,
                "grpc_port": grpc,
                "metrics_port": metrics,
                "debug": False,
                "parallel_workers": parallel_workers,
            }
        )
    )
    (model_dir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "iris",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "1"},
            }
        )
    )
    base = f"http://127.0.0.1:{port}"
    return Server(
        name="MLServer",
        config=f"parallel_workers={parallel_workers}"
        + (" (its default)" if parallel_workers == 1 else ""),
        argv=[str(python.parent / "mlserver"), "start", str(model_dir)],
        env=_clean_env(),
        ready_url=base + "/v2/models/iris/ready",
        infer_url=base + "/v2/models/iris/infer",
        log_path=work / f"mlserver-pw{parallel_workers}.log",
        cwd=model_dir,
    )


# ------------------------------------------------------------------------------------------------
# Running


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [pid], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


_TICKS = os.sysconf("SC_CLK_TCK")


def _tree_usage(pid: int) -> tuple[float, int]:
    """CPU seconds and summed peak RSS of a process and its descendants."""
    cpu, hwm = 0.0, 0
    for p in _descendants(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            cpu += (int(fields[11]) + int(fields[12])) / _TICKS
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    hwm += int(line.split()[1]) * 1024
    return cpu, hwm


def _post(url: str, body: bytes) -> dict[str, Any]:
    req = urllib.request.Request(  # noqa: S310 - 127.0.0.1 only
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        return dict(json.loads(resp.read()))


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - 127.0.0.1 only
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def running(server: Server, timeout: float = 180) -> Iterator[subprocess.Popen[bytes]]:
    log(f"starting {server.name} ({server.config})")
    with server.log_path.open("wb") as out:
        proc = subprocess.Popen(
            server.argv, env=server.env, cwd=server.cwd, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{server.name} exited with {proc.returncode}; see {server.log_path}"
                    )
                if _ready(server.ready_url):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{server.name} not ready after {timeout}s")
                time.sleep(0.2)
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def label_of(response: dict[str, Any]) -> int:
    for out in response["outputs"]:
        if out["name"] in ("label", "predict"):
            return int(out["data"][0])
    raise RuntimeError(f"no label in {response}")


def load(
    loadgen: Path, url: str, body_file: Path, concurrency: int, seconds: float
) -> dict[str, Any]:
    proc = subprocess.run(
        [
            str(loadgen),
            "-url",
            url,
            "-body",
            str(body_file),
            "-c",
            str(concurrency),
            "-d",
            f"{seconds}s",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    return dict(json.loads(proc.stdout))


def measure(
    server: Server,
    loadgen: Path,
    body_file: Path,
    *,
    expected_label: int,
    concurrency: int,
    seconds: float,
    warmup: float,
) -> Run:
    with running(server) as proc:
        got = label_of(_post(server.infer_url, BODY))
        if got != expected_label:
            raise RuntimeError(f"{server.name} predicts {got}, the model says {expected_label}")
        if warmup > 0:
            load(loadgen, server.infer_url, body_file, concurrency, warmup)
        load_before = os.getloadavg()[0]
        cpu0, _ = _tree_usage(proc.pid)
        log(f"measuring {server.name} ({server.config}): c={concurrency}, {seconds:.0f}s")
        result = load(loadgen, server.infer_url, body_file, concurrency, seconds)
        cpu1, hwm = _tree_usage(proc.pid)
    if result["errors"]:
        raise RuntimeError(f"{server.name}: errors under load: {result['errors']}")
    log(
        f"{server.name} ({server.config}): {result['rps']:.0f} req/s, "
        f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms"
    )
    return Run(
        server=server.name,
        config=server.config,
        result=result,
        cpu_seconds=cpu1 - cpu0,
        peak_rss_mib=hwm / 1024 / 1024,
        load_before=load_before,
    )


# ------------------------------------------------------------------------------------------------
# Report


def markdown(runs: list[Run], *, concurrency: int, seconds: float, rounds: int) -> str:
    def agg(server: str, config: str) -> dict[str, float]:
        mine = [r for r in runs if r.server == server and r.config == config]
        return {
            "rps": statistics.median(r.rps for r in mine),
            "p50": statistics.median(r.p50 for r in mine),
            "p99": statistics.median(r.p99 for r in mine),
            "cpu_ms": statistics.median(
                1000 * r.cpu_seconds / max(1, r.result["ok"]) for r in mine
            ),
            "rss": max(r.peak_rss_mib for r in mine),
        }

    configs = list(dict.fromkeys((r.server, r.config) for r in runs))
    table = {c: agg(*c) for c in configs}
    ours = next(c for c in configs if c[0] == "modelreg")
    theirs = [c for c in configs if c[0] == "MLServer"]
    best = max(theirs, key=lambda c: table[c]["rps"])
    m, b = table[ours], table[best]
    tput_ratio = m["rps"] / b["rps"]
    p99_ratio = m["p99"] / b["p99"]
    met = tput_ratio >= 1.0 and p99_ratio <= 1.0

    lines = [
        "## Model server: modelreg runtime vs MLServer",
        "",
        f"`python -m bench.runtime`: one sklearn LogisticRegression (iris), payload `[1,4]` FP32 "
        f"v2 JSON, {concurrency} keep-alive connections, {seconds:.0f} s measured per run after a "
        f"warm-up, servers run one after the other ({rounds} round(s), median shown), the same Go "
        "load client for both (`bench/runtime/loadgen`), everything on 127.0.0.1.",
        "",
        "| server | configuration | throughput (req/s) | p50 (ms) | p99 (ms) | server CPU per request (ms) | peak RSS (MiB) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in configs:
        t = table[c]
        lines.append(
            f"| {c[0]} | {c[1]} | {t['rps']:.0f} | {t['p50']:.2f} | {t['p99']:.2f} | "
            f"{t['cpu_ms']:.3f} | {t['rss']:.0f} |"
        )
    lines += [
        "",
        f"Against MLServer's faster configuration here ({best[1]}): throughput ratio "
        f"**{tput_ratio:.2f}x** (target >= 1.0x), p99 ratio **{p99_ratio:.2f}x** (target <= 1.0x): "
        f"target {'met' if met else '**missed**'}.",
    ]
    for c in theirs:
        if c != best:
            t = table[c]
            lines.append(
                f"Against MLServer {c[1]}: throughput {m['rps'] / t['rps']:.2f}x, "
                f"p99 {m['p99'] / t['p99']:.2f}x."
            )
    lines += [
        "",
        "Fairness notes: MLServer serves the joblib file of the same fitted estimator (its sklearn "
        "runtime cannot read ONNX); modelreg serves the ONNX export. Both get the same request "
        "bytes; MLServer answers with `predict` only, modelreg with `label` and `probabilities`. "
        "Both without access logs. Per-run detail:",
        "",
        "| round | server | configuration | req/s | p50 | p90 | p99 | max (ms) | requests | load avg before |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    per_round = len(configs)
    for i, r in enumerate(runs):
        res = r.result
        lines.append(
            f"| {i // per_round + 1} | {r.server} | {r.config} | {res['rps']:.0f} | "
            f"{res['p50_ms']:.2f} | {res['p90_ms']:.2f} | {res['p99_ms']:.2f} | "
            f"{res['max_ms']:.1f} | {res['ok']} | {r.load_before:.2f} |"
        )
    lines += [
        "",
        "Client and servers share the machine's cores (and, during a full `make bench`, the "
        "control plane); the load average column shows how busy the machine was before each run.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.runtime", description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=30.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per run")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--rounds", type=int, default=1, help="repeat modelreg, MLServer x2 this often")
    p.add_argument("--no-write", action="store_true", help="print the section, do not write it")
    args = p.parse_args(argv)
    if not 1 <= args.rounds <= 5 or not 1 <= args.duration <= 600:
        p.error("--rounds must be 1..5 and --duration 1..600")

    from tests.unit.runtime import clientenv

    WORK.mkdir(parents=True, exist_ok=True)
    loadgen = build_loadgen()
    log("preparing the MLServer venv (.dev/venv-mlserver)")
    mlserver_python = clientenv.ensure("mlserver")
    onnx_path, joblib_path, label = train(WORK)
    body_file = WORK / "body.json"
    body_file.write_bytes(BODY)

    runs: list[Run] = []
    for _ in range(args.rounds):
        for server in (
            modelreg_server(onnx_path, WORK),
            mlserver_server(mlserver_python, joblib_path, WORK, parallel_workers=1),
            mlserver_server(mlserver_python, joblib_path, WORK, parallel_workers=0),
        ):
            runs.append(
                measure(
                    server,
                    loadgen,
                    body_file,
                    expected_label=label,
                    concurrency=args.concurrency,
                    seconds=args.duration,
                    warmup=args.warmup,
                )
            )
    text = markdown(runs, concurrency=args.concurrency, seconds=args.duration, rounds=args.rounds)
    if args.no_write:
        print(text)
    else:
        write_section(SECTION, text)
        log(f"wrote the '{SECTION}' section of bench/RESULTS.md")
    return 0
