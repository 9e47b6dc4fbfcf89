"""Load and measurement for the runtime benchmark: the Go client, /proc CPU, one server's points.

Called by `bench.runtime.bench`. `measure_server` starts one server, checks its answer, then for
each concurrency runs a warm-up and a measured window of `loadgen` (bench/runtime/loadgen: closed
loop, N keep-alive connections, every latency kept) and reads the CPU time of the server's whole
process tree (utime + stime from /proc/<pid>/stat of the server and every descendant, and the
cutime + cstime of the ones that exited) just before
and just after the measured window. The client is the same binary with the same flags for every
server, with GOMAXPROCS=1 and, when `taskset` exists, pinned to one CPU (`client_cpu`).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import DEV, REPO, log
from bench.runtime.cases import Case, check_answer
from bench.runtime.servers import Server, post, running

LOADGEN_SRC = REPO / "bench" / "runtime" / "loadgen"
LOADGEN = DEV / "bench-bin" / "loadgen"
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Point:
    """One measured window: one case, one server configuration, one concurrency."""

    case: str
    family: str
    config: str
    concurrency: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    ok: int
    refused: int  # 503 answers (a server shedding load), not counted in rps or latencies
    server_cpu_s: float
    client_cpu_s: float
    peak_rss_mib: float
    load_before: float

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.server_cpu_s / max(1, self.ok)

    @property
    def client_cpu_ms_per_request(self) -> float:
        return 1000 * self.client_cpu_s / max(1, self.ok)


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


def tree_usage(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system) and summed peak RSS of a process and its descendants.

    The CPU of descendants that have exited counts too (cutime + cstime of whoever reaped them):
    a server that replaces a worker process must not seem to have used less CPU."""
    cpu, hwm = 0.0, 0
    for p in _descendants(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            cpu += sum(int(f) for f in fields[11:15]) / _TICKS  # utime stime cutime cstime
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    hwm += int(line.split()[1]) * 1024
    return cpu, hwm


@dataclass(frozen=True)
class Client:
    binary: Path
    cpu: int | None  # pinned to this CPU, or not pinned

    def describe(self) -> str:
        where = f"pinned to CPU {self.cpu} (taskset)" if self.cpu is not None else "not pinned"
        return f"`bench/runtime/loadgen` (Go, GOMAXPROCS=1, {where})"

    def run(self, url: str, body_file: Path, concurrency: int, seconds: float) -> dict[str, Any]:
        argv = [str(self.binary), "-url", url, "-body", str(body_file)]
        argv += ["-c", str(concurrency), "-d", f"{seconds}s"]
        if self.cpu is not None:
            argv = ["taskset", "-c", str(self.cpu), *argv]
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
            env={**os.environ, "GOMAXPROCS": "1"},
        )
        return dict(json.loads(proc.stdout))


def make_client(binary: Path, cpu: int | None) -> Client:
    if cpu is not None and shutil.which("taskset") is None:
        log("taskset not found: the load client is not pinned")
        cpu = None
    return Client(binary, cpu)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_server(
    server: Server,
    case: Case,
    client: Client,
    *,
    concurrencies: Sequence[int],
    seconds: float,
    warmup: float,
) -> list[Point]:
    """Start `server`, check its answer, measure each concurrency in turn; stop it."""
    points: list[Point] = []
    body, body_file = case.request(server.output_name)
    with running(server) as proc:
        check_answer(case, server.label, post(server.infer_url, body))
        for conc in concurrencies:
            if warmup > 0:
                client.run(server.infer_url, body_file, conc, warmup)
            load_before = os.getloadavg()[0]
            cpu0, _ = tree_usage(proc.pid)
            client0 = _children_cpu()
            result = client.run(server.infer_url, body_file, conc, seconds)
            client1 = _children_cpu()
            cpu1, hwm = tree_usage(proc.pid)
            errors = dict(result["errors"] or {})
            refused = errors.pop("status 503", 0)
            if errors or not result["first_ok_body"]:
                raise RuntimeError(
                    f"{server.label}: errors under load at c={conc}: {result['errors']} "
                    f"(first: {result.get('first_body', '')[:300]})"
                )
            # The answer under load too: the first 200 of the measured window.
            check_answer(case, server.label, json.loads(result["first_ok_body"]))
            point = Point(
                case=case.key,
                family=server.family,
                config=server.config,
                concurrency=conc,
                rps=float(result["rps"]),
                p50_ms=float(result["p50_ms"]),
                p90_ms=float(result["p90_ms"]),
                p99_ms=float(result["p99_ms"]),
                max_ms=float(result["max_ms"]),
                ok=int(result["ok"]),
                refused=refused,
                server_cpu_s=cpu1 - cpu0,
                client_cpu_s=client1 - client0,
                peak_rss_mib=hwm / 1024 / 1024,
                load_before=load_before,
            )
            log(
                f"  {case.key} {server.label} c={conc}: {point.rps:.0f} req/s, "
                f"p50 {point.p50_ms:.2f} ms, p99 {point.p99_ms:.2f} ms, "
                f"CPU {point.cpu_ms_per_request:.3f} ms/req"
                + (f", {refused} refused (503)" if refused else "")
            )
            points.append(point)
    return points
