"""A recognisable credential never appears in status, Events, annotations, the operator's log or
the runtime's log, not even when every call to the store fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.e2e.helpers import REPO, S3, Kubectl, OperatorProcess, free_port, wait_for
from tests.e2e.registry import Registry

CANARY_ID = "AKIACANARY" + "Q" * 10
CANARY = "CanarySecret/" + "z9" * 15


def test_credentials_never_leak_when_every_store_call_fails(
    kubectl: Kubectl, namespace: str, s3: S3, s3_secret: str, operator: OperatorProcess
) -> None:
    kubectl(
        "-n",
        namespace,
        "create",
        "secret",
        "generic",
        "canary",
        f"--from-literal=AWS_ACCESS_KEY_ID={CANARY_ID}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={CANARY}",
    )
    reg = Registry(kubectl=kubectl, namespace=namespace, s3=s3, secret="canary")
    uri, sha = reg.artifact("denied", 1)
    # The store refuses the credentials...
    reg.model("denied")
    reg.version("denied", 1, "Production", uri=uri, sha256=sha)
    # ...or cannot be reached at all.
    dead = f"http://127.0.0.1:{free_port()}"
    reg.model(
        "unreachable",
        storage={
            "uri": reg.prefix("unreachable"),
            "endpoint": dead,
            "secretRef": {"name": "canary"},
        },
    )
    reg.version("unreachable", 1, "Production")
    reg.wait_phase("denied", 1, "Blocked", timeout=60)
    reg.wait_phase("unreachable", 1, "Verifying", timeout=60)
    wait_for(
        lambda: (
            reg.condition("unreachable", 1, "ArtifactVerified").get("reason") == "StoreUnavailable"
        ),
        timeout=90,
        what="ArtifactVerified Unknown/StoreUnavailable",
    )
    assert reg.condition("unreachable", 1, "ArtifactVerified")["status"] == "Unknown"
    cond = reg.condition("denied", 1, "ArtifactVerified")
    assert cond["status"] == "False"
    assert cond["reason"] == "AccessDenied", cond

    # The runtime, run with the same environment the operator gives the pod, fails cleanly.
    outputs = []
    for endpoint in (s3.endpoint, dead):
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MODELREG_"))},
            "PYTHONPATH": str(REPO / "operator"),
            "MODELREG_MODEL_NAME": "denied",
            "MODELREG_MODEL_VERSION": "1",
            "MODELREG_ARTIFACT_URI": uri,
            "MODELREG_ARTIFACT_SHA256": sha,
            "MODELREG_ARTIFACT_FORMAT": "onnx",
            "MODELREG_S3_ENDPOINT": endpoint,
            "MODELREG_HTTP_HOST": "127.0.0.1",
            "MODELREG_HTTP_PORT": str(free_port()),
            "MODELREG_GRPC_PORT": "0",
            "MODELREG_MODEL_DIR": str(REPO / ".dev" / f"leak-{namespace}"),
            "AWS_ACCESS_KEY_ID": CANARY_ID,
            "AWS_SECRET_ACCESS_KEY": CANARY,
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelreg.runtime"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            # Refused credentials end the process; an unreachable store is retried while the
            # server stays unready, so that one is stopped after a bounded look.
            proc.wait(timeout=15)
            assert proc.returncode != 0, "the runtime must not serve what it could not fetch"
        except subprocess.TimeoutExpired:
            assert endpoint == dead, "refused credentials must end the runtime"
            ready = f"http://127.0.0.1:{env['MODELREG_HTTP_PORT']}/v2/health/ready"
            assert _status(ready) == 503
            proc.terminate()
            proc.wait(timeout=30)
        assert proc.stdout is not None
        outputs.append(proc.stdout.read())
    assert all(o.strip() for o in outputs)

    dump = kubectl("-n", namespace, "get", "mv,mdl,deploy,rs,pods,svc,events", "-o", "json")
    annotations = json.dumps(
        [o["metadata"].get("annotations", {}) for o in json.loads(dump)["items"]]
    )
    for secret in (CANARY, CANARY_ID):
        assert secret not in dump
        assert secret not in annotations
        assert secret not in operator.log()
        for out in outputs:
            assert secret not in out, out


def _status(url: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
