"""The web UI's page times for a namespace with 200 versions, against the raw API list call.

    python -m bench.ui [--versions 200] [--rounds 20] [--no-write]

Against the local control plane (`make cluster-up`), in one run on one machine:

- the namespace gets one Model with N ModelVersions (default 200) written through the API
  server, each with a realistic status (artifact verified, gates, conditions, a stage history),
  as the operator would have left them, plus a Serving version;
- the baseline is the raw API call every page needs at least once: `list modelversions` in
  that namespace, through the same Kubernetes adapter (HTTP + JSON decode, no model parsing);
- `modelreg ui` runs as a real process with the same kubeconfig; "server time" is an HTTP GET of
  each page, to the last byte, from this process; "browser load" is Debian's headless Chromium
  (Playwright) navigating to the page until its load event (`PerformanceNavigationTiming`),
  stylesheet and script included.

Pages: models list, model (200 versions: table, charts, gates, timeline), version, compare of
three versions. Each figure is the median (and p95) of `--rounds` samples after one warm-up; the
ratio is page median / list median. Target (issue 15): every page under 300 ms. Writes the
`ui` section of bench/RESULTS.md; the namespace is deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from typing import Any

from bench.common import (
    Env,
    bench_namespace,
    create_namespace,
    delete_namespace,
    ensure_crds,
    load_env,
    log,
    percentile,
    verdict,
    write_section,
)
from modelreg.adapters import kube as k

SECTION = "ui"
MODEL = "bench"
TARGET_MS = 300.0
HISTORY = [("None", None, "artifact verified"), ("Staging", "alice", "candidate")]


def _version(n: int, serving: int) -> tuple[dict[str, Any], dict[str, Any]]:
    auc = round(0.7 + 0.25 * (n % 37) / 37, 4)
    latency = float(20 + n % 41)
    body = {
        "apiVersion": "modelreg.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": f"{MODEL}-v{n}"},
        "spec": {
            "model": MODEL,
            "version": n,
            "stage": "Production" if n == serving else "None",
            "artifact": {"uri": f"s3://models/{MODEL}/{n}/model.onnx", "sha256": f"{n:064x}"},
            "framework": "sklearn",
            "metrics": {"auc": auc, "latency_p99_ms": latency, "f1": round(auc - 0.05, 4)},
            "params": {"max_depth": str(3 + n % 5), "learning_rate": "0.1"},
            "lineage": {"run": f"run-{n}", "dataset": "s3://data/loans/", "gitCommit": "abc123"},
        },
    }
    at = "2026-11-01T00:00:00Z"
    status = {
        "observedGeneration": 1,
        "stage": "Production" if n == serving else "None",
        "phase": "Serving" if n == serving else "Ready",
        "artifact": {
            "verified": True,
            "sha256": f"{n:064x}",
            "sizeBytes": 2_000_000,
            "verifiedAt": at,
        },
        "gates": [
            {"metric": "auc", "min": 0.8, "actual": auc, "passed": auc >= 0.8},
            {"metric": "latency_p99_ms", "max": 50, "actual": latency, "passed": latency <= 50},
        ],
        "conditions": [
            {
                "type": t,
                "status": "True",
                "reason": "Ok",
                "message": f"{t} holds",
                "lastTransitionTime": at,
            }
            for t in ("ArtifactVerified", "GatesPassed", "Ready")
        ],
        "history": [
            {"stage": s, "at": at, **({"by": by, "reason": why} if by else {"message": why})}
            for s, by, why in HISTORY
        ],
    }
    if n == serving:
        status["serving"] = {"deployment": f"{MODEL}-v{n}", "readyReplicas": 2}
    return body, status


def setup(env: Env, ns: str, count: int) -> k.Kube:
    ensure_crds(env)
    create_namespace(env, ns)
    kube = k.Kube(k.api_client(env.kubeconfig))
    kube.create_object(
        k.MODELS,
        ns,
        {
            "apiVersion": "modelreg.dev/v1alpha1",
            "kind": "Model",
            "metadata": {"name": MODEL},
            "spec": {
                "owner": "bench",
                "tags": {"size": str(count)},
                "promotion": {
                    "gates": [
                        {"metric": "auc", "min": 0.8},
                        {"metric": "latency_p99_ms", "max": 50},
                    ]
                },
            },
        },
    )
    kube.patch_status(k.MODELS, ns, MODEL, {"productionVersion": count, "latestVersion": count})
    for n in range(1, count + 1):
        body, status = _version(n, serving=count)
        kube.create_object(k.MODEL_VERSIONS, ns, body)
        kube.patch_status(k.MODEL_VERSIONS, ns, body["metadata"]["name"], status)
    return kube


def timed(fn: Any, rounds: int) -> list[float]:
    fn()  # warm-up: connections, caches
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def start_ui(env: Env, ns: str) -> tuple[subprocess.Popen[str], str]:
    from tests.unit.ui.browser import banner, launch_ui

    proc = launch_ui(env.kubeconfig, "-n", ns)
    line = banner(proc)
    if not line:
        proc.kill()
        raise RuntimeError("modelreg ui did not start in 30 s")
    return proc, line.split()[3]


def get(url: str) -> None:
    with urllib.request.urlopen(url, timeout=30) as r:  # noqa: S310 - our own loopback server
        if r.status != 200:
            raise RuntimeError(f"{url}: HTTP {r.status}")
        r.read()


def browser_loads(urls: dict[str, str], rounds: int) -> dict[str, list[float]]:
    from tests.unit.ui.browser import VIEWPORT, browser

    out: dict[str, list[float]] = {}
    with browser() as b:
        page = b.new_page(viewport=VIEWPORT)
        for name, url in urls.items():
            samples = []
            for i in range(rounds + 1):
                page.goto(url, wait_until="load")
                ms = page.evaluate(
                    "() => { const n = performance.getEntriesByType('navigation')[0];"
                    " return n.loadEventEnd - n.startTime; }"
                )
                if i:  # the first is the warm-up
                    samples.append(float(ms))
            out[name] = samples
        page.close()
    return out


def report(
    count: int,
    rounds: int,
    base: list[float],
    server: dict[str, list[float]],
    loads: dict[str, list[float]],
    load: str,
) -> str:
    b = statistics.median(base)
    lines = [
        "## Web UI: page times with 200 versions vs the raw API list",
        "",
        f"`python -m bench.ui`: one Model with {count} ModelVersions (verified, gated, with "
        "conditions and history) in a fresh namespace of the local control plane; `modelreg ui` "
        "as a real process with the same kubeconfig. Baseline: the raw `list modelversions` of "
        "that namespace through the Kubernetes adapter (HTTP + JSON, no parsing into models). "
        "Server time: an HTTP GET of the page to its last byte. Browser load: headless Chromium "
        "(Debian's, via Playwright) from navigation start to the load event, CSS and JS included. "
        f"Medians (p95) of {rounds} samples after a warm-up. Target: every page < {TARGET_MS:.0f} ms. "
        f"Load average at the start: {load}.",
        "",
        "| what | server median (p95), ms | browser load median (p95), ms | ratio to the raw list (server) | target |",
        "| --- | ---: | ---: | ---: | --- |",
        f"| raw API `list modelversions` ({count} items) | {b:.1f} ({percentile(base, 95):.1f}) | | 1.00x | |",
    ]
    for name, samples in server.items():
        s = statistics.median(samples)
        load = loads.get(name, [])
        lm = statistics.median(load) if load else float("nan")
        ok = s < TARGET_MS and (not load or lm < TARGET_MS)
        lines.append(
            f"| {name} | {s:.1f} ({percentile(samples, 95):.1f}) | {lm:.1f} ({percentile(load, 95):.1f}) "
            f"| {s / b:.2f}x | {verdict(ok)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ui", description=__doc__.split("\n")[0])
    p.add_argument("--versions", type=int, default=200, help="ModelVersions (default 200)")
    p.add_argument("--rounds", type=int, default=20, help="samples per figure (default 20)")
    p.add_argument("--no-write", action="store_true", help="print, do not touch RESULTS.md")
    args = p.parse_args(argv)
    env = load_env()
    started_load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    ns = bench_namespace("ui")
    log(f"ui: namespace {ns}, {args.versions} versions")
    proc: subprocess.Popen[str] | None = None
    try:
        kube = setup(env, ns, args.versions)
        base = timed(lambda: kube.list_objects(k.MODEL_VERSIONS, ns), args.rounds)
        proc, url = start_ui(env, ns)
        n = args.versions
        pages = {
            "models list": url,
            f"model page ({n} versions)": f"{url}models/{MODEL}",
            "version page": f"{url}models/{MODEL}/versions/{n}",
            "compare, 3 versions": f"{url}models/{MODEL}/compare?v={n - 2}&v={n - 1}&v={n}",
        }
        server = {name: timed(lambda u=u: get(u), args.rounds) for name, u in pages.items()}
        loads = browser_loads(pages, args.rounds)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=20)
        delete_namespace(env, ns)
    text = report(args.versions, args.rounds, base, server, loads, started_load)
    print(text)
    if not args.no_write:
        write_section(SECTION, text)
    worst = max(statistics.median(s) for s in [*server.values(), *loads.values()])
    return 0 if worst < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
