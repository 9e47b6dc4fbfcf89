"""Helpers shared by every benchmark group: RESULTS.md sections, the machine header, the cluster.

`bench.operator`, `bench.runtime` and `bench.register` each own sections of bench/RESULTS.md. A
section lives between `<!-- NAME:begin -->` and `<!-- NAME:end -->`; `write_section` replaces
exactly that span (or appends it) and leaves every other section alone, so groups can run
separately (`python -m bench --only operator`) without erasing each other's figures. The header
section (machine, versions, date) is rewritten by `write_header` on every run.

Process figures come from /proc (peak RSS is the kernel's VmHWM; CPU is utime + stime of all
threads), so no extra dependency is needed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import platform
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from demo.devenv import read_env_file

REPO = Path(__file__).resolve().parents[1]
DEV = REPO / ".dev"
RESULTS = REPO / "bench" / "RESULTS.md"
TITLE = "# modelreg benchmark results"
INTRO = (
    "Written by `make bench` (`python -m bench`); each section is rewritten by the benchmark that "
    "owns it. Every ratio compares against a baseline measured in the same run on the same machine."
)

# ------------------------------------------------------------------------------------------------
# RESULTS.md


def _markers(name: str) -> tuple[str, str]:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name):
        raise ValueError(f"section name {name!r}: use lower-case letters, digits, . _ -")
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def replace_section(text: str, name: str, body: str, *, first: bool = False) -> str:
    """`text` with section `name` replaced by `body` (appended, or put first, when absent)."""
    begin, end = _markers(name)
    block = f"{begin}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    if not text.strip():
        text = f"{TITLE}\n\n{INTRO}\n"
    if first:
        head, sep, rest = text.partition("\n<!-- ")
        return f"{head.rstrip()}\n\n{block}\n\n" + (f"<!-- {rest}" if sep else "")
    return f"{text.rstrip()}\n\n{block}\n"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # The file itself is the lock: groups run in parallel never lose each other's sections.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_section(name: str, body: str, *, path: Path = RESULTS, first: bool = False) -> None:
    """Replace section `name` of RESULTS.md with `body` (markdown), keeping every other section."""
    with _locked(path):
        text = path.read_text() if path.exists() else ""
        path.write_text(replace_section(text, name, body, first=first))


def write_header(path: Path = RESULTS) -> None:
    write_section("header", header_markdown(), path=path, first=True)


# ------------------------------------------------------------------------------------------------
# Machine, versions, date


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_gib() -> float:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def _pinned_tools() -> dict[str, str]:
    out: dict[str, str] = {}
    env = REPO / "tools" / "versions.env"
    with contextlib.suppress(OSError):
        for line in env.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                k, v = line.split("=", 1)
                out[k.strip().removesuffix("_VERSION").lower()] = v.strip()
    return out


def _git_commit() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        proc = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if proc.returncode == 0:
            return proc.stdout.strip()
    return "-"


def header_markdown() -> str:
    tools = _pinned_tools()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("commit", _git_commit()),
        (
            "machine",
            f"{_cpu_model()}, {os.cpu_count()} cores, {_mem_gib():.0f} GiB RAM, "
            f"{platform.system()} {platform.release()}",
        ),
        ("load average (1, 5, 15 min) when last written", load),
        ("python", platform.python_version()),
        (
            "python packages",
            ", ".join(
                f"{d} {_version(d)}"
                for d in ("kopf", "kubernetes", "boto3", "botocore", "pydantic", "aiohttp")
            ),
        ),
        ("control plane", ", ".join(f"{k} {v}" for k, v in tools.items()) or "-"),
    ]
    lines = [
        "## Machine and versions",
        "",
        "| | |",
        "| --- | --- |",
        *(f"| {k} | {v} |" for k, v in rows),
        "",
        "The control plane (kube-apiserver, etcd, controller-manager, scheduler, kwok fake nodes) and "
        "the S3 server (versitygw) run on the same machine, on 127.0.0.1, and share its cores with "
        "the operator and the benchmark driver.",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Numbers


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100), as numpy's default."""
    if not values:
        return math.nan
    xs = sorted(values)
    k = (len(xs) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def mib(n: float) -> float:
    return n / 1024 / 1024


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


# ------------------------------------------------------------------------------------------------
# Processes


@dataclass(frozen=True)
class ProcSample:
    rss_bytes: int
    hwm_bytes: int
    cpu_seconds: float


_TICKS = os.sysconf("SC_CLK_TCK")


def proc_sample(pid: int) -> ProcSample:
    """Current RSS, peak RSS (VmHWM) and CPU seconds (user + system, all threads) of `pid`."""
    rss = hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
    return ProcSample(rss_bytes=rss, hwm_bytes=hwm, cpu_seconds=cpu)


def self_peak_rss() -> int:
    return proc_sample(os.getpid()).hwm_bytes


# ------------------------------------------------------------------------------------------------
# The local cluster and S3 server


@dataclass(frozen=True)
class Env:
    kubeconfig: str
    kubectl: str
    s3_endpoint: str
    s3_bucket: str
    access_key_id: str
    secret_access_key: str
    region: str

    def kube(self, *args: str, input: str | None = None, timeout: float = 120) -> str:
        proc = subprocess.run(
            [self.kubectl, "--kubeconfig", self.kubeconfig, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def s3_client(self) -> Any:
        import boto3
        import botocore.config

        cfg = botocore.config.Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=32,
        )
        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
            config=cfg,
        )


class EnvError(RuntimeError):
    pass


def load_env() -> Env:
    """The local control plane and S3 server (`make cluster-up`), or $KUBECONFIG + MODELREG_S3_*."""
    kubeconfig = os.environ.get("KUBECONFIG") or str(DEV / "kubeconfig")
    if not Path(kubeconfig).is_file():
        raise EnvError(f"no kubeconfig at {kubeconfig}: run 'make cluster-up' first")
    values = dict(os.environ)
    env_file = DEV / "s3.env"
    if env_file.exists():
        values = {**read_env_file(env_file), **{k: v for k, v in os.environ.items() if v}}
    missing = [
        k
        for k in ("MODELREG_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        if not values.get(k)
    ]
    if missing:
        raise EnvError(f"no S3 server configured: {', '.join(missing)} unset and no {env_file}")
    local = DEV / "bin" / "kubectl"
    kubectl = str(local) if local.exists() else "kubectl"
    return Env(
        kubeconfig=kubeconfig,
        kubectl=kubectl,
        s3_endpoint=values["MODELREG_S3_ENDPOINT"],
        s3_bucket=values.get("MODELREG_S3_BUCKET", "models"),
        access_key_id=values["AWS_ACCESS_KEY_ID"],
        secret_access_key=values["AWS_SECRET_ACCESS_KEY"],
        region=values.get("AWS_REGION", "us-east-1"),
    )


def bench_namespace(what: str) -> str:
    """A fresh namespace name, always prefixed `bench-`."""
    return f"bench-{what}-{secrets.token_hex(3)}"


def create_namespace(env: Env, name: str) -> None:
    assert name.startswith("bench-"), name
    env.kube("create", "namespace", name)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            env.kube("-n", name, "get", "serviceaccount", "default")
            return
        except RuntimeError:
            time.sleep(0.2)
    raise RuntimeError(f"the default ServiceAccount of {name} did not appear in 30 s")


def delete_namespace(env: Env, name: str, *, wait_seconds: float = 0) -> None:
    """Delete a namespace this benchmark created (never anything else: the prefix is checked)."""
    if not name.startswith("bench-"):
        raise ValueError(f"refusing to delete {name!r}: not a bench- namespace")
    with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
        env.kube("delete", "namespace", name, "--wait=false", "--ignore-not-found")
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        try:
            env.kube("get", "namespace", name, "-o", "name")
        except RuntimeError:
            return
        time.sleep(1)


def server_version(env: Env) -> str:
    with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired, ValueError):
        out = json.loads(env.kube("version", "-o", "json"))
        return str(out.get("serverVersion", {}).get("gitVersion", "-"))
    return "-"


def log(msg: str) -> None:
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ensure_crds(env: Env) -> None:
    """Our CRDs, current with this checkout (as the e2e fixtures do), Established."""
    env.kube("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    env.kube(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/models.modelreg.dev",
        "crd/modelversions.modelreg.dev",
    )
