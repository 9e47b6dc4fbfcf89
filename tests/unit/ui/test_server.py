"""The UI server over the SDK Client and a fake KubeAPI: routes, errors mapped once, live JSON."""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from aiohttp.test_utils import TestClient, TestServer

from modelreg.adapters import kube as k
from modelreg.ui.server import make_app
from tests.unit.ui.fixtures import MODEL, NOW, RegistryKube, registry_client

T = TypeVar("T")


def browse(
    fn: Callable[[TestClient[Any, Any], RegistryKube], Awaitable[T]],
    kube: RegistryKube | None = None,
) -> T:
    client, kube = registry_client(kube)
    app = make_app(client, identity="alice", clock=lambda: NOW)

    async def go() -> T:
        async with TestClient(TestServer(app)) as c:
            return await fn(c, kube)

    return asyncio.run(go())


async def get(c: TestClient[Any, Any], url: str, **kw: Any) -> tuple[int, str, Any]:
    r = await c.get(url, **kw)
    return r.status, html.unescape(await r.text()), r.headers


def test_every_page_answers() -> None:
    async def go(c: TestClient[Any, Any], _: RegistryKube) -> None:
        for url, needle in [
            ("/", "credit-scoring"),
            ("/?q=fraud", "fraud-detection"),
            (f"/models/{MODEL}", "Promotion gates"),
            (f"/models/{MODEL}/versions/5", "Service credit-scoring switched to v5"),
            (f"/models/{MODEL}/versions/v5", "credit-scoring v5"),
            (f"/models/{MODEL}/compare?v=4&v=5,6", "Compare credit-scoring v4, v5, v6"),
        ]:
            status, text, headers = await get(c, url)
            assert status == 200, (url, text)
            assert needle in text, url
            assert headers["Content-Type"].startswith("text/html")
            assert "script-src 'self'" in headers["Content-Security-Policy"]
        status, text, _ = await get(c, "/?q=fraud")
        assert "churn" not in text
        status, css, headers = await get(c, "/static/ui.css")
        assert status == 200
        assert "--focus" in css
        status, js, _ = await get(c, "/static/live.js")
        assert status == 200
        assert "data-live" in js

    browse(go)


def test_not_found_pages() -> None:
    async def go(c: TestClient[Any, Any], _: RegistryKube) -> None:
        status, text, _ = await get(c, "/models/nope")
        assert status == 404
        assert "model 'nope' not found in namespace 'risk'" in text
        status, text, _ = await get(c, f"/models/{MODEL}/versions/9")
        assert status == 404
        assert f"'{MODEL}-v9' not found" in text
        status, text, _ = await get(c, f"/models/{MODEL}/compare?v=5&v=9")
        assert status == 404
        assert f"'{MODEL}-v9' not found" in text
        status, text, _ = await get(c, f"/models/{MODEL}/versions/x")
        assert status == 404
        assert "'x' is not a version number" in text
        status, text, _ = await get(c, "/nowhere")
        assert status == 404
        assert "There is no page at this address." in text
        status, text, _ = await get(c, f"/models/{MODEL}/compare?v=5")
        assert status == 400
        assert "at least two versions" in text

    browse(go)


def test_a_refusal_names_the_missing_permission_as_a_page_and_as_json() -> None:
    async def go(c: TestClient[Any, Any], kube: RegistryKube) -> None:
        kube.refuse["modelversions"] = "alice"
        status, text, _ = await get(c, f"/models/{MODEL}")
        assert status == 403
        assert "You (alice) may not list modelversions.modelreg.dev in namespace risk." in text
        assert "Traceback" not in text
        r = await c.get(f"/api/live/models/{MODEL}")
        assert r.status == 403
        assert (await r.json())["error"] == (
            "You (alice) may not list modelversions.modelreg.dev in namespace risk."
        )
        kube.refuse["models"] = "alice"
        status, text, _ = await get(c, "/")
        assert status == 403
        assert "You (alice) may not list models.modelreg.dev in namespace risk." in text

    browse(go)


def test_events_refused_still_shows_the_version() -> None:
    async def go(c: TestClient[Any, Any], kube: RegistryKube) -> None:
        kube.refuse["events"] = "alice"
        status, text, _ = await get(c, f"/models/{MODEL}/versions/5")
        assert status == 200
        assert "Events are not shown" in text
        assert 'cannot list resource "events" in the namespace "risk"' in text
        assert "sha256" in text

    browse(go)


def test_unexpected_errors_are_a_short_500_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def go(c: TestClient[Any, Any], kube: RegistryKube) -> None:
        def boom(*_: Any, **__: Any) -> Any:
            raise ZeroDivisionError("a bug")

        kube.list_objects = boom  # type: ignore[method-assign]
        with caplog.at_level(logging.ERROR, logger="modelreg.ui"):
            status, text, _ = await get(c, "/")
        assert status == 500
        assert "Something went wrong in the UI server" in text
        assert "ZeroDivisionError" not in text
        assert "Traceback" not in text
        assert "ZeroDivisionError" in caplog.text

    browse(go)


def test_an_unreachable_api_server_is_a_503_page() -> None:
    async def go(c: TestClient[Any, Any], kube: RegistryKube) -> None:
        def down(*_: Any, **__: Any) -> Any:
            raise k.Unavailable("cannot reach the Kubernetes API server: ConnectionRefusedError")

        kube.list_objects = down  # type: ignore[method-assign]
        kube.get_object = down  # type: ignore[method-assign]
        status, text, _ = await get(c, f"/models/{MODEL}")
        assert status == 503
        assert "cannot reach the Kubernetes API server" in text

    browse(go)


def test_live_cells_follow_the_operator() -> None:
    async def go(c: TestClient[Any, Any], kube: RegistryKube) -> None:
        r = await c.get(f"/api/live/models/{MODEL}")
        cells = (await r.json())["cells"]
        assert cells[f"{MODEL}/v6/phase"] == {"text": "Ready", "state": "ok"}
        kube.set_phase(MODEL, 6, "Rolling", "Staging")
        cells = (await (await c.get(f"/api/live/models/{MODEL}")).json())["cells"]
        assert cells[f"{MODEL}/v6/phase"] == {"text": "Rolling", "state": "busy"}
        cells = (await (await c.get("/api/live")).json())["cells"]
        assert cells["churn/ready"]["text"] == "Not ready: NoProductionVersion"

    browse(go)


def test_requests_for_another_host_name_are_refused() -> None:
    async def go(c: TestClient[Any, Any], _: RegistryKube) -> None:
        r = await c.get("/", headers={"Host": "attacker.example:8765"})
        assert r.status == 421
        r = await c.get("/", headers={"Host": "localhost:8765"})
        assert r.status == 200

    browse(go)


def test_a_page_reads_the_namespace_in_few_calls() -> None:
    async def go(c: TestClient[Any, Any], kube: RegistryKube) -> None:
        kube.calls.clear()
        await get(c, f"/models/{MODEL}/compare?v=4&v=5&v=6")
        assert sorted(x[0] for x in kube.calls) == ["get"] * 4  # the Model and 3 versions
        kube.calls.clear()
        await get(c, "/")
        assert kube.calls == [("list", "models", "")]  # the Models' status says the rest
        kube.calls.clear()
        await get(c, "/?stage=Staging")
        assert sorted(kube.calls) == [("list", "models", ""), ("list", "modelversions", "")]

    browse(go)
