"""The custom metrics API that `modelreg.metricsapi` serves (custom.metrics.k8s.io/v1beta2): the
arithmetic of its one metric and the bodies it answers with. Pure: no I/O, no clock.

`modelreg_requests_in_flight` is, per serving pod, the average number of inference requests in
the pod (read, queued or running) over the window since the previous reading of that pod. By
Little's law that average is the time spent in the pod by the requests answered in the window,
divided by the window: the growth of the runtime's request-duration histogram's `_sum`
(endpoint="infer", every status and protocol) over the elapsed time. It is what KServe and
Knative call concurrency. The gauge `modelreg_runtime_requests_in_flight` of that moment stands
in when there is no window yet: a pod's first reading, a reading too soon after the previous one
or long after it, or after the pod's counters restarted.

The HorizontalPodAutoscaler reads it as a Pods metric (`spec.serving.autoscaling.targetInFlight`,
`modelreg.lifecycle.builders.build_autoscaler`) about every 15 seconds, which is the window.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

GROUP = "custom.metrics.k8s.io"
VERSION = "v1beta2"
GROUP_VERSION = f"{GROUP}/{VERSION}"
APISERVICE = f"{VERSION}.{GROUP}"
IN_FLIGHT = "modelreg_requests_in_flight"
METRICS = (IN_FLIGHT,)

DURATION_SUM = "modelreg_runtime_request_duration_seconds_sum"
GAUGE = "modelreg_runtime_requests_in_flight"
ENDPOINT = "infer"
MIN_WINDOW = 1.0  # seconds: a shorter window says more about chance than about load
MAX_WINDOW = 300.0  # seconds: an older reading describes another load

Body = dict[str, Any]


@dataclass(frozen=True)
class Reading:
    """What one scrape of a serving pod's /metrics says about the requests in it."""

    busy_seconds: float  # the request-duration _sum, endpoint="infer": cumulative
    in_flight: float  # the gauge at the scrape


@dataclass(frozen=True)
class Sample:
    at: float  # the reader's monotonic clock, seconds
    reading: Reading


def parse(text: str) -> Reading:
    """The reading of a Prometheus text exposition from the modelreg runtime.

    Raises ValueError when the text is not an exposition, or lacks the runtime's gauge (not the
    modelreg runtime). A runtime that has answered no request yet has no `_sum` sample: 0.
    """
    busy = 0.0
    gauge: float | None = None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == DURATION_SUM and sample.labels.get("endpoint") == ENDPOINT:
                    busy += _finite(sample.value)
                elif sample.name == GAUGE:
                    gauge = (gauge or 0.0) + _finite(sample.value)
    except (ValueError, KeyError, IndexError, TypeError) as e:  # the parser's, on odd input
        raise ValueError(f"not a Prometheus text exposition: {e}") from e
    if gauge is None:
        raise ValueError(f"the metrics have no {GAUGE}: not the modelreg runtime's /metrics")
    return Reading(busy_seconds=busy, in_flight=max(gauge, 0.0))


def average_in_flight(previous: Sample | None, now: Sample) -> tuple[float, float]:
    """(requests in flight, window in seconds) for a pod read at `now` and before at `previous`.

    The window is 0 when the gauge stands in (see the module docstring)."""
    if previous is not None:
        window = now.at - previous.at
        busy = now.reading.busy_seconds - previous.reading.busy_seconds
        if MIN_WINDOW <= window <= MAX_WINDOW and busy >= 0:
            return busy / window, window
    return now.reading.in_flight, 0.0


def keep(previous: Sample | None, now: Sample) -> Sample:
    """The sample to measure the next window from: `now`, unless `previous` is so recent that
    the next reading would have too short a window (two readers a moment apart)."""
    if previous is not None and 0 <= now.at - previous.at < MIN_WINDOW:
        return previous
    return now


def quantity(value: float) -> str:
    """A Kubernetes quantity for `value`, exact to a thousandth: 2 -> "2", 1.5 -> "1500m"."""
    milli = round(value * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def resource_list() -> Body:
    """The discovery document of the group version: one Pods metric."""
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {
                "name": f"pods/{name}",
                "singularName": "",
                "namespaced": True,
                "kind": "MetricValueList",
                "verbs": ["get"],
            }
            for name in METRICS
        ],
    }


def api_group() -> Body:
    version = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [version],
        "preferredVersion": version,
    }


def api_group_list() -> Body:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group()]}


@dataclass(frozen=True)
class PodValue:
    pod: str
    value: float
    window: float
    timestamp: str  # RFC 3339, UTC


def metric_value_list(namespace: str, metric: str, values: Iterable[PodValue]) -> Body:
    """The answer to GET .../namespaces/{namespace}/pods/{name or *}/{metric}."""
    return {
        "kind": "MetricValueList",
        "apiVersion": GROUP_VERSION,
        "metadata": {},
        "items": [
            {
                "describedObject": {
                    "kind": "Pod",
                    "namespace": namespace,
                    "name": v.pod,
                    "apiVersion": "/v1",
                },
                "metric": {"name": metric},
                "timestamp": v.timestamp,
                "windowSeconds": round(v.window),
                "value": quantity(v.value),
            }
            for v in values
        ],
    }


def status(code: int, reason: str, message: str) -> Body:
    """A metav1 Status, as every Kubernetes API server answers an error."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"a sample has the value {value}")
    return float(value)
