"""Pod emulation: the Deployment the operator writes actually serves.

kwok runs no containers, so this test plays kubelet for the serving pod. It promotes a real ONNX
model on the local control plane, takes the Deployment the operator generated, and runs the
container's `command` + `args` with exactly its `env` as a local process, resolving each
`secretKeyRef` from the Secret through the API server. The environment is otherwise empty (no
AWS_* or MODELREG_* leaks in from the test), so everything the server needs must be in the spec.

What the kubelet would provide, the test provides, and only that:
- the image's PATH: this checkout's virtualenv, where modelreg is installed as in the image;
- the `model` emptyDir mounted at MODELREG_MODEL_DIR: a temporary directory;
- the pod's network namespace: the container port mapped to a free port on 127.0.0.1 (the spec's
  MODELREG_HTTP_HOST/PORT are overridden for that reason only);
- the termination-log file: a temporary file instead of /dev/termination-log.

Then the readiness and liveness probes of the spec are called, and an inference goes through the
real download from the real S3 server, the sha256 check and onnxruntime.
"""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from tests.e2e.helpers import S3, Kubectl, OperatorProcess, wait_for
from tests.e2e.registry import Registry

VENV_BIN = Path(sys.executable).parent


def _onnx_iris() -> tuple[bytes, np.ndarray[Any, Any]]:
    from skl2onnx import to_onnx  # type: ignore[import-untyped]
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    est = LogisticRegression(max_iter=500).fit(X, y)
    onx = to_onnx(
        est,
        X[:1].astype(np.float32),
        options={LogisticRegression: {"zipmap": False}},
        target_opset=17,
    )
    return onx.SerializeToString(), X[::10].astype(np.float32)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _resolve_env(kubectl: Kubectl, namespace: str, container: dict[str, Any]) -> dict[str, str]:
    """The container's env as the kubelet would set it (value and secretKeyRef only)."""
    secrets: dict[str, dict[str, str]] = {}
    env: dict[str, str] = {}
    for item in container.get("env", []):
        name = item["name"]
        if "value" in item:
            env[name] = item["value"]
            continue
        ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        assert ref is not None, f"env {name}: only value and secretKeyRef are emulated: {item}"
        if ref["name"] not in secrets:
            secret = kubectl.get("secret", ref["name"], namespace)
            assert secret is not None, f"env {name}: Secret {ref['name']} does not exist"
            secrets[ref["name"]] = secret.get("data", {})
        data = secrets[ref["name"]]
        if ref["key"] not in data:
            assert ref.get("optional"), f"env {name}: key {ref['key']} missing from the Secret"
            continue
        env[name] = base64.b64decode(data[ref["key"]]).decode()
    for source in container.get("envFrom", []):
        raise AssertionError(f"envFrom is not emulated: {source}")
    return env


class Pod:
    """One emulated container: its process, its port, its files."""

    def __init__(self, container: dict[str, Any], env: dict[str, str], tmp: Path) -> None:
        self.container = container
        self.port = _free_port()
        self.model_dir = tmp / "models-emptydir"
        self.model_dir.mkdir()
        self.termination_log = tmp / "termination-log"
        self.log_path = tmp / "runtime.log"
        self.env = {
            "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(tmp),
            **env,
            "MODELREG_MODEL_DIR": str(self.model_dir),
            "MODELREG_HTTP_HOST": "127.0.0.1",
            "MODELREG_HTTP_PORT": str(self.port),
            # Every emulated pod shares the host's network: its own free port, not the pod's 9000.
            "MODELREG_GRPC_PORT": str(_free_port()),
            "MODELREG_TERMINATION_LOG": str(self.termination_log),
        }
        # The port the runtime is told to listen on inside the pod; probes must target it.
        self.container_port = int(env["MODELREG_HTTP_PORT"])
        self.argv = [*container.get("command", []), *container.get("args", [])]
        assert self.argv, "the container has no command: the image default is not emulated"
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, probe: str) -> str:
        spec = self.container[probe]["httpGet"]
        port = spec["port"]
        named = {p["name"]: p["containerPort"] for p in self.container.get("ports", [])}
        container_port = named.get(port, port)
        assert int(container_port) == self.container_port, (probe, port, container_port)
        return f"http://127.0.0.1:{self.port}{spec['path']}"

    def start(self) -> Pod:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.argv, env=self.env, cwd=str(self.model_dir), stdout=log, stderr=subprocess.STDOUT
        )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = 90) -> None:
        """Until the spec's readiness probe passes; fails at once if the runtime exits."""
        wait_for(
            lambda: (
                self.proc is not None
                and (self.proc.poll() is None or pytest.fail(f"the runtime exited:\n{self.log()}"))
                and _probe_ok(self.url("readinessProbe"))
            ),
            timeout=timeout,
            what="the emulated pod's readiness probe",
        )

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)


def _probe_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def served(
    kubectl: Kubectl,
    namespace: str,
    s3: S3,
    s3_secret: str,
    operator: OperatorProcess,
) -> tuple[Registry, dict[str, Any], np.ndarray[Any, Any], bytes]:
    """A Production version of a real ONNX model, Serving; returns its Deployment's container."""
    reg = Registry(kubectl=kubectl, namespace=namespace, s3=s3, secret=s3_secret)
    model_bytes, rows = _onnx_iris()
    reg.model("iris")
    uri, sha = reg.artifact("iris", 1, model_bytes)
    reg.version("iris", 1, "Production", uri=uri, sha256=sha)
    reg.wait_phase("iris", 1, "Serving", timeout=120)
    deployment = reg.deployments("iris")["iris-v1"]
    (container,) = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "model"
    ]
    return reg, container, rows, model_bytes


def test_the_generated_deployment_serves(
    served: tuple[Registry, dict[str, Any], np.ndarray[Any, Any], bytes],
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
) -> None:
    reg, container, rows, model_bytes = served
    assert container["command"] == ["python", "-m", "modelreg.runtime"]
    env = _resolve_env(kubectl, namespace, container)
    # The credentials reach the pod only through secretKeyRef, never as literal values.
    for item in container["env"]:
        if item["name"] in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert "value" not in item
            assert item["valueFrom"]["secretKeyRef"]["name"] == reg.secret
    assert env["AWS_SECRET_ACCESS_KEY"] == reg.s3.secret_access_key

    pod = Pod(container, env, tmp_path).start()
    try:
        pod.wait_ready()
        assert _probe_ok(pod.url("livenessProbe"))
        assert _probe_ok(pod.url("startupProbe"))

        base = f"http://127.0.0.1:{pod.port}"
        version = env["MODELREG_MODEL_VERSION"]
        meta = httpx.get(f"{base}/v2/models/iris/versions/{version}", timeout=5).json()
        assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
        doc = {
            "id": "pod-emulation",
            "inputs": [
                {"name": "X", "shape": list(rows.shape), "datatype": "FP32", "data": rows.tolist()}
            ],
        }
        resp = httpx.post(f"{base}/v2/models/iris/infer", json=doc, timeout=10)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["id"] == "pod-emulation"
        assert (body["model_name"], body["model_version"]) == ("iris", "1")
        session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
        label, proba = session.run(None, {"X": rows})
        outputs = {o["name"]: o for o in body["outputs"]}
        assert outputs["label"]["data"] == label.tolist()
        np.testing.assert_allclose(outputs["probabilities"]["data"], proba.ravel(), rtol=1e-6)

        # The artifact landed in the emptyDir, verified; nothing else was left there.
        files = [p for p in pod.model_dir.iterdir() if p.is_file()]
        assert [p.name for p in files] == ["iris-v1.onnx"]
        assert hashlib.sha256(files[0].read_bytes()).hexdigest() == env["MODELREG_ARTIFACT_SHA256"]
    finally:
        code = pod.stop()
    assert code == 0, pod.log()
    log = pod.log()
    assert reg.s3.secret_access_key not in log
    assert "sha256 verified" in log


def test_an_artifact_changed_after_verification_is_refused(
    served: tuple[Registry, dict[str, Any], np.ndarray[Any, Any], bytes],
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
) -> None:
    reg, container, _, model_bytes = served
    env = _resolve_env(kubectl, namespace, container)
    # Someone overwrites the verified object in the bucket.
    key = env["MODELREG_ARTIFACT_URI"].removeprefix(f"s3://{reg.s3.bucket}/")
    reg.s3.put(key, model_bytes + b"\0")
    pod = Pod(container, env, tmp_path).start()
    try:
        assert pod.proc is not None
        code = pod.proc.wait(90)
    finally:
        pod.stop()
    log = pod.log()
    assert code == 1, log
    assert "refusing to load" in log
    assert "changed after it was registered" in pod.termination_log.read_text()
    assert [p.name for p in pod.model_dir.iterdir()] == []
    assert "Traceback" not in log
    assert reg.s3.secret_access_key not in log


@pytest.fixture
def versioned_bucket(s3: S3, namespace: str) -> Iterator[str]:
    """A bucket of the real S3 server with versioning on; removed with all its versions."""
    name = f"versioned-{hashlib.sha256(namespace.encode()).hexdigest()[:12]}"
    client = s3.client()
    client.create_bucket(Bucket=name)
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    yield name
    listed = client.list_object_versions(Bucket=name)
    for v in listed.get("Versions", []) + listed.get("DeleteMarkers", []):
        client.delete_object(Bucket=name, Key=v["Key"], VersionId=v["VersionId"])
    client.delete_bucket(Bucket=name)


def test_the_pod_fetches_the_verified_version_of_an_overwritten_object(
    kubectl: Kubectl,
    namespace: str,
    s3: S3,
    s3_secret: str,
    operator: OperatorProcess,
    versioned_bucket: str,
    tmp_path: Path,
) -> None:
    """In a versioned bucket the operator records the S3 VersionId it verified and the pod
    fetches exactly that version: an overwrite after verification is not what serves (in an
    unversioned bucket the same overwrite makes the pod refuse to load, above)."""
    reg = Registry(kubectl=kubectl, namespace=namespace, s3=s3, secret=s3_secret)
    model_bytes, rows = _onnx_iris()
    reg.model(
        "iris",
        storage={
            "uri": f"s3://{versioned_bucket}/iris/",
            "endpoint": s3.endpoint,
            "region": s3.region,
            "secretRef": {"name": s3_secret},
        },
    )
    client = s3.client()
    put = client.put_object(Bucket=versioned_bucket, Key="iris/1/model.onnx", Body=model_bytes)
    verified_id = put["VersionId"]
    sha = hashlib.sha256(model_bytes).hexdigest()
    reg.version(
        "iris", 1, "Production", uri=f"s3://{versioned_bucket}/iris/1/model.onnx", sha256=sha
    )
    st = reg.wait_phase("iris", 1, "Serving", timeout=120)
    assert st["artifact"]["versionId"] == verified_id
    (container,) = reg.deployments("iris")["iris-v1"]["spec"]["template"]["spec"]["containers"]
    env = _resolve_env(kubectl, namespace, container)
    assert env["MODELREG_ARTIFACT_VERSION_ID"] == verified_id

    client.put_object(Bucket=versioned_bucket, Key="iris/1/model.onnx", Body=b"not the model")
    pod = Pod(container, env, tmp_path).start()
    try:
        pod.wait_ready()
        doc = {"inputs": [{"name": "X", "shape": list(rows.shape), "datatype": "FP32",
                           "data": rows.tolist()}]}  # fmt: skip
        resp = httpx.post(f"http://127.0.0.1:{pod.port}/v2/models/iris/infer", json=doc, timeout=10)
        assert resp.status_code == 200, resp.text
    finally:
        pod.stop()
    (loaded,) = [p for p in pod.model_dir.iterdir() if p.is_file()]
    assert loaded.read_bytes() == model_bytes


def _v2_tensor(meta: Any) -> dict[str, Any]:
    """onnxruntime's own view of a graph tensor, in v2 terms (the oracle for the capture)."""
    types = {"tensor(float)": "FP32", "tensor(int64)": "INT64", "tensor(double)": "FP64"}
    shape = [d if isinstance(d, int) else -1 for d in meta.shape]
    return {"name": meta.name, "datatype": types[meta.type], "shape": shape}


def test_the_signature_is_captured_at_register_and_reported_by_the_runtime(
    kubectl: Kubectl,
    kubeconfig: str,
    namespace: str,
    s3: S3,
    s3_secret: str,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    """`modelreg register` reads the ONNX graph's inputs and outputs into spec.signature; the
    operator hands it to the serving container (MODELREG_SIGNATURE), and the runtime started from
    that container answers the v2 metadata request with it."""
    from tests.e2e.test_cli import Cli

    model_bytes, _ = _onnx_iris()
    path = tmp_path / "iris.onnx"
    path.write_bytes(model_bytes)
    reg = Registry(kubectl=kubectl, namespace=namespace, s3=s3, secret=s3_secret)
    reg.model("iris")
    cli = Cli(kubeconfig, namespace, s3)
    r = cli("register", "iris", str(path), "--stage", "Production", "--no-progress")
    assert r.code == 0, r.err
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    expected = {
        "inputs": [_v2_tensor(t) for t in session.get_inputs()],
        "outputs": [_v2_tensor(t) for t in session.get_outputs()],
    }
    assert "signature: 1 input(s), 2 output(s)" in r.err, r.err
    assert (kubectl.get("mv", "iris-v1", namespace) or {})["spec"]["signature"] == expected
    reg.wait_phase("iris", 1, "Serving", timeout=120)
    (container,) = [
        c
        for c in reg.deployments("iris")["iris-v1"]["spec"]["template"]["spec"]["containers"]
        if c["name"] == "model"
    ]
    env = _resolve_env(kubectl, namespace, container)
    assert json.loads(env["MODELREG_SIGNATURE"]) == expected
    pod = Pod(container, env, tmp_path).start()
    try:
        pod.wait_ready()
        meta = httpx.get(f"http://127.0.0.1:{pod.port}/v2/models/iris", timeout=5).json()
        assert (meta["inputs"], meta["outputs"]) == (expected["inputs"], expected["outputs"])
    finally:
        pod.stop()
