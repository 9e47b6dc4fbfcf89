"""What each page reads from the cluster: SDK calls, run off the event loop, in parallel.

Called by `modelreg.ui.server`. The SDK `Client` is synchronous (it blocks on HTTP), so every call
goes through `asyncio.to_thread` (STYLE rule 4); a page's independent reads run concurrently. The
SDK's errors (`ModelregError`: NotFound, PermissionDenied, ...) pass through unchanged: the
server maps them to pages in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from modelreg.api.models import Model, ModelVersion
from modelreg.sdk.client import Client, EventRecord
from modelreg.sdk.errors import ModelregError, PermissionDenied

T = TypeVar("T")


async def _run(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


@dataclass(frozen=True)
class Registry:
    """Models and versions of the namespace (the list page, the live cells)."""

    models: list[Model]
    versions: list[ModelVersion]


@dataclass(frozen=True)
class ModelView:
    model: Model
    versions: list[ModelVersion]


@dataclass(frozen=True)
class VersionView:
    model: Model
    version: ModelVersion
    events: list[EventRecord] | None  # None: they could not be read (see events_problem)
    events_problem: str = ""


async def registry(client: Client, *, versions: bool = True) -> Registry:
    """The namespace's Models, and its versions only when asked: the list page needs them for
    the stage filter alone (its other columns are in the Models' status)."""
    if not versions:
        return Registry(await _run(client.list_models), [])
    models, all_versions = await asyncio.gather(_run(client.list_models), _run(client.list))
    return Registry(models, all_versions)


async def model_view(client: Client, name: str) -> ModelView:
    model, versions = await asyncio.gather(
        _run(lambda: client.get_model(name)), _run(lambda: client.list(name))
    )
    return ModelView(model, versions)


async def version_view(client: Client, name: str, n: int) -> VersionView:
    model, version, events = await asyncio.gather(
        _run(lambda: client.get_model(name)),
        _run(lambda: client.get(name, n)),
        _run(lambda: _events(client, f"{name}-v{n}")),
        return_exceptions=False,
    )
    if isinstance(events, str):
        return VersionView(model, version, None, events)
    return VersionView(model, version, events)


def _events(client: Client, name: str) -> list[EventRecord] | str:
    """The version's Events, or why they are not shown: a page without Events is still useful
    to someone who may read ModelVersions but not Events."""
    try:
        return client.list_events(name)
    except PermissionDenied as e:
        return f"Events are not shown: {e}"
    except ModelregError as e:
        return f"Events could not be read: {e}"


async def compare_view(client: Client, name: str, numbers: Sequence[int]) -> ModelView:
    """The Model and the versions asked for, in the order asked, read one by one in parallel
    (a few GETs cost less than listing and parsing a namespace of hundreds)."""

    def version(n: int) -> Callable[[], ModelVersion]:
        return lambda: client.get(name, n)

    model, versions = await asyncio.gather(
        _run(lambda: client.get_model(name)),
        asyncio.gather(*(_run(version(n)) for n in numbers)),
    )
    return ModelView(model, list(versions))
