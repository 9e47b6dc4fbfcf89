"""The custom metrics API server: custom.metrics.k8s.io/v1beta2 behind the API server's
aggregator, answering `modelreg_requests_in_flight` for modelreg's serving pods.

Who may ask is decided as every aggregated API server decides it:

- Authentication by the front proxy. The aggregator dials us over TLS with its proxy client
  certificate and names the end user in request headers. The certificate must be signed by the
  request-header CA and carry one of the allowed names; both, and the header names, come from the
  ConfigMap kube-system/extension-apiserver-authentication that the API server keeps (its
  --requestheader-* flags). A request without such a certificate gets 401 and its headers are
  never believed.
- Authorization by the API server: a SubjectAccessReview for that user, on the resource
  `pods/<metric>` of the group custom.metrics.k8s.io (the HorizontalPodAutoscaler controller's
  ClusterRole has it), or on the discovery path. Answers are cached for CACHE_SECONDS.

A pod's value is read from its own /metrics (`modelreg.lifecycle.custom_metrics`): only Running,
Ready pods labelled app.kubernetes.io/managed-by=modelreg, at their `http` container port. A pod
that does not answer is left out of the list, which the autoscaler handles conservatively (no
scale-down on its account).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from modelreg.adapters import kube as k8s
from modelreg.adapters.scrape import MetricsFetch, ScrapeError
from modelreg.lifecycle import custom_metrics as cm
from modelreg.lifecycle import naming

log = logging.getLogger("modelreg.metricsapi")

CACHE_SECONDS = 10.0
AUTHENTICATED = "system:authenticated"
HEALTH = ("/healthz", "/livez", "/readyz")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ConfigError(Exception):
    """The server cannot start as configured; the message says what to change."""


@dataclass(frozen=True)
class FrontProxy:
    """The API server's request-header authentication (its --requestheader-* flags)."""

    ca: str  # PEM
    allowed_names: tuple[str, ...]  # empty: any certificate the CA signed
    user_headers: tuple[str, ...]
    group_headers: tuple[str, ...]
    extra_prefixes: tuple[str, ...]

    @classmethod
    def from_config_map(cls, data: Mapping[str, str]) -> FrontProxy:
        ca = data.get("requestheader-client-ca-file", "")
        if not ca.strip():
            raise ConfigError(
                "the API server has no front proxy configured: the ConfigMap kube-system/"
                "extension-apiserver-authentication has no requestheader-client-ca-file, so no "
                "aggregated API server can tell which user a request is for. Start "
                "kube-apiserver with --requestheader-client-ca-file, --requestheader-allowed-"
                "names, --requestheader-username-headers=X-Remote-User, --requestheader-group-"
                "headers=X-Remote-Group, --requestheader-extra-headers-prefix=X-Remote-Extra- "
                "and --proxy-client-cert-file/--proxy-client-key-file (kubeadm does)"
            )

        def names(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
            raw = data.get(key, "")
            if not raw:
                return default
            try:
                found = json.loads(raw)
            except ValueError as e:
                raise ConfigError(f"extension-apiserver-authentication: {key} is not JSON") from e
            return tuple(str(x) for x in found or ()) or default

        return cls(
            ca=ca,
            allowed_names=names("requestheader-allowed-names", ()),
            user_headers=names("requestheader-username-headers", ("X-Remote-User",)),
            group_headers=names("requestheader-group-headers", ("X-Remote-Group",)),
            extra_prefixes=names("requestheader-extra-headers-prefix", ("X-Remote-Extra-",)),
        )

    def ssl_context(self, cert_file: str, key_file: str) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert_file, key_file)
        ctx.load_verify_locations(cadata=self.ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL  # the probes have none; requests without get 401
        return ctx

    def user(self, peer: Mapping[str, Any] | None, headers: Mapping[str, str]) -> User | str:
        """The end user a request is for, or why it is not believed."""
        if not peer:
            return "no client certificate signed by the API server's request-header CA"
        cn = next((v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"), "")
        if self.allowed_names and cn not in self.allowed_names:
            return f"the client certificate's name {cn!r} is not an allowed front proxy"
        name = next((headers[h] for h in self.user_headers if headers.get(h)), "")
        if not name:
            return "the front proxy named no user"
        groups = tuple(g for h in self.group_headers for g in _all(headers, h))  # may repeat
        if AUTHENTICATED not in groups:
            # As every Kubernetes API server does for a user it authenticated: the discovery
            # and OpenAPI paths are granted to this group (system:discovery, system:basic-user).
            groups = (*groups, AUTHENTICATED)
        extra: dict[str, tuple[str, ...]] = {}
        for key in headers:
            for prefix in self.extra_prefixes:
                if key.lower().startswith(prefix.lower()):
                    extra[key[len(prefix) :].lower()] = tuple(_all(headers, key))
        return User(name, groups, tuple(sorted(extra.items())))


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass
class Server:
    kube: k8s.Kube
    proxy: FrontProxy
    fetch: MetricsFetch
    clock: Callable[[], float] = time.monotonic
    _samples: dict[str, cm.Sample] = field(default_factory=dict)
    _reviews: dict[tuple[Any, ...], tuple[float, bool, str]] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/apis", self._json(cm.api_group_list))
        app.router.add_get(f"/apis/{cm.GROUP}", self._json(cm.api_group))
        app.router.add_get(f"/apis/{cm.GROUP_VERSION}", self._json(cm.resource_list))
        app.router.add_get(
            f"/apis/{cm.GROUP_VERSION}/namespaces/{{namespace}}/pods/{{name}}/{{metric}}",
            self.pods_metric,
        )
        for path in HEALTH:
            app.router.add_get(path, _ok)
        return app

    @staticmethod
    def _json(body: Callable[[], dict[str, Any]]) -> Handler:
        async def handler(_: web.Request) -> web.Response:
            return web.json_response(body())

        return handler

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in HEALTH:
            return await handler(request)
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        who = self.proxy.user(peer, request.headers)
        if isinstance(who, str):
            return _status(401, "Unauthorized", f"Unauthorized: {who}")
        attributes = _attributes(request)
        allowed, reason = await self._review(who, attributes)
        if not allowed:
            what = _describe(attributes)
            why = f": {reason}" if reason else ""
            return _status(403, "Forbidden", f'user "{who.name}" cannot {what}{why}')
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except k8s.Unavailable as e:
            return _status(503, "ServiceUnavailable", f"the Kubernetes API is unavailable: {e}")
        except k8s.KubeError as e:  # Forbidden: a namespace its RBAC does not cover
            return _status(500, "InternalError", f"the metrics API's own request failed: {e}")

    async def _review(self, who: User, attributes: dict[str, Any]) -> tuple[bool, str]:
        key = (who, json.dumps(attributes, sort_keys=True))
        now = self.clock()
        cached = self._reviews.get(key)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1], cached[2]
        spec: dict[str, Any] = {"user": who.name, "groups": list(who.groups), **attributes}
        if who.extra:
            spec["extra"] = {k: list(v) for k, v in who.extra}
        allowed, reason = await self.kube.call(self.kube.access_review, spec)
        if len(self._reviews) > 1024:
            self._reviews.clear()
        self._reviews[key] = (now, allowed, reason)
        return allowed, reason

    async def pods_metric(self, request: web.Request) -> web.Response:
        ns, name, metric = (request.match_info[k] for k in ("namespace", "name", "metric"))
        if metric not in cm.METRICS:
            return _status(
                404,
                "NotFound",
                f"the metric {metric!r} is not served here: modelreg's custom metrics API "
                f"serves {', '.join(cm.METRICS)} for pods",
            )
        if request.query.get("metricLabelSelector"):
            return _status(
                400,
                "BadRequest",
                f"{metric} has no labels: a metricLabelSelector selects nothing of it",
            )
        managed = f"{naming.MANAGED_BY}={naming.MANAGER}"
        selector = request.query.get("labelSelector", "")
        selector = f"{selector},{managed}" if selector else managed
        try:
            pods = await self.kube.call(self.kube.list_pods, ns, selector)
        except k8s.Invalid as e:
            return _status(400, "BadRequest", f"labelSelector: {e}")
        if name != "*":
            pods = [p for p in pods if p["metadata"]["name"] == name]
        targets = [t for t in (_target(p) for p in pods) if t is not None]
        if name != "*" and not targets:
            return _status(404, "NotFound", f"{ns}/{name} is not a ready serving pod of modelreg")
        values = await asyncio.gather(*(self._value(*t) for t in targets))
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        found = [cm.PodValue(pod, *read, stamp) for pod, read in values if read is not None]
        return web.json_response(cm.metric_value_list(ns, metric, found))

    async def _value(self, uid: str, pod: str, url: str) -> tuple[str, tuple[float, float] | None]:
        try:
            reading = cm.parse(await self.fetch.get(url))
        except (ScrapeError, ValueError) as e:
            log.warning("pod %s left out: its /metrics (%s): %s", pod, url, e)
            return pod, None
        now = cm.Sample(self.clock(), reading)
        previous = self._samples.get(uid)
        value = cm.average_in_flight(previous, now)
        self._samples[uid] = cm.keep(previous, now)
        self._forget(now.at)
        return pod, value

    def _forget(self, now: float) -> None:
        """Drop the samples of pods not read for a while (gone, or no longer autoscaled)."""
        if len(self._samples) > 256:
            stale = [k for k, s in self._samples.items() if now - s.at > cm.MAX_WINDOW]
            for k in stale:
                del self._samples[k]


def _target(pod: dict[str, Any]) -> tuple[str, str, str] | None:
    """(uid, name, the /metrics URL) of a Running, Ready pod with an `http` port; else None."""
    status = pod.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    ip = status.get("podIP")
    if (
        status.get("phase") != "Running"
        or not ready
        or not ip
        or pod["metadata"].get("deletionTimestamp")
    ):
        return None
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == "http":
                host = f"[{ip}]" if ":" in ip else ip
                url = f"http://{host}:{p['containerPort']}/metrics"
                return pod["metadata"]["uid"], pod["metadata"]["name"], url
    return None


def _attributes(request: web.Request) -> dict[str, Any]:
    """What a request asks, as a SubjectAccessReview's resourceAttributes or nonResourceAttributes."""
    info = request.match_info
    if "metric" in info:
        return {
            "resourceAttributes": {
                "namespace": info["namespace"],
                "verb": "get",  # as the API server classifies it, name "*" included
                "group": cm.GROUP,
                "version": cm.VERSION,
                "resource": "pods",
                "subresource": info["metric"],
                "name": info["name"],
            }
        }
    return {"nonResourceAttributes": {"path": request.path, "verb": "get"}}


def _describe(attributes: dict[str, Any]) -> str:
    r = attributes.get("resourceAttributes")
    if r is None:
        return f"get path {attributes['nonResourceAttributes']['path']!r}"
    return (
        f'{r["verb"]} resource "pods/{r["subresource"]}" in API group "{r["group"]}" in the '
        f'namespace "{r["namespace"]}"'
    )


def _all(headers: Mapping[str, str], name: str) -> list[str]:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, []))
    value = headers.get(name)
    return [value] if value else []


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(cm.status(code, reason, message), status=code)


async def _ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")
