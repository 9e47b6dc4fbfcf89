"""Shadow mirroring (runtime/shadow.py) between real model servers on 127.0.0.1: a serving one
with MODELREG_SHADOW_* and a shadow one, REST and gRPC; plain aiohttp servers stand in for a
shadow that fails or is slow. The serving pod's /metrics is read as the operator reads it
(`lifecycle.analysis.parse_shadow`)."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
import pytest
from aiohttp import web
from pydantic import ValidationError

from modelreg.lifecycle.analysis import parse_shadow
from modelreg.runtime.codec import InputTensor
from modelreg.runtime.proto import grpc_predict_v2_pb2 as pb
from modelreg.runtime.settings import RuntimeSettings
from modelreg.runtime.shadow import compare
from tests.unit.runtime.conftest import Artifacts, Running, serve, settings_for, wait_for

SHADOW_VERSION = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def body(artifacts: Artifacts, rows: int = 2) -> bytes:
    x = artifacts.X[:rows].astype(np.float32)
    doc = {
        "inputs": [
            {"name": "X", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}
        ]
    }
    return orjson.dumps(doc)


def counts(live: Running) -> dict[str, int]:
    text = live.server.metrics.render()[0].decode()
    c = parse_shadow(text, SHADOW_VERSION)
    out = {"agree": c.requests - c.errors - c.mismatches, "disagree": c.mismatches}
    out["error"], out["dropped"] = c.errors, c.dropped
    for line in text.splitlines():
        if line.startswith("modelreg_shadow_requests_total") and 'outcome="other_version"' in line:
            out["other_version"] = int(float(line.rsplit(" ", 1)[1]))
    return out


def settle(live: Running, done: Callable[[dict[str, int]], bool], what: str) -> dict[str, int]:
    wait_for(lambda: done(counts(live)), timeout=20, what=what)
    return counts(live)


@contextmanager
def shadow_server(artifacts: Artifacts, key: str = "onnx", **kw: Any) -> Iterator[Running]:
    with serve(settings_for(artifacts[key], model_version=SHADOW_VERSION, **kw)) as running:
        assert running.plane.state == "ready", running.plane.detail
        yield running


@contextmanager
def live_server(artifacts: Artifacts, url: str, **kw: Any) -> Iterator[Running]:
    settings = settings_for(
        artifacts["onnx"],
        shadow_url=url,
        shadow_version=kw.pop("shadow_version", SHADOW_VERSION),
        shadow_sample_percent=kw.pop("sample", 100),
        **kw,
    )
    with serve(settings) as running:
        assert running.plane.state == "ready", running.plane.detail
        yield running


@contextmanager
def fake_shadow(handler: Callable[[web.Request], Any]) -> Iterator[str]:
    """A plain HTTP server in a thread answering every infer with `handler`."""
    port = free_port()
    started = threading.Event()
    loop = asyncio.new_event_loop()
    runner: web.AppRunner | None = None

    async def start() -> None:
        nonlocal runner
        app = web.Application()
        app.router.add_post("/v2/models/{name}/infer", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        started.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()))
    thread.start()
    started.wait(10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        assert runner is not None
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def infer(live: Running, data: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    r = httpx.post(
        f"{live.url}/v2/models/iris/infer",
        content=data,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    assert r.status_code == 200, r.text
    return r


# ------------------------------------------------------------------------------------------------


def test_the_same_model_agrees_on_every_request_in_every_encoding(artifacts: Artifacts) -> None:
    with shadow_server(artifacts) as shadow, live_server(artifacts, shadow.url) as live:
        for _ in range(6):
            infer(live, body(artifacts))
        infer(live, gzip.compress(body(artifacts, 3)), {"Content-Encoding": "gzip"})
        x = artifacts.X[:2].astype(np.float32)
        header = orjson.dumps(
            {
                "inputs": [
                    {
                        "name": "X",
                        "datatype": "FP32",
                        "shape": [2, 4],
                        "parameters": {"binary_data_size": x.nbytes},
                    }
                ],
                "parameters": {"binary_data_output": True},
            }
        )
        r = httpx.post(
            f"{live.url}/v2/models/iris/infer",
            content=header + x.tobytes(),
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
        assert r.status_code == 200, r.text
        assert "inference-header-content-length" in r.headers  # a binary answer, compared too
        got = settle(live, lambda c: c["agree"] >= 8, "8 agreeing mirrors")
        assert got == {"agree": 8, "disagree": 0, "error": 0, "dropped": 0, "other_version": 0}
        text = live.server.metrics.render()[0].decode()
        assert 'modelreg_shadow_max_abs_difference_bucket{le="0.0",version="4"} 8.0' in text
        assert (
            f'modelreg_shadow_request_duration_seconds_count{{version="{SHADOW_VERSION}"}} 8.0'
            in text
        )


def test_another_model_disagrees_and_another_version_is_not_compared(artifacts: Artifacts) -> None:
    # The ZipMap export answers with other outputs than the plain one: not the same answer.
    with (
        shadow_server(artifacts, "onnx-zipmap") as shadow,
        live_server(artifacts, shadow.url) as live,
    ):
        for _ in range(4):
            infer(live, body(artifacts))
        got = settle(live, lambda c: c["disagree"] >= 4, "4 disagreements")
        assert (got["agree"], got["disagree"]) == (0, 4)
    with (
        shadow_server(artifacts) as shadow,
        live_server(artifacts, shadow.url, shadow_version=9) as live,
    ):
        infer(live, body(artifacts))
        text = live.server.metrics.render()[0].decode()
        wait_for(
            lambda: (
                'outcome="other_version",version="9"} 1.0'
                in live.server.metrics.render()[0].decode()
            ),
            what="other_version",
        )
        assert parse_shadow(text, 9).requests == 0


def test_a_failing_or_unreachable_shadow_counts_errors_and_the_live_answer_is_unchanged(
    artifacts: Artifacts,
) -> None:
    async def fail(request: web.Request) -> web.Response:
        return web.json_response({"error": "boom"}, status=500)

    with fake_shadow(fail) as url, live_server(artifacts, url) as live:
        r = infer(live, body(artifacts))
        assert r.json()["model_version"] == "3"
        assert settle(live, lambda c: c["error"] >= 1, "an error")["error"] == 1
    with live_server(artifacts, f"http://127.0.0.1:{free_port()}") as live:  # nobody listens
        infer(live, body(artifacts))
        assert settle(live, lambda c: c["error"] >= 1, "an error")["error"] == 1


def test_a_slow_shadow_never_delays_live_answers_and_extra_mirrors_are_dropped(
    artifacts: Artifacts,
) -> None:
    release = threading.Event()
    answered: list[int] = []

    async def slow(request: web.Request) -> web.Response:
        # Held until every live request has its answer: none of them can have waited for it.
        await asyncio.to_thread(release.wait, 30)
        answered.append(1)
        return web.json_response({"error": "late"}, status=500)

    with fake_shadow(slow) as url, live_server(artifacts, url, shadow_max_in_flight=1) as live:
        for _ in range(20):
            infer(live, body(artifacts))
        # All 20 answered while the first mirror is still held; the other 19 found the bound.
        assert answered == []
        release.set()
        got = settle(live, lambda c: c["error"] >= 1, "the slow mirror to end")
        assert (got["dropped"], got["error"]) == (19, 1)


def test_sampling_is_exact(artifacts: Artifacts) -> None:
    with shadow_server(artifacts) as shadow, live_server(artifacts, shadow.url, sample=25) as live:
        for _ in range(40):
            infer(live, body(artifacts))
        got = settle(live, lambda c: c["agree"] >= 10, "10 mirrors")
        time.sleep(0.3)
        assert counts(live)["agree"] == 10, got


def test_grpc_requests_are_mirrored_over_grpc(artifacts: Artifacts) -> None:
    sport, lport = free_port(), free_port()
    with (
        shadow_server(artifacts, grpc_port=sport) as shadow,
        live_server(
            artifacts, shadow.url, grpc_port=lport, shadow_grpc_target=f"127.0.0.1:{sport}"
        ) as live,
    ):
        x = artifacts.X[:2].astype(np.float32)
        request = pb.ModelInferRequest(model_name="iris")
        tensor = request.inputs.add(name="X", datatype="FP32", shape=[2, 4])
        tensor.contents.fp32_contents.extend(x.ravel().tolist())
        with grpc.insecure_channel(f"127.0.0.1:{lport}") as channel:
            call = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            for _ in range(3):
                reply = call(request, timeout=10)
                assert reply.model_version == "3"
        got = settle(live, lambda c: c["agree"] >= 3, "3 gRPC mirrors")
        assert (got["agree"], got["error"]) == (3, 0)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"shadow_url": "https://x:80", "shadow_version": 2},
            "MODELREG_SHADOW_URL must be http://",
        ),
        ({"shadow_url": "http://x:80/v2", "shadow_version": 2}, "with no path"),
        ({"shadow_url": "http://x:80"}, "MODELREG_SHADOW_VERSION is required"),
        (
            {"shadow_url": "http://x:80", "shadow_version": 2, "shadow_sample_percent": 0},
            "greater than 0",
        ),
        (
            {"shadow_url": "http://x:80", "shadow_version": 2, "shadow_sample_percent": 150},
            "less than or equal to 100",
        ),
        ({"shadow_grpc_target": "x"}, "MODELREG_SHADOW_GRPC_TARGET must be host:port"),
    ],
)
def test_bad_shadow_settings_say_what_is_wrong(
    artifacts: Artifacts, values: dict[str, Any], message: str
) -> None:
    base = settings_for(artifacts["onnx"]).model_dump()
    with pytest.raises(ValidationError, match=message):
        RuntimeSettings(**{**base, **values})


def t(name: str, datatype: str, values: Any) -> InputTensor:
    return InputTensor(name, datatype, np.asarray(values))


@pytest.mark.parametrize(
    ("live", "shadow", "agree"),
    [
        ([t("p", "FP32", [0.5, 0.25])], [t("p", "FP32", [0.5, 0.25 + 1e-7])], True),
        ([t("p", "FP32", [0.5, 0.25])], [t("p", "FP32", [0.5, 0.2501])], False),
        ([t("p", "FP64", [np.nan, 1.0])], [t("p", "FP64", [np.nan, 1.0])], True),
        ([t("p", "FP64", [np.nan, 1.0])], [t("p", "FP64", [0.0, 1.0])], False),
        ([t("label", "INT64", [1, 2])], [t("label", "INT64", [1, 2])], True),
        ([t("label", "INT64", [1, 2])], [t("label", "INT64", [1, 3])], False),
        (
            [t("s", "BYTES", np.array([b"a"], dtype=object))],
            [t("s", "BYTES", np.array([b"a"], dtype=object))],
            True,
        ),
        (
            [t("s", "BYTES", np.array([b"a"], dtype=object))],
            [t("s", "BYTES", np.array([b"b"], dtype=object))],
            False,
        ),
        ([t("p", "FP32", [1.0, 2.0])], [t("p", "FP32", [[1.0, 2.0]])], False),
        ([t("p", "FP32", [1.0])], [t("q", "FP32", [1.0])], False),
        ([t("p", "FP32", [1.0])], [t("p", "FP64", [1.0])], False),
    ],
)
def test_compare(live: list[InputTensor], shadow: list[InputTensor], agree: bool) -> None:
    verdict = compare(live, shadow, 1e-6)
    assert verdict.agree is agree, verdict
    if not agree:
        assert verdict.why


def test_compare_reports_the_largest_difference() -> None:
    v = compare([t("p", "FP32", [1.0, 2.0])], [t("p", "FP32", [1.5, 2.0])], 1.0)
    assert (v.agree, v.max_abs_diff) == (True, 0.5)
