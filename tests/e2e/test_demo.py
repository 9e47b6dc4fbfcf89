"""`make demo` as a test: the demo script, run as `make demo` runs it, must reach a served prediction.

The fixtures bring the environment up (the same `tools/cluster.sh up` that `make cluster-up` runs),
so the script is told `--no-cluster-up`; every other step is the real one: CRDs, its own operator
process, training, the CLI registering and promoting two versions, and the served version's pod on
the real node answering an inference request through the Service (pod emulation of the generated
Deployment only where the cluster has no real node). It runs in a namespace of its own and stops
its operator at the end (`--stop`).
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time

from tests.e2e.helpers import REPO, Kubectl


def test_make_demo_reaches_a_served_prediction(kubeconfig: str, kubectl: Kubectl) -> None:
    namespace = f"e2e-demo-{secrets.token_hex(3)}"
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONPATH": f"{REPO / 'operator'}:{REPO}"}
    try:
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "demo", "--no-cluster-up", "--stop", "--namespace", namespace],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=540,
            check=False,
        )
        out = proc.stdout
        print(f"demo: {time.monotonic() - t0:.1f}s")
        assert proc.returncode == 0, f"{out[-6000:]}\n{proc.stderr[-4000:]}"
        for n in range(1, 9):
            assert f"==> [{n}/8]" in out, f"step {n} missing:\n{out[-4000:]}"
        assert "breast-cancer-v2: desired stage Production, now Serving" in out
        assert "archived breast-cancer-v1" in out
        predictions = [line for line in out.splitlines() if "predicted" in line]
        assert len(predictions) == 3, out[-3000:]
        assert "served by model breast-cancer version 2" in out
        if (REPO / ".dev" / "node-mode").exists():
            assert "(a real pod, through the Service)" in out, out[-3000:]
            assert "on node modelreg-node" in out, out[-3000:]
            assert "pod emulation" not in out, out[-3000:]
        mvs = {mv["metadata"]["name"]: mv for mv in kubectl.items("modelversions", namespace)}
        assert mvs["breast-cancer-v2"]["status"]["phase"] == "Serving"
        assert mvs["breast-cancer-v1"]["status"]["phase"] == "Archived"
        # The web UI answered at the URL it printed (the demo GETs it before printing it).
        assert re.search(r"web UI running \(pid \d+\): http://127\.0\.0\.1:\d+/", out), out[-3000:]
        # --stop: the demo's operator and UI are gone.
        for kind in ("operator", "ui"):
            assert not (REPO / ".dev" / f"demo-{kind}-{namespace}.pid").exists(), kind
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found")
