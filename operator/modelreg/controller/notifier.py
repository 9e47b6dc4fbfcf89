"""Webhook delivery for the reconciler: per-URL queues drained in the background.

The reconciler (`modelreg.controller.reconciler`) calls `enqueue()` once a version's new status is
written, with the events `lifecycle.notify.events()` derived from it; `enqueue` never waits. Each
URL of a Model has its own bounded queue (the oldest event is dropped, and counted as failed, when
it is full) and one worker that sends its events in order: CloudEvents binary mode, signed with
the Secret that `secretRef` names, retried with exponential backoff on timeouts, connection
failures, 408, 429 and 5xx. At most `Policy.concurrency` requests are in flight at once, so a slow
receiver costs a worker and a connection, never a reconcile.

What the workers did is kept as figures per URL (`deliveries()`), which the reconciler writes
into `Model.status.notifications` with the Model's status. When the figures change the Model is
kicked, at most once per `Policy.status_interval` (a trailing kick carries the last change), so
a burst of deliveries costs one status write, not one per event. Counters survive an operator
restart (they are seeded from the written status); queued events do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from modelreg.adapters import kube as k8s
from modelreg.adapters import webhook
from modelreg.api.models import URI_MAX, DeliveryStatus, HmacSecretRef, Model
from modelreg.lifecycle import notify
from modelreg.settings import OperatorSettings

log = logging.getLogger("modelreg.notifier")

ModelKey = tuple[str, str]

REFUSED = "not allowed: "
SECRET_TTL = 10.0  # a Secret read serves the deliveries of the next seconds (and sees rotation)


@dataclass(frozen=True)
class Policy:
    attempts: int = 6  # tries per event: 1 s, 2 s, 4 s, 8 s, 16 s apart
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    timeout: float = 5.0  # per request, connecting included
    queue_max: int = 100  # per URL of a Model
    concurrency: int = 16  # requests in flight, all receivers together
    status_interval: float = 5.0  # at most one status kick per Model this often


@dataclass
class _Job:
    event: notify.CloudEvent
    secret: HmacSecretRef | None


@dataclass
class _Target:
    """One URL of one Model: its queue, its worker and its figures."""

    url: str
    queue: deque[_Job] = field(default_factory=deque)
    busy: bool = False  # an event has been taken from the queue and is being delivered
    worker: asyncio.Task[None] | None = None
    delivered: int = 0
    failed: int = 0
    last_event: str | None = None
    last_success: str | None = None
    last_error: str | None = None
    warned: str | None = None  # the refusal last logged

    def figures(self, refusal: str | None) -> DeliveryStatus:
        return DeliveryStatus(
            url=self.url[:URI_MAX],
            delivered=self.delivered,
            failed=self.failed,
            pending=len(self.queue) + int(self.busy),
            last_event=self.last_event[:256] if self.last_event else None,
            last_success=self.last_success,
            last_error=(REFUSED + refusal if refusal is not None else self.last_error or None),
        )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Notifier:
    def __init__(
        self,
        kube: k8s.Kube,
        settings: OperatorSettings,
        on_change: Callable[[ModelKey], None],
        *,
        policy: Policy | None = None,
        client: webhook.WebhookClient | None = None,
    ) -> None:
        self._kube = kube
        self._hosts = list(settings.notification_allowed_hosts)
        self._on_change = on_change
        self.policy = policy or Policy()
        self._client = client or webhook.WebhookClient(
            timeout=self.policy.timeout, connections=self.policy.concurrency
        )
        self._sem = asyncio.Semaphore(self.policy.concurrency)
        self._targets: dict[ModelKey, dict[str, _Target]] = {}
        self._last_kick: dict[ModelKey, float] = {}
        self._kicks: dict[ModelKey, asyncio.TimerHandle] = {}
        self._secrets: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}

    # -- what the reconciler calls --------------------------------------------------------------

    def refusal(self, url: str) -> str | None:
        return webhook.url_refusal(url, self._hosts)

    def deliveries(self, key: ModelKey, model: Model) -> list[DeliveryStatus]:
        """The figures of each URL the Model names, in spec order (one entry per URL). URLs it no
        longer names are dropped, with their queues."""
        urls = _urls(model)
        targets = self._targets.get(key, {})
        out = []
        for url in urls:
            target = targets.get(url) or self._target(key, model, url)
            out.append(target.figures(self.refusal(url)))
        for url in set(targets) - set(urls):
            self._drop(targets.pop(url))
        if not urls:
            self._targets.pop(key, None)
        return out

    def enqueue(self, key: ModelKey, model: Model, events: Sequence[notify.CloudEvent]) -> None:
        """Queue the events for every URL that wants them; never waits."""
        if not events:
            return
        seen: set[str] = set()
        for n in model.spec.notifications:
            if n.url in seen:
                continue  # one queue per URL: the first entry naming it decides
            seen.add(n.url)
            wanted = [e for e in events if notify.wants(n, e.event)]
            if not wanted:
                continue
            target = self._targets.setdefault(key, {}).get(n.url) or self._target(key, model, n.url)
            refusal = self.refusal(n.url)
            if refusal is not None:
                if target.warned != refusal:
                    log.warning("not notifying %s of Model %s/%s: %s", n.url, *key, refusal)
                    target.warned = refusal
                continue
            for event in wanted:
                if len(target.queue) >= self.policy.queue_max:
                    dropped = target.queue.popleft()
                    target.failed += 1
                    target.last_event = dropped.event.id
                    target.last_error = (
                        f"queue full ({self.policy.queue_max} events): dropped the oldest, "
                        f"{dropped.event.id}"
                    )
                    self._changed(key)
                target.queue.append(_Job(event, n.secret_ref))
            if target.worker is None:
                target.worker = asyncio.get_running_loop().create_task(
                    self._drain(key, target), name=f"notify:{key[0]}/{key[1]}:{n.url}"
                )

    def forget(self, key: ModelKey) -> None:
        """The Model is gone: its queues go with it."""
        for target in self._targets.pop(key, {}).values():
            self._drop(target)
        self._last_kick.pop(key, None)
        timer = self._kicks.pop(key, None)
        if timer is not None:
            timer.cancel()

    async def close(self) -> None:
        for timer in self._kicks.values():
            timer.cancel()
        self._kicks.clear()
        workers = [t.worker for ts in self._targets.values() for t in ts.values() if t.worker]
        for w in workers:
            w.cancel()
        for w in workers:
            with contextlib.suppress(BaseException):
                await w
        self._targets.clear()
        await self._client.close()

    # -- the workers -----------------------------------------------------------------------------

    def _target(self, key: ModelKey, model: Model, url: str) -> _Target:
        """A new target, its counters carried on from the status this or an earlier operator
        wrote (a refusal is not carried: it is decided afresh)."""
        target = _Target(url=url)
        for st in model.status.notifications:
            if st.url == url:
                target.delivered, target.failed = st.delivered, st.failed
                target.last_event, target.last_success = st.last_event, st.last_success
                refused = (st.last_error or "").startswith(REFUSED)
                target.last_error = None if refused else st.last_error
        self._targets.setdefault(key, {})[url] = target
        return target

    def _drop(self, target: _Target) -> None:
        target.queue.clear()
        if target.worker is not None:
            target.worker.cancel()
            target.worker = None

    async def _drain(self, key: ModelKey, target: _Target) -> None:
        try:
            while target.queue:
                job = target.queue.popleft()
                target.busy = True
                try:
                    await self._deliver(key, target, job)
                except Exception:  # a bug must not stop this URL's deliveries for good
                    log.exception("delivering %s to %s crashed", job.event.id, target.url)
                    target.failed += 1
                finally:
                    target.busy = False
                self._changed(key)
        finally:
            target.worker = None

    async def _deliver(self, key: ModelKey, target: _Target, job: _Job) -> None:
        p = self.policy
        for attempt in range(1, p.attempts + 1):
            error, retry = await self._attempt(key, target, job)
            if error is None:
                target.delivered += 1
                target.last_event, target.last_success = job.event.id, _now()
                return
            last = not retry or attempt == p.attempts
            target.last_error = (
                f"{job.event.type} {job.event.id}: {error} (attempt {attempt} of {p.attempts}"
                + ("; dropped)" if last else "; retrying)")
            )[:1024]
            log.info("webhook %s: %s", target.url, target.last_error)
            if last:
                break
            self._changed(key)
            await asyncio.sleep(min(p.backoff_initial * 2 ** (attempt - 1), p.backoff_max))
        target.failed += 1
        target.last_event = job.event.id

    async def _attempt(self, key: ModelKey, target: _Target, job: _Job) -> tuple[str | None, bool]:
        """One request: (None, _) when delivered, else (why, whether to try again)."""
        refusal = self.refusal(target.url)
        if refusal is not None:
            return REFUSED + refusal, False
        secret: bytes | None = None
        if job.secret is not None:
            found = await self._key(key[0], job.secret)
            if isinstance(found, str):
                return found, True
            secret = found
        headers, body = notify.binary_request(job.event, secret)
        try:
            async with self._sem:
                status = await self._client.post(target.url, headers, body)
        except webhook.WebhookError as e:
            return str(e), e.retry
        if 200 <= status < 300:
            return None, False
        retry = status in (408, 429) or status >= 500
        return f"the receiver answered HTTP {status}", retry

    async def _key(self, namespace: str, ref: HmacSecretRef) -> bytes | str:
        """The HMAC key from the Secret, or why there is none (then nothing is sent unsigned)."""
        cached = self._secrets.get((namespace, ref.name))
        if cached is not None and time.monotonic() - cached[0] < SECRET_TTL:
            data = cached[1]
        else:
            try:
                data = await asyncio.to_thread(self._kube.get_secret_data, namespace, ref.name)
            except k8s.NotFound:
                return (
                    f"the Secret {ref.name!r} named by secretRef does not exist in namespace "
                    f"{namespace}: not sent unsigned"
                )
            except k8s.Forbidden:
                return f"the operator may not read the Secret {ref.name!r} in {namespace} (RBAC)"
            except k8s.KubeError as e:
                return f"reading the Secret {ref.name!r}: {e}"
            except ValueError:
                return f"the Secret {ref.name!r} holds a value that is not UTF-8 text"
            now = time.monotonic()
            for k in [k for k, (at, _) in self._secrets.items() if now - at >= SECRET_TTL]:
                del self._secrets[k]
            self._secrets[(namespace, ref.name)] = (now, data)
        value = data.get(ref.key)
        if not value:
            return f"the Secret {ref.name!r} has no key {ref.key!r}: not sent unsigned"
        return value.encode()

    # -- status kicks ----------------------------------------------------------------------------

    def _changed(self, key: ModelKey) -> None:
        """Kick the Model's reconcile (which writes the figures): now, or when the interval since
        the last kick has passed. Changes meanwhile ride on that one kick."""
        if key in self._kicks:
            return
        wait = self._last_kick.get(key, float("-inf")) + self.policy.status_interval
        wait -= time.monotonic()
        if wait <= 0:
            self._kick(key)
        else:
            self._kicks[key] = asyncio.get_running_loop().call_later(wait, self._kick, key)

    def _kick(self, key: ModelKey) -> None:
        self._kicks.pop(key, None)
        self._last_kick[key] = time.monotonic()
        self._on_change(key)


def _urls(model: Model) -> list[str]:
    return list(dict.fromkeys(n.url for n in model.spec.notifications))
