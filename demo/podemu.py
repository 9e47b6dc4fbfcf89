"""Run a Deployment's container as a local process: pod emulation for a control plane without a
container runtime (kwok nodes run no containers).

Used by `python -m demo` to show a real prediction from the Deployment the operator generated.
It does what the kubelet would do for a container, and only that: the container's `command` and
`args`, its `env` with each `secretKeyRef` resolved from the Secret through the API server, an
emptyDir for MODELREG_MODEL_DIR, and the container ports (HTTP, gRPC) mapped to free ports on
127.0.0.1 (the pod's network namespace). The image's PATH is this checkout's virtualenv, where
modelreg is installed as it is in the image. The process environment is otherwise empty, so
whatever the server needs must come from the generated spec.
"""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

KubectlJson = Callable[..., Any]
"""kubectl_json("get", "secret", NAME, namespace=NS) -> the parsed `-o json` output."""


def resolve_env(
    container: dict[str, Any], namespace: str, kubectl_json: KubectlJson
) -> dict[str, str]:
    """The container's environment as the kubelet sets it (literal values and secretKeyRefs)."""
    env: dict[str, str] = {}
    secrets: dict[str, dict[str, str]] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        if ref is None:
            raise ValueError(f"env {item['name']}: only value and secretKeyRef are emulated")
        if ref["name"] not in secrets:
            secrets[ref["name"]] = kubectl_json(
                "get", "secret", ref["name"], namespace=namespace
            ).get("data", {})
        data = secrets[ref["name"]]
        if ref["key"] in data:
            env[item["name"]] = base64.b64decode(data[ref["key"]]).decode()
        elif not ref.get("optional"):
            raise ValueError(f"env {item['name']}: Secret {ref['name']} has no key {ref['key']}")
    if container.get("envFrom"):
        raise ValueError("envFrom is not emulated")
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmulatedPod:
    """One container of a Deployment, running locally. Use as a context manager."""

    def __init__(
        self, container: dict[str, Any], env: dict[str, str], venv_bin: Path | None = None
    ) -> None:
        self.container = container
        self.port = free_port()
        self.grpc_port = free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="modelreg-pod-")
        tmp = Path(self._tmp.name)
        self.model_dir = tmp / "model"
        self.model_dir.mkdir()
        self.log_path = tmp / "container.log"
        bin_dir = venv_bin or Path(sys.executable).parent
        self.env = {
            "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(tmp),
            **env,
            "MODELREG_MODEL_DIR": str(self.model_dir),
            "MODELREG_HTTP_HOST": "127.0.0.1",
            "MODELREG_HTTP_PORT": str(self.port),
            "MODELREG_GRPC_PORT": str(self.grpc_port),
            "MODELREG_TERMINATION_LOG": str(tmp / "termination-log"),
        }
        self.argv = [*container.get("command", []), *container.get("args", [])]
        if not self.argv:
            raise ValueError("the container has no command; the image's default is not emulated")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def probe_path(self, probe: str = "readinessProbe") -> str:
        spec = (self.container.get(probe) or {}).get("httpGet") or {}
        return str(spec.get("path", "/v2/health/ready"))

    def start(self) -> EmulatedPod:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.argv, env=self.env, cwd=str(self.model_dir), stdout=log, stderr=subprocess.STDOUT
        )
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        url = self.base_url + self.probe_path()
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"the container exited with {self.proc.returncode}:\n{self.log()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our own loopback URL
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"the container was not ready after {timeout:.0f}s:\n{self.log()}")

    def post_json(self, path: str, doc: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(  # noqa: S310 - our own loopback URL
            self.base_url + path,
            data=json.dumps(doc).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            body: dict[str, Any] = json.loads(resp.read())
            return body

    def get_json(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.base_url + path, timeout=10) as resp:  # noqa: S310
            body: dict[str, Any] = json.loads(resp.read())
            return body

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def __enter__(self) -> EmulatedPod:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._tmp.cleanup()
