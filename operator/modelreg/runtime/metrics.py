"""Prometheus metrics of the model server, served at GET /metrics.

Created by `modelreg.runtime.server` and updated by `modelreg.runtime.http` and
`modelreg.runtime.grpc` once per request to a model endpoint (health probes, server metadata and
/metrics itself are not counted, so scrapes and kubelet probes do not drown the traffic). The
request metrics carry `protocol` ("http" or "grpc"); `status` is the HTTP status for http and the
gRPC status code's name (OK, INVALID_ARGUMENT, ...) for grpc. Each server has its own registry:
tests can run several in a process.

The batch histograms are updated once per prediction by `modelreg.runtime.batching` (only when
batching is on), through the observer `modelreg.runtime.server` gives it.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# From a fraction of a millisecond (small tabular models) to seconds (big batches).
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
)
# How far apart a shadow's numeric outputs were from the serving version's, per compared request.
DIFF_BUCKETS = (0.0, 1e-9, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0)
SHADOW_OUTCOMES = ("agree", "disagree", "error", "dropped", "other_version")
# Rows and requests per batched prediction (MODELREG_BATCH_MAX_SIZE is at most 65536).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536)


class Metrics:
    def __init__(
        self,
        model: str,
        version: str,
        *,
        queued: Callable[[], float] | None = None,
        queued_bytes: Callable[[], float] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._model = model
        self._version = version
        labels = ("model", "version", "endpoint", "status", "protocol")
        self._requests = Counter(
            "modelreg_runtime_requests",
            "Requests to model endpoints, by endpoint (infer, metadata, ready), status (HTTP "
            "status, or gRPC code name) and protocol (http, grpc).",
            labels,
            registry=self.registry,
        )
        self._latency = Histogram(
            "modelreg_runtime_request_duration_seconds",
            "Time from request to response at the server, by endpoint, status and protocol.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._in_flight = Gauge(
            "modelreg_runtime_requests_in_flight",
            "Inference requests being processed.",
            ("model", "version"),
            registry=self.registry,
        ).labels(model, version)
        self._ready = Gauge(
            "modelreg_runtime_model_ready",
            "1 when the model is verified and loaded.",
            ("model", "version"),
            registry=self.registry,
        ).labels(model, version)
        self._rejected = Counter(
            "modelreg_runtime_rejected_requests",
            "Requests refused with 503 and Retry-After because the executor was full (as many "
            "admitted as MODELREG_WORKERS + MODELREG_MAX_QUEUE, or their waiting bodies at "
            "MODELREG_MAX_QUEUE_BYTES), by endpoint and protocol (gRPC: RESOURCE_EXHAUSTED).",
            ("model", "version", "endpoint", "reason", "protocol"),
            registry=self.registry,
        )
        queued_gauge = Gauge(
            "modelreg_runtime_requests_queued",
            "Requests admitted to the executor and not running yet (body being read, or waiting "
            "for a worker).",
            ("model", "version"),
            registry=self.registry,
        ).labels(model, version)
        if queued is not None:
            queued_gauge.set_function(queued)
        queued_bytes_gauge = Gauge(
            "modelreg_runtime_requests_queued_bytes",
            "Body bytes of the admitted requests not holding a worker (body being read, waiting "
            "for a worker or in a batch), each its Content-Length or MODELREG_MAX_REQUEST_BYTES "
            "when unknown; MODELREG_MAX_QUEUE_BYTES bounds it.",
            ("model", "version"),
            registry=self.registry,
        ).labels(model, version)
        if queued_bytes is not None:
            queued_bytes_gauge.set_function(queued_bytes)
        self._batch_max_size = Gauge(
            "modelreg_runtime_batch_max_size",
            "Rows one batched prediction may hold, as resolved at start-up "
            "(MODELREG_BATCH_MAX_SIZE, else the artifact format's default); 1: batching off.",
            ("model", "version"),
            registry=self.registry,
        ).labels(model, version)
        self._batch_rows = Histogram(
            "modelreg_runtime_batch_rows",
            "Rows in each prediction made by the batcher (MODELREG_BATCH_MAX_SIZE above 1; a "
            "request that cannot be batched counts as a prediction of its own).",
            ("model", "version"),
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        ).labels(model, version)
        self._batch_requests = Histogram(
            "modelreg_runtime_batch_requests",
            "Requests answered by each prediction made by the batcher.",
            ("model", "version"),
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        ).labels(model, version)
        self._shadow: dict[str, Counter] = {}
        self._shadow_latency: Histogram | None = None
        self._shadow_diff: Histogram | None = None
        # Label lookups cost more than the increments; keep the children.
        self._children: dict[tuple[str, int | str, str], tuple[Counter, Histogram]] = {}

    def observe(
        self, endpoint: str, status: int | str, seconds: float, protocol: str = "http"
    ) -> None:
        key = (endpoint, status, protocol)
        children = self._children.get(key)
        if children is None:
            values = (self._model, self._version, endpoint, str(status), protocol)
            children = (self._requests.labels(*values), self._latency.labels(*values))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def rejected(self, endpoint: str, protocol: str = "http") -> None:
        self._rejected.labels(self._model, self._version, endpoint, "overloaded", protocol).inc()

    def started(self) -> None:
        self._in_flight.inc()

    def finished(self) -> None:
        self._in_flight.dec()

    def batched(self, rows: int, requests: int) -> None:
        """One prediction made by `modelreg.runtime.batching`."""
        self._batch_rows.observe(rows)
        self._batch_requests.observe(requests)

    def set_batch_max_size(self, rows: int) -> None:
        self._batch_max_size.set(rows)

    def set_ready(self, ready: bool) -> None:
        self._ready.set(1 if ready else 0)

    def enable_shadow(self, version: int) -> None:
        """Register the shadow metrics (`modelreg.runtime.shadow`), every outcome at 0."""
        v = str(version)
        requests = Counter(
            "modelreg_shadow_requests",
            "Inference requests mirrored to the shadow version, by outcome: agree, disagree, "
            "error (the shadow failed, timed out or was unreachable), dropped (not sent: "
            "MODELREG_SHADOW_MAX_IN_FLIGHT in flight), other_version (answered by another "
            "version, not compared).",
            ("version", "outcome"),
            registry=self.registry,
        )
        self._shadow = {o: requests.labels(v, o) for o in SHADOW_OUTCOMES}
        self._shadow_latency = Histogram(
            "modelreg_shadow_request_duration_seconds",
            "Round trip of the mirrored requests that the shadow answered.",
            ("version",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        ).labels(v)
        self._shadow_diff = Histogram(
            "modelreg_shadow_max_abs_difference",
            "Largest absolute difference between the shadow's numeric outputs and the serving "
            "version's, per compared request.",
            ("version",),
            buckets=DIFF_BUCKETS,
            registry=self.registry,
        ).labels(v)

    def shadowed(
        self, outcome: str, seconds: float | None = None, diff: float | None = None
    ) -> None:
        self._shadow[outcome].inc()
        if seconds is not None and self._shadow_latency is not None:
            self._shadow_latency.observe(seconds)
        if diff is not None and self._shadow_diff is not None:
            self._shadow_diff.observe(diff)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
