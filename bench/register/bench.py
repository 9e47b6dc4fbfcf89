"""Registering a large artifact: `modelreg register` against a raw boto3 `upload_file`.

Called by `python -m bench.register` and `python -m bench` (`make bench`). Against the local S3
server and control plane (`make cluster-up`), in one run on one machine:

- the baseline is a fresh Python process that calls boto3's managed `upload_file` (s3transfer:
  8 MiB parts, 10 threads) with the client settings S3-compatible stores need;
- the candidate is a fresh `modelreg register MODEL FILE` process: it reads the Model and the
  Secret, uploads (streaming multipart, bounded concurrency, sha256 computed on the way) and
  creates the ModelVersion. Both wall times include interpreter start-up, so the ratio compares
  the two commands a user would actually run.

Rounds alternate the order (baseline first, then candidate first); each round gives a paired
ratio (the two runs are back to back, so a slow moment of the machine hits both), and the
headline is the median of those ratios, next to the median wall times.
Peak RSS is the child's `ru_maxrss` (from wait4), measured for two artifact sizes to show it does
not grow with the artifact. Every object written is deleted after its round; the namespace after
the run. Targets (issue 5): throughput ratio >= 0.9, peak RSS < 150 MiB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.common import (
    REPO,
    Env,
    bench_namespace,
    create_namespace,
    delete_namespace,
    ensure_crds,
    load_env,
    log,
    mib,
    verdict,
    write_section,
)

SECTION = "register"
MODEL = "bench"
RATIO_TARGET = 0.9
RSS_TARGET_MIB = 150.0

RAW_UPLOAD = textwrap.dedent(
    """
    import sys, time
    import boto3, botocore.config
    endpoint, key_id, secret, region, bucket, key, path = sys.argv[1:8]
    cfg = botocore.config.Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path"},
    )
    c = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key_id,
                     aws_secret_access_key=secret, region_name=region, config=cfg)
    t = time.perf_counter()
    c.upload_file(path, bucket, key)
    print(time.perf_counter() - t)
    """
)


@dataclass(frozen=True)
class Sample:
    wall: float  # seconds, whole process
    inner: float | None  # seconds of the upload call itself (baseline only)
    peak_rss: int  # bytes


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[Sample, str]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
    assert proc.stdout is not None
    assert proc.stderr is not None
    out = proc.stdout.read().decode()
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:4])}... failed ({proc.returncode}): {err.strip()[-2000:]}"
        )
    inner = None
    lines = out.strip().splitlines()
    if lines:
        try:
            inner = float(lines[-1])
        except ValueError:
            inner = None
    return Sample(wall, inner, usage.ru_maxrss * 1024), out


def make_file(path: Path, size: int) -> None:
    """Incompressible bytes, written in 64 MiB blocks (one block repeated would let a store dedupe)."""
    block = 64 * 1024 * 1024
    with path.open("wb") as f:
        remaining = size
        while remaining:
            n = min(block, remaining)
            f.write(os.urandom(n))
            remaining -= n


def setup(env: Env, ns: str) -> None:
    ensure_crds(env)
    create_namespace(env, ns)
    env.kube(
        "-n", ns, "create", "secret", "generic", "s3-credentials",
        f"--from-literal=AWS_ACCESS_KEY_ID={env.access_key_id}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={env.secret_access_key}",
    )  # fmt: skip
    model = {
        "apiVersion": "modelreg.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": MODEL, "namespace": ns},
        "spec": {
            "storage": {
                "uri": f"s3://{env.s3_bucket}/{ns}/{MODEL}/",
                "endpoint": env.s3_endpoint,
                "region": env.region,
                "secretRef": {"name": "s3-credentials"},
            }
        },
    }
    env.kube("apply", "-f", "-", input=yaml.safe_dump(model))


def child_env(env: Env) -> dict[str, str]:
    return {
        **os.environ,
        "KUBECONFIG": env.kubeconfig,
        "PYTHONPATH": str(REPO / "operator"),
        "MODELREG_S3_ENDPOINT": env.s3_endpoint,
    }


def raw(env: Env, path: Path, key: str) -> Sample:
    cmd = [
        sys.executable, "-c", RAW_UPLOAD, env.s3_endpoint, env.access_key_id,
        env.secret_access_key, env.region, env.s3_bucket, key, str(path),
    ]  # fmt: skip
    sample, _ = run_child(cmd, child_env(env))
    return sample


def register(env: Env, ns: str, path: Path) -> tuple[Sample, str]:
    cmd = [
        sys.executable, "-m", "modelreg.cli.main", "-n", ns, "-o", "json",
        "register", MODEL, str(path), "--no-progress",
    ]  # fmt: skip
    sample, out = run_child(cmd, child_env(env))
    doc = yaml.safe_load(out)
    return sample, str(doc["spec"]["artifact"]["uri"])


def delete_object(env: Env, uri: str) -> None:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    env.s3_client().delete_object(Bucket=bucket, Key=key)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.register", description=__doc__.split("\n")[0])
    p.add_argument("--size-mib", type=int, default=1024, help="the artifact (default 1024 MiB)")
    p.add_argument("--small-mib", type=int, default=256, help="second size for the RSS check")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    p.add_argument("--no-write", action="store_true", help="print, do not touch RESULTS.md")
    args = p.parse_args(argv)

    env = load_env()
    ns = bench_namespace("register")
    log(f"register: namespace {ns}, {args.size_mib} MiB artifact, {args.rounds} rounds")
    setup(env, ns)
    raws: list[Sample] = []
    regs: list[Sample] = []
    small: list[Sample] = []
    try:
        with tempfile.TemporaryDirectory(prefix="modelreg-bench-") as tmp:
            big = Path(tmp) / "model.bin"
            make_file(big, args.size_mib * 1024 * 1024)
            little = Path(tmp) / "small.bin"
            make_file(little, args.small_mib * 1024 * 1024)
            for i in range(args.rounds):
                order = ("raw", "register") if i % 2 == 0 else ("register", "raw")
                for which in order:
                    if which == "raw":
                        key = f"{ns}/raw/{i}/model.bin"
                        s = raw(env, big, key)
                        delete_object(env, f"s3://{env.s3_bucket}/{key}")
                        raws.append(s)
                    else:
                        s, uri = register(env, ns, big)
                        delete_object(env, uri)
                        regs.append(s)
                    log(
                        f"round {i + 1} {which}: {s.wall:.2f} s, peak RSS {mib(s.peak_rss):.0f} MiB"
                    )
                s, uri = register(env, ns, little)
                delete_object(env, uri)
                small.append(s)
    finally:
        delete_namespace(env, ns)

    size = args.size_mib * 1024 * 1024
    raw_wall = statistics.median(s.wall for s in raws)
    reg_wall = statistics.median(s.wall for s in regs)
    raw_inner = statistics.median(s.inner for s in raws if s.inner is not None)
    # Each round runs the two back to back, so a per-round ratio cancels slow periods of this
    # shared machine; the headline is the median of those paired ratios.
    paired = [r.wall / g.wall for r, g in zip(raws, regs, strict=True)]
    ratio = statistics.median(paired)
    rss_big = max(s.peak_rss for s in regs)
    rss_small = max(s.peak_rss for s in small)
    rss_raw = max(s.peak_rss for s in raws)
    ok_ratio = ratio >= RATIO_TARGET
    ok_rss = mib(rss_big) < RSS_TARGET_MIB
    body = textwrap.dedent(
        f"""
        ## Registering a {args.size_mib} MiB artifact (`bench/register`)

        `modelreg register` (a fresh process: reads the Model and its Secret, streams a multipart
        upload with the sha256 computed on the way, creates the ModelVersion) against a fresh
        Python process running boto3's managed `upload_file` of the same file to the same local
        S3 server. {args.rounds} alternating rounds; wall times include start-up; the ratio is
        the median of the per-round (paired) ratios.

        | | baseline: boto3 `upload_file` | `modelreg register` |
        | --- | --- | --- |
        | wall time (median) | {raw_wall:.2f} s | {reg_wall:.2f} s |
        | throughput | {mib(size) / raw_wall:.0f} MiB/s | {mib(size) / reg_wall:.0f} MiB/s |
        | peak RSS | {mib(rss_raw):.0f} MiB | {mib(rss_big):.0f} MiB ({args.small_mib} MiB artifact: {mib(rss_small):.0f} MiB) |

        - Throughput ratio (register / baseline): **{ratio:.2f}** (target >= {RATIO_TARGET}: {verdict(ok_ratio)}); per round: {", ".join(f"{x:.2f}" for x in paired)}; ratio of the medians: {raw_wall / reg_wall:.2f}.
        - Peak RSS of `modelreg register`: **{mib(rss_big):.0f} MiB** for {args.size_mib} MiB, {mib(rss_small):.0f} MiB for {args.small_mib} MiB: it does not grow with the artifact (target < {RSS_TARGET_MIB:.0f} MiB: {verdict(ok_rss)}).
        - The baseline's `upload_file` call alone took {raw_inner:.2f} s (median); the rest of each wall time is start-up (imports, clients) and, for `register`, four API calls. Over plain http botocore signs every part with its sha256, so the baseline hashes the file once too; `register` sends UNSIGNED-PAYLOAD parts and computes the file's own sha256 instead (the operator verifies it end to end).
        - All samples (s): baseline {", ".join(f"{s.wall:.2f}" for s in raws)}; register {", ".join(f"{s.wall:.2f}" for s in regs)}.
        """
    ).strip()
    print(body)
    if not args.no_write:
        write_section(SECTION, body)
    return 0 if ok_ratio and ok_rss else 1
