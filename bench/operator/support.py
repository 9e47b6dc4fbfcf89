"""What the operator benchmarks share: the operator as a process, a Kubernetes client, the audit log.

The operator runs exactly as users run it (`python -m modelreg.controller --namespace NS`), as a
child process whose /proc figures we read. The benchmark's own API client announces itself with the
user agent `modelreg-bench`, so the audit log (kube-apiserver, Metadata level, see
tools/cluster.sh) tells its requests apart from the operator's (`kopf/...` for kopf's watches,
`OpenAPI-Generator/...` for the operator's writes through `modelreg.adapters.kube`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from bench.common import DEV, REPO, Env, ProcSample, proc_sample

GROUP, VERSION = "modelreg.dev", "v1alpha1"
BENCH_AGENT = "modelreg-bench"
OPERATOR_AGENTS = ("kopf/", "OpenAPI-Generator/")
WRITES = frozenset({"create", "update", "patch", "delete", "deletecollection"})
TERMINAL = frozenset({"Ready", "Serving", "Superseded", "Archived", "Blocked", "Failed"})
LOGS = DEV / "bench"  # operator logs and raw profiles (gitignored, like all of .dev/)


# ------------------------------------------------------------------------------------------------
# The Kubernetes API from the benchmark's side


def api_client(env: Env, pool: int = 32) -> client.ApiClient:
    cfg = client.Configuration()
    config.load_kube_config(config_file=env.kubeconfig, client_configuration=cfg)
    cfg.connection_pool_maxsize = pool
    api = client.ApiClient(cfg)
    api.user_agent = BENCH_AGENT
    return api


@dataclass
class Kube:
    api: client.ApiClient
    custom: client.CustomObjectsApi = field(init=False)
    core: client.CoreV1Api = field(init=False)
    apps: client.AppsV1Api = field(init=False)

    def __post_init__(self) -> None:
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)

    def create(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, body, _request_timeout=60
        )
        return result

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, _request_timeout=30
        )
        return result

    def secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        self.core.create_namespaced_secret(
            namespace,
            {"metadata": {"name": name}, "stringData": data, "type": "Opaque"},
            _request_timeout=30,
        )


def in_parallel(fn: Callable[[Any], Any], items: Iterable[Any], workers: int = 16) -> list[Any]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


class VersionWatch:
    """Follows every ModelVersion of a namespace with one watch (no polling); thread-safe reads.

    `converged()` counts versions whose status.observedGeneration == metadata.generation and whose
    phase is terminal; `first_all_converged` is when that count first reached the total.
    """

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.state: dict[str, tuple[bool, str, str]] = {}  # name -> (converged, phase, stage)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.events = 0
        self._thread = threading.Thread(target=self._run, name="version-watch", daemon=True)
        self._rv = ""

    def start(self) -> VersionWatch:
        self._relist()
        self._thread.start()
        return self

    def _record(self, body: dict[str, Any], deleted: bool = False) -> None:
        meta = body.get("metadata", {})
        status = body.get("status") or {}
        name = meta.get("name", "")
        with self.lock:
            if deleted:
                self.state.pop(name, None)
                return
            phase = str(status.get("phase") or "")
            ok = status.get("observedGeneration") == meta.get("generation") and phase in TERMINAL
            self.state[name] = (ok, phase, str(body.get("spec", {}).get("stage", "")))

    def _relist(self) -> None:
        items = self.kube.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "modelversions", _request_timeout=300
        )
        with self.lock:
            self.state.clear()
        for body in items.get("items", []):
            self._record(body)
        self._rv = items["metadata"]["resourceVersion"]

    def _run(self) -> None:
        failures = 0
        while not self.stop.is_set() and failures < 50:
            w = watch.Watch()
            try:
                for ev in w.stream(
                    self.kube.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    "modelversions",
                    resource_version=self._rv,
                    timeout_seconds=60,
                    allow_watch_bookmarks=True,
                ):
                    if self.stop.is_set():
                        break
                    obj = ev["object"]
                    if ev["type"] == "ERROR":
                        self._relist()
                        break
                    self._rv = obj.get("metadata", {}).get("resourceVersion", self._rv)
                    if ev["type"] == "BOOKMARK":
                        continue
                    self.events += 1
                    self._record(obj, deleted=ev["type"] == "DELETED")
                failures = 0
            except Exception:  # a dropped watch: resume from the last resourceVersion
                failures += 1
                time.sleep(0.5)
                with contextlib.suppress(Exception):
                    self._relist()
            finally:
                w.stop()

    def counts(self, predicate: Callable[[str], bool] = lambda stage: True) -> tuple[int, int]:
        """(converged, total) over the versions whose spec.stage satisfies `predicate`."""
        with self.lock:
            rows = [ok for ok, _, stage in self.state.values() if predicate(stage)]
        return sum(rows), len(rows)

    def phases(self) -> Counter[str]:
        with self.lock:
            return Counter(phase or "-" for _, phase, _ in self.state.values())

    def close(self) -> None:
        self.stop.set()


# ------------------------------------------------------------------------------------------------
# The operator process


@dataclass
class Operator:
    """`python -m modelreg.controller --namespace NS` as a child process, optionally profiled."""

    env: Env
    namespaces: list[str]
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    wrapper: list[str] = field(default_factory=list)  # e.g. py-spy record ... --
    module: list[str] = field(default_factory=lambda: ["modelreg.controller"])
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    target_pid: int = 0

    def start(self) -> Operator:
        args = [*self.wrapper, sys.executable, "-m", *self.module]
        for ns in self.namespaces:
            args += ["--namespace", ns]
        env = {
            **os.environ,
            "KUBECONFIG": self.env.kubeconfig,
            "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), str(REPO)]),
            "PYTHONUNBUFFERED": "1",
            "MODELREG_METRICS_PORT": "0",
            "MODELREG_LIVENESS_ENDPOINT": "",
            **self.extra_env,
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = self.log_path.open("wb")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        self.target_pid = self.proc.pid if not self.wrapper else self._find_child()
        return self

    def _find_child(self) -> int:
        """The Python process under a wrapper (py-spy starts it as its child)."""
        assert self.proc is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
                for pid in children.read_text().split():
                    return int(pid)
            time.sleep(0.05)
        raise RuntimeError("the profiled operator did not start")

    def sample(self) -> ProcSample:
        return proc_sample(self.target_pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # SIGINT to the Python process: kopf stops cleanly; a py-spy wrapper then writes its file.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.target_pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def py_spy() -> str | None:
    for candidate in (Path(sys.executable).parent / "py-spy",):
        if candidate.exists():
            return str(candidate)
    from shutil import which

    return which("py-spy")


# ------------------------------------------------------------------------------------------------
# The audit log: API requests per version


def audit_log() -> Path | None:
    found = sorted((DEV / "kwok" / "clusters").glob("*/logs/audit.log"))
    return found[0] if found else None


def audit_offset() -> int:
    path = audit_log()
    return path.stat().st_size if path else -1


@dataclass
class AuditCount:
    total: int
    by_verb: Counter[str]
    by_resource: Counter[str]
    watches: int
    # The kube-apiserver's own view of the operator's requests (not watches): seconds from
    # requestReceivedTimestamp to stageTimestamp at ResponseComplete, and when each write arrived.
    latencies: list[float] = field(default_factory=list)
    write_times: list[float] = field(default_factory=list)

    def summary(self, top: int = 8) -> str:
        parts = [f"{k} {v}" for k, v in self.by_resource.most_common(top)]
        return ", ".join(parts)

    def latency_ms(self, q: float) -> float:
        return 1000 * quantile(self.latencies, q)

    def write_qps(self) -> tuple[float, float]:
        """(mean over the span of the writes, peak over any 1 s window)."""
        if len(self.write_times) < 2:
            return float(len(self.write_times)), float(len(self.write_times))
        times = sorted(self.write_times)
        span = max(times[-1] - times[0], 1.0)
        per_second = Counter(int(t) for t in times)
        return len(times) / span, float(max(per_second.values()))


def quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _audit_time(stamp: str) -> float:
    # RFC 3339 with microseconds, always UTC ("2026-12-07T14:01:02.123456Z") in the audit log.
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def count_operator_requests(offset: int, namespaces: set[str]) -> AuditCount | None:
    """Requests by the operator's user agents in `namespaces`, logged after `offset`."""
    path = audit_log()
    if path is None or offset < 0:
        return None
    by_verb: Counter[str] = Counter()
    by_resource: Counter[str] = Counter()
    total = watches = 0
    latencies: list[float] = []
    write_times: list[float] = []
    keys = [f'"namespace":"{ns}"'.encode() for ns in namespaces]
    with path.open("rb") as f:
        # A restarted kube-apiserver may start a new log: then read it whole (the namespace
        # filter keeps the count exact).
        f.seek(offset if path.stat().st_size >= offset else 0)
        for raw in f:
            if not any(k in raw for k in keys):
                continue
            if b'"stage":"ResponseComplete"' not in raw and b'"stage":"ResponseStarted"' not in raw:
                continue
            try:
                ev = json.loads(raw)
            except ValueError:
                continue
            agent = ev.get("userAgent", "")
            if not agent.startswith(OPERATOR_AGENTS):
                continue
            ref = ev.get("objectRef") or {}
            if ref.get("namespace") not in namespaces:
                continue
            verb = ev.get("verb", "")
            # A watch is logged at ResponseStarted and again at ResponseComplete: count it once.
            if verb == "watch":
                if ev.get("stage") != "ResponseStarted":
                    continue
                watches += 1
            elif ev.get("stage") != "ResponseComplete":
                continue
            else:
                with contextlib.suppress(KeyError, ValueError, TypeError):
                    received = _audit_time(ev["requestReceivedTimestamp"])
                    latencies.append(_audit_time(ev["stageTimestamp"]) - received)
                    if verb in WRITES:
                        write_times.append(received)
            sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
            total += 1
            by_verb[verb] += 1
            by_resource[f"{verb} {ref.get('resource', '?')}{sub}"] += 1
    return AuditCount(
        total=total,
        by_verb=by_verb,
        by_resource=by_resource,
        watches=watches,
        latencies=latencies,
        write_times=write_times,
    )


class ApiProbe:
    """Another client of the same kube-apiserver: a GET of the benchmark's Namespace object every
    `interval` seconds, its round trips kept per phase. The operator
    must not starve other clients: the ratio of the phase "operator converging" to the phase
    "before the operator started" in the same run says by how much it slows them."""

    def __init__(self, kube: Kube, namespace: str, interval: float = 0.1) -> None:
        self._kube = kube
        self._namespace = namespace
        self._interval = interval
        self._phase = "before"
        self.samples: dict[str, list[float]] = {}
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="api-probe", daemon=True)

    def start(self) -> ApiProbe:
        self._thread.start()
        return self

    def phase(self, name: str) -> None:
        self._phase = name

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            t0 = time.perf_counter()
            try:
                self._kube.core.read_namespace(self._namespace)
            except Exception:  # any failure counts: a starved client is what this looks for
                self.failures += 1
                continue
            self.samples.setdefault(self._phase, []).append(time.perf_counter() - t0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def p99_ms(self, phase: str) -> float:
        return 1000 * quantile(self.samples.get(phase, []), 0.99)
