"""The custom metrics API's arithmetic (modelreg.lifecycle.custom_metrics), on the runtime's own
/metrics as `modelreg.runtime.metrics` writes them."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from modelreg.lifecycle import custom_metrics as cm
from modelreg.runtime.metrics import Metrics


def exposition(durations: list[float], in_flight: int = 0) -> str:
    m = Metrics("m", "1")
    for seconds in durations:
        m.observe("infer", 200, seconds)
    m.observe("ready", 200, 100.0)  # not an inference: never counted
    for _ in range(in_flight):
        m.started()
    return generate_latest(m.registry).decode()


def test_a_reading_is_the_inference_time_and_the_gauge() -> None:
    r = cm.parse(exposition([0.5, 0.25], in_flight=3))
    assert r == cm.Reading(busy_seconds=0.75, in_flight=3.0)
    assert cm.parse(exposition([])) == cm.Reading(0.0, 0.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# TYPE x counter\nx_total 1\n", "no modelreg_runtime_requests_in_flight"),
        ("x{{{ 1\n", "not a Prometheus text exposition"),
    ],
)
def test_other_metrics_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cm.parse(text)


def test_the_average_is_littles_law_over_the_window() -> None:
    before = cm.Sample(100.0, cm.Reading(busy_seconds=10.0, in_flight=0))
    after = cm.Sample(115.0, cm.Reading(busy_seconds=40.0, in_flight=1))
    # 30 s spent in the pod by requests answered within 15 s: 2 in flight on average.
    assert cm.average_in_flight(before, after) == (2.0, 15.0)


@pytest.mark.parametrize(
    ("previous", "why"),
    [
        (None, "a pod's first reading"),
        (cm.Sample(114.5, cm.Reading(39.0, 0)), "too soon after the previous"),
        (cm.Sample(115.0 - 301, cm.Reading(1.0, 0)), "long after it"),
        (cm.Sample(100.0, cm.Reading(99.0, 0)), "the counters restarted"),
    ],
)
def test_the_gauge_stands_in_without_a_window(previous: cm.Sample | None, why: str) -> None:
    now = cm.Sample(115.0, cm.Reading(busy_seconds=40.0, in_flight=4))
    assert cm.average_in_flight(previous, now) == (4.0, 0.0), why


def test_a_reader_a_moment_after_another_keeps_the_older_sample() -> None:
    old = cm.Sample(100.0, cm.Reading(1.0, 0))
    soon = cm.Sample(100.5, cm.Reading(1.2, 0))
    later = cm.Sample(115.0, cm.Reading(5.0, 0))
    assert cm.keep(old, soon) is old
    assert cm.keep(old, later) is later
    assert cm.keep(None, soon) is soon


@pytest.mark.parametrize(
    ("value", "text"), [(2, "2"), (1.5, "1500m"), (0, "0"), (0.0004, "0"), (12.3456, "12346m")]
)
def test_quantities_are_exact_to_a_thousandth(value: float, text: str) -> None:
    assert cm.quantity(value) == text


def test_the_bodies_are_the_api_machinerys() -> None:
    assert cm.resource_list()["resources"][0]["name"] == "pods/modelreg_requests_in_flight"
    assert cm.api_group()["preferredVersion"]["groupVersion"] == "custom.metrics.k8s.io/v1beta2"
    listed = cm.metric_value_list("ns", cm.IN_FLIGHT, [cm.PodValue("p", 1.25, 15.2, "T")])
    assert listed["items"] == [
        {
            "describedObject": {"kind": "Pod", "namespace": "ns", "name": "p", "apiVersion": "/v1"},
            "metric": {"name": "modelreg_requests_in_flight"},
            "timestamp": "T",
            "windowSeconds": 15,
            "value": "1250m",
        }
    ]
