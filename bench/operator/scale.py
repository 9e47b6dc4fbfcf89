"""Scale: N ModelVersions over M Models, all created before the operator starts; then the time until
every version has converged, the operator's peak RSS and CPU, its API requests per version (from
the kube-apiserver's audit log), and its CPU while idle afterwards.

Each Model has V versions with real artifacts (1 KiB of random bytes each, in the real S3 server,
with their real sha256): v1 Archived, v(V-3) Staging with a failing gate (Blocked), v(V-2) and
v(V-1) Staging, vV Production, the rest None. So every Model serves one version: its Deployment
and Service are created and the version is `Serving` once the Deployment is Available. kwok's two
fake nodes hold 220 pods, shared with everyone using the cluster, so Models beyond the first 100
serve with `replicas: 0` (the Deployment, ReplicaSet and Service are real; no pod is scheduled).

"Converged" = status.observedGeneration == metadata.generation and a terminal phase (Ready,
Serving, Superseded, Archived, Blocked or Failed), as seen by one watch of the benchmark's own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    Env,
    bench_namespace,
    create_namespace,
    delete_namespace,
    log,
    mib,
    verdict,
)
from bench.operator.promotion import _delete_prefix
from bench.operator.support import (
    LOGS,
    ApiProbe,
    AuditCount,
    Kube,
    Operator,
    VersionWatch,
    api_client,
    audit_offset,
    count_operator_requests,
    in_parallel,
    py_spy,
)

PODS_BUDGET = 100  # Models whose Production Deployment gets 1 replica (kwok: 220 pods, shared)
# The local cluster's Service range is a /24 (254 ClusterIPs for everyone). Larger runs add a
# ServiceCIDR of their own for their Services (Kubernetes >= 1.33) and delete it afterwards.
SERVICE_CIDR = ("bench-scale-services", "10.250.0.0/16")
SERVICES_WITHOUT_CIDR = 150
REQUESTS_TARGET = 3.0  # API requests per version lifecycle (issue 16)


def _add_service_cidr(env: Env) -> bool:
    name, cidr = SERVICE_CIDR
    body = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "ServiceCIDR",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "modelreg-bench"}},
        "spec": {"cidrs": [cidr]},
    }
    import yaml

    env.kube("apply", "-f", "-", input=yaml.safe_dump(body))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out = env.kube(
            "get",
            "servicecidr",
            name,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
        )
        if out.strip() == "True":
            return True
        time.sleep(0.5)
    raise RuntimeError(f"ServiceCIDR {name} ({cidr}) did not become Ready")


def _delete_service_cidr(env: Env) -> None:
    # Its finalizer holds it until no Service uses its addresses (the namespace is gone by now).
    with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
        env.kube("delete", "servicecidr", SERVICE_CIDR[0], "--ignore-not-found", "--wait=false")


@dataclass
class ScaleResult:
    models: int
    versions: int
    namespace: str
    setup_seconds: float = 0.0
    converged: int = 0
    converged_seconds: float | None = None  # operator start -> every version converged
    nonprod_seconds: float | None = None  # ... every version not asking for Production
    peak_rss: int = 0
    cpu_seconds: float = 0.0
    idle_seconds: float = 0.0
    idle_cpu_seconds: float = 0.0
    requests: AuditCount | None = None
    phases: dict[str, int] = field(default_factory=dict)
    profile: str | None = None
    timeout: float = 0.0
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)  # load average when it converged
    probe_before_ms: float = 0.0  # another client's GET, p99, before the operator started
    probe_during_ms: float = 0.0  # ... while it converged
    probe_failures: int = 0

    @property
    def idle_cpu_percent(self) -> float:
        return 100 * self.idle_cpu_seconds / self.idle_seconds if self.idle_seconds else 0.0


def _stage(n: int, last: int) -> tuple[str, float]:
    """(stage, auc) of version n of a Model with `last` versions."""
    if n == last:
        return "Production", 0.93
    if n == 1 and last > 4:
        return "Archived", 0.80
    if n == last - 3:
        return "Staging", 0.40  # below the gate: Blocked
    if n >= last - 2:
        return "Staging", 0.91
    return "None", 0.85


def _objects(
    env: Env, namespace: str, models: int, per_model: int
) -> tuple[list[dict[str, Any]], list[tuple[str, int, str]]]:
    """The Models, and (model, version, stage) of each version to create."""
    bodies = []
    versions = []
    for m in range(models):
        name = f"m{m:04d}"
        bodies.append(
            {
                "apiVersion": "modelreg.dev/v1alpha1",
                "kind": "Model",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "description": "scale benchmark",
                    "owner": "bench",
                    "tags": {"bench": "scale"},
                    "storage": {
                        "uri": f"s3://{env.s3_bucket}/{namespace}/{name}/",
                        "endpoint": env.s3_endpoint,
                        "region": env.region,
                        "secretRef": {"name": "s3-credentials"},
                    },
                    "promotion": {"gates": [{"metric": "auc", "min": 0.5}]},
                    "serving": {
                        "replicas": 1 if m < PODS_BUDGET else 0,
                        "progressDeadlineSeconds": 600,
                    },
                },
            }
        )
        versions += [(name, n, _stage(n, per_model)[0]) for n in range(1, per_model + 1)]
    return bodies, versions


def _version_body(
    env: Env, namespace: str, model: str, n: int, per_model: int, sha: str
) -> dict[str, Any]:
    stage, auc = _stage(n, per_model)
    return {
        "apiVersion": "modelreg.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": f"{model}-v{n}", "namespace": namespace},
        "spec": {
            "model": model,
            "version": n,
            "stage": stage,
            "artifact": {
                "uri": f"s3://{env.s3_bucket}/{namespace}/{model}/{n}/model.onnx",
                "sha256": sha,
                "format": "onnx",
            },
            "framework": "sklearn",
            "description": f"version {n} of {model}",
            "metrics": {"auc": auc, "latency_p99_ms": 12.5},
            "params": {"max_depth": "6", "n_estimators": "200"},
            "lineage": {"run": f"run-{model}-{n}", "dataset": "s3://data/train.parquet"},
        },
    }


def run(
    env: Env,
    *,
    models: int,
    per_model: int,
    timeout: float,
    idle_seconds: float = 30.0,
    profile: bool = False,
    operator_env: dict[str, str] | None = None,
    trace_memory: bool = False,
) -> ScaleResult:
    total = models * per_model
    namespace = bench_namespace(f"scale{total}")
    result = ScaleResult(
        models=models, versions=total, namespace=namespace, idle_seconds=idle_seconds
    )
    result.timeout = timeout
    kube = Kube(api_client(env, pool=32))
    s3 = env.s3_client()
    create_namespace(env, namespace)
    operator: Operator | None = None
    watcher: VersionWatch | None = None
    probe: ApiProbe | None = None
    cidr = False
    try:
        if models > SERVICES_WITHOUT_CIDR:
            cidr = _add_service_cidr(env)
        t_setup = time.monotonic()
        kube.secret(
            namespace,
            "s3-credentials",
            {
                "AWS_ACCESS_KEY_ID": env.access_key_id,
                "AWS_SECRET_ACCESS_KEY": env.secret_access_key,
            },
        )
        model_bodies, versions = _objects(env, namespace, models, per_model)

        def upload_and_create(item: tuple[str, int, str]) -> None:
            model, n, _ = item
            data = os.urandom(1024)
            s3.put_object(
                Bucket=env.s3_bucket, Key=f"{namespace}/{model}/{n}/model.onnx", Body=data
            )
            body = _version_body(
                env, namespace, model, n, per_model, hashlib.sha256(data).hexdigest()
            )
            kube.create("modelversions", namespace, body)

        in_parallel(lambda b: kube.create("models", namespace, b), model_bodies, workers=16)
        in_parallel(upload_and_create, versions, workers=16)
        result.setup_seconds = time.monotonic() - t_setup
        log(
            f"scale {total}: {namespace}: created in {result.setup_seconds:.0f}s; starting operator"
        )

        watcher = VersionWatch(kube, namespace).start()
        probe = ApiProbe(kube, namespace).start()
        time.sleep(5)  # the probe's baseline: the same API server, before the operator starts
        probe.phase("during")
        offset = audit_offset()
        wrapper: list[str] = []
        spy = py_spy() if profile else None
        if spy:
            result.profile = str(LOGS / f"{namespace}.folded")
            wrapper = [
                spy,
                "record",
                "--rate",
                "50",
                "--gil",
                "--format",
                "raw",
                "-o",
                result.profile,
                "--",
            ]
        operator = Operator(
            env,
            [namespace],
            LOGS / f"{namespace}.log",
            wrapper=wrapper,
            extra_env=operator_env or {},
            module=["bench.operator.traced", str(LOGS / f"{namespace}.memory"), "--"]
            if trace_memory
            else ["modelreg.controller"],
        ).start()
        t0 = operator.started_at
        deadline = t0 + timeout
        last_report = t0
        while time.monotonic() < deadline:
            if not operator.alive():
                raise RuntimeError(f"the operator exited; see {operator.log_path}")
            done, n = watcher.counts()
            nonprod_done, nonprod = watcher.counts(lambda stage: stage != "Production")
            now = time.monotonic()
            if result.nonprod_seconds is None and nonprod and nonprod_done == nonprod:
                result.nonprod_seconds = now - t0
            result.converged = done
            if n == total and done == total:
                result.converged_seconds = now - t0
                break
            if now - last_report > 15:
                last_report = now
                log(
                    f"scale {total}: {now - t0:.0f}s: {done}/{total} converged {dict(watcher.phases())}"
                )
            time.sleep(0.2)
        at_convergence = operator.sample()
        probe.close()
        result.probe_failures = probe.failures
        result.probe_before_ms, result.probe_during_ms = (
            probe.p99_ms("before"),
            probe.p99_ms("during"),
        )
        result.load = os.getloadavg()
        result.cpu_seconds = at_convergence.cpu_seconds
        result.phases = dict(watcher.phases())
        log(
            f"scale {total}: converged {result.converged}/{total} in "
            f"{result.converged_seconds}s; cpu {result.cpu_seconds:.1f}s; idling {idle_seconds:.0f}s"
        )
        time.sleep(idle_seconds)
        after = operator.sample()
        result.idle_cpu_seconds = after.cpu_seconds - at_convergence.cpu_seconds
        result.peak_rss = after.hwm_bytes
        watcher.close()
        operator.stop()
        result.requests = count_operator_requests(offset, {namespace})
        return result
    finally:
        if probe is not None:
            probe.close()
        if watcher is not None:
            watcher.close()
        if operator is not None:
            operator.stop()
        delete_namespace(env, namespace, wait_seconds=600)
        _delete_prefix(env, s3, f"{namespace}/")
        if cidr:
            _delete_service_cidr(env)


SIZING = Path(__file__).resolve().parents[1] / "sizing.json"
HEADROOM = 1.25  # a memory limit this much above the measured peak, rounded up to 64 MiB


def recommended_limit_mib(peak_rss: int) -> int:
    return math.ceil(mib(peak_rss) * HEADROOM / 64) * 64


def sizing(results: list[ScaleResult], previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sizing table (versions -> measured peak RSS -> memory limit), bench/sizing.json: this
    run's rows, and the previous file's rows of the sizes this run did not measure."""
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    rows = {
        r.versions: {
            "versions": r.versions,
            "models": r.models,
            "peak_rss_mib": round(mib(r.peak_rss)),
            "limit_mib": recommended_limit_mib(r.peak_rss),
            "measured": stamp,
        }
        for r in results
        if r.peak_rss
    }
    for row in (previous or {}).get("rows", []):
        rows.setdefault(int(row["versions"]), row)
    return {"headroom": HEADROOM, "rows": [rows[k] for k in sorted(rows)]}


def write_sizing(results: list[ScaleResult]) -> dict[str, Any]:
    previous = json.loads(SIZING.read_text()) if SIZING.exists() else None
    table = sizing(results, previous)
    SIZING.write_text(json.dumps(table, indent=1) + "\n")
    return table


def sizing_markdown(table: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {r['versions']:,} / {r['models']:,} | {r['peak_rss_mib']} MiB | {r['limit_mib']}Mi | "
        f"{r['measured']} |"
        for r in table["rows"]
    )
    return f"""### Sizing: the operator's memory by versions

The operator's peak RSS in the scale runs above, and the memory limit to give it
(`operator.resources.limits.memory`): the peak times {table["headroom"]}, rounded up to 64 MiB.
Written with the rows to `bench/sizing.json`, which `tests/unit/test_chart.py` checks the chart's
default against (the chart states the versions its default is sized for).

| versions / Models | peak RSS | memory limit | measured |
| --- | --- | --- | --- |
{rows}
"""


def markdown(results: list[ScaleResult]) -> str:
    targets = {1000: (15.0, 150.0), 10000: (120.0, 300.0)}
    rows = []
    notes = []
    for r in results:
        t_target, rss_target = targets.get(r.versions, (float("inf"), float("inf")))
        conv = (
            f"{r.converged_seconds:.1f} s"
            if r.converged_seconds is not None
            else f"not in {r.timeout:.0f} s ({r.converged}/{r.versions})"
        )
        nonprod = f"{r.nonprod_seconds:.1f} s" if r.nonprod_seconds is not None else "-"
        req = r.requests
        per = f"{req.total / r.versions:.2f}" if req else "-"
        rows.append(
            f"| {r.versions:,} / {r.models:,} | {conv} | {nonprod} | {mib(r.peak_rss):.0f} MiB | "
            f"{r.cpu_seconds:.1f} s | {per} | {r.idle_cpu_percent:.2f} % over {r.idle_seconds:.0f} s |"
        )
        met_t = r.converged_seconds is not None and r.converged_seconds <= t_target
        met_rss = mib(r.peak_rss) <= rss_target
        if r.versions in targets:
            notes.append(
                f"- {r.versions:,} versions: converged {verdict(met_t)} (target <= {t_target:.0f} s), "
                f"RSS {verdict(met_rss)} (target <= {rss_target:.0f} MiB), "
                f"idle CPU {verdict(r.idle_cpu_percent < 1)} (target ~ 0)"
            )
        if req:
            per_version = req.total / r.versions
            mean_qps, peak_qps = req.write_qps()
            notes.append(
                f"  - API requests ({r.versions:,}): {req.total} in all ({req.watches} watches), "
                f"{per_version:.2f} per version: {verdict(per_version <= REQUESTS_TARGET)} "
                f"(target <= {REQUESTS_TARGET:.0f}): {req.summary()}"
            )
            notes.append(
                f"  - kube-apiserver (its audit log): the operator's writes {mean_qps:.0f}/s "
                f"mean, {peak_qps:.0f}/s in the busiest second; its requests' latency p50 "
                f"{req.latency_ms(0.5):.1f} ms, p99 {req.latency_ms(0.99):.1f} ms"
            )
        if r.probe_before_ms:
            notes.append(
                f"  - another client (a GET every 0.1 s): p99 {r.probe_during_ms:.1f} ms while the "
                f"operator converged vs {r.probe_before_ms:.1f} ms before it started: "
                f"{r.probe_during_ms / r.probe_before_ms:.2f}x ({r.probe_failures} failed)"
            )
        notes.append(
            f"  - final phases: {r.phases}; set-up (S3 + API objects) {r.setup_seconds:.0f} s"
        )
        if r.profile:
            notes.append(f"  - profile: `{r.profile}` (py-spy flame graph)")
    return f"""### Scale

All objects exist before the operator starts (created through the API in bulk, with real 1 KiB
artifacts and their sha256 in S3); per Model: 1 Archived, 1 Blocked by a gate, 2 Staging, 1
Production (served; the first {PODS_BUDGET} Models with 1 kwok pod, the rest with `replicas: 0`),
the rest None. Runs with more than {SERVICES_WITHOUT_CIDR} Models add a ServiceCIDR
({SERVICE_CIDR[1]}) for the duration: the local cluster's Service range is a /24. Time is from starting `python -m modelreg.controller --namespace NS` until every
version's status has observedGeneration == generation and a terminal phase (one watch of the
benchmark's own). Peak RSS is the operator's VmHWM; CPU is user + system. API requests are counted
in the kube-apiserver's audit log (the operator's user agents, the benchmark namespace), divided
by the number of versions.

| versions / Models | all converged | all but Production | peak RSS | CPU | API requests per version | idle CPU |
| --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}

{chr(10).join(notes)}
"""
