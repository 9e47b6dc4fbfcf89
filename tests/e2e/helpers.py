"""Helpers shared by the e2e tests: kubectl, polling with a deadline, S3 uploads, kwok stages.

Everything here talks to the real local control plane and S3 server (or the cluster given with
--kubeconfig); nothing is faked.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import boto3
import botocore.config
import yaml

REPO = Path(__file__).resolve().parents[2]
DEV = REPO / ".dev"
T = TypeVar("T")


class Timeout(AssertionError):
    pass


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    """The condition `type_` of an object's status, or {} when it has none."""
    conds = (obj.get("status") or {}).get("conditions") or []
    return next((dict(c) for c in conds if c.get("type") == type_), {})


def wait_for(
    fn: Callable[[], T | bool | None],
    *,
    timeout: float = 60.0,
    interval: float = 0.25,
    what: str = "",
) -> T:
    """Poll `fn` until it returns something truthy; fail with `what` and the last value on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = fn()
        if last:
            return last  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise Timeout(
                f"timed out after {timeout:.0f}s waiting for {what or fn!r}; last value: {last!r}"
            )
        time.sleep(interval)


@dataclass
class Tool:
    """A command-line client of the cluster (kubectl, helm), always given the test's kubeconfig."""

    kubeconfig: str
    binary: str

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.binary, "--kubeconfig", self.kubeconfig, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{Path(self.binary).name} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}"
            )
        return proc

    def __call__(self, *args: str, **kw: Any) -> str:
        return self.run(*args, **kw).stdout


class Kubectl(Tool):
    def apply(self, obj: dict[str, Any] | list[dict[str, Any]], *extra: str) -> str:
        docs = obj if isinstance(obj, list) else [obj]
        return self("apply", "-f", "-", *extra, input=yaml.safe_dump_all(docs))

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        args = ["get", kind, name, "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        proc = self.run(*args, check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr or "not found" in proc.stderr:
                return None
            raise AssertionError(proc.stderr)
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    def items(self, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        args = ["get", kind, "-n", namespace, "-o", "json"]
        if selector:
            args += ["-l", selector]
        items: list[dict[str, Any]] = json.loads(self(*args))["items"]
        return items


@dataclass
class S3:
    endpoint: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    region: str

    def client(self) -> Any:
        cfg = botocore.config.Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 2},
        )
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
            config=cfg,
        )

    def put(self, key: str, data: bytes) -> str:
        """Upload `data` to s3://bucket/key and return its sha256 hex digest."""
        self.client().put_object(Bucket=self.bucket, Key=key, Body=data)
        return hashlib.sha256(data).hexdigest()

    def get(self, key: str) -> bytes:
        body: bytes = self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def env(self) -> dict[str, str]:
        return {
            "MODELREG_S3_ENDPOINT": self.endpoint,
            "MODELREG_S3_BUCKET": self.bucket,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
        }


@dataclass
class OperatorProcess:
    """`python -m modelreg.controller` as a real local process, watching the given namespaces."""

    kubeconfig: str
    namespaces: list[str]
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> OperatorProcess:
        args = [sys.executable, "-m", "modelreg.controller"]
        for ns in self.namespaces:
            args += ["--namespace", ns]
        args += self.extra_args
        env = {
            **os.environ,
            "KUBECONFIG": self.kubeconfig,
            "PYTHONPATH": str(REPO / "operator"),
            "PYTHONUNBUFFERED": "1",
            # Each operator binds its own ports: 0 disables metrics, liveness goes to a free port.
            "MODELREG_METRICS_PORT": "0",
            "MODELREG_LIVENESS_ENDPOINT": "",
            # One seal key across restarts, as the chart's Secret gives the operator: a restart
            # trusts the verdicts it sealed before.
            "MODELREG_SEAL_KEY": "e2e-seal-key",
            **self.extra_env,
        }
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n===== operator start #{self.starts} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, as when a node dies."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def hold_pods_unready_stage(name: str, label: str, value: str) -> dict[str, Any]:
    """A kwok Stage that takes pending pods carrying label=value to Running but never Ready.

    It outweighs kwok's default pod-ready stage (weight 0), so those pods stay unready: the way the
    e2e tests make a rollout miss its progress deadline without a container runtime.
    """
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "weight": 100,
            "selector": {
                "matchExpressions": [
                    {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                    {"key": ".status.phase", "operator": "In", "values": ["Pending"]},
                    {"key": f'.metadata.labels["{label}"]', "operator": "In", "values": [value]},
                ]
            },
            "next": {
                "statusTemplate": (
                    "{{ $now := Now }}\n"
                    "conditions:\n"
                    "- lastTransitionTime: {{ $now | Quote }}\n"
                    '  status: "False"\n'
                    "  type: Ready\n"
                    "  reason: HeldByTest\n"
                    "- lastTransitionTime: {{ $now | Quote }}\n"
                    '  status: "False"\n'
                    "  type: ContainersReady\n"
                    "containerStatuses:\n"
                    "{{ range .spec.containers }}\n"
                    "- image: {{ .image | Quote }}\n"
                    "  name: {{ .name | Quote }}\n"
                    "  ready: false\n"
                    "  restartCount: 0\n"
                    "  state:\n"
                    "    running:\n"
                    "      startedAt: {{ $now | Quote }}\n"
                    "{{ end }}\n"
                    "phase: Running\n"
                )
            },
        },
    }


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class PrivateS3:
    """A versitygw of the test's own (same pinned binary as the shared one), to stop and start."""

    root: Path
    access_key_id: str = "privatekey"
    secret_access_key: str = "privatesecret0123456789"
    bucket: str = "models"
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrivateS3:
        import urllib.request

        if not self.port:
            self.port = free_port()
        (self.root / "data" / self.bucket).mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "ROOT_ACCESS_KEY": self.access_key_id,
            "ROOT_SECRET_KEY": self.secret_access_key,
            "VGW_PORT": f"127.0.0.1:{self.port}",
        }
        log = (self.root / "versitygw.log").open("ab")
        self.proc = subprocess.Popen(
            [str(DEV / "bin" / "versitygw"), "posix", str(self.root / "data")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )

        def up() -> bool:
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)  # noqa: S310 - loopback
            except OSError as e:
                return not isinstance(e, ConnectionError | TimeoutError) and "refused" not in str(e)
            return True

        wait_for(up, timeout=30, what="the private S3 server")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def s3(self) -> S3:
        return S3(
            self.endpoint, self.bucket, self.access_key_id, self.secret_access_key, "us-east-1"
        )


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody reaps (PID 1 of a sandbox may not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state in ("Z", "X")


def restart_apiserver(kubectl: Kubectl) -> float:
    """Kill the local kube-apiserver and start it again with the same command; returns the outage."""
    cluster = DEV / "kwok" / "clusters" / "modelreg"
    pid_file = cluster / "pids" / "kube-apiserver.pid"
    pid = int(pid_file.read_text().strip())
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    cwd = os.readlink(f"/proc/{pid}/cwd")
    started = time.monotonic()
    # SIGKILL: a crash. (A graceful SIGTERM waits for open watches to drain, tens of seconds.)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: _gone(pid), timeout=30, what="kube-apiserver to exit")
    log = (cluster / "logs" / "kube-apiserver.log").open("ab")

    def launch() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [a.decode() for a in argv],
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        pid_file.write_text(str(proc.pid))
        return proc

    proc = launch()

    def ready() -> bool:
        nonlocal proc
        if proc.poll() is not None:  # e.g. the port is not free yet: start it again
            time.sleep(1)
            proc = launch()
            return False
        return kubectl.run("get", "--raw", "/readyz", check=False).returncode == 0

    wait_for(ready, timeout=120, interval=0.5, what="kube-apiserver to be ready again")
    # /readyz can pass while the watch cache still answers 429 "storage is (re)initializing".
    wait_for(
        lambda: (
            kubectl.run(
                "get", "modelversions,deployments", "-A", "--request-timeout=5s", check=False
            ).returncode
            == 0
        ),
        timeout=60,
        interval=0.5,
        what="kube-apiserver to serve lists again",
    )
    return time.monotonic() - started
