"""Bad set-ups of the real node get a clear, specific error, and leave the running node alone."""

from __future__ import annotations

import os
import shutil
import subprocess

from tests.e2e.helpers import REPO

NODE_SH = str(REPO / "tools" / "node.sh")


def node_sh(
    *args: str, env: dict[str, str] | None = None, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = ["bash", NODE_SH, *args]
    if user is not None:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to run as another user"
        cmd = [setpriv, f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_without_root_the_check_says_so(real_node: str) -> None:
    proc = node_sh("check", user="65534")
    assert proc.returncode == 1
    assert "needs root" in proc.stdout + proc.stderr


def test_a_bridge_address_in_use_is_refused(real_node: str) -> None:
    # The running node's own range, asked for by another bridge: refused before anything changes.
    proc = node_sh("net-up", env={"MODELREG_NODE_BRIDGE": "mrtest0"})
    assert proc.returncode == 1
    assert "already in use" in proc.stderr, proc.stderr
    assert "MODELREG_NODE_CIDR" in proc.stderr
    links = subprocess.run(
        ["ip", "-o", "link", "show"], capture_output=True, text=True, check=True
    ).stdout
    assert "mrtest0" not in links
    assert "mrbr0" in links
