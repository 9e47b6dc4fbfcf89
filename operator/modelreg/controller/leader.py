"""Leader election: several operator replicas, one of which reconciles (`settings.leader_election`).

Kopf has no leader election of its own (its peering pauses operators, it does not fence them), so
the operator holds a coordination.k8s.io/v1 Lease around kopf: `python -m modelreg.controller`
waits as a standby until `Elector.acquire()` returns, then runs kopf while `Elector.keep()` renews
the Lease every retry period. The rules are `modelreg.lifecycle.lease`.

Fencing: the Kubernetes adapter asks `Elector.fence()` before every write it sends, and a replica
whose last renewal is older than the renew deadline writes nothing, whatever its tasks were doing
(`Fenced`). A leader that was paused (SIGSTOP, a partition) therefore stops writing before a
standby may take over, and when it resumes and finds the Lease held by another, `keep()` returns
and the process exits, to come back as a standby with fresh caches. On a clean shutdown (SIGTERM)
the leader releases the Lease so that a standby takes over at its next try.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from modelreg.adapters import kube as k8s
from modelreg.controller import metrics
from modelreg.lifecycle import lease

log = logging.getLogger("modelreg.leader")

LABELS = {"app.kubernetes.io/managed-by": "modelreg", "app.kubernetes.io/component": "operator"}


def default_identity() -> str:
    """The pod's name (its hostname) and a random suffix: a restarted container is a new holder."""
    return f"{os.environ.get('HOSTNAME') or socket.gethostname()}_{secrets.token_hex(4)}"


def wall_now() -> str:
    """RFC 3339 with microseconds, as a Lease's MicroTime fields are written."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_of(body: dict[str, Any] | None) -> lease.Record | None:
    if body is None:
        return None
    spec = body.get("spec") or {}
    return lease.Record(
        holder=str(spec.get("holderIdentity") or ""),
        duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        renew_time=spec.get("renewTime"),
        acquire_time=spec.get("acquireTime"),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=str((body.get("metadata") or {}).get("resourceVersion") or ""),
    )


class Elector:
    def __init__(
        self,
        kube: k8s.Kube,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration_seconds: int,
        renew_deadline_seconds: float,
        retry_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], str] = wall_now,
    ) -> None:
        self.kube = kube
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration = duration_seconds
        self.deadline = renew_deadline_seconds
        self.retry = retry_seconds
        self._clock, self._wall = clock, wall
        self.last_renewed: float | None = None  # monotonic, of the last successful write
        self.holder = ""  # who holds the Lease, as last read
        self._seen: lease.Seen | None = None
        self._record: lease.Record | None = None

    @property
    def where(self) -> str:
        return f"Lease {self.namespace}/{self.name}"

    def fence(self) -> str | None:
        """None while this replica may write; else why not (for `Kube.fence`)."""
        if lease.holds(self.last_renewed, self._clock(), self.deadline):
            return None
        if self.last_renewed is None:
            return f"{self.identity} does not hold the {self.where}"
        ago = self._clock() - self.last_renewed
        return (
            f"{self.identity} last renewed the {self.where} {ago:.1f}s ago, more than the renew "
            f"deadline of {self.deadline:g}s: another replica may lead now"
        )

    async def attempt(self) -> bool:
        """Read the Lease and create, renew or take it when the rules say so. True when this
        replica holds it now; a lost race (409) is False."""
        body = await self.kube.call(self.kube.get_lease, self.namespace, self.name)
        record = record_of(body)
        now = self._clock()
        self._seen = lease.seen(self._seen, record, now)
        self._record = record
        self.holder = record.holder if record is not None else ""
        d = lease.decide(
            record,
            self._seen,
            me=self.identity,
            now=now,
            wall=self._wall(),
            duration_seconds=self.duration,
        )
        if d.act is lease.Act.WAIT:
            return False
        assert d.spec is not None
        sent = self._clock()  # a renewal counts from before it was sent: never longer than true
        try:
            if d.act is lease.Act.CREATE:
                written = await self.kube.call(
                    self.kube.create_lease, self.namespace, self.name, d.spec, LABELS
                )
            else:
                assert record is not None
                written = await self.kube.call(
                    self.kube.replace_lease,
                    self.namespace,
                    self.name,
                    d.spec,
                    record.resource_version,
                    LABELS,
                )
        except k8s.Conflict:
            return False  # another replica wrote the Lease first: read it again next time
        self._record = record_of(written)
        self._seen = lease.seen(self._seen, self._record, now)
        self.holder = self.identity
        if d.act is not lease.Act.RENEW:
            before = "none" if record is None else record.holder or "released"
            log.info("%s took the %s (holder before: %s)", self.identity, self.where, before)
            metrics.LEADER_TRANSITIONS.inc()
        self.last_renewed = sent
        metrics.LEADER.set(1)
        return True

    async def acquire(self) -> None:
        """Wait as a standby until this replica holds the Lease."""
        log.info("%s: standby, waiting for the %s", self.identity, self.where)
        waiting_on = None
        while True:
            try:
                if await self.attempt():
                    return
                if self.holder != waiting_on:
                    waiting_on = self.holder
                    log.info("the %s is held by %s", self.where, self.holder)
            except k8s.KubeError as e:
                log.warning("cannot read or write the %s: %s", self.where, e)
            await asyncio.sleep(self.retry)

    async def keep(self) -> str:
        """Renew the Lease every retry period; returns why leadership was lost."""
        problem = ""
        while True:
            await asyncio.sleep(self.retry)
            try:
                left = self.deadline - (self._clock() - (self.last_renewed or 0.0))
                async with asyncio.timeout(max(0.1, left)):
                    ok = await self.attempt()
                if ok:
                    problem = ""
                    continue
                problem = f"the Lease is held by {self.holder}"
            except TimeoutError:
                problem = "the renewal did not complete before the renew deadline"
            except k8s.KubeError as e:
                problem = str(e)
            if self.holder not in ("", self.identity):
                return self._lost(f"another replica holds the {self.where}: {self.holder}")
            if self.fence() is not None:
                return self._lost(
                    f"could not renew the {self.where} within {self.deadline:g}s: {problem}"
                )

    def _lost(self, why: str) -> str:
        self.last_renewed = None
        metrics.LEADER.set(0)
        return why

    async def release(self) -> None:
        """Give the Lease up (a clean shutdown): a standby takes it at its next try."""
        record = self._record
        if record is None or record.holder != self.identity or self.fence() is not None:
            return
        self.last_renewed = None
        metrics.LEADER.set(0)
        try:
            await self.kube.call(
                self.kube.replace_lease,
                self.namespace,
                self.name,
                lease.released(record, self._wall()),
                record.resource_version,
                LABELS,
            )
            log.info("%s released the %s", self.identity, self.where)
        except k8s.KubeError as e:
            log.warning("could not release the %s (it expires by itself): %s", self.where, e)


async def standby_health(endpoint: str) -> web.AppRunner | None:
    """While a replica waits as a standby, its liveness endpoint answers 200 (kopf, which serves
    it for the leader, is not running yet): a standby is alive, not stuck."""
    if not endpoint:
        return None
    url = urlsplit(endpoint)

    async def alive(request: web.Request) -> web.Response:
        return web.json_response({"standby": True})

    app = web.Application()
    app.router.add_get(url.path or "/", alive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, url.hostname or "127.0.0.1", url.port or 80)
    await site.start()
    return runner
