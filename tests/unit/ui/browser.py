"""Real headless Chromium for the UI's tests and screenshots: Debian's package, driven by Playwright.

Playwright's own browser downloads are never used (no internet): Chromium comes from Debian
(`apt-get install chromium fonts-dejavu-core`, done here when missing and we are root, as in CI)
and is launched by path. `serving(app)` runs an aiohttp app on a free loopback port in a thread,
so a synchronous Playwright test can browse it. Used by tests/unit/ui/test_screenshots.py,
tests/unit/ui/shots.py (`make screenshots`) and tests/e2e/test_ui.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import web

CHROMIUM = Path("/usr/bin/chromium")
PACKAGES = ("chromium", "fonts-dejavu-core")
# Without the background-networking flags Chromium keeps calling home on a closed network.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-color-profile=srgb",
    "--font-render-hinting=none",
]
VIEWPORT = {"width": 1280, "height": 800}


class NoBrowser(RuntimeError):
    """Chromium is missing and cannot be installed here (not root)."""


def ensure_chromium() -> Path:
    """Debian's chromium (and the DejaVu fonts the stylesheet names), installed when missing."""
    fonts = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if CHROMIUM.exists() and fonts.exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise NoBrowser(
            f"{CHROMIUM} or the DejaVu fonts are missing and this is not a root Debian host: "
            f"run `apt-get install -y {' '.join(PACKAGES)}`"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["apt-get", *args], capture_output=True, text=True, env=env, timeout=900, check=False
        )

    proc = apt("install", "-y", "--no-install-recommends", *PACKAGES)
    if proc.returncode != 0 and apt("update", "-q").returncode == 0:
        # A fresh machine's package lists may be missing or stale, as tools/argocd.sh finds.
        proc = apt("install", "-y", "--no-install-recommends", *PACKAGES)
    if proc.returncode != 0:  # as root this is an error to see, never a skip
        raise RuntimeError(f"apt-get install {' '.join(PACKAGES)} failed:\n{proc.stderr[-4000:]}")
    return CHROMIUM


@contextlib.contextmanager
def browser() -> Iterator[Any]:
    """A launched headless Chromium (a Playwright Browser)."""
    from playwright.sync_api import sync_playwright

    path = ensure_chromium()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(path), args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@contextlib.contextmanager
def serving(app: web.Application) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 (a free port) from a thread; yields its base URL."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        box["runner"] = runner
        box["port"] = runner.addresses[0][1]

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as e:  # surfaced to the caller below
            box["error"] = e
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="ui-server", daemon=True)
    thread.start()
    started.wait(30)
    if "error" in box:
        raise box["error"]
    try:
        yield f"http://127.0.0.1:{box['port']}"
    finally:
        asyncio.run_coroutine_threadsafe(box["runner"].cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def launch_ui(kubeconfig: str, *args: str) -> subprocess.Popen[str]:
    """`modelreg ui --port 0 --kubeconfig KUBECONFIG ARGS...` as a process of this checkout, its
    stdout and stderr piped as text (the tests' and bench/ui.py's way to run the real command)."""
    return subprocess.Popen(
        [sys.executable, "-m", "modelreg.cli", "ui", "--port", "0", "--kubeconfig", kubeconfig,
         *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3] / "operator")},
    )  # fmt: skip


def banner(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """The first line `modelreg ui` prints (`modelreg ui: serving URL (...)`); "" if none came
    within `timeout` seconds."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if ready else ""
