"""The web UI in a real browser against the real control plane, S3 server and operator.

`modelreg ui` runs as a real process (the user's kubeconfig; `--as` for the users without rights)
and Debian's headless Chromium browses it through Playwright (tests/unit/ui/browser.py installs
chromium when missing, as root): the models list, a drill-down to a version and a comparison; a
promotion followed live on an open page (no reload: the navigation count stays 1); and users
without rights, who see which permission is missing. Namespaces are conftest's, deleted afterwards.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from modelreg.api.models import Phase
from modelreg.sdk.client import Client
from tests.e2e.helpers import S3, Kubectl, OperatorProcess, wait_for
from tests.e2e.test_sdk_helpers import apply_model, storage
from tests.unit.ui.browser import VIEWPORT, NoBrowser, banner, browser, launch_ui

MODEL = "credit"
GATES = [{"metric": "auc", "min": 0.8}, {"metric": "latency_p99_ms", "max": 50}]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    try:
        with browser() as b:
            yield b
    except NoBrowser as e:
        pytest.skip(str(e))  # not root: chromium cannot be installed here


@contextmanager
def ui(kubeconfig: str, namespace: str, *extra: str) -> Iterator[str]:
    """`modelreg ui --port 0` as a process; yields its URL; Ctrl-C at the end (exit 130)."""
    proc = launch_ui(kubeconfig, "-n", namespace, *extra)
    try:
        line = banner(proc)
        assert line, "modelreg ui printed nothing in 30 s"
        m = re.match(
            r"modelreg ui: serving (http://127\.0\.0\.1:\d+/) \(namespace (\S+), as ", line
        )
        assert m, f"unexpected banner: {line!r}"
        assert m.group(2) == namespace
        yield m.group(1)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        _, stderr = proc.communicate()
        assert "Traceback" not in stderr, stderr
        assert code == 130, stderr


def registered(
    kubeconfig: str, kubectl: Kubectl, namespace: str, s3: S3, secret: str, tmp_path: Path
) -> Client:
    """Model `credit` with gates and three verified versions (v2 fails the latency gate)."""
    apply_model(
        kubectl,
        namespace,
        MODEL,
        storage_spec=storage(s3, namespace, MODEL, secret),
        gates=GATES,
    )
    client = Client(kubeconfig=kubeconfig, namespace=namespace, env={}, poll_interval=0.25)
    for i, (auc, latency) in enumerate([(0.84, 30.0), (0.88, 61.0), (0.91, 22.0)], start=1):
        art = tmp_path / f"model-{i}.onnx"
        art.write_bytes(os.urandom(2048))
        client.register(
            MODEL,
            art,
            metrics={"auc": auc, "latency_p99_ms": latency},
            params={"depth": str(i + 3)},
            lineage={"run": f"run-{i}"},
            framework="sklearn",
            signature=None,
        )
    for i in (1, 2, 3):
        client.wait(MODEL, i, condition="ArtifactVerified", timeout=90)
    return client


def test_list_drill_down_and_compare(
    kubeconfig: str,
    kubectl: Kubectl,
    namespace: str,
    s3: S3,
    s3_secret: str,
    operator: OperatorProcess,
    tmp_path: Path,
    chromium: Any,
) -> None:
    registered(kubeconfig, kubectl, namespace, s3, s3_secret, tmp_path)
    with ui(kubeconfig, namespace) as url:
        page = chromium.new_page(viewport=VIEWPORT)
        page.goto(url)
        assert page.title() == "Models · modelreg"
        row = page.locator("tbody tr", has_text=MODEL)
        assert row.locator("td").nth(1).inner_text() == "v3"  # latest
        # Keyboard first: the skip link is the first stop, then the brand link.
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip-link"
        # Search and filter are plain GET forms.
        page.fill("#f-q", "no-such-model")
        page.click("button[type=submit]")
        assert "No models match." in page.inner_text("main")
        page.goto(url)

        page.click(f"a:text-is('{MODEL}')")
        page.wait_for_url(f"**/models/{MODEL}")
        versions = page.locator("table", has=page.locator("caption", has_text="Versions of"))
        assert versions.locator("tbody tr").count() == 3
        gates = page.locator("table", has=page.locator("caption", has_text="Promotion gates"))
        latency = gates.locator("tr", has_text="latency_p99_ms <= 50")
        assert latency.locator("td").nth(0).inner_text() == "v1, v3"  # passing
        assert latency.locator("td").nth(1).inner_text() == "v2"  # failing
        assert page.locator("svg.chart").count() == 2

        page.click("a:text-is('v3')")
        page.wait_for_url(f"**/models/{MODEL}/versions/3")
        main = page.inner_text("main")
        client = Client(kubeconfig=kubeconfig, namespace=namespace, env={})
        mv = client.get(MODEL, 3)
        assert mv.spec.artifact.sha256 in main
        assert mv.spec.artifact.uri in main
        assert "ArtifactVerified" in main
        assert "run-3" in main  # lineage
        assert "could not be read" not in main
        assert "are not shown" not in main

        page.go_back()
        page.check("input[name=v][value='1']")  # v2 and v3 are ticked already
        page.click("form.compare button")
        page.wait_for_url("**/compare?v=3&v=2&v=1")
        assert page.title().startswith(f"Compare {MODEL} v3, v2, v1")
        best = page.locator("td.best")
        assert best.count() == 2  # v3 has the best auc and the best latency
        assert "0.91" in best.nth(0).inner_text()
        page.close()


def test_a_promotion_is_seen_live_without_a_reload(
    kubeconfig: str,
    kubectl: Kubectl,
    namespace: str,
    s3: S3,
    s3_secret: str,
    operator: OperatorProcess,
    tmp_path: Path,
    chromium: Any,
) -> None:
    client = registered(kubeconfig, kubectl, namespace, s3, s3_secret, tmp_path)
    with ui(kubeconfig, namespace) as url:
        page = chromium.new_page(viewport=VIEWPORT)
        navigations: list[str] = []
        page.on(
            "framenavigated", lambda f: navigations.append(f.url) if f == page.main_frame else None
        )
        page.goto(f"{url}models/{MODEL}")
        cell = page.locator(f'[data-live="{MODEL}/v3/phase"]')
        first = cell.inner_text()
        assert first != "Serving"
        client.promote(MODEL, 3, wait=False, reason="ui e2e")
        seen = [first]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text = cell.inner_text()
            if text != seen[-1]:
                seen.append(text)
            if text == Phase.SERVING.value:
                break
            time.sleep(0.05)
        print(f"phase cell of v3, as the page showed it: {' -> '.join(seen)}")
        assert seen[-1] == "Serving", seen
        assert len(navigations) == 1, navigations  # the first load only: no reload
        production = page.locator(f'[data-live="{MODEL}/production"]')
        wait_for(lambda: production.inner_text() == "v3", timeout=15, what="Production v3")
        replicas = page.locator(f'[data-live="{MODEL}/replicas"]')
        wait_for(
            lambda: replicas.inner_text() == "1 ready of 1", timeout=30, what="1 ready replica"
        )
        assert len(navigations) == 1, navigations

        # The operator's Events about the version (read as events.k8s.io/v1 by the SDK).
        rows = page.locator("section[aria-labelledby=events-title] tbody tr")

        def events_shown() -> int:
            page.goto(f"{url}models/{MODEL}/versions/3")
            return rows.count()

        wait_for(events_shown, timeout=30, what="the version's Events on its page")
        assert "modelreg" in rows.first.inner_text()  # reported by the operator
        page.close()


def test_users_without_rights_see_the_missing_permission(
    kubeconfig: str, kubectl: Kubectl, namespace: str, chromium: Any
) -> None:
    nobody = f"ui-nobody-{secrets.token_hex(3)}"
    kubectl.apply(
        {
            "apiVersion": "modelreg.dev/v1alpha1",
            "kind": "Model",
            "metadata": {"name": MODEL, "namespace": namespace},
            "spec": {},
        }
    )
    with ui(kubeconfig, namespace, "--as", nobody) as url:
        page = chromium.new_page(viewport=VIEWPORT)
        response = page.goto(url)
        assert response is not None
        assert response.status == 403
        text = page.inner_text("#missing-permission")
        assert text == f"You ({nobody}) may not list models.modelreg.dev in namespace {namespace}."
        page.close()

    # A viewer of Models only: the model page names exactly what is missing.
    viewer = f"ui-viewer-{secrets.token_hex(3)}"
    kubectl.apply(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": viewer, "namespace": namespace},
                "rules": [
                    {
                        "apiGroups": ["modelreg.dev"],
                        "resources": ["models"],
                        "verbs": ["get", "list"],
                    }
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": viewer, "namespace": namespace},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": viewer,
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": viewer}
                ],
            },
        ]
    )
    with ui(kubeconfig, namespace, "--as", viewer) as url:
        page = chromium.new_page(viewport=VIEWPORT)

        def refused() -> bool:
            response = page.goto(f"{url}models/{MODEL}")
            return response is not None and response.status == 403  # RBAC caches settle

        wait_for(refused, timeout=20, what="the 403 page")
        assert page.inner_text("#missing-permission") == (
            f"You ({viewer}) may not list modelversions.modelreg.dev in namespace {namespace}."
        )
        assert "Ask for a Role granting: list on modelversions.modelreg.dev" in page.inner_text(
            "main"
        )
        page.close()
