"""Artifact verification of a 1 GiB object: the operator's path against a raw streaming read.

The operator's path is `modelreg.adapters.objectstore.ObjectStore.sha256` built with the operator's
settings (`OperatorSettings`: chunk size, timeout), as the verifier builds it. The raw read is
boto3 `get_object` + `read(chunk)` in the same chunk size + `hashlib.sha256`: the least any Python
verifier must do. Each run is a fresh subprocess (`python -m bench.operator.verify --worker MODE
URI`), so its VmHWM is the peak RSS of exactly that verification; runs alternate, after one warm-up
read that brings the object into the page cache. The object is deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from bench.common import REPO, Env, load_env, log, mib, self_peak_rss, verdict

SIZE = 1 << 30


@dataclass
class VerifyResult:
    size: int
    chunk: int
    sha256: str
    operator: list[dict[str, Any]] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)

    @staticmethod
    def throughput(runs: list[dict[str, Any]]) -> float:
        return statistics.median(r["bytes"] / r["seconds"] for r in runs)

    @staticmethod
    def peak(runs: list[dict[str, Any]]) -> int:
        return max(r["peak_rss"] for r in runs)


# ------------------------------------------------------------------------------------------------
# The worker (a subprocess per measurement)


def _worker(mode: str, uri: str) -> dict[str, Any]:
    env = load_env()
    from modelreg.adapters import objectstore as store
    from modelreg.settings import OperatorSettings

    settings = OperatorSettings()
    config = store.StoreConfig(
        endpoint=env.s3_endpoint,
        region=env.region,
        access_key_id=env.access_key_id,
        secret_access_key=env.secret_access_key,
    )
    chunk = settings.verify_chunk_bytes
    if mode == "operator":
        client = store.ObjectStore(
            config, timeout=settings.store_timeout_seconds, chunk_bytes=chunk
        )
        t0 = time.perf_counter()
        digest = asyncio.run(client.sha256(uri))
        seconds = time.perf_counter() - t0
        sha, size = digest.sha256, digest.size
    else:
        import boto3
        import botocore.config

        s3 = boto3.client(
            "s3",
            endpoint_url=env.s3_endpoint,
            aws_access_key_id=env.access_key_id,
            aws_secret_access_key=env.secret_access_key,
            region_name=env.region,
            config=botocore.config.Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                s3={"addressing_style": "path"},
            ),
        )
        loc = store.S3Location.parse(uri)
        t0 = time.perf_counter()
        body = s3.get_object(Bucket=loc.bucket, Key=loc.key)["Body"]
        h = hashlib.sha256()
        size = 0
        while True:
            data = body.read(chunk)
            if not data:
                break
            h.update(data)
            size += len(data)
        seconds = time.perf_counter() - t0
        sha = h.hexdigest()
    return {
        "mode": mode,
        "seconds": seconds,
        "bytes": size,
        "sha256": sha,
        "chunk": chunk,
        "peak_rss": self_peak_rss(),
    }


def _measure(mode: str, uri: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), str(REPO)])}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.operator.verify", "--worker", mode, uri],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=REPO,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"verify worker {mode} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------------------------------------------
# The benchmark


def _upload(env: Env, key: str, size: int) -> str:
    """Write `size` random bytes to a temporary file, upload it (multipart), return its sha256."""
    from boto3.s3.transfer import TransferConfig

    h = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=REPO / ".dev", prefix="bench-1g-", delete=True) as f:
        left = size
        while left:
            block = os.urandom(min(left, 8 << 20))
            h.update(block)
            f.write(block)
            left -= len(block)
        f.flush()
        env.s3_client().upload_file(
            f.name,
            env.s3_bucket,
            key,
            Config=TransferConfig(multipart_chunksize=64 << 20, max_concurrency=4),
        )
    return h.hexdigest()


def run(env: Env, *, rounds: int = 3, size: int = SIZE) -> VerifyResult:
    key = f"bench-verify-{os.getpid()}/artifact.bin"
    uri = f"s3://{env.s3_bucket}/{key}"
    s3 = env.s3_client()
    try:
        log(f"verify: uploading {mib(size):.0f} MiB to {uri}")
        sha = _upload(env, key, size)
        _measure("raw", uri)  # warm-up: the object in the page cache, both code paths compiled
        result = VerifyResult(size=size, chunk=0, sha256=sha)
        for i in range(rounds):
            for mode in ("operator", "raw") if i % 2 == 0 else ("raw", "operator"):
                r = _measure(mode, uri)
                if r["sha256"] != sha or r["bytes"] != size:
                    raise RuntimeError(f"{mode} read {r['bytes']} bytes with sha256 {r['sha256']}")
                getattr(result, mode).append(r)
                result.chunk = r["chunk"]
                log(
                    f"verify: {mode}: {mib(r['bytes']) / r['seconds']:.0f} MiB/s, "
                    f"peak RSS {mib(r['peak_rss']):.0f} MiB"
                )
        return result
    finally:
        s3.delete_object(Bucket=env.s3_bucket, Key=key)


def markdown(r: VerifyResult) -> str:
    op, raw = r.throughput(r.operator), r.throughput(r.raw)
    ratio = op / raw
    op_rss, raw_rss = mib(r.peak(r.operator)), mib(r.peak(r.raw))
    return f"""### Artifact verification (1 GiB)

One {mib(r.size):.0f} MiB object of random bytes in the S3 server; each measurement is a fresh
process (median of {len(r.operator)} alternating runs each, after a warm-up read). Operator:
`ObjectStore.sha256` with the operator's settings ({mib(r.chunk):.0f} MiB reads). Raw: boto3
`get_object` + `read({mib(r.chunk):.0f} MiB)` + `hashlib.sha256`. Peak RSS is the process's VmHWM
(interpreter and boto3 included).

| | throughput | peak RSS |
| --- | --- | --- |
| operator (`ObjectStore.sha256`) | {op / 1024 / 1024:.0f} MiB/s | {op_rss:.0f} MiB |
| raw read + hashlib | {raw / 1024 / 1024:.0f} MiB/s | {raw_rss:.0f} MiB |

- throughput ratio {ratio:.2f}x (target >= 0.8x): {verdict(ratio >= 0.8)}
- operator peak RSS {op_rss:.0f} MiB (target < 100 MiB): {verdict(op_rss < 100)}
"""


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.operator.verify")
    p.add_argument("--worker", choices=("operator", "raw"), required=True)
    p.add_argument("uri")
    a = p.parse_args()
    print(json.dumps(_worker(a.worker, a.uri)))
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: nothing to flush, and it is not what is measured
