"""The UI's HTTP server (aiohttp): routes, the error boundary, static assets, `serve()`.

Called by `modelreg ui` (`modelreg.cli.main`), by the tests (`make_app` with a Client over a fake
KubeAPI) and by `make screenshots`. One `Client` serves every request: it carries the identity
the UI acts as (the user's kubeconfig, impersonation included, or the pod's ServiceAccount), so
what the UI shows is exactly what that identity may read. Nothing here writes to the cluster.

Routes: `/` models, `/models/{name}`, `/models/{name}/versions/{n}`, `/models/{name}/compare?v=..`,
`/api/live` and `/api/live/models/{name}` (JSON cells for static/live.js), `/static/*`, `/healthz`.
Errors are mapped once, in `_errors`: NotFound -> 404 page, PermissionDenied -> 403 page naming
the missing permission, other SDK errors -> 502/503 pages, anything else -> 500 with a short
message (the traceback goes to the log, never to the browser).
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from modelreg.sdk.client import Client
from modelreg.sdk.errors import (
    ModelregError,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from modelreg.ui import assets, data, error_pages, pages, parts, present, version_page
from modelreg.ui.layout import Safe
from modelreg.ui.rbac import parse_forbidden

log = logging.getLogger("modelreg.ui")

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
EXIT_INTERRUPTED = 130
_VERSION = re.compile(r"^v?([0-9]{1,7})$")
_MAX_COMPARED = 12

Clock = Callable[[], datetime]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CLIENT: web.AppKey[Client] = web.AppKey("client", Client)
IDENTITY: web.AppKey[str] = web.AppKey("identity", str)
CLOCK: web.AppKey[Clock] = web.AppKey("clock", Callable[[], datetime])  # type: ignore[arg-type]
HOSTS: web.AppKey[frozenset[str] | None] = web.AppKey("hosts", frozenset)

# The pages need nothing from elsewhere: a strict policy keeps a model name or a condition
# message (escaped anyway) from ever running script, and the page from being framed.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _frame(request: web.Request) -> parts.Frame:
    app = request.app
    return parts.Frame(app[CLIENT].namespace, app[IDENTITY], app[CLOCK]())


def _html(body: Safe, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", headers=_HEADERS)


def _version(raw: str) -> int:
    m = _VERSION.match(raw)
    if not m or int(m.group(1)) < 1:
        raise web.HTTPNotFound(text=f"{raw!r} is not a version number")
    return int(m.group(1))


# -- pages ----------------------------------------------------------------------------------------


async def models(request: web.Request) -> web.Response:
    q = request.query
    reg = await data.registry(request.app[CLIENT], versions=bool(q.get("stage")))
    body = pages.models_page(
        reg.models,
        reg.versions,
        _frame(request),
        q=q.get("q", "").strip()[:200],
        stage=q.get("stage", ""),
        ready=q.get("ready", ""),
    )
    return _html(body)


async def model(request: web.Request) -> web.Response:
    view = await data.model_view(request.app[CLIENT], request.match_info["name"])
    show_all = request.query.get("versions") == "all"
    return _html(pages.model_page(view.model, view.versions, _frame(request), show_all=show_all))


async def version(request: web.Request) -> web.Response:
    n = _version(request.match_info["n"])
    view = await data.version_view(request.app[CLIENT], request.match_info["name"], n)
    body = version_page.version_page(
        view.model, view.version, view.events, _frame(request), events_problem=view.events_problem
    )
    return _html(body)


async def compare(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    raw = [x for v in request.query.getall("v", []) for x in v.split(",") if x.strip()]
    numbers = list(dict.fromkeys(_version(x.strip()) for x in raw))[:_MAX_COMPARED]
    if len(numbers) < 2:
        body = error_pages.error_page(
            "Choose versions to compare",
            "Pick at least two versions on the model page (for example ?v=1&v=2).",
            _frame(request),
        )
        return _html(body, 400)
    view = await data.compare_view(request.app[CLIENT], name, numbers)
    return _html(pages.compare_page(view.model, view.versions, _frame(request)))


# -- live cells -----------------------------------------------------------------------------------


def _cells(cells: dict[str, present.Shown]) -> web.Response:
    payload = {
        "at": datetime.now(UTC).isoformat(),
        "cells": {k: {"text": v.text, "state": v.state} for k, v in cells.items()},
    }
    return web.json_response(payload, headers=_HEADERS)


async def live_all(request: web.Request) -> web.Response:
    reg = await data.registry(request.app[CLIENT], versions=False)
    return _cells(present.live_cells(reg.models, reg.versions))


async def live_model(request: web.Request) -> web.Response:
    view = await data.model_view(request.app[CLIENT], request.match_info["name"])
    return _cells(present.live_cells([view.model], view.versions))


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok\n")


# -- the error boundary -----------------------------------------------------------------------------


def _problem(request: web.Request, status: int, title: str, page: Safe) -> web.Response:
    if request.path.startswith("/api/"):
        return web.json_response({"error": title, "status": status}, status=status)
    return _html(page, status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    hosts = request.app[HOSTS]
    if hosts is not None and (request.url.host or "") not in hosts:
        # DNS rebinding: a web page must not reach a UI that acts with the user's credentials.
        return web.Response(status=421, text="this UI answers on its loopback address only\n")
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status == 404:
            text = e.text or ""
            text = "There is no page at this address." if text.startswith("404:") else text
            return _problem(request, 404, text, error_pages.not_found_page(text, _frame(request)))
        raise
    except NotFound as e:
        return _problem(request, 404, str(e), error_pages.not_found_page(str(e), _frame(request)))
    except PermissionDenied as e:
        missing = parse_forbidden(str(e))
        text = missing.sentence() if missing else str(e)
        return _problem(
            request, 403, text, error_pages.forbidden_page(str(e), missing, _frame(request))
        )
    except Unavailable as e:
        page = error_pages.error_page("The cluster is unavailable", str(e), _frame(request))
        return _problem(request, 503, str(e), page)
    except ModelregError as e:
        page = error_pages.error_page("The cluster refused", str(e), _frame(request))
        return _problem(request, 502, str(e), page)
    except Exception:
        log.exception("unexpected error on %s", request.path_qs)
        message = "Something went wrong in the UI server; it has been logged."
        return _problem(
            request,
            500,
            message,
            error_pages.error_page("Internal error", message, _frame(request)),
        )


async def _static_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith("/static/"):
        response.headers["X-Content-Type-Options"] = "nosniff"
        if request.query.get("v"):  # the URL names the content (assets.url): it never changes
            response.headers["Cache-Control"] = assets.CACHE_FOREVER


def make_app(
    client: Client,
    *,
    identity: str = "",
    clock: Clock | None = None,
    loopback_only: bool = True,
) -> web.Application:
    """The aiohttp application over one Client. `clock` fixes "now" (screenshots);
    `loopback_only` answers only requests addressed to a loopback host name."""
    app = web.Application(middlewares=[_errors])
    app[CLIENT] = client
    app[IDENTITY] = identity
    app[CLOCK] = clock or (lambda: datetime.now(UTC))
    app[HOSTS] = LOOPBACK if loopback_only else None
    app.router.add_get("/", models)
    app.router.add_get("/models/{name}", model)
    app.router.add_get("/models/{name}/versions/{n}", version)
    app.router.add_get("/models/{name}/compare", compare)
    app.router.add_get("/api/live", live_all)
    app.router.add_get("/api/live/models/{name}", live_model)
    app.router.add_get("/healthz", healthz)
    app.router.add_static("/static/", assets.STATIC, append_version=False)
    app.on_response_prepare.append(_static_headers)
    return app


def url_of(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}/"


async def _serve(
    app: web.Application, address: str, port: int, announce: Callable[[str], None]
) -> int:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, address, port)
    await site.start()
    bound = port
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        bound = int(server.sockets[0].getsockname()[1])
    announce(url_of(address, bound))
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[int] = loop.create_future()

    def finish(code: int) -> None:
        if not stop.done():
            stop.set_result(code)

    for sig, code in ((signal.SIGINT, EXIT_INTERRUPTED), (signal.SIGTERM, 0)):
        loop.add_signal_handler(sig, finish, code)
    try:
        return await stop
    finally:
        await runner.cleanup()


def serve(
    address: str,
    port: int,
    client_factory: Callable[[], Client],
    *,
    identity: str = "",
    loopback_only: bool = True,
    announce: Callable[[str], None] = print,
    **app_options: Any,
) -> int:
    """Serve until SIGINT (exit code 130) or SIGTERM (0). `announce` gets the URL once bound
    (port 0 picks a free port)."""
    client = client_factory()
    app = make_app(client, identity=identity, loopback_only=loopback_only, **app_options)
    return asyncio.run(_serve(app, address, port, announce))
