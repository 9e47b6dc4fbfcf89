"""The bounded executor: admission (503 with Retry-After when workers and queue are full, by count
or by the bytes of the bodies waiting), slots, worker processes for large JSON, and what stays on
the event loop. Real servers on 127.0.0.1, real worker processes; the e2e flood is
tests/e2e/test_runtime_overload.py."""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import orjson
import pytest

from modelreg.runtime import codec
from modelreg.runtime.dataplane import DataPlane
from modelreg.runtime.errors import Overloaded
from modelreg.runtime.executor import Executor
from modelreg.runtime.server import main
from modelreg.runtime.settings import MIB
from tests.unit.runtime.conftest import Artifacts, Running, serve, settings_for, wait_for

INFER = "/v2/models/iris/infer"


def _body(rows: np.ndarray[Any, Any]) -> bytes:
    return orjson.dumps(
        {
            "inputs": [
                {"name": "X", "shape": list(rows.shape), "datatype": "FP32", "data": rows.tolist()}
            ]
        }
    )


def _rows(n: int) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(n)
    return (rng.random((n, 4)) * [4, 2, 5, 2] + [4, 2, 1, 0.1]).astype(np.float32)


def _labels(artifacts: Artifacts, rows: np.ndarray[Any, Any]) -> list[int]:
    sess = ort.InferenceSession(str(artifacts["onnx"].path), providers=["CPUExecutionProvider"])
    return list(sess.run(["label"], {"X": rows})[0].tolist())


def _metric(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics", timeout=5).text
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name)]
    return sum(values)


# ------------------------------------------------------------------------------------------------
# Admission and slots, on their own


def test_admission_refuses_beyond_workers_plus_queue() -> None:
    ex = Executor(workers=2, max_queue=1, retry_after=7, process_min_bytes=0)
    held = [ex.admit() for _ in range(3)]
    assert ex.admitted == 3
    with pytest.raises(Overloaded) as info:
        ex.admit()
    assert info.value.status == 503
    assert info.value.retry_after == 7
    assert "MODELREG_WORKERS" in info.value.message
    assert "MODELREG_MAX_QUEUE" in info.value.message
    held[0].release()
    held[0].release()  # releasing twice frees one place, not two
    assert ex.admitted == 2
    with ex.admit():
        assert ex.admitted == 3
        with pytest.raises(Overloaded):
            ex.admit()
    assert ex.admitted == 2
    ex.close()


def test_a_queue_of_zero_admits_exactly_the_workers() -> None:
    ex = Executor(workers=1, max_queue=0, retry_after=1, process_min_bytes=0)
    with ex.admit(), pytest.raises(Overloaded):
        ex.admit()
    ex.admit().release()
    ex.close()


def test_the_bytes_of_waiting_bodies_are_bounded() -> None:
    ex = Executor(workers=1, max_queue=10, max_queue_bytes=1000, retry_after=4, process_min_bytes=0)
    # Alone, a body larger than the whole bound is admitted all the same.
    big = ex.admit(5000)
    assert ex.waiting_bytes == 5000
    with pytest.raises(Overloaded) as info:
        ex.admit(10)
    message = info.value.message
    assert info.value.retry_after == 4
    assert "MODELREG_MAX_QUEUE_BYTES (1000 bytes)" in message
    assert "hold 5000 bytes" in message
    assert "this one's 10 bytes" in message
    assert "MODELREG_MAX_REQUEST_BYTES" in message
    assert ex.admitted == 1
    big.release()
    assert (ex.admitted, ex.waiting_bytes) == (0, 0)
    held = [ex.admit(600), ex.admit(400)]  # exactly the bound
    with pytest.raises(Overloaded, match="MODELREG_MAX_QUEUE_BYTES"):
        ex.admit(1)
    ex.admit(0).release()  # a body of nothing always fits
    for a in held:
        a.release()
        a.release()  # once only
    assert (ex.admitted, ex.waiting_bytes) == (0, 0)
    ex.close()


def test_a_running_request_leaves_the_byte_queue() -> None:
    async def scenario() -> list[int]:
        ex = Executor(
            workers=1, max_queue=10, max_queue_bytes=1000, retry_after=1, process_min_bytes=0
        )
        seen = []
        with ex.admit(900) as first, ex.admit(100):
            seen.append(ex.waiting_bytes)
            async with ex.slot(first):
                seen.append(ex.waiting_bytes)  # only the second waits now
                with ex.admit(900):
                    seen.append(ex.waiting_bytes)
                    with pytest.raises(Overloaded, match="MODELREG_MAX_QUEUE_BYTES"):
                        ex.admit(1)
            seen.append(ex.waiting_bytes)  # back in the queue: its body is still held
            async with ex.slot():  # a slot for no request in particular (a batch's) moves none
                seen.append(ex.waiting_bytes)
        seen.append(ex.waiting_bytes)
        ex.close()
        return seen

    assert asyncio.run(scenario()) == [1000, 100, 1000, 1000, 1000, 0]


def test_count_and_byte_refusals_say_which_limit(artifacts: Artifacts) -> None:
    """The default count is generous (2 workers + 256 waiting); a refusal names its limit."""
    settings = settings_for(artifacts["onnx"])
    assert (settings.workers, settings.max_queue, settings.max_queue_bytes) == (2, 256, 256 * MIB)

    async def scenario() -> tuple[int, str, str]:
        plane = DataPlane(settings)
        await plane.load()
        try:
            length = settings.inline_max_bytes + 1  # above the inline limit: admitted
            held = [plane.admit("iris", None, length, b"") for _ in range(2 + 256)]
            admitted = plane.executor.admitted
            with pytest.raises(Overloaded) as by_count:
                plane.admit("iris", None, length, b"")
            for a in held:
                assert a is not None
                a.release()
            # Chunked (no Content-Length): counted as MODELREG_MAX_REQUEST_BYTES (16 MiB).
            held = [plane.admit("iris", None, None, b"") for _ in range(16)]
            with pytest.raises(Overloaded) as by_bytes:
                plane.admit("iris", None, None, b"")
            for a in held:
                assert a is not None
                a.release()
            return admitted, by_count.value.message, by_bytes.value.message
        finally:
            plane.close()

    admitted, count, size = asyncio.run(scenario())
    assert admitted == 258
    assert "MODELREG_WORKERS (2) + MODELREG_MAX_QUEUE (256)" in count
    assert "MODELREG_MAX_QUEUE_BYTES" not in count
    assert "hold 256.0 MiB" in size
    assert "this one's 16.0 MiB" in size
    assert "MODELREG_MAX_QUEUE_BYTES (256.0 MiB" in size


def test_messages_of_another_wire_format_count_their_bytes(artifacts: Artifacts) -> None:
    """`DataPlane.infer_message` (gRPC) is admitted by its message size, under the same bound."""
    settings = settings_for(artifacts["onnx"], max_queue_bytes=1000)
    body = _body(_rows(300))
    assert len(body) > settings.inline_max_bytes

    def decode() -> codec.InferRequest:
        return codec.decode_request(body)

    def encode(request: codec.InferRequest, outputs: list[codec.OutputTensor]) -> list[str]:
        return [o.name for o in outputs]

    async def scenario() -> tuple[str, list[str]]:
        plane = DataPlane(settings)
        await plane.load()
        try:
            with plane.executor.admit(1), pytest.raises(Overloaded) as refused:
                await plane.infer_message("iris", None, len(body), decode, encode)
            answer = await plane.infer_message("iris", None, len(body), decode, encode)
            return refused.value.message, answer
        finally:
            plane.close()

    message, answer = asyncio.run(scenario())
    assert f"this one's {len(body)} bytes" in message
    assert "MODELREG_MAX_QUEUE_BYTES (1000 bytes)" in message
    assert answer == ["label", "probabilities"]


def test_slots_run_at_most_workers_in_arrival_order() -> None:
    async def scenario() -> tuple[int, list[int], int]:
        ex = Executor(workers=2, max_queue=3, retry_after=1, process_min_bytes=0)
        gate = asyncio.Event()
        both_running = asyncio.Event()
        peak = 0
        order: list[int] = []

        async def request(i: int) -> None:
            nonlocal peak
            with ex.admit():
                async with ex.slot():
                    peak = max(peak, ex.running)
                    order.append(i)
                    if len(order) == 2:
                        both_running.set()
                    await gate.wait()
                    # Work in a real worker thread while holding the slot.
                    await ex.thread(time.sleep, 0.01)

        tasks = [asyncio.create_task(request(i)) for i in range(5)]
        await both_running.wait()
        await asyncio.sleep(0.05)  # the other three reached the semaphore by now
        queued = ex.queued
        assert len(order) == 2
        gate.set()
        await asyncio.gather(*tasks)
        ex.close()
        return peak, order, queued

    peak, order, queued = asyncio.run(scenario())
    assert peak == 2
    assert queued == 3
    assert order == [0, 1, 2, 3, 4]


def test_json_offload_threshold() -> None:
    ex = Executor(workers=1, max_queue=0, retry_after=1, process_min_bytes=1024)
    assert not ex.offloads(1024)
    assert ex.offloads(1025)
    ex.close()
    off = Executor(workers=1, max_queue=0, retry_after=1, process_min_bytes=0)
    assert not off.offloads(10**9)
    off.close()


# ------------------------------------------------------------------------------------------------
# Through HTTP: a full executor is 503 with Retry-After


class _SlowUpload:
    """A client that sends a large request's headers and only part of its body: admitted (its
    Content-Length is above MODELREG_INLINE_MAX_BYTES), holding its place until it sends the rest."""

    def __init__(self, url: str, body: bytes) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.body = body
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        head = (
            f"POST {INFER} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.sock.sendall(head + body[:1000])

    def finish(self) -> tuple[int, bytes]:
        self.sock.sendall(self.body[1000:])
        data = b""
        while b"\r\n\r\n" not in data:
            data += self.sock.recv(65536)
        head, rest = data.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        length = next(int(h.split(":")[1]) for h in lines if h.lower().startswith("content-length"))
        while len(rest) < length:
            rest += self.sock.recv(65536)
        self.sock.close()
        return status, rest


def test_full_executor_is_503_with_retry_after(artifacts: Artifacts) -> None:
    rows = _rows(2000)  # ~100 KiB of JSON: above the inline limit
    body = _body(rows)
    expected = _labels(artifacts, rows)
    settings = settings_for(artifacts["onnx"], workers=1, max_queue=0, retry_after_seconds=3)
    with serve(settings) as running:
        holder = _SlowUpload(running.url, body)
        wait_for(lambda: running.plane.executor.admitted == 1, what="the slow upload's admission")
        with httpx.Client(base_url=running.url, timeout=10) as client:
            refused = client.post(INFER, content=body)
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "3"
            assert refused.headers["content-type"] == "application/json"
            doc = refused.json()
            assert set(doc) == {"error"}
            assert "MODELREG_MAX_QUEUE" in doc["error"]
            # The refused body was discarded unread and the connection is still in step.
            assert client.get("/v2/health/live").json() == {"live": True}
            # A small request is answered on the event loop, outside the executor.
            small = client.post(INFER, content=_body(rows[:1]))
            assert small.status_code == 200, small.text
            assert small.json()["outputs"][0]["data"] == expected[:1]
            assert _metric(running.url, "modelreg_runtime_rejected_requests_total{") == 1
            assert _metric(running.url, "modelreg_runtime_requests_queued{") == 1

            status, answer = holder.finish()
            assert status == 200, answer[:300]
            assert orjson.loads(answer)["outputs"][0]["data"] == expected
            wait_for(lambda: running.plane.executor.admitted == 0, what="the place to free")
            again = client.post(INFER, content=body)
            assert again.status_code == 200, again.text
            assert again.json()["outputs"][0]["data"] == expected
            assert _metric(running.url, "modelreg_runtime_rejected_requests_total{") == 1


def test_compressed_and_chunked_requests_are_admitted_too(artifacts: Artifacts) -> None:
    rows = _rows(3)
    settings = settings_for(artifacts["onnx"], workers=1, max_queue=0)
    with serve(settings) as running:
        holder = _SlowUpload(running.url, _body(_rows(2000)))
        wait_for(lambda: running.plane.executor.admitted == 1, what="the slow upload's admission")
        # Tiny, but gzip could inflate it to MODELREG_MAX_REQUEST_BYTES: not answered inline.
        resp = httpx.post(
            running.url + INFER,
            content=gzip.compress(_body(rows)),
            headers={"Content-Encoding": "gzip"},
            timeout=10,
        )
        assert resp.status_code == 503, resp.text

        def chunks() -> Any:  # no Content-Length: its size is unknown until read
            yield _body(rows)

        resp = httpx.post(running.url + INFER, content=chunks(), timeout=10)
        assert resp.status_code == 503, resp.text
        holder.finish()
        wait_for(lambda: running.plane.executor.admitted == 0, what="the place to free")
        resp = httpx.post(
            running.url + INFER,
            content=gzip.compress(_body(rows)),
            headers={"Content-Encoding": "gzip"},
            timeout=10,
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["outputs"][0]["data"] == _labels(artifacts, rows)


def test_waiting_bodies_past_the_byte_bound_are_503(artifacts: Artifacts) -> None:
    """A large upload being read holds its bytes: the next large request is refused by the byte
    bound (not the count), a chunked one too (its size is unknown: MODELREG_MAX_REQUEST_BYTES),
    and small requests answered on the event loop still pass. The first large one was admitted
    although its body alone is above the bound."""
    rows = _rows(2000)
    body = _body(rows)
    limit = 50_000
    assert len(body) > limit
    expected = _labels(artifacts, rows)
    settings = settings_for(artifacts["onnx"], max_queue_bytes=limit, retry_after_seconds=2)
    with serve(settings) as running:
        holder = _SlowUpload(running.url, body)
        wait_for(lambda: running.plane.executor.admitted == 1, what="the slow upload's admission")
        with httpx.Client(base_url=running.url, timeout=10) as client:
            assert _metric(running.url, "modelreg_runtime_requests_queued_bytes{") == len(body)
            refused = client.post(INFER, content=body)
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "2"
            error = refused.json()["error"]
            assert f"hold {len(body)} bytes" in error
            assert f"MODELREG_MAX_QUEUE_BYTES ({limit} bytes)" in error

            def chunks() -> Any:
                yield _body(rows[:3])

            chunked = client.post(INFER, content=chunks())
            assert chunked.status_code == 503, chunked.text
            assert "this one's 16.0 MiB" in chunked.json()["error"]
            small = client.post(INFER, content=_body(rows[:1]))
            assert small.status_code == 200, small.text
            assert small.json()["outputs"][0]["data"] == expected[:1]
            assert _metric(running.url, "modelreg_runtime_rejected_requests_total{") == 2

            status, answer = holder.finish()
            assert status == 200, answer[:300]
            assert orjson.loads(answer)["outputs"][0]["data"] == expected
            wait_for(lambda: running.plane.executor.admitted == 0, what="the place to free")
            assert running.plane.executor.waiting_bytes == 0
            again = client.post(INFER, content=body)
            assert again.status_code == 200, again.text
            assert again.json()["outputs"][0]["data"] == expected


# ------------------------------------------------------------------------------------------------
# Worker processes for large JSON


def _worker_pids(running: Running) -> list[int]:
    return [w.proc.pid for w in running.plane.executor._idle]


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.fixture
def offloading(artifacts: Artifacts, monkeypatch: pytest.MonkeyPatch) -> Any:
    # The server's own environment carries credentials; its worker processes must not.
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "worker-must-not-see-this")
    settings = settings_for(artifacts["onnx"], inline_max_bytes=0, codec_process_min_bytes=1024)
    with serve(settings) as running:
        yield running


def test_large_json_is_decoded_and_encoded_in_a_worker_process(
    offloading: Running, artifacts: Artifacts
) -> None:
    rows = _rows(200)  # ~10 KiB of JSON in, ~6 KiB estimated out: both above 1024 bytes
    resp = httpx.post(offloading.url + INFER, content=_body(rows), timeout=30)
    assert resp.status_code == 200, resp.text
    out = {o["name"]: o for o in resp.json()["outputs"]}
    assert out["label"]["data"] == _labels(artifacts, rows)
    assert out["probabilities"]["shape"] == [200, 3]
    (pid,) = _worker_pids(offloading)
    assert "from modelreg.runtime.worker import main" in _cmdline(pid)
    assert pid != os.getpid()
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert not [e for e in environ if e.startswith(b"AWS_")]
    # Errors found in the worker are the same clean 400s.
    bad = _body(rows).replace(b'"FP32"', b'"INT8"')
    resp = httpx.post(offloading.url + INFER, content=bad, timeout=30)
    assert resp.status_code == 400, resp.text
    assert resp.json() == {
        "error": "input 'X': datatype INT8 needs numbers, got non-integer numbers"
    }
    resp = httpx.post(offloading.url + INFER, content=b"[" * 2000, timeout=30)
    assert resp.status_code == 400
    assert "not valid JSON" in resp.json()["error"]
    assert _worker_pids(offloading) == [pid]  # one process, reused


def test_a_killed_worker_process_is_replaced(offloading: Running, artifacts: Artifacts) -> None:
    rows = _rows(200)
    body = _body(rows)
    expected = _labels(artifacts, rows)
    assert httpx.post(offloading.url + INFER, content=body, timeout=30).status_code == 200
    (idle,) = offloading.plane.executor._idle
    idle.proc.send_signal(signal.SIGKILL)
    wait_for(lambda: not idle.alive, what="the killed worker to be reaped")
    # Killed while idle: the next request is not its victim.
    resp = httpx.post(offloading.url + INFER, content=body, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json()["outputs"][0]["data"] == expected
    (replacement,) = offloading.plane.executor._idle
    assert replacement.proc.pid != idle.proc.pid


def test_a_worker_killed_mid_request_is_a_clean_500(
    offloading: Running, artifacts: Artifacts
) -> None:
    rows = _rows(100_000)  # ~7 MiB of JSON: the worker parses it for tens of milliseconds
    body = _body(rows)
    small = _rows(200)
    assert httpx.post(offloading.url + INFER, content=_body(small), timeout=30).status_code == 200
    (worker,) = offloading.plane.executor._idle
    with httpx.Client(timeout=60) as client:
        result: list[httpx.Response] = []
        t = threading.Thread(
            target=lambda: result.append(client.post(offloading.url + INFER, content=body))
        )
        t.start()
        # Taken out of the idle list: the server is writing to it or waiting for its answer.
        wait_for(lambda: not offloading.plane.executor._idle, timeout=30, what="the worker busy")
        worker.proc.send_signal(signal.SIGKILL)
        t.join(60)
    (resp,) = result
    assert resp.status_code == 500, resp.text
    assert "worker process exited" in resp.json()["error"]
    resp = httpx.post(offloading.url + INFER, content=_body(small), timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json()["outputs"][0]["data"] == _labels(artifacts, small)


def _string_model(path: Path) -> Path:
    """ONNX: X (strings) -> code (LabelEncoder a=0, b=1, else -1) and echo (X itself)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node(
                "LabelEncoder",
                ["X"],
                ["code"],
                domain="ai.onnx.ml",
                keys_strings=["a", "b"],
                values_int64s=[0, 1],
                default_int64=-1,
            ),
            helper.make_node("Identity", ["X"], ["echo"]),
        ],
        "strings",
        [helper.make_tensor_value_info("X", TensorProto.STRING, [None])],
        [
            helper.make_tensor_value_info("code", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("echo", TensorProto.STRING, [None]),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def test_string_tensors_make_the_round_trip_through_a_worker_process(tmp_path: Path) -> None:
    from tests.unit.runtime.conftest import Artifact, sha256_of

    path = _string_model(tmp_path / "strings.onnx")
    art = Artifact(path, "onnx", sha256_of(path), None)
    words = ["a", "b", "zz", "", "é✓", "b"] * 500
    doc = {"inputs": [{"name": "X", "shape": [len(words)], "datatype": "BYTES", "data": words}]}
    settings = settings_for(
        art, model_name="iris", inline_max_bytes=0, codec_process_min_bytes=1024
    )
    with serve(settings) as running:
        resp = httpx.post(running.url + INFER, content=orjson.dumps(doc), timeout=30)
        assert resp.status_code == 200, resp.text
        assert _worker_pids(running)  # the body was parsed in a worker process
        out = {o["name"]: o for o in resp.json()["outputs"]}
        assert out["code"]["data"] == [{"a": 0, "b": 1}.get(w, -1) for w in words]
        assert out["echo"]["data"] == words


@pytest.mark.parametrize("binary", [False, True])
def test_packed_strings_unpickle_to_the_codecs_tensor(binary: bool) -> None:
    import pickle
    import struct

    from modelreg.runtime import codec, worker

    words = ["x", "", "日本", "a" * 300] * 25
    if binary:
        data = b"".join(struct.pack("<I", len(w.encode())) + w.encode() for w in words)
        header = orjson.dumps(
            {
                "inputs": [
                    {
                        "name": "X",
                        "shape": [25, 4],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": len(data)},
                    }
                ]
            }
        )
        body, header_length = header + data, len(header)
    else:
        body = orjson.dumps(
            {"inputs": [{"name": "X", "shape": [25, 4], "datatype": "BYTES", "data": words}]}
        )
        header_length = None
    direct = codec.decode_request(body, header_length)
    packed = worker.decode_request(body, header_length)
    assert isinstance(packed.inputs[0].array, worker.PackedStrings)
    travelled = pickle.loads(pickle.dumps(packed))  # noqa: S301 - made just above
    (a,), (b,) = direct.inputs, travelled.inputs
    assert (a.name, a.datatype) == (b.name, b.datatype)
    assert b.array.dtype == object
    assert b.array.shape == (25, 4)
    assert b.array.tolist() == a.array.tolist()


# ------------------------------------------------------------------------------------------------
# What stays on the event loop


def test_a_cheap_model_keeps_small_requests_on_the_loop(onnx_server: Running) -> None:
    body = _body(_rows(1))
    for _ in range(30):
        assert httpx.post(onnx_server.url + INFER, content=body, timeout=10).status_code == 200
    assert onnx_server.plane.inlines
    assert onnx_server.plane.executor.admitted == 0


def test_a_slow_model_moves_small_requests_off_the_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    from tests.unit.runtime.conftest import Artifact, sha256_of

    X, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=200, random_state=0).fit(X, y)
    path = tmp_path / "forest.skops"
    sio.dump(forest, path)
    art = Artifact(path, "skops", sha256_of(path), forest)
    # Batching off (on by default for skops): with it, no prediction runs on the loop at all.
    settings = settings_for(art, skops_trusted_types=["sklearn.tree._tree.Tree"], batch_max_size=1)
    rows = X[:1].astype(np.float32)
    doc = {
        "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": rows.tolist()}]
    }
    with caplog.at_level(logging.WARNING), serve(settings) as running:
        for _ in range(12):
            resp = httpx.post(running.url + INFER, content=orjson.dumps(doc), timeout=30)
            assert resp.status_code == 200, resp.text
            assert resp.json()["outputs"][0]["data"] == forest.predict(rows).tolist()
        # 200 trees take milliseconds per row: the loop cannot spare that.
        assert not running.plane.inlines
        assert "every request runs in the executor" in caplog.text
        resp = httpx.post(running.url + INFER, content=orjson.dumps(doc), timeout=30)
        assert resp.status_code == 200


# ------------------------------------------------------------------------------------------------
# Settings


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MODELREG_WORKERS", "0"),
        ("MODELREG_MAX_QUEUE", "-1"),
        ("MODELREG_MAX_QUEUE_BYTES", "-1"),
        ("MODELREG_RETRY_AFTER_SECONDS", "soon"),
        ("MODELREG_INLINE_MAX_BYTES", "-5"),
        ("MODELREG_CODEC_PROCESS_MIN_BYTES", "lots"),
    ],
)
def test_bad_executor_settings_exit_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str
) -> None:
    for key in list(os.environ):
        if key.startswith(("MODELREG_", "AWS_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("MODELREG_MODEL_NAME", "iris")
    monkeypatch.setenv("MODELREG_ARTIFACT_PATH", "/nonexistent/model.onnx")
    monkeypatch.setenv("MODELREG_ARTIFACT_FORMAT", "onnx")
    monkeypatch.setenv(name, value)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert name in err
    assert "Traceback" not in err
