"""Webhook delivery (controller/notifier.py, adapters/webhook.py) against a real HTTP receiver.

The receiver is an aiohttp server on 127.0.0.1 started by each test; it parses every request
with the CloudEvents SDK and checks the HMAC as a receiver would. Only the Kubernetes adapter is
faked (the Secret the signature key comes from), and, for the address guard, the module's
resolver (`adapters.endpoints.resolve`), so that no test ever sends a packet to a metadata
address.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from cloudevents.core.bindings.http import HTTPMessage, from_http_event

from modelreg.adapters import endpoints
from modelreg.adapters import kube as k8s
from modelreg.adapters.webhook import WebhookClient, WebhookRefused
from modelreg.api.models import DeliveryStatus, Model, ModelVersion, ModelVersionStatus
from modelreg.controller.notifier import Notifier, Policy
from modelreg.controller.reconciler import Reconciler
from modelreg.lifecycle import notify
from modelreg.lifecycle.plan import Plan
from modelreg.settings import OperatorSettings

KEY = ("ns", "m")
FAST = Policy(backoff_initial=0.05, backoff_max=1.0, timeout=2.0, status_interval=0.2)


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes
    event: Any  # the SDK's CloudEvent


@dataclass
class Receiver:
    """A real webhook receiver. `answers` are the statuses of the next requests (then 200);
    `gate`, when set, holds every request until it is set; `delay` sleeps before answering."""

    answers: list[int] = field(default_factory=list)
    delay: float = 0.0
    gate: asyncio.Event | None = None
    got: list[Received] = field(default_factory=list)
    port: int = 0
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        event = from_http_event(HTTPMessage(headers=headers, body=body))
        self.got.append(Received(time.monotonic(), headers, body, event))
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.answers.pop(0) if self.answers else 200)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def ids(self) -> list[str]:
        return [r.event.get_id() for r in self.got]


class SecretKube:
    """The Kubernetes adapter's one call the notifier makes: a Secret's data."""

    def __init__(self, secrets: dict[str, dict[str, str]] | None = None) -> None:
        self.secrets = secrets or {}
        self.reads = 0

    def get_secret_data(self, namespace: str, name: str) -> dict[str, str]:
        self.reads += 1
        if name not in self.secrets:
            raise k8s.NotFound(f'secrets "{name}" not found', 404)
        return self.secrets[name]


def model(*notifications: dict[str, Any], status: dict[str, Any] | None = None) -> Model:
    return Model.model_validate(
        {
            "metadata": {"name": "m", "namespace": "ns", "uid": "model-uid"},
            "spec": {"notifications": list(notifications)},
            "status": status or {},
        }
    )


def event(n: int, kind: notify.NotificationEvent = notify.NotificationEvent.CREATED) -> Any:
    mv = ModelVersion.model_validate(
        {
            "metadata": {"name": f"m-v{n}", "namespace": "ns", "uid": f"uid-{n}"},
            "spec": {
                "model": "m",
                "version": n + 1,
                "artifact": {"uri": "s3://b/m/x", "sha256": "a"},
            },
        }
    )
    new = ModelVersionStatus.model_validate(
        {
            "observedGeneration": 1,
            "stage": "Archived" if kind is notify.NotificationEvent.ARCHIVED else "None",
            "phase": "Archived" if kind is notify.NotificationEvent.ARCHIVED else "Pending",
            "history": [{"stage": "None", "phase": "Pending", "at": f"2026-11-24T00:00:{n:02}Z"}],
        }
    )
    old = ModelVersionStatus() if kind is notify.NotificationEvent.CREATED else new.model_copy(
        update={"phase": None, "stage": None, "observed_generation": 1, "history": []}
    )  # fmt: skip
    (e,) = notify.events("ns", "m", mv, old, new, now="2026-11-24T00:00:00Z")
    assert e.event is kind
    return e


def run(
    test: Callable[..., Awaitable[None]],
    *,
    policy: Policy = FAST,
    allowed: list[str] | None = None,
    kube: SecretKube | None = None,
    receiver: Receiver | None = None,
) -> None:
    async def go() -> None:
        rx = await (receiver or Receiver()).start()
        kicks: list[float] = []
        hosts = [f"127.0.0.1:{rx.port}"] if allowed is None else allowed
        n = Notifier(
            kube or SecretKube(),  # type: ignore[arg-type]
            OperatorSettings(notification_allowed_hosts=hosts),
            lambda key: kicks.append(time.monotonic()),
            policy=policy,
        )
        try:
            await test(n, rx, kicks)
        finally:
            await n.close()
            await rx.stop()

    asyncio.run(go())


async def until(fn: Callable[[], Any]) -> Any:
    """Poll `fn` until it is truthy, for at most 10 s."""
    deadline = time.monotonic() + 10.0
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {fn}")
        await asyncio.sleep(0.01)


def figures(n: Notifier, m: Model) -> DeliveryStatus:
    (only,) = n.deliveries(KEY, m)
    return only


# -- the wire ------------------------------------------------------------------------------------


def test_events_arrive_as_binary_cloudevents_signed_with_the_secrets_key() -> None:
    kube = SecretKube({"hook-key": {"hmac-key": "s3cret"}})

    async def test(n: Notifier, rx: Receiver, kicks: list[float]) -> None:
        m = model({"url": rx.url, "secretRef": {"name": "hook-key"}})
        sent = [event(1), event(2, notify.NotificationEvent.ARCHIVED)]
        n.enqueue(KEY, m, sent)
        await until(lambda: len(rx.got) == 2)
        for want, got in zip(sent, rx.got, strict=True):
            ce = got.event
            assert ce.get_specversion() == "1.0"
            assert (ce.get_id(), ce.get_source(), ce.get_type(), ce.get_subject()) == (
                want.id,
                want.source,
                want.type,
                want.subject,
            )
            assert ce.get_time().isoformat().replace("+00:00", "Z") == want.time
            assert ce.get_datacontenttype() == "application/json"
            assert ce.get_data() == want.data
            # What a receiver checks: the HMAC over ce-id, ce-time and the raw body.
            message = f"{got.headers['ce-id']}.{got.headers['ce-time']}.".encode() + got.body
            expected = "sha256=" + hmac.new(b"s3cret", message, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(got.headers["X-Modelreg-Signature"], expected)
        assert got.headers["User-Agent"] == "modelreg-operator"
        st = await until(lambda: figures(n, m).delivered == 2 and figures(n, m))
        assert (st.failed, st.pending, st.last_error) == (0, 0, None)
        assert st.last_event == sent[1].id
        assert st.last_success is not None
        assert kicks, "the Model was not kicked to write the figures"
        assert kube.reads == 1  # one Secret read serves both deliveries

    run(test, kube=kube)


def test_only_the_events_a_notification_asks_for_are_sent() -> None:
    async def test(n: Notifier, rx: Receiver, kicks: list[float]) -> None:
        m = model({"url": rx.url, "events": ["archived"]})
        n.enqueue(KEY, m, [event(1), event(2, notify.NotificationEvent.ARCHIVED)])
        await until(lambda: figures(n, m).delivered == 1)
        assert [r.event.get_type() for r in rx.got] == ["dev.modelreg.modelversion.archived"]

    run(test)


# -- retries -------------------------------------------------------------------------------------


def test_5xx_is_retried_with_exponential_backoff_and_the_same_id() -> None:
    async def test(n: Notifier, rx: Receiver, kicks: list[float]) -> None:
        m = model({"url": rx.url})
        n.enqueue(KEY, m, [event(1)])
        st = await until(lambda: figures(n, m).delivered == 1 and figures(n, m))
        assert len(set(rx.ids())) == 1
        assert len(rx.got) == 4
        gaps = [b.at - a.at for a, b in itertools.pairwise(rx.got)]
        # 0.05 s, 0.1 s, 0.2 s apart (the policy's backoff), each at least that long.
        for gap, want in zip(gaps, (0.05, 0.1, 0.2), strict=True):
            assert want <= gap < want + 0.5, gaps
        assert gaps[0] < gaps[1] < gaps[2]
        assert st.failed == 0
        assert st.last_error is not None
        assert "HTTP 502 (attempt 3 of 6; retrying)" in st.last_error

    run(test, receiver=Receiver(answers=[500, 503, 502]))


@pytest.mark.parametrize("status", [400, 401, 404, 410, 302])
def test_a_client_error_is_not_retried(status: int) -> None:
    async def test(n: Notifier, rx: Receiver, kicks: list[float]) -> None:
        m = model({"url": rx.url})
        n.enqueue(KEY, m, [event(1), event(2)])
        st = await until(lambda: figures(n, m).delivered == 1 and figures(n, m))
        assert len(rx.got) == 2  # the first once, never again; the second delivered
        assert st.failed == 1
        assert f"HTTP {status} (attempt 1 of 6; dropped)" in (st.last_error or "")

    run(test, receiver=Receiver(answers=[status]))


@pytest.mark.parametrize("status", [408, 429])
def test_timeout_and_throttling_answers_are_retried(status: int) -> None:
    async def test(n: Notifier, rx: Receiver, kicks: list[float]) -> None:
        m = model({"url": rx.url})
        n.enqueue(KEY, m, [event(1)])
        await until(lambda: figures(n, m).delivered == 1)
        assert len(rx.got) == 2

    run(test, receiver=Receiver(answers=[status]))


def test_attempts_are_bounded_then_the_event_counts_as_failed() -> None:
    async def test(n: Notifier, rx: Receiver, kicks: list[float]) -> None:
        m = model({"url": rx.url})
        n.enqueue(KEY, m, [event(1)])
        st = await until(lambda: figures(n, m).failed == 1 and figures(n, m))
        assert len(rx.got) == 3
        assert (st.delivered, st.pending) == (0, 0)
        assert "(attempt 3 of 3; dropped)" in (st.last_error or "")

    run(test, policy=Policy(attempts=3, backoff_initial=0.01), receiver=Receiver(answers=[500] * 9))


def test_a_receiver_that_does_not_answer_in_time_is_retried() -> None:
    async def test(n: Notifier, rx: Receiver, kicks: list[float]) -> None:
        m = model({"url": rx.url})
        n.enqueue(KEY, m, [event(1)])
        await until(lambda: len(rx.got) >= 2)
        rx.delay = 0.0  # it recovers
        st = await until(lambda: figures(n, m).delivered == 1 and figures(n, m))
        assert "no answer within 0.3s" in (st.last_error or "")
        assert len(set(rx.ids())) == 1

    policy = Policy(backoff_initial=0.01, timeout=0.3, status_interval=0.1)
    run(test, policy=policy, receiver=Receiver(delay=1.0))


# -- the key -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secrets", "says"),
    [
        ({}, "the Secret 'hook-key' named by secretRef does not exist in namespace ns"),
        ({"hook-key": {"other": "x"}}, "the Secret 'hook-key' has no key 'hmac-key'"),
    ],
)
def test_without_its_key_nothing_is_sent_unsigned(
    secrets: dict[str, dict[str, str]], says: str
) -> None:
    async def test(n: Notifier, rx: Receiver, kicks: list[float]) -> None:
        m = model({"url": rx.url, "secretRef": {"name": "hook-key"}})
        n.enqueue(KEY, m, [event(1)])
        st = await until(lambda: figures(n, m).failed == 1 and figures(n, m))
        assert rx.got == []
        assert says in (st.last_error or "")
        assert "not sent unsigned" in (st.last_error or "")

    run(test, policy=Policy(attempts=2, backoff_initial=0.01), kube=SecretKube(secrets))


# -- never blocking, bounded -------------------------------------------------------------------


def test_enqueue_never_waits_for_a_slow_receiver() -> None:
    async def test(n: Notifier, rx: Receiver, kicks: list[float]) -> None:
        m = model({"url": rx.url})
        lags: list[float] = []

        async def ticker() -> None:  # how late the event loop runs a 10 ms timer
            while True:
                t = time.monotonic()
                await asyncio.sleep(0.01)
                lags.append(time.monotonic() - t - 0.01)

        tick = asyncio.create_task(ticker())
        slowest = 0.0
        for i in range(50):
            t = time.perf_counter()
            n.enqueue(KEY, m, [event(i)])
            slowest = max(slowest, time.perf_counter() - t)
            await asyncio.sleep(0)
        await until(lambda: len(rx.got) == 1)  # the receiver holds the first request
        await asyncio.sleep(0.3)
        assert slowest < 0.005, f"an enqueue took {slowest * 1000:.1f} ms"
        assert max(lags) < 0.1, f"the event loop stalled {max(lags) * 1000:.0f} ms"
        assert figures(n, m).pending == 50
        assert rx.gate is not None
        rx.gate.set()
        await until(lambda: figures(n, m).delivered == 50)
        assert rx.ids() == [event(i).id for i in range(50)]  # in order, per URL
        tick.cancel()

    run(test, receiver=Receiver(gate=asyncio.Event()))


def test_a_full_queue_drops_the_oldest_and_counts_it_failed() -> None:
    async def test(n: Notifier, rx: Receiver, kicks: list[float]) -> None:
        m = model({"url": rx.url})
        n.enqueue(KEY, m, [event(0)])
        await until(lambda: len(rx.got) == 1)  # in flight, held by the receiver
        n.enqueue(KEY, m, [event(i) for i in range(1, 9)])  # 8 for a queue of 5
        st = figures(n, m)
        assert (st.pending, st.failed) == (6, 3)  # 5 queued and 1 in flight; 3 dropped
        assert "queue full (5 events): dropped the oldest" in (st.last_error or "")
        assert rx.gate is not None
        rx.gate.set()
        await until(lambda: figures(n, m).delivered == 6)
        assert rx.ids() == [event(i).id for i in (0, 4, 5, 6, 7, 8)]

    run(test, policy=Policy(queue_max=5), receiver=Receiver(gate=asyncio.Event()))


def test_deliveries_are_bounded_across_receivers() -> None:
    async def test(n: Notifier, rx: Receiver, kicks: list[float]) -> None:
        for i in range(6):  # six Models, one URL each (the same receiver)
            n.enqueue(("ns", f"m{i}"), model({"url": rx.url}), [event(i)])
        await until(lambda: len(rx.got) == 2)
        await asyncio.sleep(0.2)
        assert len(rx.got) == 2  # two in flight, the other four wait for a slot
        assert rx.gate is not None
        rx.gate.set()
        await until(lambda: len(rx.got) == 6)

    run(test, policy=Policy(concurrency=2), receiver=Receiver(gate=asyncio.Event()))


def test_status_kicks_are_throttled_per_model() -> None:
    async def test(n: Notifier, rx: Receiver, kicks: list[float]) -> None:
        m = model({"url": rx.url})
        n.enqueue(KEY, m, [event(i) for i in range(20)])
        await until(lambda: figures(n, m).delivered == 20)
        done = time.monotonic()
        await asyncio.sleep(0.6)
        # 20 deliveries within well under a second: a few kicks, one per 0.25 s at most, and
        # the last after the last delivery (so the final figures are written).
        gaps = [b - a for a, b in itertools.pairwise(kicks)]
        assert 2 <= len(kicks) <= 6, kicks  # the first change, then the trailing one at least
        assert all(g >= 0.24 for g in gaps), gaps
        assert kicks[-1] >= done - 0.25

    run(test, policy=Policy(status_interval=0.25))


# -- the URL policy, on the wire ---------------------------------------------------------------


def test_a_url_that_is_not_allowed_is_reported_and_sent_nothing() -> None:
    async def test(n: Notifier, rx: Receiver, kicks: list[float]) -> None:
        m = model({"url": rx.url}, {"url": "http://example.com/hook"})
        n.enqueue(KEY, m, [event(1)])
        await asyncio.sleep(0.3)
        assert rx.got == []
        local, example = n.deliveries(KEY, m)
        assert (local.url, example.url) == (rx.url, "http://example.com/hook")
        for st in (local, example):
            assert (st.delivered, st.pending) == (0, 0)
            assert (st.last_error or "").startswith("not allowed: http://")
        assert "notification allowed hosts (none)" in (example.last_error or "")

    run(test, allowed=[])


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, list[str]], list[Any]]:
    """The module's resolver replaced by a table (name -> addresses); every connect recorded."""
    table: dict[str, list[str]] = {}
    connected: list[Any] = []

    def resolve(host: str, port: int, *_: Any) -> list[tuple[Any, ...]]:
        if host not in table:
            raise socket.gaierror(f"{host}: not in the table")
        family = {True: socket.AF_INET6, False: socket.AF_INET}
        return [(family[":" in a], socket.SOCK_STREAM, 6, "", (a, port)) for a in table[host]]

    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        connected.append(address)
        if address[0] != "127.0.0.1":
            raise AssertionError(f"a test tried to connect to {address}")
        real_connect(self, address)

    monkeypatch.setattr(endpoints, "resolve", resolve)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return table, connected


def test_names_are_resolved_through_the_guard_on_every_connection(
    dns: tuple[dict[str, list[str]], list[Any]],
) -> None:
    table, connected = dns

    async def test(n: Notifier, rx: Receiver, kicks: list[float]) -> None:
        table["hooks.test"] = ["127.0.0.1"]
        url = f"http://hooks.test:{rx.port}/hook"
        m = model({"url": url})
        n.enqueue(KEY, m, [event(1)])
        await until(lambda: figures(n, m).delivered == 1)
        assert [a[0] for a in connected] == ["127.0.0.1"]
        # The name is rebound to the metadata service: the next connection is refused, at once.
        table["hooks.test"] = ["169.254.169.254"]
        client = WebhookClient(timeout=1.0, connections=1)
        try:
            with pytest.raises(WebhookRefused, match=r"resolves to 169\.254\.169\.254"):
                await client.post(url, {}, b"{}")
        finally:
            await client.close()
        assert [a[0] for a in connected] == ["127.0.0.1"]

    run(test, allowed=["hooks.test"])


def test_a_name_resolving_to_a_metadata_address_is_dropped_without_a_packet(
    dns: tuple[dict[str, list[str]], list[Any]],
) -> None:
    table, connected = dns

    async def test(n: Notifier, rx: Receiver, kicks: list[float]) -> None:
        table["metadata.test"] = ["127.0.0.1", "fd00:ec2::254"]
        m = model({"url": "https://metadata.test/hook"})
        n.enqueue(KEY, m, [event(1)])
        st = await until(lambda: figures(n, m).failed == 1 and figures(n, m))
        assert "cloud metadata address" in (st.last_error or "")
        assert "(attempt 1 of 6; dropped)" in (st.last_error or "")  # not retried
        assert connected == []
        assert rx.got == []

    run(test)


# -- the figures ---------------------------------------------------------------------------------


def test_figures_one_per_url_carried_over_from_the_written_status() -> None:
    async def test(n: Notifier, rx: Receiver, kicks: list[float]) -> None:
        earlier = {
            "notifications": [
                {"url": rx.url, "delivered": 7, "failed": 2, "lastSuccess": "2026-11-23T00:00:00Z"}
            ]
        }
        # The same URL twice: one queue, one entry (the first entry's filter and key decide).
        m = model({"url": rx.url}, {"url": rx.url, "events": ["archived"]}, status=earlier)
        st = figures(n, m)
        assert (st.delivered, st.failed, st.last_success) == (7, 2, "2026-11-23T00:00:00Z")
        n.enqueue(KEY, m, [event(1)])
        await until(lambda: figures(n, m).delivered == 8)
        # A URL the Model no longer names is dropped.
        assert n.deliveries(KEY, model()) == []

    run(test)


# -- in the reconciler ---------------------------------------------------------------------------


class StatusKube(SecretKube):
    """The adapter calls a reconciler pass makes here: status patches, answered as the API server
    would (a new resourceVersion each time)."""

    def __init__(self) -> None:
        super().__init__()
        self.patches: list[tuple[str, str, dict[str, Any]]] = []

    async def call(self, fn: Any, *args: Any) -> Any:
        return fn(*args)

    def patch_status(self, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> Any:
        self.patches.append((plural, name, patch))
        rv = str(len(self.patches))
        return {"metadata": {"name": name, "resourceVersion": rv}, "spec": {}, "status": patch}


def test_a_pass_only_enqueues_and_the_figures_ride_on_the_model_status() -> None:
    async def test(n: Notifier, rx: Receiver, kicks: list[float]) -> None:
        kube = StatusKube()
        r = Reconciler(kube=kube, settings=OperatorSettings())  # type: ignore[arg-type]
        r.notifier = n
        m = model({"url": rx.url})
        mv = ModelVersion.model_validate(
            {
                "metadata": {"name": "m-v1", "namespace": "ns", "uid": "uid-1", "generation": 1},
                "spec": {"model": "m", "version": 1, "artifact": {"uri": "s3://b/m/x", "sha256": "a"}},
            }
        )  # fmt: skip
        new = ModelVersionStatus.model_validate(
            {
                "observedGeneration": 1,
                "stage": "None",
                "phase": "Pending",
                "history": [{"stage": "None", "phase": "Pending", "at": "2026-11-24T00:00:00Z"}],
            }
        )
        started = time.monotonic()
        await r._apply(KEY, m, [mv], Plan(version_status={"m-v1": new}))
        took = time.monotonic() - started
        assert took < 0.5, f"the pass waited {took:.2f}s for a receiver that takes 2 s"
        written = {(plural, name): patch for plural, name, patch in kube.patches}
        assert written[("modelversions", "m-v1")]["phase"] == "Pending"
        assert written[("models", "m")]["notifications"] == [
            {"url": rx.url, "delivered": 0, "failed": 0, "pending": 0}
        ]
        await until(lambda: len(rx.got) == 1)
        assert rx.got[0].event.get_id() == "uid-1:created:1:2026-11-24T00:00:00Z"
        await until(lambda: figures(n, m).delivered == 1)
        assert kicks
        # The kicked pass plans nothing new: it writes the figures alone.
        m = m.model_copy(update={"status": m.status.model_validate(written[("models", "m")])})
        kube.patches.clear()
        await r._apply(KEY, m, [mv.model_copy(update={"status": new})], Plan())
        ((plural, name, patch),) = kube.patches
        assert (plural, name) == ("models", "m")
        assert patch["notifications"][0]["delivered"] == 1
        assert patch["notifications"][0]["lastEvent"] == "uid-1:created:1:2026-11-24T00:00:00Z"

    run(test, receiver=Receiver(delay=2.0), policy=Policy(timeout=5.0))
