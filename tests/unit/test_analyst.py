"""Canary scraping (controller/analyst.py). The fetch is faked at its boundary: pods whose
/metrics are the runtime's own `Metrics`, fed as its HTTP and gRPC skins feed them, changing as
the tests send "traffic"; pods can refuse connections, hang, answer another program's page or
restart. The default aiohttp fetch is tested against a real model server on 127.0.0.1, and
against a plain aiohttp server for chunked and oversized answers.

Intervals are small and every wait is a bounded loop on a condition. The one assertion on time
is a lower bound the code guarantees (kicks an interval apart on the loop's clock): a slow
machine cannot break it.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from modelreg.adapters.scrape import BODY_MAX
from modelreg.controller.analyst import Analyst, Window
from modelreg.lifecycle.analysis import Figures
from modelreg.runtime.metrics import Metrics
from tests.unit.test_analysis import infer_http, runtime

KEY = ("ns", "m")
FAST = 0.02  # seconds between scrape rounds
STARTED = "2025-01-01T00:00:00Z"


@dataclass
class Pod:
    metrics: Metrics = field(default_factory=lambda: Metrics("m", "2"))
    down: bool = False  # refuses connections
    page: str | None = None  # answers this instead of the runtime's metrics
    hang: bool = False  # never answers
    gate: asyncio.Event | None = None  # when set: reads its metrics, then answers once it opens

    def traffic(
        self, ok: int = 0, failed: int = 0, seconds: float = 0.003, grpc: bool = False
    ) -> None:
        for _ in range(ok):
            self.metrics.observe(
                "infer", "OK" if grpc else 200, seconds, "grpc" if grpc else "http"
            )
        for _ in range(failed):
            status = "INTERNAL" if grpc else 500
            self.metrics.observe("infer", status, seconds, "grpc" if grpc else "http")

    def restart(self) -> None:
        self.metrics = Metrics("m", "2")


@dataclass
class Pods:
    """The fetch boundary: url -> the pod behind it."""

    pods: dict[str, Pod] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)
    held: int = 0  # answers waiting for their gate

    def add(self, name: str) -> Pod:
        self.pods[name] = Pod()
        return self.pods[name]

    def url(self, name: str) -> str:
        return f"http://10.0.0.{list(self.pods).index(name) + 1}:8080/metrics"

    def targets(self, *names: str) -> tuple[tuple[str, str], ...]:
        return tuple((n, self.url(n)) for n in names)

    async def fetch(self, url: str) -> str:
        self.fetched.append(url)
        pod = next(p for n, p in self.pods.items() if self.url(n) == url)
        if pod.hang:
            await asyncio.Event().wait()
        if pod.down:
            raise ConnectionRefusedError(111, "Connection refused")
        if pod.page is not None:
            return pod.page
        text = pod.metrics.render()[0].decode()
        gate = pod.gate
        if gate is not None:
            self.held += 1
            await gate.wait()
            self.held -= 1
        return text


def window(pods: Pods, *names: str, step: int = 0, started_at: str = STARTED) -> Window:
    return Window(version=2, step=step, started_at=started_at, targets=pods.targets(*names))


async def until(what: str, predicate: Callable[[], Any], deadline: float = 10.0) -> Any:
    """The predicate's first truthy value, polled; fails after `deadline` seconds."""
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline}s waiting for {what}")
        await asyncio.sleep(0.005)


async def figures(
    analyst: Analyst, w: Window, what: str, check: Callable[[Figures], bool]
) -> Figures:
    def ready() -> Figures | None:
        f = analyst.measure(KEY, w)
        return f if f is not None and check(f) else None

    found: Figures = await until(what, ready)
    return found


async def rounds(pods: Pods, n: int) -> None:
    """Wait until the pods have been fetched `n` more times (whole rounds, with one pod)."""
    seen = len(pods.fetched)
    await until(f"{n} more scrapes", lambda: len(pods.fetched) >= seen + n)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))


def test_the_first_round_is_the_baseline_and_later_ones_give_the_figures_since() -> None:
    async def go() -> None:
        pods = Pods()
        a, b = pods.add("a"), pods.add("b")
        a.traffic(ok=50, failed=5)  # before the step: never counted
        b.traffic(ok=20, failed=1, grpc=True)
        analyst = Analyst(interval=FAST, fetch=pods.fetch)
        w = window(pods, "a", "b")
        assert analyst.measure(KEY, w) is None  # answers at once: nothing scraped yet
        assert pods.fetched == []
        try:
            got = await figures(analyst, w, "the first figures", lambda f: True)
            assert got == Figures(requests=0, errors=0, p99_ms=None, pods=2)
            assert got.error_rate is None

            a.traffic(ok=3)
            a.traffic(failed=1, seconds=0.3)
            b.traffic(ok=2, grpc=True)
            b.traffic(failed=1, seconds=0.3, grpc=True)
            got = await figures(analyst, w, "the traffic", lambda f: f.requests > 0)
            # 5 under 0.005 s, 2 in (0.2, 0.5]: rank 6.93 -> 0.2 + 0.3 * (6.93 - 5) / 2.
            assert (got.requests, got.errors, got.pods) == (7, 2, 2)
            assert got.p99_ms is not None
            assert abs(got.p99_ms - 489.5) < 1e-6
            assert analyst.errors(KEY) is None
        finally:
            await analyst.close()

    run(go)


def test_a_change_kicks_the_model_and_quiet_rounds_do_not() -> None:
    async def go() -> None:
        pods = Pods()
        a = pods.add("a")
        kicks: list[tuple[str, str]] = []
        analyst = Analyst(interval=FAST, fetch=pods.fetch, kick=lambda ns, m: kicks.append((ns, m)))
        w = window(pods, "a")
        analyst.measure(KEY, w)
        try:
            await until("a kick for the first figures", lambda: kicks)
            assert kicks == [KEY]
            assert analyst.measure(KEY, w) == Figures(0, 0, None, 1)
            await rounds(pods, 5)
            assert kicks == [KEY]  # nothing changed: no kick
            a.traffic(ok=4)
            await until("a kick for the traffic", lambda: len(kicks) == 2)
            got = analyst.measure(KEY, w)
            assert got is not None
            assert got.requests == 4
            await rounds(pods, 5)
            assert len(kicks) == 2
        finally:
            await analyst.close()

    run(go)


def test_kicks_come_at_most_once_per_interval_and_the_last_change_is_not_lost() -> None:
    interval = 0.3

    async def go() -> None:
        loop = asyncio.get_running_loop()
        pods = Pods()
        a = pods.add("a")
        a.down = True
        kicks: list[float] = []
        analyst = Analyst(
            interval=interval, fetch=pods.fetch, kick=lambda ns, m: kicks.append(loop.time())
        )
        try:
            analyst.measure(KEY, window(pods, "a"))
            await until("the kick for a's problem", lambda: kicks)
            # Two more changes at once: a new step wakes the scraping for its baseline.
            a.down = False
            analyst.measure(KEY, window(pods, "a", step=1))
            await until("step 1's round", lambda: analyst.errors(KEY) is None)
            a.down = True
            analyst.measure(KEY, window(pods, "a", step=2))
            await until("step 2's round", lambda: analyst.errors(KEY))
            changed = loop.time()
            await until("a kick carrying the last change", lambda: kicks[-1] >= changed)
            await rounds(pods, 3)
            assert len(kicks) <= 3
            # The trailing kick is scheduled on the loop's clock, an interval after the last.
            assert all(
                later - earlier >= interval - 1e-3 for earlier, later in itertools.pairwise(kicks)
            )
        finally:
            await analyst.close()

    run(go)


def test_a_new_step_is_baselined_afresh_and_pods_joining_it_later_count_from_zero() -> None:
    async def go() -> None:
        pods = Pods()
        a, b, c, d = pods.add("a"), pods.add("b"), pods.add("c"), pods.add("d")
        c.traffic(ok=4)  # c serves already (the step adds it); d has traffic too
        d.traffic(ok=6, failed=2)
        analyst = Analyst(interval=FAST, fetch=pods.fetch)
        w0 = window(pods, "a", "b")
        try:
            await figures(analyst, w0, "step 0's baseline", lambda f: True)
            a.traffic(ok=5)
            b.traffic(failed=2)
            got = await figures(analyst, w0, "step 0's traffic", lambda f: f.requests > 0)
            assert (got.requests, got.errors) == (7, 2)

            w1 = window(pods, "a", "b", "c", step=1, started_at="2025-01-01T00:05:00Z")
            assert analyst.measure(KEY, w1) is None  # a new window: no figures until its own
            got = await figures(analyst, w1, "step 1's baseline", lambda f: True)
            assert got == Figures(0, 0, None, 3)  # a, b and c all baselined where they stood
            c.traffic(ok=2)
            got = await figures(analyst, w1, "c's traffic", lambda f: f.requests > 0)
            assert (got.requests, got.errors, got.pods) == (2, 0, 3)

            # d becomes ready during the step: it was not in the first round, all of it counts.
            w1d = window(pods, "a", "b", "c", "d", step=1, started_at="2025-01-01T00:05:00Z")
            got = await figures(analyst, w1d, "d counted", lambda f: f.pods == 4)
            assert (got.requests, got.errors) == (2 + 8, 2)
        finally:
            await analyst.close()

    run(go)


def test_a_round_in_flight_when_the_step_changes_is_not_the_new_baseline() -> None:
    async def go() -> None:
        pods = Pods()
        a = pods.add("a")
        analyst = Analyst(interval=FAST, fetch=pods.fetch)
        w0 = window(pods, "a")
        try:
            await figures(analyst, w0, "step 0's baseline", lambda f: True)
            gate = a.gate = asyncio.Event()
            await until("a round in flight", lambda: pods.held == 1)
            fetched = len(pods.fetched)
            a.traffic(ok=5)  # after that round read a's counters, before step 1 opens
            w1 = window(pods, "a", step=1, started_at="2025-01-01T00:05:00Z")
            assert analyst.measure(KEY, w1) is None
            await asyncio.sleep(FAST * 5)
            assert len(pods.fetched) == fetched  # one round at a time, even when woken
            a.gate = None
            gate.set()
            got = await figures(analyst, w1, "step 1's figures", lambda f: True)
            assert got.requests == 0  # the 5 were step 0's
        finally:
            await analyst.close()

    run(go)


def test_failing_pods_are_reported_and_the_others_still_measured() -> None:
    async def go() -> None:
        pods = Pods()
        a, b, c = pods.add("a"), pods.add("b"), pods.add("c")
        b.down = True
        b.traffic(ok=10)  # b's traffic before the step
        c.page = "<html><body>502 Bad Gateway</body></html>\n"
        analyst = Analyst(interval=FAST, fetch=pods.fetch)
        w = window(pods, "a", "b", "c")
        try:
            await figures(analyst, w, "the baseline", lambda f: True)
            a.traffic(ok=3)
            got = await figures(analyst, w, "a's traffic", lambda f: f.requests > 0)
            assert (got.requests, got.pods) == (3, 1)
            errors = analyst.errors(KEY)
            assert errors is not None
            assert f"pod b: {pods.url('b')}: ConnectionRefusedError" in errors
            assert f"pod c: {pods.url('c')}: not a Prometheus text exposition" in errors
            assert "pod a" not in errors

            c.page = "# another program\nup 1\n"
            await until(
                "c's new problem",
                lambda: "no modelreg_runtime_requests_total" in (analyst.errors(KEY) or ""),
            )

            # b answers again: baselined at its first answer (its 10 are the previous step's).
            b.down = False
            await until("b back", lambda: "pod b" not in (analyst.errors(KEY) or ""))
            got = await figures(analyst, w, "b counted", lambda f: f.pods == 2)
            assert got.requests == 3
            b.traffic(failed=1)
            got = await figures(analyst, w, "b's traffic", lambda f: f.requests == 4)
            assert got.errors == 1

            # a fails a round: left out of it, and its counters so far are kept.
            a.down = True
            got = await figures(analyst, w, "a missing", lambda f: f.pods == 1)
            assert (got.requests, got.errors) == (4, 1)
            assert "pod a" in (analyst.errors(KEY) or "")
        finally:
            await analyst.close()

    run(go)


def test_a_pod_that_hangs_is_timed_out_and_does_not_hold_the_others() -> None:
    async def go() -> None:
        pods = Pods()
        a, slow = pods.add("a"), pods.add("slow")
        slow.hang = True
        analyst = Analyst(interval=FAST, timeout=0.05, fetch=pods.fetch)
        w = window(pods, "a", "slow")
        try:
            await figures(analyst, w, "the baseline", lambda f: True)
            a.traffic(ok=2)
            got = await figures(analyst, w, "a's traffic", lambda f: f.requests == 2)
            assert got.pods == 1
            assert f"pod slow: no answer from {pods.url('slow')} within 0.05s" == analyst.errors(
                KEY
            )
        finally:
            await analyst.close()

    run(go)


def test_a_restarted_pod_keeps_what_it_counted_before() -> None:
    async def go() -> None:
        pods = Pods()
        a = pods.add("a")
        a.traffic(ok=100)
        analyst = Analyst(interval=FAST, fetch=pods.fetch)
        w = window(pods, "a")
        try:
            await figures(analyst, w, "the baseline", lambda f: True)
            a.traffic(ok=5, failed=1)
            await figures(analyst, w, "the traffic", lambda f: f.requests == 6)
            a.restart()  # its counters start again from zero...
            a.traffic(ok=2)
            # ...and the window counts 6 before and 2 after, never 102 - 106.
            got = await figures(analyst, w, "after the restart", lambda f: f.requests != 6)
            assert (got.requests, got.errors) == (8, 1)
            a.traffic(failed=1)
            got = await figures(analyst, w, "after the restart", lambda f: f.requests != 8)
            assert (got.requests, got.errors) == (9, 2)
        finally:
            await analyst.close()

    run(go)


def test_stop_cancels_the_scraping_and_forgets_the_window() -> None:
    async def go() -> None:
        pods = Pods()
        a = pods.add("a")
        analyst = Analyst(interval=FAST, fetch=pods.fetch)
        w = window(pods, "a")
        try:
            await figures(analyst, w, "the baseline", lambda f: True)
            (task,) = [t for t in asyncio.all_tasks() if t.get_name() == "analysis:ns/m"]
            a.down = True
            await until("a's problem", lambda: analyst.errors(KEY))
            analyst.stop(KEY)
            assert analyst.errors(KEY) is None
            await asyncio.wait([task], timeout=10)
            assert task.cancelled()
            fetched = len(pods.fetched)
            await asyncio.sleep(FAST * 5)  # rounds there would have been
            assert len(pods.fetched) == fetched
            analyst.stop(KEY)  # twice is fine

            a.down = False
            a.traffic(ok=3)  # before the new canary's window: not counted
            assert analyst.measure(KEY, w) is None  # a canary again: measured afresh
            got = await figures(analyst, w, "the new baseline", lambda f: True)
            assert got.requests == 0
        finally:
            await analyst.close()

    run(go)


def test_the_default_fetch_scrapes_a_real_runtime(tmp_path: Path) -> None:
    with runtime(tmp_path) as running:
        url = running.url

        async def go() -> None:
            analyst = Analyst(interval=FAST, timeout=2.0)
            dead = f"http://127.0.0.1:{_closed_port()}/metrics"
            w = Window(
                version=2,
                step=0,
                started_at=STARTED,
                targets=(("rt-0", url + "/metrics"), ("dead", dead), ("nope", url + "/nope")),
            )
            try:
                await figures(analyst, w, "the baseline", lambda f: True)
                statuses = [await asyncio.to_thread(infer_http, url, rows) for rows in (3, 3, 1)]
                assert statuses == [200, 200, 500]
                got = await figures(analyst, w, "the requests", lambda f: f.requests == 3)
                assert (got.errors, got.pods) == (1, 1)
                assert got.p99_ms is not None
                errors = analyst.errors(KEY) or ""
                assert f"pod dead: {dead}: cannot connect" in errors
                assert f"pod nope: {url}/nope: HTTP 404" in errors
            finally:
                await analyst.close()

        run(go)


def test_the_default_fetch_reads_whole_answers_in_chunks_and_refuses_huge_ones() -> None:
    metrics = Metrics("m", "2")
    padding = "# padding\n" * 60_000  # 600 kB: many chunks on the wire

    async def padded(request: web.Request) -> web.StreamResponse:
        reply = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await reply.prepare(request)
        for i in range(0, len(padding), 50_000):
            await reply.write(padding[i : i + 50_000].encode())
        await reply.write(metrics.render()[0])
        await reply.write_eof()
        return reply

    async def huge(request: web.Request) -> web.Response:
        return web.Response(text="#" * (BODY_MAX + 1))

    async def go() -> None:
        app = web.Application()
        app.router.add_get("/padded", padded)
        app.router.add_get("/huge", huge)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        analyst = Analyst(interval=FAST, timeout=5.0)
        base = f"http://127.0.0.1:{port}"
        w = Window(2, 0, STARTED, (("padded", base + "/padded"), ("huge", base + "/huge")))
        try:
            await figures(analyst, w, "the baseline", lambda f: True)
            for _ in range(3):
                metrics.observe("infer", 200, 0.001)
            got = await figures(analyst, w, "the requests", lambda f: f.requests == 3)
            assert got.pods == 1
            assert analyst.errors(KEY) == (
                f"pod huge: {base}/huge: the answer is more than {BODY_MAX} bytes"
            )
        finally:
            await analyst.close()
            await runner.cleanup()

    run(go)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again on return: nothing listens there


def test_a_shadow_reading_counts_every_pod_from_zero() -> None:
    """Shadow counters belong to the one shadow version a serving pod was started with: no
    baseline, the first round already gives the figures; a pod that restarts keeps its count."""
    from modelreg.controller.analyst import shadow_reading
    from tests.unit.test_analysis import SHADOW_TEXT

    async def go() -> None:
        pages = {"u1": SHADOW_TEXT, "u2": SHADOW_TEXT}

        async def fetch(url: str) -> str:
            return pages[url]

        analyst = Analyst(
            interval=FAST, timeout=1, fetch=fetch, parse=shadow_reading, from_zero=True
        )
        w = Window(version=3, step=1, started_at="", targets=(("a", "u1"), ("b", "u2")))
        f = await figures(analyst, w, "the first round's figures", lambda f: f.requests == 200)
        assert (f.errors, f.mismatches, f.dropped, f.pods) == (8, 12, 14, 2)
        assert f.p99_ms is not None
        pages["u2"] = SHADOW_TEXT.replace(" 90.0", " 1.0").replace(" 4.0\n", " 0.0\n")
        f = await figures(analyst, w, "b's restart kept", lambda f: f.requests > 200)
        assert f.requests == 100 + 100 + 7  # b counted 100 before its restart, 7 since
        await analyst.close()

    run(go)
