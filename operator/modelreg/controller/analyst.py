"""Canary analysis for the reconciler: the canary pods' own /metrics, scraped in the background.

While a Model's canary runs, each reconcile pass calls `measure()` with the step's `Window` (the
canary version, the step, when its clock started, and the canary's ready pods). It never waits:
it answers from memory with the figures of the window so far, and keeps one task per Model that
scrapes every pod every `interval` seconds (one round at a time, the pods of a round at once,
each request bounded by `timeout`). The counters are read by `lifecycle.analysis.parse` and the
figures are `lifecycle.analysis.window`: the first round of a window is its baseline, and each
later round gives the figures since. When they (or the scrape problems) change, the Model is
kicked, at most once per interval (a trailing kick carries the last change), so the planner
judges them promptly.

Which requests count: a pod in the first round counts from its counters then; a pod that
joins the targets later (added by the step, or ready since) counts from zero, since it had no
traffic before. A pod of the first round that did not answer it is baselined at its first
answer, never from zero: its requests from the previous step are not this step's. A pod that
fails a round is left out of it and keeps its last good counters (`errors()` says why), as does
a pod that leaves the targets: what it answered in the window still counts. A pod whose counters
go down restarted, and what it counted before the restart still counts, as Prometheus's
increase() does.

The same machinery measures a shadow (`Model.spec.shadow`): `Analyst(parse=shadow_reading,
from_zero=True)` scrapes the serving pods' shadow counters, which each pod keeps for the one
shadow version it was started with, so every pod counts from zero and there is no baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from modelreg.adapters import scrape
from modelreg.lifecycle import analysis
from modelreg.lifecycle.analysis import Counters, Figures

log = logging.getLogger("modelreg.analyst")

ModelKey = tuple[str, str]  # (namespace, model)
Fetch = Callable[[str], Awaitable[str]]

CONCURRENCY = 32  # scrapes in flight, all Models together
ERROR_MAX = 1024
_ZERO = Counters(0, 0, ())


@dataclass(frozen=True)
class Window:
    version: int  # the canary version
    step: int  # step index
    started_at: str  # when the step's clock started (ISO time string from the planner)
    targets: tuple[tuple[str, str], ...]  # (pod name, "http://<pod ip>:<port>/metrics")


@dataclass
class _Pod:
    raw: Counters  # its last good scrape
    earlier: Counters = _ZERO  # what it counted before restarts in this window

    @property
    def counters(self) -> Counters:
        """Cumulative over the pod's restarts: never goes down."""
        if self.earlier == _ZERO:
            return self.raw
        return analysis.total((self.earlier, self.raw))

    def update(self, raw: Counters) -> None:
        if analysis.restarted(self.raw, raw):
            self.earlier = analysis.total((self.earlier, self.raw))
        self.raw = raw


@dataclass
class _Watch:
    """One Model's canary window and what its scrapes found."""

    window: Window
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    opened: bool = False  # the window's first round is recorded
    first: frozenset[str] = frozenset()  # the pods targeted by that round
    baseline: dict[str, Counters] = field(default_factory=dict)
    pods: dict[str, _Pod] = field(default_factory=dict)
    figures: Figures | None = None
    error: str | None = None
    last_kick: float = float("-inf")  # loop.time()
    timer: asyncio.TimerHandle | None = None

    def reopen(self, window: Window) -> None:
        self.window = window
        self.opened, self.first = False, frozenset()
        self.baseline, self.pods = {}, {}
        self.figures = None


def _ident(window: Window) -> tuple[int, int, str]:
    return window.version, window.step, window.started_at


def canary_reading(text: str, window: Window) -> Counters:
    """A canary pod's inference counters."""
    return analysis.parse(text)


def shadow_reading(text: str, window: Window) -> Counters:
    """A serving pod's counters of what it mirrored to the shadow `window.version`."""
    return analysis.parse_shadow(text, window.version)


class Analyst:
    def __init__(
        self,
        *,
        interval: float = 2.0,
        timeout: float = 2.0,
        kick: Callable[[str, str], None] | None = None,
        fetch: Fetch | None = None,
        parse: Callable[[str, Window], Counters] = canary_reading,
        from_zero: bool = False,
        what: str = "canary",
    ) -> None:
        self._parse = parse
        self._from_zero = from_zero
        self._what = what
        self._interval = interval
        self._timeout = timeout
        self._kick_model = kick
        self._http: scrape.MetricsFetch | None = None
        if fetch is None:
            self._http = scrape.MetricsFetch(timeout, concurrency=CONCURRENCY)
            fetch = self._http.get
        self._fetch = fetch
        self._sem = asyncio.Semaphore(CONCURRENCY)
        self._watches: dict[ModelKey, _Watch] = {}

    # -- what the reconciler calls --------------------------------------------------------------

    def measure(self, key: ModelKey, window: Window) -> Figures | None:
        """The figures of the window so far: None until its baseline and one later round. Starts
        the Model's scraping, or retargets it; never waits."""
        watch = self._watches.get(key)
        if watch is None:
            watch = self._watches[key] = _Watch(window)
        elif _ident(watch.window) != _ident(window):
            watch.reopen(window)
            watch.wake.set()  # baseline the new window now, not after the interval
        else:
            watch.window = window  # the same step: pods may have come or gone
        if watch.task is None or watch.task.done():
            watch.task = asyncio.get_running_loop().create_task(
                self._run(key, watch), name=f"analysis:{key[0]}/{key[1]}"
            )
        return watch.figures

    def errors(self, key: ModelKey) -> str | None:
        """Why the last round of the Model's scrapes missed pods, or None."""
        watch = self._watches.get(key)
        return watch.error if watch is not None else None

    def stop(self, key: ModelKey) -> None:
        """The canary ended: its scraping and figures go."""
        watch = self._watches.pop(key, None)
        if watch is None:
            return
        if watch.task is not None:
            watch.task.cancel()
        if watch.timer is not None:
            watch.timer.cancel()

    async def close(self) -> None:
        watches = list(self._watches.values())
        self._watches.clear()
        for watch in watches:
            if watch.timer is not None:
                watch.timer.cancel()
            if watch.task is not None:
                watch.task.cancel()
        for watch in watches:
            if watch.task is not None:
                with contextlib.suppress(BaseException):
                    await watch.task
        if self._http is not None:
            await self._http.close()

    # -- the scraping --------------------------------------------------------------------------

    async def _run(self, key: ModelKey, watch: _Watch) -> None:
        loop = asyncio.get_running_loop()
        while True:
            window = watch.window
            began = loop.time()
            watch.wake.clear()
            results = await asyncio.gather(
                *(self._scrape(pod, url, window) for pod, url in window.targets)
            )
            if _ident(watch.window) != _ident(window):
                continue  # a new window meanwhile: its baseline is a round of its own
            try:
                self._record(key, watch, window, results)
            except Exception:  # a bug must not end the Model's analysis for good
                log.exception("recording the %s metrics of %s/%s crashed", self._what, *key)
                watch.error = (
                    f"internal error recording the {self._what} metrics; see the operator log"
                )
            with contextlib.suppress(TimeoutError):
                wait = max(0.0, self._interval - (loop.time() - began))
                await asyncio.wait_for(watch.wake.wait(), wait)

    async def _scrape(self, pod: str, url: str, window: Window) -> Counters | str:
        """A pod's counters, or why there are none."""
        try:
            async with self._sem, asyncio.timeout(self._timeout):
                text = await self._fetch(url)
        except TimeoutError:
            return f"pod {pod}: no answer from {url} within {self._timeout:g}s"
        except Exception as e:  # whatever the fetch raised: a message, never a crash
            return f"pod {pod}: {url}: {_describe(e)}"
        if len(text) > scrape.BODY_MAX:
            return f"pod {pod}: {url} answered more than {scrape.BODY_MAX} bytes"
        try:
            # CPU work of a few milliseconds per pod: off the event loop.
            return await asyncio.to_thread(self._parse, text, window)
        except ValueError as e:
            return f"pod {pod}: {url}: {e}"

    def _record(
        self, key: ModelKey, watch: _Watch, window: Window, results: list[Counters | str]
    ) -> None:
        problems: list[str] = []
        answered = 0
        for (pod, _), result in zip(window.targets, results, strict=True):
            if isinstance(result, str):
                problems.append(result)
                continue
            answered += 1
            known = watch.pods.get(pod)
            if known is not None:
                known.update(result)
            elif self._from_zero:
                watch.pods[pod] = _Pod(result)
            elif not watch.opened or pod in watch.first:
                # In the targets when the window opened: requests before now are not its own.
                watch.pods[pod] = _Pod(result)
                watch.baseline[pod] = result
            else:
                watch.pods[pod] = _Pod(result)  # joined since: counts from zero
        before = (watch.figures, watch.error)
        if self._from_zero:
            now_all = {pod: p.counters for pod, p in watch.pods.items()}
            watch.figures = replace(analysis.window({}, now_all), pods=answered)
            watch.opened = True
        elif watch.opened:
            now = {
                pod: p.counters
                for pod, p in watch.pods.items()
                if pod in watch.baseline or pod not in watch.first
            }
            watch.figures = replace(analysis.window(watch.baseline, now), pods=answered)
        else:
            watch.opened, watch.first = True, frozenset(pod for pod, _ in window.targets)
        error = "; ".join(problems) or None
        if error is not None and len(error) > ERROR_MAX:
            error = error[: ERROR_MAX - 1] + "…"
        if error != watch.error and error is not None:
            log.info("%s metrics of %s/%s: %s", self._what, *key, error)
        watch.error = error
        if (watch.figures, watch.error) != before:
            self._changed(key, watch)

    # -- kicks ---------------------------------------------------------------------------------

    def _changed(self, key: ModelKey, watch: _Watch) -> None:
        """Kick the Model now, or when an interval since the last kick has passed."""
        if watch.timer is not None:
            return
        loop = asyncio.get_running_loop()
        wait = watch.last_kick + self._interval - loop.time()
        if wait <= 0:
            self._kick(key, watch)
        else:
            watch.timer = loop.call_later(wait, self._kick, key, watch)

    def _kick(self, key: ModelKey, watch: _Watch) -> None:
        watch.timer = None
        if self._watches.get(key) is not watch:
            return  # stopped meanwhile
        watch.last_kick = asyncio.get_running_loop().time()
        if self._kick_model is None:
            return
        try:
            self._kick_model(*key)
        except Exception:
            log.exception("kicking %s/%s after new %s metrics crashed", *key, self._what)


def _describe(e: Exception) -> str:
    if isinstance(e, scrape.ScrapeError):
        return str(e)
    return " ".join(f"{type(e).__name__}: {e}".split())[:300]
