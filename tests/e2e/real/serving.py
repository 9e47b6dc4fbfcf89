"""Serving helpers shared by the real and GitOps tiers: a real ONNX model, OIP v2 predictions
through a Service's ClusterIP, and a bounded load generator that counts every failed request."""

from __future__ import annotations

import http.client
import json
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from skl2onnx import to_onnx  # type: ignore[import-untyped]
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from tests.e2e.helpers import Kubectl, wait_for


@dataclass(frozen=True)
class Onnx:
    data: bytes
    sample: np.ndarray

    def expected(self) -> dict[str, np.ndarray]:
        session = ort.InferenceSession(self.data, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(None, {"X": self.sample}), strict=True))

    def request(self) -> bytes:
        doc = {
            "inputs": [
                {
                    "name": "X",
                    "shape": list(self.sample.shape),
                    "datatype": "FP32",
                    "data": self.sample.ravel().tolist(),
                }
            ]
        }
        return json.dumps(doc).encode()


def train_onnx() -> Onnx:
    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = LogisticRegression(max_iter=300).fit(X, y)
    onx = to_onnx(est, X[:1], options={LogisticRegression: {"zipmap": False}}, target_opset=17)
    return Onnx(data=onx.SerializeToString(), sample=X[:4])


@pytest.fixture(scope="module")
def onnx_model() -> Onnx:
    return train_onnx()


POISON = 1e6  # a first feature at least this large makes `failing_sometimes`'s model fail


def failing_sometimes(good: Onnx) -> bytes:
    """The same model, except that it fails (onnxruntime raises a RUNTIME_EXCEPTION, the runtime
    answers 500) on every request whose first feature reaches POISON, and answers exactly like
    `good` on the others.

    Its graph reshapes a one-element constant to the shape [1 + (max(X[:, 0]) >= POISON)], which
    cannot be done exactly then, and adds the reshaped element (0.0) to the probabilities."""
    model = onnx.load_from_string(good.data)
    g = model.graph
    out = next(o for o in g.output if o.name == "probabilities")
    inner = "probabilities_before_poison"
    for node in g.node:
        node.output[:] = [inner if o == out.name else o for o in node.output]
    const = onnx.helper.make_tensor
    g.initializer.extend(
        [
            const("poison_starts", onnx.TensorProto.INT64, [1], [0]),
            const("poison_ends", onnx.TensorProto.INT64, [1], [1]),
            const("poison_axes", onnx.TensorProto.INT64, [1], [1]),
            const("poison_at", onnx.TensorProto.FLOAT, [], [POISON]),
            const("poison_one", onnx.TensorProto.INT64, [1], [1]),
            const("poison_table", onnx.TensorProto.FLOAT, [1], [0.0]),
        ]
    )
    node = onnx.helper.make_node
    g.node.extend(
        [
            node("Slice", ["X", "poison_starts", "poison_ends", "poison_axes"], ["p_first"]),
            node("ReduceMax", ["p_first"], ["p_max"], keepdims=0),
            node("Less", ["p_max", "poison_at"], ["p_below"]),
            node("Not", ["p_below"], ["p_hit"]),
            node("Cast", ["p_hit"], ["p_hit64"], to=onnx.TensorProto.INT64),
            node("Add", ["poison_one", "p_hit64"], ["p_shape"]),
            node("Reshape", ["poison_table", "p_shape"], ["p_zero"]),
            node("Add", [inner, "p_zero"], [out.name]),
        ]
    )
    onnx.checker.check_model(model)
    return model.SerializeToString()


def poisoned(good: Onnx) -> Onnx:
    """Requests that `failing_sometimes`'s model fails on (the good model answers them)."""
    sample = good.sample.copy()
    sample[:, 0] = POISON
    return Onnx(data=good.data, sample=sample)


def cluster_ip(kubectl: Kubectl, namespace: str, service: str) -> str:
    svc = kubectl.get("service", service, namespace)
    assert svc is not None, f"no Service {namespace}/{service}"
    return str(svc["spec"]["clusterIP"])


def infer(host: str, model: str, body: bytes, timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection(host, 80, timeout=timeout)
    try:
        conn.request(
            "POST",
            f"/v2/models/{model}/infer",
            body,
            {"Content-Type": "application/json", "Connection": "close"},
        )
        r = conn.getresponse()
        data = r.read()
    finally:
        conn.close()
    try:
        doc = json.loads(data)
    except ValueError:
        doc = {"raw": data[:300].decode(errors="replace")}
    return r.status, doc


def answers(host: str, model: str, body: bytes, expected: dict[str, np.ndarray]) -> bool:
    try:
        code, doc = infer(host, model, body)
    except OSError:
        return False
    return code == 200 and matches(doc, expected)


def matches(doc: dict[str, Any], expected: dict[str, np.ndarray]) -> bool:
    outputs = {o["name"]: o for o in doc.get("outputs", [])}
    if set(outputs) != set(expected):
        return False
    for name, want in expected.items():
        got = np.asarray(outputs[name]["data"]).reshape(want.shape)
        if not np.allclose(got, want, rtol=1e-5, atol=1e-6):
            return False
    return True


@dataclass
class Load:
    """A bounded load generator: each request on a new connection to the Service's ClusterIP."""

    host: str
    model: str
    body: bytes
    expected: dict[str, np.ndarray]
    threads: int = 3
    max_requests: int = 200_000
    max_seconds: float = 900.0
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    versions: Counter[str] = field(default_factory=Counter)
    last_version: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.ok + len(self.failures)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if self.total >= self.max_requests:
                    return
            try:
                status, doc = infer(self.host, self.model, self.body, timeout=5)
                good = status == 200 and matches(doc, self.expected)
                error = "" if good else f"HTTP {status}: {json.dumps(doc)[:300]}"
            except (OSError, http.client.HTTPException) as e:
                good, doc, error = False, {}, f"{type(e).__name__}: {e}"
            with self._lock:
                if good:
                    self.ok += 1
                    self.last_version = str(doc.get("model_version"))
                    self.versions[self.last_version] += 1
                else:
                    now = time.time()
                    stamp = (
                        time.strftime("%H:%M:%S", time.localtime(now))
                        + f".{int(now % 1 * 1000):03d}"
                    )
                    self.failures.append(f"{stamp} {error}")
            time.sleep(0.002)

    def start(self) -> Load:
        for i in range(self.threads):
            t = threading.Thread(target=self._run, name=f"load-{i}", daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=30)

    def wait_serving(self, version: int, timeout: float = 60) -> None:
        wait_for(
            lambda: self.last_version == str(version),
            timeout=timeout,
            what=f"the load generator's answers to come from version {version}",
        )
