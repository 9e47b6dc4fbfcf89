"""Canary analysis arithmetic (lifecycle/analysis.py): `parse` on the exposition of a real model
server that answered good and failing requests over HTTP and gRPC, and on the runtime's own
metrics for the statuses a test cannot provoke cheaply (overload, cancellations); `window` and
`quantile` on hand-computed tables."""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from modelreg.lifecycle.analysis import (
    Counters,
    Figures,
    parse,
    parse_shadow,
    quantile,
    restarted,
    window,
)
from modelreg.runtime.metrics import LATENCY_BUCKETS, Metrics
from modelreg.runtime.proto import grpc_predict_v2_pb2 as pb
from tests.unit.runtime.conftest import Artifact, Running, serve, settings_for, sha256_of

INF = math.inf
MODEL = "reshaper"


def _reshape_model(path: Path) -> Path:
    """ONNX: X [n, 4] -> Y, X reshaped to [3, -1]. Any n that is a multiple of 3 works; any other
    makes onnxruntime fail while running (not an invalid argument): the runtime's 500."""
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [3, -1])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["X", "shape"], ["Y"])],
        "reshaper",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [3, None])],
        initializer=[shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def runtime(tmp_path: Path) -> Iterator[Running]:
    """A real model server (HTTP and gRPC on 127.0.0.1) serving the reshape model as MODEL."""
    path = _reshape_model(tmp_path / "reshaper.onnx")
    art = Artifact(path, "onnx", sha256_of(path), None)
    settings = settings_for(art, model_name=MODEL, grpc_port=_free_port())
    with serve(settings) as running:
        assert running.plane.state == "ready", running.plane.detail
        yield running


def infer_http(url: str, rows: int, model: str = MODEL) -> int:
    """POST rows of zeros to the model's infer endpoint; the HTTP status."""
    doc = {
        "inputs": [{"name": "X", "shape": [rows, 4], "datatype": "FP32", "data": [0.0] * rows * 4}]
    }
    return httpx.post(
        f"{url}/v2/models/{model}/infer", content=orjson.dumps(doc), timeout=10
    ).status_code


def _infer_grpc(channel: grpc.Channel, rows: int, model: str = MODEL) -> str:
    call = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=pb.ModelInferResponse.FromString,
    )
    request = pb.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="X", datatype="FP32", shape=[rows, 4])
    tensor.contents.fp32_contents.extend([0.0] * rows * 4)
    try:
        call(request, timeout=10)
    except grpc.RpcError as e:
        return str(e.code().name)
    return "OK"


# ------------------------------------------------------------------------------------------------
# parse


def test_parse_counts_what_a_real_runtime_answered(tmp_path: Path) -> None:
    with runtime(tmp_path) as running:
        url = running.url
        assert parse(httpx.get(url + "/metrics").text) == Counters(0, 0, ())

        http = [infer_http(url, 3), infer_http(url, 3), infer_http(url, 6), infer_http(url, 1)]
        http += [infer_http(url, 2), infer_http(url, 3, model="nosuch")]
        bad = httpx.post(f"{url}/v2/models/{MODEL}/infer", content=b'{"inputs": []}', timeout=10)
        http.append(bad.status_code)
        assert http == [200, 200, 200, 500, 500, 404, 400]
        # Not inference: metadata and readiness are counted under other endpoints.
        assert httpx.get(f"{url}/v2/models/{MODEL}").status_code == 200
        assert httpx.get(f"{url}/v2/models/{MODEL}/ready").status_code == 200
        assert httpx.get(f"{url}/v2/models/nosuch").status_code == 404

        assert running.server.grpc is not None
        with grpc.insecure_channel(f"127.0.0.1:{running.server.grpc.port}") as channel:
            codes = [_infer_grpc(channel, 3), _infer_grpc(channel, 1)]
            codes += [_infer_grpc(channel, 3, model="nosuch")]
        assert codes == ["OK", "INTERNAL", "NOT_FOUND"]

        got = parse(httpx.get(url + "/metrics").text)

    assert got.requests == len(http) + len(codes)
    assert got.errors == http.count(500) + codes.count("INTERNAL")
    assert [le for le, _ in got.buckets] == [*LATENCY_BUCKETS, INF]
    counts = [count for _, count in got.buckets]
    assert counts == sorted(counts)  # cumulative
    assert counts[-1] == got.requests


def _runtime_metrics() -> Metrics:
    """The runtime's metrics, fed the way modelreg.runtime.http and .grpc feed them."""
    m = Metrics("m", "7")
    for status in (200, 200, 404, 413, 429, 499):
        m.observe("infer", status, 0.001)
    m.observe("infer", 503, 0.001)  # not ready (NotReady)
    m.rejected("infer")
    m.observe("infer", 503, 0.001)  # overloaded (Overloaded): rejected and answered 503
    m.observe("infer", 500, 0.001)
    for code in ("OK", "INVALID_ARGUMENT", "NOT_FOUND", "CANCELLED"):
        m.observe("infer", code, 0.001, "grpc")
    m.observe("infer", "RESOURCE_EXHAUSTED", 0.001, "grpc")  # an oversized message: the client's
    m.rejected("infer", "grpc")
    m.observe("infer", "RESOURCE_EXHAUSTED", 0.001, "grpc")  # overloaded
    for code in ("INTERNAL", "UNKNOWN", "UNAVAILABLE", "DATA_LOSS", "DEADLINE_EXCEEDED"):
        m.observe("infer", code, 0.001, "grpc")
    # Other endpoints never count, whatever they answered.
    m.observe("metadata", 500, 0.001)
    m.observe("ready", "INTERNAL", 0.001, "grpc")
    m.rejected("metadata", "grpc")
    return m


def test_parse_classifies_server_failures_as_errors_in_both_protocols() -> None:
    got = parse(_runtime_metrics().render()[0].decode())
    assert got.requests == 9 + 11
    # HTTP: 503 twice (not ready, overloaded) and 500. gRPC: the overloaded RESOURCE_EXHAUSTED
    # and the five server codes; not the oversized message, nor anything the caller did.
    assert got.errors == 3 + 6
    assert got.buckets[-1] == (INF, 20)


def test_parse_refuses_text_without_the_runtime_metrics() -> None:
    registry = CollectorRegistry()
    Counter("http_requests", "another program's metrics", registry=registry).inc()
    with pytest.raises(ValueError, match="no modelreg_runtime_requests_total") as info:
        parse(generate_latest(registry).decode())
    assert "does not export its request metrics" in str(info.value)
    with pytest.raises(ValueError, match="no modelreg_runtime_requests_total"):
        parse("")
    with pytest.raises(ValueError, match="not a Prometheus text exposition"):
        parse("<html><body>502 Bad Gateway</body></html>\n")
    with pytest.raises(ValueError, match="a counter has the value -1"):
        parse('modelreg_runtime_requests_total{endpoint="infer",status="200"} -1\n')


def test_parse_names_the_missing_histogram() -> None:
    text = _runtime_metrics().render()[0].decode()
    without = "\n".join(
        line
        for line in text.splitlines()
        if "modelreg_runtime_request_duration_seconds" not in line
    )
    with pytest.raises(ValueError, match="no modelreg_runtime_request_duration_seconds_bucket"):
        parse(without + "\n")


# ------------------------------------------------------------------------------------------------
# window and quantile: hand-computed


def _c(requests: int, errors: int, *buckets: tuple[float, int]) -> Counters:
    return Counters(requests, errors, tuple(buckets))


A0 = _c(100, 1, (0.01, 80), (0.1, 100), (INF, 100))
A1 = _c(300, 5, (0.01, 200), (0.1, 300), (INF, 300))
B0 = _c(10, 0, (0.01, 10), (0.1, 10), (INF, 10))


@pytest.mark.parametrize(
    ("baseline", "now", "expected"),
    [
        pytest.param(
            # a: +200 requests, +4 errors; buckets +120 / +200 / +200. Rank 198 falls in
            # (0.01, 0.1]: 0.01 + 0.09 * (198 - 120) / (200 - 120) = 0.09775 s.
            {"a": A0},
            {"a": A1},
            Figures(200, 4, 97.75, 1),
            id="baseline-subtracted",
        ),
        pytest.param(
            # b started after the window opened: all of it counts. Rank 49.5 is beyond 0.1 (25):
            # the +Inf bucket, so the highest finite bound.
            {"a": A0},
            {"a": A0, "b": _c(50, 5, (0.01, 0), (0.1, 25), (INF, 50))},
            Figures(50, 5, 100.0, 2),
            id="new-pod-from-zero",
        ),
        pytest.param(
            # a's counters went down: restarted, its 40 count from zero. Rank 39.6 in the first
            # bucket, from 0: 0.01 * 39.6 / 40 = 0.0099 s.
            {"a": _c(1000, 10, (0.01, 900), (0.1, 1000), (INF, 1000))},
            {"a": _c(40, 2, (0.01, 40), (0.1, 40), (INF, 40))},
            Figures(40, 2, 9.9, 1),
            id="restarted-pod-from-zero",
        ),
        pytest.param(
            # a +100 (60 under 0.01), b +100 (40 under 0.01): 100 / 200 / 200. Rank 198:
            # 0.01 + 0.09 * 98 / 100 = 0.0982 s.
            {"a": _c(0, 0, (0.01, 0), (0.1, 0), (INF, 0)), "b": B0},
            {
                "a": _c(100, 1, (0.01, 60), (0.1, 100), (INF, 100)),
                "b": _c(110, 3, (0.01, 50), (0.1, 110), (INF, 110)),
            },
            Figures(200, 4, 98.2, 2),
            id="pods-summed",
        ),
        pytest.param({"a": A0, "b": B0}, {"a": A1}, Figures(200, 4, 97.75, 1), id="pod-gone"),
        pytest.param({"a": A0}, {"a": A0}, Figures(0, 0, None, 1), id="empty-window"),
        pytest.param({}, {}, Figures(0, 0, None, 0), id="no-pods"),
        pytest.param({}, {"a": Counters(0, 0, ())}, Figures(0, 0, None, 1), id="no-requests-yet"),
    ],
)
def test_window(baseline: dict[str, Counters], now: dict[str, Counters], expected: Figures) -> None:
    got = window(baseline, now)
    assert (got.requests, got.errors, got.pods) == (
        expected.requests,
        expected.errors,
        expected.pods,
    )
    if expected.p99_ms is None:
        assert got.p99_ms is None
    else:
        assert got.p99_ms == pytest.approx(expected.p99_ms)


def test_error_rate() -> None:
    assert window({"a": A0}, {"a": A1}).error_rate == pytest.approx(4 / 200)
    assert window({"a": A0}, {"a": A0}).error_rate is None


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.99, ((0.01, 50), (0.1, 90), (1.0, 100), (INF, 100)), 0.1 + 0.9 * 9 / 10),
        (0.5, ((0.01, 50), (0.1, 90), (1.0, 100), (INF, 100)), 0.01),
        (0.5, ((0.01, 0), (0.1, 100), (INF, 100)), 0.01 + 0.09 * 50 / 100),
        (0.99, ((0.1, 90), (INF, 100)), 0.1),  # in +Inf: the highest finite bound
        (0.99, ((0.01, 0), (INF, 0)), None),  # nothing observed
        (0.99, ((INF, 10),), None),  # no finite bound: nothing to say
        (0.99, (), None),
    ],
)
def test_quantile_interpolates_like_promql(
    q: float, buckets: tuple[tuple[float, int], ...], expected: float | None
) -> None:
    got = quantile(q, buckets)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_restarted_when_any_counter_goes_down() -> None:
    assert not restarted(A0, A1)
    assert not restarted(Counters(0, 0, ()), A0)
    assert restarted(A1, A0)
    assert restarted(A0, _c(100, 0, (0.01, 80), (0.1, 100), (INF, 100)))  # errors down
    assert restarted(A0, _c(100, 1, (0.01, 70), (0.1, 100), (INF, 100)))  # a bucket down
    assert restarted(A0, _c(100, 1, (0.05, 80), (0.1, 100), (INF, 100)))  # another layout


SHADOW_TEXT = """\
# HELP modelreg_shadow_requests_total Mirrored requests by outcome.
# TYPE modelreg_shadow_requests_total counter
modelreg_shadow_requests_total{outcome="agree",version="3"} 90.0
modelreg_shadow_requests_total{outcome="disagree",version="3"} 6.0
modelreg_shadow_requests_total{outcome="error",version="3"} 4.0
modelreg_shadow_requests_total{outcome="dropped",version="3"} 7.0
modelreg_shadow_requests_total{outcome="other_version",version="3"} 2.0
modelreg_shadow_requests_total{outcome="agree",version="2"} 500.0
# TYPE modelreg_shadow_request_duration_seconds histogram
modelreg_shadow_request_duration_seconds_bucket{le="0.005",version="3"} 50.0
modelreg_shadow_request_duration_seconds_bucket{le="0.01",version="3"} 100.0
modelreg_shadow_request_duration_seconds_bucket{le="+Inf",version="3"} 102.0
modelreg_shadow_request_duration_seconds_count{version="3"} 102.0
modelreg_shadow_request_duration_seconds_sum{version="3"} 0.6
"""


def test_parse_shadow_counts_the_outcomes_of_one_shadow_version() -> None:
    c = parse_shadow(SHADOW_TEXT, 3)
    # requests: answered or failed; other_version is not compared, dropped was never sent
    assert (c.requests, c.errors, c.mismatches, c.dropped) == (100, 4, 6, 7)
    assert c.buckets == ((0.005, 50), (0.01, 100), (math.inf, 102))
    other = parse_shadow(SHADOW_TEXT, 2)
    assert (other.requests, other.errors, other.mismatches) == (500, 0, 0)
    # A pod that does not mirror (yet) exports none of it: zeros, not an error.
    assert parse_shadow("# nothing here\n", 3) == Counters(0, 0, ())
    figures = window({}, {"a": c, "b": other})
    assert (figures.requests, figures.mismatches, figures.dropped) == (600, 6, 7)


def test_parse_shadow_refuses_what_is_not_an_exposition() -> None:
    with pytest.raises(ValueError, match="not a Prometheus text exposition"):
        parse_shadow('modelreg_shadow_requests_total{outcome="agree",version="3"} -1\n', 3)
