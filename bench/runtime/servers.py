"""The servers the runtime benchmark compares, how each is configured, started and stopped.

Called by `bench.runtime.bench`. A `Server` is a command line, its environment and its URLs; the
builders below write each server's configuration for one `bench.runtime.cases.Case`:

- `modelreg`: `python -m modelreg.runtime` configured by environment (MODELREG_*, see
  operator/modelreg/runtime/settings.py): its defaults, plus any `extra` variables
  (MODELREG_BATCH_MAX_SIZE for the "batching off" and larger-batch rows);
- `mlserver`: `mlserver start DIR` (1.7.1, .dev/venv-mlserver) with `settings.json` (127.0.0.1,
  `debug: false`, so no access log, `gzip_enabled: false`, `parallel_workers` 0 or 1) and
  `model-settings.json` naming the case's runtime (`mlserver_sklearn` / `mlserver_xgboost`), and
  OMP_NUM_THREADS (one xgboost thread per prediction, as the other two use);
- `kserve`: bench/runtime/kserve_peer.py in .dev/venv-kserve (kserve 0.21: 1 or 2 uvicorn
  workers, uvloop and httptools, gRPC off, per-request latency log and uvicorn access log off,
  OMP_NUM_THREADS).

`running` starts one, waits for its model to be ready, and stops it with SIGTERM.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import REPO, log
from bench.runtime.cases import Case

MODELREG = "modelreg"
MLSERVER = "MLServer"
KSERVE = "KServe"
KSERVE_PEER = Path(__file__).with_name("kserve_peer.py")


@dataclass
class Server:
    family: str  # MODELREG, MLSERVER or KSERVE
    config: str  # shown in the report, short: the notes say the rest
    key: str  # short, for --configs and log files
    argv: list[str]
    env: dict[str, str]
    base_url: str
    model_name: str
    log_path: Path
    cwd: Path = field(default=REPO)
    output_name: str = "predict"  # this server's name for the output of `predict`
    # Ready only once its log has this line this often (every worker process started).
    started_line: tuple[str, int] | None = None

    @property
    def label(self) -> str:
        return f"{self.family} ({self.config})"

    def incidents(self) -> list[str]:
        """What its log says went wrong while it ran (KServe replacing a worker process that
        did not answer its ping in 5 s, as happens when a machine is busy)."""
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace")
            died = len(re.findall(r"Child process \[\d+\] died", text))
            if died:
                return [f"{self.label} replaced {died} worker process(es) that stopped answering"]
        return []

    @property
    def ready_url(self) -> str:
        return f"{self.base_url}/v2/models/{self.model_name}/ready"

    @property
    def infer_url(self) -> str:
        return f"{self.base_url}/v2/models/{self.model_name}/infer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env() -> dict[str, str]:
    """This environment without variables any server under test would read as its settings."""
    prefixes = ("MODELREG_", "AWS_", "MLSERVER", "KSERVE", "PREDICT_PROBA")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def modelreg(
    case: Case, work: Path, *, key: str, config: str, extra: Mapping[str, str] | None = None
) -> Server:
    port = free_port()
    artifact = case.modelreg_artifact
    env = _clean_env()
    env.update(
        {
            "PYTHONPATH": str(REPO / "operator"),
            "MODELREG_MODEL_NAME": case.model_name,
            "MODELREG_MODEL_VERSION": "1",
            "MODELREG_ARTIFACT_PATH": str(artifact),
            "MODELREG_ARTIFACT_SHA256": hashlib.sha256(artifact.read_bytes()).hexdigest(),
            "MODELREG_ARTIFACT_FORMAT": case.modelreg_format,
            "MODELREG_HTTP_HOST": "127.0.0.1",
            "MODELREG_HTTP_PORT": str(port),
            "MODELREG_MODEL_DIR": str(work),
            "MODELREG_TERMINATION_LOG": str(work / "termination-log"),
            **(extra or {}),
        }
    )
    return Server(
        family=MODELREG,
        config=config,
        key=key,
        argv=[sys.executable, "-m", "modelreg.runtime"],
        env=env,
        base_url=f"http://127.0.0.1:{port}",
        model_name=case.model_name,
        log_path=work / f"{case.key}-{key}.log",
    )


def mlserver(
    python: Path, case: Case, work: Path, *, parallel_workers: int, omp_threads: int
) -> Server:
    """`omp_threads` > 0: OMP_NUM_THREADS for its process tree (0 leaves it unset). Its xgboost
    runtime loads an `XGBRegressor` without `n_jobs`, so each prediction would use every core."""
    # One directory per configuration: MLServer reads its settings from the model directory.
    key = f"mlserver-pw{parallel_workers}"
    model_dir = work / f"{case.key}-{key}"
    model_dir.mkdir(parents=True, exist_ok=True)
    artifact = model_dir / case.peer_artifact.name
    shutil.copyfile(case.peer_artifact, artifact)
    port, grpc, metrics = free_port(), free_port(), free_port()
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": grpc,
        "metrics_port": metrics,
        "debug": False,  # no access log
        "gzip_enabled": False,  # the client never asks for gzip; skip the middleware
        "parallel_workers": parallel_workers,
    }
    (model_dir / "settings.json").write_text(json.dumps(settings))
    model_settings = {
        "name": case.model_name,
        "implementation": case.mlserver_implementation,
        "parameters": {"uri": f"./{artifact.name}", "version": "1"},
    }
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings))
    env = _clean_env()
    config = f"parallel_workers={parallel_workers}" + (" (default)" if parallel_workers else "")
    if omp_threads > 0:
        env["OMP_NUM_THREADS"] = str(omp_threads)
    return Server(
        family=MLSERVER,
        config=config,
        key=key,
        argv=[str(python.parent / "mlserver"), "start", str(model_dir)],
        env=env,
        base_url=f"http://127.0.0.1:{port}",
        model_name=case.model_name,
        log_path=work / f"{case.key}-{key}.log",
        cwd=model_dir,
    )


# KServe's logging without the per-request lines: no uvicorn access log (no handler, so uvicorn
# skips it), kserve.trace (the latency lines) at WARNING.
_KSERVE_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
    "loggers": {
        "kserve": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "kserve.trace": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
    },
}


def kserve(python: Path, case: Case, work: Path, *, workers: int, omp_threads: int) -> Server:
    """`workers` uvicorn processes (KServe's `--workers`: above 1, worker processes spawned with
    the loaded model pickled to them); `omp_threads` > 0 sets OMP_NUM_THREADS, as for MLServer."""
    key = f"kserve-w{workers}"
    model_dir = work / f"{case.key}-{key}"
    model_dir.mkdir(parents=True, exist_ok=True)
    for old in model_dir.iterdir():
        old.unlink()
    shutil.copyfile(case.peer_artifact, model_dir / case.peer_artifact.name)
    log_config = work / "kserve-logging.json"
    log_config.write_text(json.dumps(_KSERVE_LOGGING))
    port = free_port()
    argv = [
        str(python),
        # fastapi warns that kserve's ORJSONResponse is deprecated, and sklearn's
        # catch_warnings() re-arms the warning: one stderr line per request, not KServe's cost.
        "-W",
        "ignore:ORJSONResponse is deprecated",
        str(KSERVE_PEER),
        f"--kind={case.kserve_kind}",
        f"--model_dir={model_dir}",
        f"--model_name={case.model_name}",
        f"--http_port={port}",
        f"--workers={workers}",
        "--enable_grpc=false",
        "--enable_latency_logging=false",
        f"--log_config_file={log_config}",
        "--event-loop=uvloop",
    ]
    # Its own levels too: a worker that KServe restarts is configured without the log file.
    env = {**_clean_env(), "KSERVE_LOGLEVEL": "WARNING"}
    if omp_threads > 0:
        env["OMP_NUM_THREADS"] = str(omp_threads)
    return Server(
        family=KSERVE,
        config=f"workers={workers}" + (" (default)" if workers == 1 else ""),
        key=key,
        argv=argv,
        env=env,
        base_url=f"http://127.0.0.1:{port}",
        model_name=case.model_name,
        log_path=work / f"{case.key}-{key}.log",
        cwd=model_dir,
        output_name="output-0",  # get_predict_response's name; a request for `predict` is a 400
        started_line=("Application startup complete.", workers),
    )


# ------------------------------------------------------------------------------------------------
# Running


def post(url: str, body: bytes, timeout: float = 30) -> dict[str, Any]:
    req = urllib.request.Request(  # noqa: S310 - 127.0.0.1 only
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"POST {url}: {e.code} {e.read()[:500]!r}") from e


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - 127.0.0.1 only
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _started(server: Server) -> bool:
    if server.started_line is None:
        return True
    line, count = server.started_line
    with contextlib.suppress(OSError):
        return server.log_path.read_text(errors="replace").count(line) >= count
    return False


@contextlib.contextmanager
def running(server: Server, timeout: float = 180) -> Iterator[subprocess.Popen[bytes]]:
    """The server's process, once its model answers ready (and every worker process has
    started); stopped (SIGTERM, then kill) after."""
    log(f"starting {server.label}")
    with server.log_path.open("wb") as out:
        proc = subprocess.Popen(
            server.argv, env=server.env, cwd=server.cwd, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + timeout
            while not (_ready(server.ready_url) and _started(server)):
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{server.label} exited with {proc.returncode}; see {server.log_path}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{server.label} not ready after {timeout:.0f} s")
                time.sleep(0.2)
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
