"""`make demo` (`python -m demo`): modelreg from a fresh clone to a served prediction.

Steps, each announced as it starts:
 1. the local control plane, S3 server and real node (`make cluster-up`), the image imported
    into the node (`make image`), the CRDs;
 2. the operator (`python -m modelreg.controller`, in the background, log in
    .dev/demo-operator-<namespace>.log),
    watching the demo namespace only;
 3. two models trained on scikit-learn's bundled breast-cancer dataset and exported to ONNX;
 4. a namespace, the S3 credentials Secret, an OSV advisory database (real PyUp advisories from
    the `safety-db` package, converted) in the bucket, and a Model with promotion gates on metrics
    and on known vulnerabilities;
 5. `modelreg register` of both versions with their training environment, `modelreg promote
    --reason` of each (the second archives the first), an alias `@champion`, and a third version
    whose old environment (PyYAML 5.3) the audit gate refuses;
 6. the Model and its versions as the CLI and kubectl show them: aliases, who asked for each stage
    and why (`modelreg history`, stamped by the API server), the audit finding;
 7. a real prediction from the served version: its pod runs on the real node and answers through
    the stable Service's ClusterIP. Where no real node can run (no root, say), the Deployment's
    container runs here as a local process instead (`demo.podemu`), and the demo says so; then
    the web UI (`modelreg ui`, in the background, acting with the demo's kubeconfig) and its URL;
 8. what to try next.

Options: `--stop` stops the operator and the UI at the end (CI); `--namespace` picks another namespace.
Re-running starts over: the demo namespace and its objects in the bucket are removed first.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.metadata
import io
import json
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import numpy as np
import onnxruntime as ort
import yaml
from skl2onnx import to_onnx  # type: ignore[import-untyped]
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tools import osv_from_safety_db as tool

from demo.devenv import ON_REAL_NODE, REAL_NODE, read_env_file
from demo.podemu import EmulatedPod, resolve_env

REPO = Path(__file__).resolve().parents[1]
DEV = REPO / ".dev"
VENV_BIN = Path(sys.executable).parent
MODEL = "breast-cancer"


def operator_files(namespace: str) -> tuple[Path, Path]:
    """The pid file and log of the demo's operator for `namespace` (one operator per namespace)."""
    return DEV / f"demo-operator-{namespace}.pid", DEV / f"demo-operator-{namespace}.log"


def step(n: int, text: str) -> None:
    print(f"\n==> [{n}/8] {text}", flush=True)


def info(text: str) -> None:
    print(f"    {text}", flush=True)


class DemoError(Exception):
    pass


@dataclass
class Env:
    kubeconfig: str
    kubectl_bin: str
    s3: dict[str, str]
    namespace: str
    real_node: bool = False

    def proc_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": self.kubeconfig,
            "PATH": f"{VENV_BIN}:{DEV / 'bin'}:{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(REPO / "operator"),
            "MODELREG_S3_ENDPOINT": self.s3["MODELREG_S3_ENDPOINT"],
        }

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        p = subprocess.run(
            [self.kubectl_bin, "--kubeconfig", self.kubeconfig, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and p.returncode != 0:
            raise DemoError(f"kubectl {' '.join(args)}: {p.stderr.strip()}")
        return p.stdout

    def kubectl_json(self, *args: str, namespace: str | None = None) -> Any:
        ns = ["-n", namespace] if namespace else []
        return json.loads(self.kubectl(*ns, *args, "-o", "json"))

    def modelreg(self, *args: str, show: bool = True, expect: int = 0) -> str:
        """Run the CLI as a user would, echoing the command and its output; `expect`: the exit
        code the step shows (a refusal is part of the demo)."""
        cmd = ["modelreg", "-n", self.namespace, *args]
        if show:
            print(f"    $ {shlex.join(cmd)}", flush=True)
        p = subprocess.run(
            [sys.executable, "-m", "modelreg.cli.main", *cmd[1:]],
            capture_output=True,
            text=True,
            env=self.proc_env(),
            timeout=600,
            check=False,
        )
        if show:
            for line in (p.stderr + p.stdout).rstrip().splitlines():
                print(f"      {line}", flush=True)
        if p.returncode != expect:
            raise DemoError(f"modelreg {' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")
        if expect:
            info(f"(exit {p.returncode}, as expected)")
        return p.stdout


# -- steps ------------------------------------------------------------------------------------------


def cluster_up(skip: bool) -> None:
    if skip:
        info("skipped (--no-cluster-up): using the running environment")
        return
    cluster = os.environ.get("CLUSTER", "local")
    p = subprocess.run(
        ["make", "--no-print-directory", "cluster-up", f"CLUSTER={cluster}"], cwd=REPO, check=False
    )
    if p.returncode != 0:
        raise DemoError("make cluster-up failed (see above)")


def real_node(env: Env) -> bool:
    """Is the real node Ready, with the image imported? Else say why the demo emulates the pod."""
    node = env.kubectl("get", "node", REAL_NODE, "--ignore-not-found", "-o", "json").strip()
    if not node:
        reason = DEV / "no-node-reason"
        why = reason.read_text().strip() if reason.exists() else "MODELREG_REAL_NODE=0"
        info(f"no real node ({why}): the prediction will come from pod emulation")
        return False
    conds = {c["type"]: c["status"] for c in json.loads(node)["status"].get("conditions", [])}
    if conds.get("Ready") != "True":
        info(f"node {REAL_NODE} is not Ready: the prediction will come from pod emulation")
        return False
    p = subprocess.run(["bash", str(REPO / "tools" / "image.sh")], cwd=REPO, check=False)
    if p.returncode != 0:
        raise DemoError("tools/image.sh could not build or import the image (see above)")
    info(f"real node {REAL_NODE} Ready, image imported: the version will be served by a real pod")
    return True


def install_crds(env: Env) -> None:
    env.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    env.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/models.modelreg.dev", "crd/modelversions.modelreg.dev",
    )  # fmt: skip
    info("CRDs installed: models.modelreg.dev, modelversions.modelreg.dev")


def install_policies(env: Env) -> None:
    """The chart's MutatingAdmissionPolicies, bound to the demo namespace only: stage-audit (who
    asked for each stage, stamped by the API server) and tag-labels."""
    selector = json.dumps({"matchLabels": {"kubernetes.io/metadata.name": env.namespace}})
    helm = DEV / "bin" / "helm"
    rendered = subprocess.run(
        [str(helm), "template", f"demo-{env.namespace}", str(REPO / "charts" / "modelreg"),
         "--show-only", "templates/stage-audit.yaml", "--show-only", "templates/tag-labels.yaml",
         "--set-json", f"stageAudit.namespaceSelector={selector}",
         "--set-json", f"tagLabels.namespaceSelector={selector}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if rendered.returncode != 0:
        raise DemoError(f"helm template: {rendered.stderr.strip()}")
    env.kubectl("apply", "-f", "-", input=rendered.stdout)
    info(f"admission policies demo-{env.namespace}-modelreg-stage-audit and -tag-labels")


def ui_files(namespace: str) -> tuple[Path, Path]:
    """The pid file and log of the demo's web UI (`modelreg ui`) for `namespace`."""
    return DEV / f"demo-ui-{namespace}.pid", DEV / f"demo-ui-{namespace}.log"


def stop_previous_operator(namespace: str) -> None:
    stop_previous(operator_files(namespace)[0], "modelreg.controller")


def stop_previous(pid_file: Path, marker: str) -> None:
    """SIGTERM the process in `pid_file` if it is still ours (its command line has `marker`)."""
    if not pid_file.exists():
        return
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError):
        pid_file.unlink(missing_ok=True)
        return
    if marker in cmdline:  # the pid is still the demo's process
        os.kill(pid, signal.SIGTERM)
        for _ in range(40):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.25)
    pid_file.unlink(missing_ok=True)


def start_operator(env: Env) -> int:
    stop_previous_operator(env.namespace)
    DEV.mkdir(exist_ok=True)
    pid_file, log_file = operator_files(env.namespace)
    log = log_file.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelreg.controller", "--namespace", env.namespace],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={
            **env.proc_env(),
            "PYTHONUNBUFFERED": "1",
            # Ports of their own would clash with other operators on this machine.
            "MODELREG_METRICS_PORT": "0",
            "MODELREG_LIVENESS_ENDPOINT": "",
        },
        cwd=REPO,
        start_new_session=True,  # outlives `make demo`, as a background service would
    )
    pid_file.write_text(str(proc.pid))
    time.sleep(2)
    if proc.poll() is not None:
        raise DemoError(f"the operator exited at once; see {log_file}")
    info(f"operator running (pid {proc.pid}), watching namespace {env.namespace}; log: {log_file}")
    return proc.pid


UI_PORT = 8765
_BANNER = re.compile(r"modelreg ui: serving (http://\S+)")


def start_ui(env: Env) -> str:
    """`modelreg ui` in the background (as you: the demo's kubeconfig); its URL once it answers.
    Port 8765, or any free one when another process holds it."""
    pid_file, log_file = ui_files(env.namespace)
    stop_previous(pid_file, "modelreg.cli ui")
    port = UI_PORT if _port_free(UI_PORT) else 0
    log_file.write_bytes(b"")
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelreg.cli", "ui", "-n", env.namespace, "--port", str(port)],
        stdout=log_file.open("ab"),
        stderr=subprocess.STDOUT,
        env={**env.proc_env(), "PYTHONUNBUFFERED": "1"},
        cwd=REPO,
        start_new_session=True,  # outlives `make demo`, like the operator
    )
    pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(f"modelreg ui exited at once; see {log_file}")
        found = _BANNER.search(log_file.read_text(errors="replace"))
        if found:
            url = found.group(1)
            with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback URL
                if resp.status != 200:
                    raise DemoError(f"the web UI answered {resp.status}; see {log_file}")
            info(f"web UI running (pid {proc.pid}): {url}  (log: {log_file})")
            return url
        time.sleep(0.2)
    raise DemoError(f"modelreg ui did not start in 30 s; see {log_file}")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def train(workdir: Path) -> list[dict[str, Any]]:
    """Two ONNX models of scikit-learn's bundled breast-cancer data, with honest test metrics."""

    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=7, stratify=y
    )
    candidates = [
        ("v1: logistic regression on raw features", LogisticRegression(max_iter=200)),
        (
            "v2: standardized features + logistic regression",
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        ),
    ]
    out = []
    for i, (label, est) in enumerate(candidates, start=1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # v1 may stop before converging: it is the weaker one
            est.fit(X_train, y_train)
        onx = to_onnx(
            est, X_train[:1], options={LogisticRegression: {"zipmap": False}}, target_opset=17
        )
        path = workdir / f"model-v{i}.onnx"
        path.write_bytes(onx.SerializeToString())
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        labels, proba = session.run(None, {"X": X_test})
        timings = []
        for row in X_test[:200]:
            t = time.perf_counter()
            session.run(None, {"X": row[None, :]})
            timings.append((time.perf_counter() - t) * 1000)
        metrics = {
            "auc": round(float(roc_auc_score(y_test, proba[:, 1])), 4),
            "accuracy": round(float(accuracy_score(y_test, labels)), 4),
            "latency_p99_ms": round(float(np.percentile(timings, 99)), 3),
        }
        info(
            f"{label}: auc={metrics['auc']} accuracy={metrics['accuracy']} p99={metrics['latency_p99_ms']} ms"
        )
        out.append({"path": path, "metrics": metrics, "label": label})
    sample = X_test[:3]
    out.append({"sample": sample.tolist(), "truth": y_test[:3].tolist()})
    return out


def reset_namespace(env: Env) -> None:
    """Start over: the namespace and the demo's objects in the bucket."""
    if env.kubectl("get", "namespace", env.namespace, "--ignore-not-found", "-o", "name").strip():
        info(f"removing the previous demo namespace {env.namespace}")
        env.kubectl("delete", "namespace", env.namespace, "--wait=true", "--timeout=120s")
    s3 = _s3(env)
    bucket = env.s3.get("MODELREG_S3_BUCKET", "models")
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=f"{env.namespace}/")
    for obj in listing.get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=obj["Key"])


def _s3(env: Env) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=env.s3["MODELREG_S3_ENDPOINT"],
        aws_access_key_id=env.s3["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env.s3["AWS_SECRET_ACCESS_KEY"],
        region_name=env.s3.get("AWS_REGION", "us-east-1"),
        config=botocore.config.Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"},
        ),
    )


def upload_advisories(env: Env) -> str:
    """Real advisories as an OSV .zip in the bucket: the PyUp database that the safety-db package
    ships on PyPI, converted by tools/osv_from_safety_db.py. The operator reads it from the store;
    nothing is fetched from the internet."""
    data, release = tool.load_installed()
    records = tool.convert(data, version=release)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for r in records:
            z.writestr(f"{r['id']}.json", json.dumps(r))
    bucket = env.s3.get("MODELREG_S3_BUCKET", "models")
    key = f"{env.namespace}/advisories/osv-pypi.zip"
    _s3(env).put_object(Bucket=bucket, Key=key, Body=buf.getvalue())
    uri = f"s3://{bucket}/{key}"
    info(f"{len(records)} OSV records (safety-db {release}) -> {uri}")
    return uri


def create_model(env: Env, advisories: str) -> None:
    s3 = env.s3
    bucket = s3.get("MODELREG_S3_BUCKET", "models")
    env.kubectl("create", "namespace", env.namespace)
    env.kubectl(
        "-n", env.namespace, "create", "secret", "generic", "s3-credentials",
        f"--from-literal=AWS_ACCESS_KEY_ID={s3['AWS_ACCESS_KEY_ID']}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={s3['AWS_SECRET_ACCESS_KEY']}",
    )  # fmt: skip
    model = {
        "apiVersion": "modelreg.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": MODEL, "namespace": env.namespace},
        "spec": {
            "description": "Breast cancer diagnosis (scikit-learn's bundled dataset), ONNX",
            "owner": "team-demo",
            "storage": {
                "uri": f"s3://{bucket}/{env.namespace}/{MODEL}/",
                "endpoint": s3["MODELREG_S3_ENDPOINT"],
                "region": s3.get("AWS_REGION", "us-east-1"),
                "secretRef": {"name": "s3-credentials"},
            },
            "advisories": {"uri": advisories},
            "promotion": {
                "gates": [{"metric": "auc", "min": 0.9}, {"metric": "latency_p99_ms", "max": 50}],
                "audit": {"maxSeverity": "HIGH"},
            },
            "serving": {"replicas": 1, **(ON_REAL_NODE if env.real_node else {})},
        },
    }
    text = yaml.safe_dump(model, sort_keys=False)
    env.kubectl("apply", "-f", "-", input=text)
    info("kubectl apply -f - <<EOF")
    for line in text.rstrip().splitlines():
        info(f"  {line}")
    info("EOF")


TRAINED_WITH = ("scikit-learn", "numpy", "scipy", "skl2onnx", "onnx", "onnxruntime")
REASONS = ("first model: passes the auc and latency gates", "standardized features: higher auc")


def requirements(workdir: Path, name: str, pins: Sequence[str]) -> Path:
    path = workdir / name
    path.write_text("\n".join(pins) + "\n")
    return path


def register_and_promote(env: Env, models: list[dict[str, Any]], workdir: Path) -> None:
    # The packages the models were trained with, at the versions installed here.
    pins = [f"{d}=={importlib.metadata.version(d)}" for d in TRAINED_WITH]
    reqs = requirements(workdir, "requirements.txt", pins)
    python = platform.python_version()
    for i, m in enumerate(models, start=1):
        metric_args = [a for k, v in m["metrics"].items() for a in ("-m", f"{k}={v}")]
        env.modelreg(
            "register", MODEL, str(m["path"]), *metric_args,
            "-p", f"trainer={m['label'].split(':')[1].strip()}",
            "-l", "dataset=sklearn.datasets.load_breast_cancer",
            "--requirements", str(reqs), "--python", python,
            "--framework", "sklearn", "--wait", "--timeout", "120",
        )  # fmt: skip
        env.modelreg("promote", MODEL, str(i), "--reason", REASONS[i - 1], "--timeout", "180")
    env.modelreg("alias", "set", MODEL, "champion", str(len(models)))
    # The same model again, as an old training image had it: PyYAML 5.3 has known advisories
    # (CVE-2020-1747, CVE-2020-14343), and the audit gate keeps the version out of Production.
    old = requirements(workdir, "old-requirements.txt", [*pins, "PyYAML==5.3"])
    best = models[-1]
    metric_args = [a for k, v in best["metrics"].items() for a in ("-m", f"{k}={v}")]
    env.modelreg(
        "register", MODEL, str(best["path"]), *metric_args, "--requirements", str(old),
        "--python", python, "--framework", "sklearn", "--wait", "--timeout", "120",
    )  # fmt: skip
    env.modelreg(
        "promote", MODEL, str(len(models) + 1), "--reason", "same model, older image",
        "--timeout", "120", expect=5,
    )  # fmt: skip


def show(env: Env) -> None:
    env.modelreg("get", MODEL)
    env.modelreg("list", MODEL)
    env.modelreg("history", MODEL)
    env.modelreg("get", MODEL, "3")
    env.modelreg("compare", MODEL)
    print(f"    $ kubectl get mdl,mv,deploy,svc -n {env.namespace}", flush=True)
    for line in env.kubectl("get", "mdl,mv,deploy,svc", "-n", env.namespace).rstrip().splitlines():
        print(f"      {line}", flush=True)


def infer_doc(sample: list[list[float]]) -> dict[str, Any]:
    return {
        "id": "demo",
        "inputs": [
            {
                "name": "X",
                "shape": [len(sample), len(sample[0])],
                "datatype": "FP32",
                "data": sample,
            }
        ],
    }


def show_prediction(body: dict[str, Any], truth: list[int]) -> None:
    outputs = {o["name"]: o for o in body.get("outputs", [])}
    labels = outputs.get("label", {}).get("data", [])
    proba = outputs.get("probabilities", {}).get("data", [])
    names = {0: "malignant", 1: "benign"}
    for row, label in enumerate(labels):
        p = proba[2 * row + int(label)] if len(proba) >= 2 * (row + 1) else None
        conf = f" (p={p:.3f})" if p is not None else ""
        info(
            f"sample {row}: predicted {names.get(int(label), label)}{conf}, actual {names.get(int(truth[row]), truth[row])}"
        )
    info(f"served by model {body.get('model_name')} version {body.get('model_version')}")


def predict_through_service(env: Env, sample: list[list[float]], truth: list[int]) -> None:
    """Through the stable Service's ClusterIP, from this host (kube-proxy routes it to the pod)."""
    svc = env.kubectl_json("get", "service", MODEL, namespace=env.namespace)
    ip = svc["spec"]["clusterIP"]
    pods = env.kubectl_json(
        "get", "pods", "-l", f"modelreg.dev/model={MODEL},modelreg.dev/version=2",
        namespace=env.namespace,
    )["items"]  # fmt: skip
    for pod in pods:
        info(
            f"pod {pod['metadata']['name']} on node {pod['spec'].get('nodeName')}, IP {pod['status'].get('podIP')}, "
            f"ready={all(c.get('ready') for c in pod['status'].get('containerStatuses', []))}"
        )
    url = f"http://{ip}/v2/models/{MODEL}/infer"
    print(f"    $ curl -s -X POST {url} -d '{{\"inputs\": [...3 rows...]}}'", flush=True)
    body: dict[str, Any] = {}
    deadline = time.monotonic() + 60
    while True:
        conn = http.client.HTTPConnection(ip, 80, timeout=10)
        try:
            conn.request("POST", f"/v2/models/{MODEL}/infer", json.dumps(infer_doc(sample)),
                         {"Content-Type": "application/json"})  # fmt: skip
            r = conn.getresponse()
            data = r.read()
            if r.status == 200:
                body = json.loads(data)
                break
            problem = f"HTTP {r.status}: {data[:200]!r}"
        except OSError as e:
            problem = str(e)
        finally:
            conn.close()
        if time.monotonic() > deadline:
            raise DemoError(f"no prediction through the Service {ip}:80: {problem}")
        time.sleep(1)
    show_prediction(body, truth)


def predict(env: Env, sample: list[list[float]], truth: list[int]) -> None:
    if env.real_node:
        predict_through_service(env, sample, truth)
        return
    info("no real node: running the Deployment's container here as a local process (pod emulation)")
    mv = env.kubectl_json("get", "mv", f"{MODEL}-v2", namespace=env.namespace)
    deployment_name = (mv.get("status", {}).get("serving") or {}).get("deployment") or f"{MODEL}-v2"
    deployment = env.kubectl_json("get", "deployment", deployment_name, namespace=env.namespace)
    containers = deployment["spec"]["template"]["spec"]["containers"]
    container = next((c for c in containers if c["name"] == "model"), containers[0])
    info(
        f"Deployment {deployment_name}, container {container['name']!r}: {' '.join(container.get('command', []))}"
    )

    def kubectl_json(*args: str, namespace: str | None = None) -> Any:
        return env.kubectl_json(*args, namespace=namespace)

    pod_env = resolve_env(container, env.namespace, kubectl_json)
    with EmulatedPod(container, pod_env, VENV_BIN) as pod:
        info(
            f"emulated pod listening on {pod.base_url} (container port {pod_env.get('MODELREG_HTTP_PORT', '?')})"
        )
        pod.wait_ready(timeout=120)
        name = pod_env.get("MODELREG_MODEL_NAME", MODEL)
        meta = pod.get_json(f"/v2/models/{name}")
        info(
            f"ready: {meta.get('name')} version {meta.get('versions', ['?'])} platform {meta.get('platform', '?')}"
        )
        doc = infer_doc(sample)
        print(
            f"    $ curl -s -X POST {pod.base_url}/v2/models/{name}/infer -d '{{\"inputs\": [...3 rows...]}}'"
        )
        body = pod.post_json(f"/v2/models/{name}/infer", doc)
        show_prediction(body, truth)


def next_steps(env: Env, stopped: bool, ui_url: str | None = None) -> None:
    ns = env.namespace
    pid_file = operator_files(ns)[0].relative_to(REPO)
    lines = [
        ("export KUBECONFIG=$PWD/.dev/kubeconfig PATH=$PWD/.dev/bin:$PWD/.venv/bin:$PATH", ""),
        (f"modelreg list -n {ns}", "versions, stages, phases, metrics"),
        (f"modelreg history {MODEL} -n {ns}", "every stage change: who asked, and why"),
        (f"modelreg get {MODEL}@champion -n {ns}", "the version an alias names"),
        (f"modelreg rollback {MODEL} -n {ns}", "v2 out, v1 back in (blue/green)"),
        (f"modelreg compare {MODEL} -n {ns} --plot compare.png", "metrics side by side"),
        (f"modelreg verify {MODEL} 2 -n {ns}", "re-hash the artifact in the store"),
        (f"kubectl modelreg get {MODEL} -n {ns}", "the same CLI as a kubectl plugin"),
        (f"kubectl get mv -n {ns} -w", "watch the operator's verdicts"),
    ]
    if ui_url is not None and not stopped:
        ui_pid = ui_files(ns)[0].relative_to(REPO)
        lines.append((ui_url, "the web UI: versions, gates, history, compare (docs/ui.md)"))
        lines.append((f"kill $(cat {ui_pid})", "stop the web UI"))
    if not stopped:
        lines.append((f"kill $(cat {pid_file})", "stop the demo's operator"))
    lines += [
        ("make cluster-down", "stop the local control plane and S3 server"),
        ("less docs/concepts.md docs/cli.md", "the stage rules and the CLI reference"),
    ]
    width = max(len(cmd) for cmd, why in lines if why) + 2
    lines = [(f"{cmd.ljust(width)}# {why}" if why else cmd, "") for cmd, why in lines]
    for line, _ in lines:
        info(line)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n")[0])
    p.add_argument("--namespace", default="modelreg-demo")
    p.add_argument("--stop", action="store_true", help="stop the operator at the end")
    p.add_argument("--no-cluster-up", action="store_true", help="use the running environment")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    stopped = False
    try:
        step(1, "local control plane and S3 server, CRDs")
        cluster_up(args.no_cluster_up)
        kubeconfig = os.environ.get("KUBECONFIG") or str(DEV / "kubeconfig")
        if not Path(kubeconfig).is_file() or not (DEV / "s3.env").is_file():
            raise DemoError("no .dev/kubeconfig or .dev/s3.env: run 'make cluster-up'")
        local_kubectl = DEV / "bin" / "kubectl"
        env = Env(
            kubeconfig=kubeconfig,
            kubectl_bin=str(local_kubectl) if local_kubectl.exists() else "kubectl",
            s3=read_env_file(DEV / "s3.env"),
            namespace=args.namespace,
        )
        env.real_node = real_node(env)
        install_crds(env)
        reset_namespace(env)
        install_policies(env)

        step(2, "the operator")
        start_operator(env)

        step(3, "training two models (scikit-learn breast-cancer data -> ONNX)")
        with tempfile.TemporaryDirectory(prefix="modelreg-demo-") as tmp:
            trained = train(Path(tmp))
            sample = trained.pop()

            step(
                4,
                f"namespace {env.namespace}, S3 Secret, advisories, Model {MODEL} with gates "
                "auc >= 0.9, p99 <= 50 ms, no finding above HIGH",
            )
            create_model(env, upload_advisories(env))

            step(5, "registering and promoting the versions with the CLI")
            register_and_promote(env, trained, Path(tmp))

        step(6, "the Model and its versions")
        show(env)

        where = "a real pod, through the Service" if env.real_node else "pod emulation"
        step(7, f"a prediction from the served version ({where})")
        predict(env, sample["sample"], sample["truth"])
        ui_url = start_ui(env)

        if args.stop:
            stop_previous(ui_files(args.namespace)[0], "modelreg.cli ui")
            stop_previous_operator(args.namespace)
            stopped = True
        step(8, f"done in {time.monotonic() - t0:.0f}s. Next steps:")
        next_steps(env, stopped, ui_url)
        return 0
    except DemoError as e:
        print(f"\ndemo: error: {e}", file=sys.stderr)
        log_file = operator_files(args.namespace)[1]
        if log_file.exists():
            print(f"demo: the operator's log is {log_file}", file=sys.stderr)
        if args.stop:
            stop_previous(ui_files(args.namespace)[0], "modelreg.cli ui")
            stop_previous_operator(args.namespace)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
