"""Fixtures of the model-server tests: tiny real models built here, and real servers on 127.0.0.1.

Every artifact is trained in the test session on the iris data set bundled with scikit-learn (no
downloads), and saved the way users publish them: skl2onnx, skops, xgboost JSON and UBJ,
LightGBM text, joblib. `serve()` runs a real `RuntimeServer` (uvicorn + the ASGI app) in a
thread, on a socket bound to a random port.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelreg.runtime.dataplane import DataPlane
from modelreg.runtime.server import RuntimeServer
from modelreg.runtime.settings import RuntimeSettings


@dataclass(frozen=True)
class Artifact:
    path: Path
    format: str
    sha256: str
    model: Any  # the in-memory model the file was saved from, for reference predictions


@dataclass(frozen=True)
class Artifacts:
    X: np.ndarray[Any, Any]
    y: np.ndarray[Any, Any]
    estimator: Any
    items: dict[str, Artifact]

    def __getitem__(self, key: str) -> Artifact:
        return self.items[key]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    import joblib
    import lightgbm as lgb
    import skops.io as sio
    import xgboost as xgb
    from skl2onnx import to_onnx  # type: ignore[import-untyped]
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    d = tmp_path_factory.mktemp("artifacts")
    X, y = load_iris(return_X_y=True)
    est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    items: dict[str, Artifact] = {}

    def add(key: str, path: Path, fmt: str, model: Any) -> None:
        items[key] = Artifact(path, fmt, sha256_of(path), model)

    sample = X[:1].astype(np.float32)
    onx = to_onnx(est, sample, options={LogisticRegression: {"zipmap": False}}, target_opset=17)
    (d / "iris.onnx").write_bytes(onx.SerializeToString())
    add("onnx", d / "iris.onnx", "onnx", None)
    onx_zip = to_onnx(est, sample, target_opset=17)  # skl2onnx's default ZipMap output
    (d / "iris_zipmap.onnx").write_bytes(onx_zip.SerializeToString())
    add("onnx-zipmap", d / "iris_zipmap.onnx", "onnx", None)

    sio.dump(est, d / "iris.skops")
    add("skops", d / "iris.skops", "skops", est)

    joblib.dump(est, d / "iris.joblib")
    add("sklearn", d / "iris.joblib", "sklearn", est)

    booster = xgb.train(
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 3, "nthread": 1},
        xgb.DMatrix(X, label=y),
        num_boost_round=8,
    )
    booster.save_model(d / "iris.json")
    add("xgboost-json", d / "iris.json", "xgboost", booster)
    booster.save_model(d / "iris.ubj")
    add("xgboost-ubj", d / "iris.ubj", "xgboost", booster)

    lgbm = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbose": -1, "num_threads": 1},
        lgb.Dataset(X, label=y),
        num_boost_round=8,
    )
    lgbm.save_model(d / "iris.txt")
    add("lightgbm", d / "iris.txt", "lightgbm", lgbm)
    return Artifacts(X=X, y=y, estimator=est, items=items)


def settings_for(art: Artifact, **overrides: Any) -> RuntimeSettings:
    values: dict[str, Any] = {
        "model_name": "iris",
        "model_version": 3,
        "artifact_path": art.path,
        "artifact_sha256": art.sha256,
        "artifact_format": art.format,
        "http_host": "127.0.0.1",
        "http_port": 0,
        "grpc_port": 0,  # off: test_grpc turns it on, on a port of its own
        "termination_log": None,
        "exit_on_load_failure": False,
    }
    values.update(overrides)
    return RuntimeSettings(**values)


@dataclass
class Running:
    url: str
    server: RuntimeServer

    @property
    def plane(self) -> DataPlane:
        return self.server.plane


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


@contextmanager
def serve(
    settings: RuntimeSettings, *, wait_ready: bool = True, plane: DataPlane | None = None
) -> Iterator[Running]:
    """A real server on 127.0.0.1:<random> in a thread; stopped gracefully at exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = RuntimeServer(settings, plane=plane)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), what="the server to start")
        assert server.started, "the server did not start"
        if wait_ready:
            wait_for(
                lambda: server.plane.state != "loading",
                what="the model to load",
            )
        yield Running(f"http://127.0.0.1:{port}", server)
    finally:
        server.stop()
        thread.join(15)
        sock.close()
        assert not thread.is_alive(), "the server did not stop"


@pytest.fixture(scope="module")
def onnx_server(artifacts: Artifacts) -> Iterator[Running]:
    with serve(settings_for(artifacts["onnx"])) as running:
        assert running.plane.state == "ready", running.plane.detail
        yield running
