"""Runtime benchmark: modelreg's model server against MLServer and KServe, same model format.

Run by `python -m bench.runtime` (and by `python -m bench` through `bench.runtime.main`). Writes
the `runtime` section of bench/RESULTS.md through `bench.common.write_section`.

What is compared, on this machine, one server at a time, all on 127.0.0.1 (`bench.runtime.cases`
has the models and requests, `bench.runtime.servers` the configurations):

- two cases, each one model fitted once and saved from the same object for every server:
  - small: scikit-learn LogisticRegression (iris), one row FP64; modelreg serves the `.skops`
    file, the peers the joblib file (MLServer's `mlserver_sklearn`, KServe's sklearn server);
  - compute-heavy: an xgboost regressor (800 trees, depth 8, 32 features) in xgboost's JSON
    format, 256 rows FP32 per request; modelreg `xgboost`, MLServer `mlserver_xgboost`, KServe's
    xgbserver;
- the same work: every request names the one output it wants, the output of `predict`. modelreg
  and MLServer call it `predict` and get byte-identical requests; KServe's servers call their
  only output `output-0` (and answer 400 to `predict`), so KServe gets the same bytes with that
  name. Every server decodes the tensor, runs `predict` and answers that one output;
- modelreg: `python -m modelreg.runtime` with no MODELREG_* override ("defaults": adaptive
  batching at its format's default, 32 rows for skops and xgboost, MODELREG_BATCH_MAX_WAIT_MS 1;
  2 executor workers and a queue of 256 requests / 256 MiB of bodies, so 64 connections are all
  admitted), and "batching off" (MODELREG_BATCH_MAX_SIZE=1, everything else default): defaults
  ÷ batching off says where batching pays off. For xgboost, whose 256-row requests exceed the
  default 32 rows and so are predicted one at a time, also MODELREG_BATCH_MAX_SIZE=1024 (up to 4
  requests per call);
- MLServer 1.7.1 (.dev/venv-mlserver: httptools, uvloop), `debug: false` (no access log),
  `gzip_enabled: false`, OMP_NUM_THREADS=1 (`--peer-omp-threads`: its xgboost runtime
  leaves `n_jobs` unset, so each prediction would use every core, which on 2 shared cores was
  slower at every concurrency in development runs), `parallel_workers` 1 (its default: inference
  in a worker process) and 0 (in the server process), both reported;
- KServe 0.21 (.dev/venv-kserve): KServe's `sklearnserver` and `xgbserver` are not on PyPI, so
  bench/runtime/kserve_peer.py does what their model.py and __main__.py do with the `kserve` SDK
  (a `kserve.Model` subclass loading with joblib / `xgboost.Booster(nthread=1)`, predicting in
  `predict`, `kserve.ModelServer().start([model])`): `--workers` 1 (its default) and 2 (on 2
  cores, 2 processes served the small model about twice as fast in development runs), both
  reported, uvloop and httptools, gRPC off, latency and access logs off, OMP_NUM_THREADS=1;
- every server's answer is checked against the model run in this process (labels equal, xgboost
  outputs allclose) before it is measured, and again on the first 200 of each measured window;
- the load: `loadgen` (bench/runtime/loadgen, Go, GOMAXPROCS=1, pinned to the last CPU), closed
  loop, 1, 8 and 64 keep-alive connections, a warm-up (`--warmup`) then a measured window
  (`--seconds`) per concurrency; latency percentiles from every 200; 503s counted apart; the
  server's CPU is utime + stime of its whole process tree over the measured window, divided by
  the requests answered;
- the verdicts compare modelreg's defaults row with the best peer at each concurrency (the
  peer configuration with the highest throughput there). Targets: small model >= 1.5x the best
  peer's throughput at no worse p99; compute-heavy at least parity. A computed line per case
  says where batching pays off (defaults ÷ batching off at each concurrency).

The default durations (8 s measured, 2 s warm-up) keep the whole run near 8 minutes on 2 cores;
`--quick` (2 s windows) is for development and prints the section instead of writing it.
"""

from __future__ import annotations

import argparse
import os
import time
from importlib import metadata
from pathlib import Path

from bench.common import DEV, log, write_section
from bench.runtime import report
from bench.runtime.cases import Case, XGBoostRecipe, small_case, xgboost_case
from bench.runtime.measure import Client, Point, build_loadgen, make_client, measure_server
from bench.runtime.servers import Server, kserve, mlserver, modelreg

SECTION = "runtime"
WORK = DEV / "bench-runtime"
CONFIG_KEYS = (
    "modelreg",
    "modelreg-nobatch",
    "mlserver-pw1",
    "mlserver-pw0",
    "kserve-w1",
    "kserve-w2",
    "modelreg-batch",
)
MLSERVER_XGBOOST = "mlserver-xgboost==1.7.1"


def default_batch_rows(case: Case) -> int:
    """MODELREG_BATCH_MAX_SIZE the runtime uses for this case's format when it is not set."""
    from modelreg.runtime.settings import BATCH_MAX_SIZE_DEFAULTS, ArtifactFormat

    return BATCH_MAX_SIZE_DEFAULTS[ArtifactFormat(case.modelreg_format)]


def _peer_pythons(keys: set[str]) -> tuple[Path | None, Path | None]:
    from tests.unit.runtime import clientenv

    # The peers load the artifacts with the library versions that wrote them.
    libs = (
        f"scikit-learn=={metadata.version('scikit-learn')}",
        f"xgboost-cpu=={metadata.version('xgboost-cpu')}",
    )
    mlserver_python = kserve_python = None
    if keys & {"mlserver-pw0", "mlserver-pw1"}:
        log("preparing the MLServer venv (.dev/venv-mlserver)")
        mlserver_python = clientenv.ensure("mlserver", extra=libs, no_deps=(MLSERVER_XGBOOST,))
    if keys & {"kserve-w1", "kserve-w2"}:
        log("preparing the KServe venv (.dev/venv-kserve)")
        kserve_python = clientenv.ensure("kserve", extra=libs)
    return mlserver_python, kserve_python


def servers_for(
    case: Case,
    keys: list[str],
    *,
    mlserver_python: Path | None,
    kserve_python: Path | None,
    peer_omp_threads: int,
) -> list[Server]:
    out: list[Server] = []
    for key in keys:
        if key == "modelreg":
            # No MODELREG_* override: batching at the format's default, the default queue.
            out.append(modelreg(case, WORK, key=key, config=report.DEFAULTS))
        elif key == "modelreg-nobatch":
            env = {"MODELREG_BATCH_MAX_SIZE": "1"}
            out.append(modelreg(case, WORK, key=key, config=report.BATCHING_OFF, extra=env))
        elif key == "modelreg-batch" and case.large_batch_rows is not None:
            # Only where the default batch holds less than two requests (xgboost's 256 rows).
            env = {"MODELREG_BATCH_MAX_SIZE": str(case.large_batch_rows)}
            config = report.large_batch_config(case.large_batch_rows)
            out.append(modelreg(case, WORK, key=key, config=config, extra=env))
        elif key.startswith("mlserver-pw") and mlserver_python is not None:
            workers = int(key.removeprefix("mlserver-pw"))
            out.append(
                mlserver(
                    mlserver_python,
                    case,
                    WORK,
                    parallel_workers=workers,
                    omp_threads=peer_omp_threads,
                )
            )
        elif key.startswith("kserve-w") and kserve_python is not None:
            workers = int(key.removeprefix("kserve-w"))
            out.append(
                kserve(kserve_python, case, WORK, workers=workers, omp_threads=peer_omp_threads)
            )
    return out


def _method(args: argparse.Namespace, client: Client, concs: list[int]) -> list[str]:
    return [
        f"`python -m bench.runtime`: every server one after the other on 127.0.0.1, each "
        f"measured at {', '.join(map(str, concs))} keep-alive connections: {args.warmup:g} s "
        f"warm-up, then {args.seconds:g} s measured, by the same client for all, {client.describe()}. "
        "Every server's answer is checked against the model before it is measured (labels equal, "
        "xgboost outputs allclose) and on the first 200 of each measured window. Throughput is requests "
        "answered per second; p50/p99 from every request; CPU is user + system time of the "
        "server's whole process tree over the measured window per request answered. Ratio rows: "
        "modelreg ÷ the best peer at that concurrency (the peer configuration with the highest "
        "throughput there); all figures come from this one run on this machine.",
    ]


def _runtime_default(field: str) -> int:
    from modelreg.runtime.settings import RuntimeSettings

    return int(RuntimeSettings.model_fields[field].default)


def _notes(cases: list[Case]) -> list[str]:
    defaults = ", ".join(f"{default_batch_rows(c)} rows for {c.modelreg_format}" for c in cases)
    workers, queue = _runtime_default("workers"), _runtime_default("max_queue")
    queue_mib = _runtime_default("max_queue_bytes") // (1024 * 1024)
    notes = [
        "Configurations. modelreg defaults: `python -m modelreg.runtime` with no MODELREG_* "
        f"override: adaptive batching at its format's default MODELREG_BATCH_MAX_SIZE ({defaults}; "
        "MODELREG_BATCH_MAX_WAIT_MS 1), so every prediction runs in its executor of "
        f"{workers} workers, with up to {queue} more requests (and {queue_mib} MiB of their "
        "bodies) admitted and waiting, 503 beyond; 1 xgboost thread per prediction. MLServer 1.7.1 with httptools "
        "and uvloop, `debug: false` (no access log), `gzip_enabled: false`, OMP_NUM_THREADS=1 "
        "(its xgboost runtime loads an `XGBRegressor` without `n_jobs`: every core per "
        "prediction, slower here), `parallel_workers` 1 (its default) and 0. KServe 0.21 "
        "`ModelServer` with `--workers` 1 (its default) and 2 (uvicorn processes), uvloop, "
        "httptools, gRPC off, no access or latency log, OMP_NUM_THREADS=1 (it binds 0.0.0.0, "
        "hard-coded, and is only sent requests on 127.0.0.1), serving "
        "bench/runtime/kserve_peer.py: KServe's `sklearnserver`/`xgbserver` are not published "
        "on PyPI, so that file does what their model.py and __main__.py do with the kserve SDK "
        "(joblib.load / `xgb.Booster(nthread=1)` and a DMatrix per request, `predict` on "
        "`get_predict_input`, answered by `get_predict_response`).",
        "Same work: each request asks for one output, the output of `predict`. modelreg and "
        "MLServer name it `predict` and get byte-identical requests; KServe names its only "
        "output `output-0` (a request for `predict` is a 400 there), so it gets the same bytes "
        "with that name. Every server decodes the same tensor, runs `predict` of the same "
        "fitted model and answers one output (the label; the 256 predictions).",
        "The batching off row: the defaults with MODELREG_BATCH_MAX_SIZE=1 and "
        "nothing else changed; a small request (up to MODELREG_INLINE_MAX_BYTES, 16 KiB) is "
        "then predicted on the event loop, a larger one in the executor. The defaults ÷ "
        "batching off line under Verdicts says, per concurrency, where batching pays off.",
    ]
    for c in cases:
        if c.large_batch_rows is None:
            continue
        rows, per_request = c.large_batch_rows, int(c.inputs[0]["shape"][0])
        notes.append(
            f"The {report.large_batch_config(rows)} row ({c.key} only): at the default, "
            f"{default_batch_rows(c)} rows, a batch holds less than one {per_request}-row "
            "request, so each is predicted alone and defaults ÷ batching off measures only what "
            f"the batcher costs; {rows} rows let one call predict up to {rows // per_request} "
            "requests. Everything else default."
        )
    notes += [
        "A refused request (503) is answered at once and the closed-loop client sends the "
        "next one without back-off, so refusals, if any, also take CPU from the requests being "
        "served; the 503 column appears only when some server refused.",
        "Client and server share the machine's 2 cores (and, during a full `make bench`, the "
        "control plane); the load average column shows how busy the machine was.",
    ]
    return notes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.runtime", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=8.0, help="measured seconds per point")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per point")
    p.add_argument("--quick", action="store_true", help="2 s windows; print, do not write")
    p.add_argument("--concurrency", default="1,8,64", help="comma-separated connection counts")
    p.add_argument("--cases", default="small,xgboost", help="comma-separated: small, xgboost")
    p.add_argument(
        "--configs",
        default=",".join(CONFIG_KEYS),
        help="comma-separated: " + ", ".join(CONFIG_KEYS),
    )
    p.add_argument("--rounds", type=int, default=1, help="repeat every server this often")
    p.add_argument(
        "--client-cpu",
        type=int,
        default=max(os.sched_getaffinity(0)),
        help="CPU the load client is pinned to; -1: not pinned",
    )
    p.add_argument(
        "--peer-omp-threads",
        type=int,
        default=1,
        help="OMP_NUM_THREADS of MLServer and KServe (MLServer's xgboost runtime uses every "
        "core per prediction otherwise); 0: unset",
    )
    p.add_argument("--no-write", action="store_true", help="print the section, do not write it")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.no_write = min(args.seconds, 2.0), 0.5, True
    concs = [int(c) for c in args.concurrency.split(",") if c.strip()]
    cases_wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    keys = [k.strip() for k in args.configs.split(",") if k.strip()]
    if set(cases_wanted) - {"small", "xgboost"} or set(keys) - set(CONFIG_KEYS):
        p.error("unknown case or configuration")
    if not 1 <= args.rounds <= 5 or not 0.5 <= args.seconds <= 600 or not concs:
        p.error("--rounds must be 1..5, --seconds 0.5..600, --concurrency not empty")

    started = time.monotonic()
    WORK.mkdir(parents=True, exist_ok=True)
    client = make_client(build_loadgen(), None if args.client_cpu < 0 else args.client_cpu)
    mlserver_python, kserve_python = _peer_pythons(set(keys))
    log("fitting (or reusing) the models")
    cases: list[Case] = []
    if "small" in cases_wanted:
        cases.append(small_case(WORK))
    if "xgboost" in cases_wanted:
        cases.append(xgboost_case(WORK, XGBoostRecipe()))

    points: list[Point] = []
    incidents: list[str] = []
    for _ in range(args.rounds):
        for case in cases:
            for server in servers_for(
                case,
                keys,
                mlserver_python=mlserver_python,
                kserve_python=kserve_python,
                peer_omp_threads=args.peer_omp_threads,
            ):
                points += measure_server(
                    server,
                    case,
                    client,
                    concurrencies=concs,
                    seconds=args.seconds,
                    warmup=args.warmup,
                )
                incidents += [f"{case.key}: {i}" for i in server.incidents()]
    elapsed = time.monotonic() - started
    notes = [
        *_notes(cases),
        *(f"Incident: {i} (its log is in {WORK.relative_to(DEV.parent)}/)." for i in incidents),
        f"This run took {elapsed / 60:.1f} min (venvs, models, {len(points)} measured windows).",
    ]
    text = report.markdown(
        points, cases, method=_method(args, client, concs), notes=notes, rounds=args.rounds
    )
    if args.no_write:
        print(text)
    else:
        write_section(SECTION, text)
        log(f"wrote the '{SECTION}' section of bench/RESULTS.md")
    log(f"bench.runtime took {elapsed:.0f} s")
    return 0
