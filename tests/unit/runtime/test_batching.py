"""Adaptive batching (`modelreg.runtime.batching`): concurrent requests against a real data plane
and the fixtures' real models, their batched answers compared with those of a data plane that
does not batch. Structure, never time, is asserted: which requests shared a prediction, and why a
batch stopped waiting (the `Dispatch` records the batcher hands its observers). Speed is measured
in bench/runtime.

Batched floats are compared with a relative tolerance of 1e-6: BLAS and onnxruntime pick their
kernels by the number of rows, so the last bit of a probability can differ between a row predicted
alone and in a batch, as in any batch inference. Labels are compared exactly, and each request's
rows are distinct, so a row answered to the wrong request could not pass.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from modelreg.runtime import codec
from modelreg.runtime.batching import Batcher, Dispatch, Reason
from modelreg.runtime.dataplane import DataPlane
from modelreg.runtime.errors import BadRequest, InferenceError, Overloaded
from modelreg.runtime.executor import Executor
from modelreg.runtime.server import load_settings, main
from modelreg.runtime.settings import RuntimeSettings
from tests.unit.runtime.conftest import Artifact, Artifacts, serve, settings_for, sha256_of

Doc = dict[str, Any]

# Each artifact of the fixtures with its input's name and the datatype its users send.
MODELS = {
    "onnx": ("X", "FP32"),
    "onnx-zipmap": ("X", "FP32"),
    "skops": ("input-0", "FP64"),
    "xgboost-json": ("input-0", "FP32"),
    "lightgbm": ("input-0", "FP64"),
}


def _rows(artifacts: Artifacts, n: int, seed: int) -> np.ndarray[Any, Any]:
    """n distinct rows near the iris data, different for each seed."""
    rng = np.random.default_rng(seed)
    base = artifacts.X[rng.integers(0, len(artifacts.X), n)]
    return np.asarray(base + rng.normal(0, 0.3, base.shape))


def _body(
    rows: np.ndarray[Any, Any],
    *,
    name: str = "X",
    datatype: str = "FP32",
    request_id: str | None = None,
    outputs: list[str] | None = None,
    parameters: Doc | None = None,
) -> bytes:
    doc: Doc = {
        "inputs": [
            {"name": name, "shape": list(rows.shape), "datatype": datatype, "data": rows.tolist()}
        ]
    }
    if request_id is not None:
        doc["id"] = request_id
    if outputs is not None:
        doc["outputs"] = [{"name": o} for o in outputs]
    if parameters is not None:
        doc["parameters"] = parameters
    return orjson.dumps(doc)


def _binary_body(rows: np.ndarray[Any, Any], name: str, request_id: str) -> tuple[bytes, int]:
    """A FP64 tensor as binary data: the only way to send a NaN (JSON has none)."""
    data = np.ascontiguousarray(rows, dtype="<f8").tobytes()
    header = orjson.dumps(
        {
            "id": request_id,
            "inputs": [
                {
                    "name": name,
                    "shape": list(rows.shape),
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": len(data)},
                }
            ],
        }
    )
    return header + data, len(header)


async def _infer(plane: DataPlane, body: bytes, header_length: int | None = None) -> Doc:
    """What `modelreg.runtime.http` does for POST /v2/models/iris/infer."""
    admission = plane.admit("iris", None, len(body), b"")
    try:
        payload, response_header = await plane.infer(
            "iris", None, body, header_length, admission=admission
        )
    finally:
        if admission is not None:
            admission.release()
    assert response_header is None
    doc: Doc = orjson.loads(payload)
    return doc


def _assert_same(batched: Doc, alone: Doc) -> None:
    assert batched.get("id") == alone.get("id")
    assert [o["name"] for o in batched["outputs"]] == [o["name"] for o in alone["outputs"]]
    for got, want in zip(batched["outputs"], alone["outputs"], strict=True):
        assert (got["datatype"], got["shape"]) == (want["datatype"], want["shape"]), got["name"]
        if got["datatype"].startswith("FP"):
            np.testing.assert_allclose(got["data"], want["data"], rtol=1e-6, atol=1e-9)
        else:
            assert got["data"] == want["data"], got["name"]


def _run(
    artifact: Artifact,
    scenario: Callable[[DataPlane, list[Dispatch]], Awaitable[Any]],
    **overrides: Any,
) -> Any:
    """Load a data plane with these settings and run `scenario` with the batches it makes."""

    async def main() -> Any:
        plane = DataPlane(settings_for(artifact, **overrides))
        await plane.load()
        dispatches: list[Dispatch] = []
        if plane.batcher is not None:
            plane.batcher.observers.append(dispatches.append)
        try:
            return await scenario(plane, dispatches)
        finally:
            plane.close()

    return asyncio.run(main())


async def _answers(plane: DataPlane, bodies: list[bytes]) -> list[Doc]:
    """Each body answered alone, one after the other."""
    return [await _infer(plane, body) for body in bodies]


def _alone(artifact: Artifact, bodies: list[bytes]) -> list[Doc]:
    """The reference: the same requests on a data plane that does not batch."""

    async def scenario(plane: DataPlane, dispatches: list[Dispatch]) -> list[Doc]:
        assert plane.batcher is None
        return await _answers(plane, bodies)

    result: list[Doc] = _run(artifact, scenario, batch_max_size=1)
    return result


def _ids(dispatches: list[Dispatch]) -> list[str]:
    return [str(i) for d in dispatches for i in d.ids]


# ------------------------------------------------------------------------------------------------
# Results


@pytest.mark.parametrize("key", list(MODELS))
def test_batched_answers_equal_unbatched_ones(artifacts: Artifacts, key: str) -> None:
    art = artifacts[key]
    name, datatype = MODELS[key]
    sizes = [1, 3, 2, 1, 4, 1, 2, 2, 1, 3, 1, 2]
    bodies = [
        _body(_rows(artifacts, n, i), name=name, datatype=datatype, request_id=f"r{i}")
        for i, n in enumerate(sizes)
    ]
    alone = _alone(art, bodies)

    async def scenario(plane: DataPlane, dispatches: list[Dispatch]) -> list[Doc]:
        return list(await asyncio.gather(*(_infer(plane, b) for b in bodies)))

    batched = _run(art, scenario, batch_max_size=8)
    for got, want in zip(batched, alone, strict=True):
        _assert_same(got, want)


def test_batches_hold_at_most_max_rows_and_every_request_once(artifacts: Artifacts) -> None:
    art = artifacts["onnx"]
    sizes = [1, 2, 3, 4, 5, 9, 2, 1, 1, 3, 4, 2, 1]
    bodies = [_body(_rows(artifacts, n, i), request_id=f"r{i}") for i, n in enumerate(sizes)]
    alone = _alone(art, bodies)

    async def scenario(
        plane: DataPlane, dispatches: list[Dispatch]
    ) -> tuple[list[Doc], list[Dispatch]]:
        answers = await asyncio.gather(*(_infer(plane, b) for b in bodies))
        return list(answers), dispatches

    batched, dispatches = _run(art, scenario, batch_max_size=5, max_queue=32)
    for got, want in zip(batched, alone, strict=True):
        _assert_same(got, want)
    assert sorted(_ids(dispatches)) == sorted(f"r{i}" for i in range(len(sizes)))
    assert sum(d.rows for d in dispatches) == sum(sizes)
    assert any(d.requests > 1 for d in dispatches), dispatches  # it did batch
    for d in dispatches:
        if d.ids == ("r5",):  # 9 rows: more than a batch holds, so alone
            assert (d.rows, d.reason) == (9, Reason.FULL)
        else:
            assert d.rows <= 5, d


def test_incompatible_requests_are_not_mixed(artifacts: Artifacts) -> None:
    art = artifacts["onnx"]
    groups: dict[str, list[bytes]] = {
        "f32-": [_body(_rows(artifacts, 1 + i % 2, i), request_id=f"f32-{i}") for i in range(4)],
        "f64-": [
            _body(_rows(artifacts, 2, 10 + i), datatype="FP64", request_id=f"f64-{i}")
            for i in range(3)
        ],
        "label-": [
            _body(_rows(artifacts, 1, 20 + i), outputs=["label"], request_id=f"label-{i}")
            for i in range(3)
        ],
        "param-": [
            _body(_rows(artifacts, 1, 30 + i), parameters={"priority": 1}, request_id=f"param-{i}")
            for i in range(2)
        ],
        "wide-": [
            _body(np.hstack([_rows(artifacts, 1, 40 + i)] * 2), request_id=f"wide-{i}")
            for i in range(2)
        ],
    }
    # Interleaved, so that each kind arrives while another kind's batch is open.
    bodies = [b for row in zip(*(g[:2] for g in groups.values()), strict=True) for b in row]
    bodies += [b for g in groups.values() for b in g[2:]]

    async def scenario(
        plane: DataPlane, dispatches: list[Dispatch]
    ) -> tuple[list[Doc | BaseException], list[Dispatch]]:
        answers = await asyncio.gather(*(_infer(plane, b) for b in bodies), return_exceptions=True)
        return list(answers), dispatches

    answers, dispatches = _run(art, scenario, batch_max_size=16, max_queue=32)
    assert sorted(_ids(dispatches)) == sorted(orjson.loads(b)["id"] for b in bodies)
    for d in dispatches:
        kinds = {str(i).split("-")[0] for i in d.ids}
        assert len(kinds) == 1, d
        if kinds == {"param"}:
            assert (d.requests, d.reason) == (1, Reason.ALONE)
    for kind in ("f32", "f64", "label"):
        assert any(d.requests > 1 and d.ids[0].startswith(kind) for d in dispatches), kind
    valid = {orjson.loads(b)["id"]: b for b in bodies if b"wide-" not in b}
    reference = dict(zip(valid, _alone(art, list(valid.values())), strict=True))
    ok = [a for a in answers if isinstance(a, dict)]
    assert sorted(a["id"] for a in ok) == sorted(valid)
    for answer in ok:
        _assert_same(answer, reference[answer["id"]])
    wrong = [a for a in answers if isinstance(a, BaseException)]
    assert len(wrong) == 2  # the 8-feature rows: refused alone, each with its own shape
    for e in wrong:
        assert isinstance(e, BadRequest)
        assert e.message == "input 'X' has shape [1, 8], the model expects [-1, 4]"


def test_messages_of_another_wire_format_are_batched_too(artifacts: Artifacts) -> None:
    """`DataPlane.infer_message` (what the gRPC front end calls) goes through the same batches."""
    art = artifacts["onnx"]
    sizes = [1, 2, 1, 3, 1]
    bodies = [_body(_rows(artifacts, n, i), request_id=f"m{i}") for i, n in enumerate(sizes)]
    alone = _alone(art, bodies)

    def encode(request: Any, outputs: list[Any]) -> Doc:
        return {"id": request.id, "outputs": {o.name: o.array for o in outputs}}

    async def one(plane: DataPlane, body: bytes) -> Doc:
        def decode() -> codec.InferRequest:
            return codec.decode_request(body)

        answer: Doc = await plane.infer_message("iris", None, len(body), decode, encode)
        return answer

    async def scenario(
        plane: DataPlane, dispatches: list[Dispatch]
    ) -> tuple[list[Doc], list[Dispatch]]:
        return list(await asyncio.gather(*(one(plane, b) for b in bodies))), dispatches

    answers, dispatches = _run(art, scenario, batch_max_size=16)
    assert [(d.requests, d.rows) for d in dispatches] == [(5, sum(sizes))]
    for got, want in zip(answers, alone, strict=True):
        assert got["id"] == want["id"]
        for out in want["outputs"]:
            array = got["outputs"][out["name"]]
            assert list(array.shape) == out["shape"]
            np.testing.assert_allclose(array.ravel(), out["data"], rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------------------------------------
# When a batch goes


def test_a_lone_request_goes_at_once(artifacts: Artifacts) -> None:
    """The longest wait allowed, and still a lone request does not wait: nothing else is on its
    way, so its batch goes as soon as it opens (a wait would end with Reason.DEADLINE)."""
    art = artifacts["onnx"]
    body = _body(_rows(artifacts, 2, 0), request_id="lone")

    async def scenario(plane: DataPlane, dispatches: list[Dispatch]) -> list[Dispatch]:
        for _ in range(3):
            await _infer(plane, body)
        return dispatches

    for inline_bytes in (16384, 0):  # decoded on the loop, or admitted and decoded in a worker
        dispatches = _run(
            art, scenario, batch_max_size=8, batch_max_wait_ms=1000, inline_max_bytes=inline_bytes
        )
        assert dispatches == [Dispatch(2, 1, Reason.IDLE, ("lone",))] * 3, inline_bytes


def test_a_lone_small_request_is_predicted_on_the_loop_and_two_at_once_still_batch(
    artifacts: Artifacts,
) -> None:
    """A batch that is one small request yields to the loop once, then is predicted there (no
    hop to a worker); requests arriving together still share one call in a worker, and a
    request too large for the loop goes to a worker alone."""
    art = artifacts["onnx"]
    small = _body(_rows(artifacts, 2, 0), request_id="small")
    other = _body(_rows(artifacts, 3, 2), request_id="other")
    large = _body(_rows(artifacts, 2, 0), request_id="large")

    async def scenario(
        plane: DataPlane, dispatches: list[Dispatch]
    ) -> tuple[list[list[str]], list[Dispatch]]:
        model = plane.resolve("iris", None)
        threads: list[str] = []
        predict = model.predict

        def traced(*a: Any, **kw: Any) -> Any:
            threads.append(threading.current_thread().name)
            return predict(*a, **kw)

        model.predict = traced  # type: ignore[method-assign]
        seen: list[list[str]] = []
        await _infer(plane, small)
        seen.append(list(threads))
        threads.clear()
        await asyncio.gather(_infer(plane, small), _infer(plane, other))
        seen.append(list(threads))
        threads.clear()
        plane._inline_max = 4  # the large request: more elements than the loop takes
        await _infer(plane, large)
        seen.append(list(threads))
        return seen, dispatches

    (lone, together, big), dispatches = _run(
        art, scenario, batch_max_size=8, batch_max_wait_ms=1000
    )
    main = threading.main_thread().name
    assert lone == [main]
    assert len(together) == 1, together  # one call for both
    assert together != [main], together  # in a worker
    assert len(big) == 1, big
    assert big != [main], big
    assert [(d.rows, d.requests) for d in dispatches] == [(2, 1), (5, 2), (2, 1)]


def test_a_batch_waits_for_requests_being_decoded_then_goes(artifacts: Artifacts) -> None:
    """Two large requests decoded at once in two workers: the first waits for the second, and
    goes when nothing else is on its way, long before its deadline."""
    art = artifacts["onnx"]
    bodies = [_body(_rows(artifacts, 3, i), request_id=f"r{i}") for i in range(2)]

    async def scenario(plane: DataPlane, dispatches: list[Dispatch]) -> list[Dispatch]:
        await asyncio.gather(*(_infer(plane, b) for b in bodies))
        return dispatches

    dispatches = _run(
        art, scenario, batch_max_size=8, batch_max_wait_ms=1000, inline_max_bytes=0, workers=2
    )
    assert len(dispatches) == 1, dispatches
    assert (dispatches[0].rows, dispatches[0].reason) == (6, Reason.IDLE)
    assert sorted(dispatches[0].ids) == ["r0", "r1"]


def test_a_batch_waits_no_longer_than_max_wait(artifacts: Artifacts) -> None:
    """A request stays on its way (held in `arriving`) for good: the batch goes at its
    deadline."""
    art = artifacts["onnx"]

    async def scenario(plane: DataPlane, dispatches: list[Dispatch]) -> tuple[Doc, list[Dispatch]]:
        assert plane.batcher is not None
        with plane.batcher.arriving():
            answer = await _infer(plane, _body(_rows(artifacts, 1, 0), request_id="waited"))
        return answer, dispatches

    answer, dispatches = _run(art, scenario, batch_max_size=8, batch_max_wait_ms=5)
    assert answer["id"] == "waited"
    assert dispatches == [Dispatch(1, 1, Reason.DEADLINE, ("waited",))]


def test_batches_fill_while_the_workers_are_busy(artifacts: Artifacts) -> None:
    """No wait at all (0 ms): requests that come while the only worker is taken join the batch
    waiting for it."""
    art = artifacts["onnx"]
    bodies = [_body(_rows(artifacts, 1, i), request_id=f"r{i}") for i in range(5)]
    alone = _alone(art, bodies)

    async def scenario(
        plane: DataPlane, dispatches: list[Dispatch]
    ) -> tuple[list[Doc], list[Dispatch]]:
        async with plane.executor.slot():  # the worker is busy with something else
            tasks = [asyncio.create_task(_infer(plane, b)) for b in bodies]
            await asyncio.sleep(0)  # one turn: each runs until it waits in the batch
            assert plane.executor.admitted == len(tasks)
            assert not dispatches
        return list(await asyncio.gather(*tasks)), dispatches

    answers, dispatches = _run(art, scenario, batch_max_size=8, batch_max_wait_ms=0, workers=1)
    assert [(d.requests, d.rows) for d in dispatches] == [(5, 5)]
    for got, want in zip(answers, alone, strict=True):
        _assert_same(got, want)


# ------------------------------------------------------------------------------------------------
# Errors and callers that go away


def test_an_error_of_the_batch_reaches_every_member(artifacts: Artifacts) -> None:
    art = artifacts["onnx"]
    bodies = [
        _body(np.hstack([_rows(artifacts, n, i), np.ones((n, 1))]), request_id=f"r{i}")
        for i, n in enumerate([1, 2, 1])
    ]

    async def scenario(
        plane: DataPlane, dispatches: list[Dispatch]
    ) -> tuple[list[Doc | BaseException], list[Dispatch]]:
        answers = await asyncio.gather(*(_infer(plane, b) for b in bodies), return_exceptions=True)
        return list(answers), dispatches

    answers, dispatches = _run(art, scenario, batch_max_size=8)
    assert [(d.requests, d.rows) for d in dispatches] == [(3, 4)]
    messages = []
    for answer in answers:
        assert isinstance(answer, BadRequest), answer
        messages.append(answer.message)
    # Each with its own shape, not the batch's [4, 5].
    assert messages == [
        "input 'X' has shape [1, 5], the model expects [-1, 4]",
        "input 'X' has shape [2, 5], the model expects [-1, 4]",
        "input 'X' has shape [1, 5], the model expects [-1, 4]",
    ]


def test_one_bad_row_fails_only_its_own_request(artifacts: Artifacts) -> None:
    """scikit-learn refuses a NaN: the request that sent it gets the 400, its neighbours in the
    batch their answers."""
    art = artifacts["skops"]
    rows = [_rows(artifacts, 2, i) for i in range(4)]
    rows[2][1, 3] = np.nan
    bodies = [_binary_body(r, "input-0", f"r{i}") for i, r in enumerate(rows)]

    async def scenario(
        plane: DataPlane, dispatches: list[Dispatch]
    ) -> tuple[list[Doc | BaseException], list[Dispatch]]:
        answers = await asyncio.gather(
            *(_infer(plane, body, length) for body, length in bodies), return_exceptions=True
        )
        return list(answers), dispatches

    answers, dispatches = _run(art, scenario, batch_max_size=16)
    assert [(d.requests, d.rows) for d in dispatches] == [(4, 8)]
    bad = answers.pop(2)
    assert isinstance(bad, BadRequest), bad
    assert bad.message.startswith("the model rejected the input: Input X contains NaN")
    good = [
        _body(r, name="input-0", datatype="FP64", request_id=f"r{i}")
        for i, r in enumerate(rows)
        if i != 2
    ]
    for got, want in zip(answers, _alone(art, good), strict=True):
        assert isinstance(got, dict), got
        _assert_same(got, want)


@pytest.mark.parametrize("when", ["waiting", "predicting"])
def test_a_caller_that_goes_away_leaves_the_others_correct(artifacts: Artifacts, when: str) -> None:
    """Batches of at most 3 rows; r0 and r1 have one each, r2 comes after them with two."""
    art = artifacts["onnx"]
    bodies = [_body(_rows(artifacts, n, i), request_id=f"r{i}") for i, n in enumerate([1, 1, 2])]
    alone = _alone(art, bodies)

    async def scenario(
        plane: DataPlane, dispatches: list[Dispatch]
    ) -> tuple[list[Doc | BaseException], list[Dispatch], int]:
        assert plane.batcher is not None
        async with plane.executor.slot():  # the batch waits for the only worker
            tasks = [asyncio.create_task(_infer(plane, b)) for b in bodies[:2]]
            await asyncio.sleep(0)  # one turn: each runs until it waits in the batch
            assert plane.executor.admitted == 2
            if when == "waiting":
                tasks[1].cancel()
                await asyncio.sleep(0)
            else:  # the batch is made: the caller goes away while the model runs

                def leave(dispatch: Dispatch) -> None:
                    tasks[1].cancel()

                plane.batcher.observers.append(leave)
            tasks.append(asyncio.create_task(_infer(plane, bodies[2])))
            await asyncio.sleep(0)
        answers = await asyncio.gather(*tasks, return_exceptions=True)
        return list(answers), dispatches, plane.executor.admitted

    answers, dispatches, admitted = _run(
        art, scenario, batch_max_size=3, workers=1, batch_max_wait_ms=0
    )
    assert isinstance(answers[1], asyncio.CancelledError)
    for i in (0, 2):
        got = answers[i]
        assert isinstance(got, dict), got
        _assert_same(got, alone[i])
    if when == "waiting":  # gone before its batch was made: its row left room for r2's two
        assert [d.ids for d in dispatches] == [("r0", "r2")]
    else:  # computed, and dropped
        assert [d.ids for d in dispatches] == [("r0", "r1"), ("r2",)]
    assert admitted == 0


def test_a_full_batch_goes_without_waiting(artifacts: Artifacts) -> None:
    """Another request is on its way (held in `arriving`) and the wait is the longest allowed:
    a batch that has its rows goes at once all the same, and so does a request that has more
    rows than a batch holds."""
    art = artifacts["onnx"]
    bodies = [_body(_rows(artifacts, n, i), request_id=f"r{i}") for i, n in enumerate([1, 3, 6])]

    async def scenario(plane: DataPlane, dispatches: list[Dispatch]) -> list[Dispatch]:
        assert plane.batcher is not None
        with plane.batcher.arriving():
            await asyncio.gather(*(_infer(plane, b) for b in bodies))
        return dispatches

    dispatches = _run(art, scenario, batch_max_size=4, batch_max_wait_ms=1000)
    assert sorted((d.ids, d.rows, d.reason) for d in dispatches) == [
        (("r0", "r1"), 4, Reason.FULL),
        (("r2",), 6, Reason.FULL),
    ]


def test_batched_requests_hold_their_admission(artifacts: Artifacts) -> None:
    """Waiting in a batch is waiting in the executor's queue: it counts, and beyond
    MODELREG_WORKERS + MODELREG_MAX_QUEUE a request is refused (503), small ones too."""
    art = artifacts["onnx"]
    bodies = [_body(_rows(artifacts, 1, i), request_id=f"r{i}") for i in range(3)]

    async def scenario(
        plane: DataPlane, dispatches: list[Dispatch]
    ) -> tuple[list[Doc], list[Dispatch], int]:
        async with plane.executor.slot():
            tasks = [asyncio.create_task(_infer(plane, b)) for b in bodies]
            await asyncio.sleep(0)  # one turn: each runs until it waits in the batch
            assert plane.executor.admitted == len(tasks)
            with pytest.raises(Overloaded) as refused:
                await _infer(plane, _body(_rows(artifacts, 1, 9)))
            assert "MODELREG_MAX_QUEUE" in refused.value.message
            admitted = plane.executor.admitted
        return list(await asyncio.gather(*tasks)), dispatches, admitted

    answers, dispatches, admitted = _run(art, scenario, batch_max_size=8, workers=1, max_queue=2)
    assert admitted == 3
    assert [a["id"] for a in answers] == ["r0", "r1", "r2"]
    assert [d.requests for d in dispatches] == [3]


# ------------------------------------------------------------------------------------------------
# Models whose outputs are not per row


def _per_batch_model(path: Path, *, static: bool) -> Artifact:
    """ONNX: X [N, 4] -> doubled (X * 2, per row) and an output that is not per row. `static`:
    the sum of every element, a scalar the graph declares. Else the indices of the elements
    above -1 (NonZero, transposed): [4N, 2], whose first dimension the graph cannot know."""
    from onnx import TensorProto, helper, numpy_helper

    if static:
        nodes = [helper.make_node("ReduceSum", ["X"], ["other"], keepdims=0)]
        other = helper.make_tensor_value_info("other", TensorProto.FLOAT, [])
    else:
        nodes = [
            helper.make_node("Greater", ["X", "minus_one"], ["above"]),
            helper.make_node("NonZero", ["above"], ["where"]),
            helper.make_node("Transpose", ["where"], ["other"], perm=[1, 0]),
        ]
        other = helper.make_tensor_value_info("other", TensorProto.INT64, [None, 2])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["X", "two"], ["doubled"]), *nodes],
        "per-batch",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("doubled", TensorProto.FLOAT, [None, 4]), other],
        initializer=[
            numpy_helper.from_array(np.array(2, dtype=np.float32), "two"),
            numpy_helper.from_array(np.array(-1, dtype=np.float32), "minus_one"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return Artifact(path, "onnx", sha256_of(path), None)


@pytest.mark.parametrize("static", [False, True])
def test_outputs_that_are_not_per_row_are_never_batched(
    artifacts: Artifacts, tmp_path: Path, static: bool
) -> None:
    """Declared with a free first dimension, the batched call gives it away: its members are
    predicted again alone, and the model is not batched any more. Declared as a scalar, it is
    never batched at all."""
    art = _per_batch_model(tmp_path / "per-batch.onnx", static=static)
    first = [_body(_rows(artifacts, n, i), request_id=f"a{i}") for i, n in enumerate([1, 2, 3])]
    then = [_body(_rows(artifacts, n, i), request_id=f"b{i}") for i, n in enumerate([2, 1])]
    alone = _alone(art, first + then)

    async def scenario(
        plane: DataPlane, dispatches: list[Dispatch]
    ) -> tuple[list[Doc], list[Dispatch]]:
        answers = list(await asyncio.gather(*(_infer(plane, b) for b in first)))
        answers += await asyncio.gather(*(_infer(plane, b) for b in then))
        return answers, dispatches

    answers, dispatches = _run(art, scenario, batch_max_size=8)
    for got, want in zip(answers, alone, strict=True):
        _assert_same(got, want)
    assert {o["name"]: o["shape"] for o in answers[2]["outputs"]} == {
        "doubled": [3, 4],
        "other": [] if static else [12, 2],
    }
    later = dispatches[-2:]
    assert [(d.requests, d.reason) for d in later] == [(1, Reason.ALONE)] * 2
    if not static:  # tried once, as one batch of the first three
        assert [d.requests for d in dispatches[:-2]] == [3]
    else:
        assert all(d.reason is Reason.ALONE for d in dispatches)


# ------------------------------------------------------------------------------------------------
# Batching off, settings, the server


def test_batching_off_keeps_small_requests_on_the_event_loop(artifacts: Artifacts) -> None:
    """Size 1 (an ONNX model's default): no batcher, and a small request is still answered on
    the loop without an admission, even when the executor is full. With batching on, the same
    request is predicted in the executor and admitted like any other."""
    art = artifacts["onnx"]
    body = _body(_rows(artifacts, 2, 0), request_id="small")
    (want,) = _alone(art, [body])

    async def scenario(plane: DataPlane, dispatches: list[Dispatch]) -> Doc | InferenceError:
        with plane.executor.admit():  # the only place: workers 1, queue 0
            try:
                return await _infer(plane, body)
            except InferenceError as e:
                return e

    assert settings_for(art).resolved_batch_max_size == 1
    off = _run(art, scenario, workers=1, max_queue=0)
    assert isinstance(off, dict)
    _assert_same(off, want)
    on = _run(art, scenario, workers=1, max_queue=0, batch_max_size=4)
    assert isinstance(on, Overloaded)


def test_the_batcher_refuses_a_size_that_does_not_batch() -> None:
    async def make() -> None:
        ex = Executor(workers=1, max_queue=0, retry_after=1, process_min_bytes=0)
        try:
            with pytest.raises(ValueError, match="max_rows"):
                Batcher(ex, max_rows=1, max_wait_seconds=0)
            with pytest.raises(ValueError, match="max_wait_seconds"):
                Batcher(ex, max_rows=2, max_wait_seconds=-1)
        finally:
            ex.close()

    asyncio.run(make())


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith(("MODELREG_", "AWS_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("MODELREG_MODEL_NAME", "iris")
    monkeypatch.setenv("MODELREG_ARTIFACT_PATH", "/nonexistent/model.onnx")
    monkeypatch.setenv("MODELREG_ARTIFACT_FORMAT", "onnx")
    return monkeypatch


def test_batch_settings_from_the_environment_and_flags(clean_env: pytest.MonkeyPatch) -> None:
    s = RuntimeSettings()
    assert (s.batch_max_size, s.resolved_batch_max_size, s.batch_max_wait_ms) == (None, 1, 1.0)
    clean_env.setenv("MODELREG_BATCH_MAX_SIZE", "32")
    clean_env.setenv("MODELREG_BATCH_MAX_WAIT_MS", "2.5")
    s = RuntimeSettings()
    assert (s.batch_max_size, s.batch_max_wait_ms) == (32, 2.5)
    s = load_settings(["--batch-max-size", "8", "--batch-max-wait-ms", "0"])
    assert (s.batch_max_size, s.batch_max_wait_ms) == (8, 0.0)


@pytest.mark.parametrize(
    ("key", "overrides", "rows"),
    [
        ("skops", {}, 32),
        ("sklearn", {"allow_pickle": True}, 32),
        ("xgboost-json", {}, 32),
        ("lightgbm", {}, 32),
        ("onnx", {}, 1),
        ("skops", {"batch_max_size": 1}, 1),  # set explicitly, it wins: off
        ("skops", {"batch_max_size": 8}, 8),
        ("onnx", {"batch_max_size": 8}, 8),
    ],
)
def test_the_default_batch_size_depends_on_the_format(
    artifacts: Artifacts, key: str, overrides: dict[str, Any], rows: int
) -> None:
    plane = DataPlane(settings_for(artifacts[key], **overrides))
    try:
        assert plane.batch_max_size == rows
        if rows == 1:
            assert plane.batcher is None
        else:
            assert plane.batcher is not None
            assert plane.batcher.max_rows == rows
    finally:
        plane.close()


def test_the_format_default_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    """MODELREG_BATCH_MAX_SIZE unset (or empty) leaves the format's default; set to 1, it turns
    batching off for a format that batches by default."""
    clean_env.setenv("MODELREG_ARTIFACT_FORMAT", "skops")
    clean_env.setenv("MODELREG_ARTIFACT_PATH", "/nonexistent/model.skops")
    assert RuntimeSettings().resolved_batch_max_size == 32
    clean_env.setenv("MODELREG_BATCH_MAX_SIZE", "")
    assert RuntimeSettings().resolved_batch_max_size == 32
    clean_env.setenv("MODELREG_BATCH_MAX_SIZE", "1")
    assert RuntimeSettings().resolved_batch_max_size == 1
    assert load_settings(["--batch-max-size", "4"]).resolved_batch_max_size == 4


def test_a_skops_model_batches_by_default(
    artifacts: Artifacts, caplog: pytest.LogCaptureFixture
) -> None:
    """No batch setting at all: concurrent requests to a scikit-learn model share a prediction,
    and the start-up log says so and why."""
    art = artifacts["skops"]
    name, datatype = MODELS["skops"]
    bodies = [
        _body(_rows(artifacts, n, i), name=name, datatype=datatype, request_id=f"r{i}")
        for i, n in enumerate([1, 2, 1, 3])
    ]
    alone = _alone(art, bodies)

    async def scenario(
        plane: DataPlane, dispatches: list[Dispatch]
    ) -> tuple[list[Doc], list[Dispatch]]:
        return list(await asyncio.gather(*(_infer(plane, b) for b in bodies))), dispatches

    with caplog.at_level(logging.INFO, logger="modelreg.runtime.dataplane"):
        answers, dispatches = _run(art, scenario)
    assert [(d.requests, d.rows) for d in dispatches] == [(4, 7)]
    for got, want in zip(answers, alone, strict=True):
        _assert_same(got, want)
    assert (
        "adaptive batching on: up to 32 rows a prediction, waiting at most 1 ms (the default for "
        "format skops" in caplog.text
    )


def test_an_onnx_model_does_not_batch_by_default(
    artifacts: Artifacts, caplog: pytest.LogCaptureFixture
) -> None:
    """No batch setting: small requests to an ONNX model are answered on the event loop, never
    admitted; an explicit MODELREG_BATCH_MAX_SIZE=1 says so in the log too."""
    art = artifacts["onnx"]
    bodies = [_body(_rows(artifacts, 1, i), request_id=f"r{i}") for i in range(3)]

    async def scenario(plane: DataPlane, dispatches: list[Dispatch]) -> list[Doc]:
        with plane.executor.admit():  # workers 1, queue 0: the executor is full
            return list(await asyncio.gather(*(_infer(plane, b) for b in bodies)))

    with caplog.at_level(logging.INFO, logger="modelreg.runtime.dataplane"):
        answers = _run(art, scenario, workers=1, max_queue=0)
    assert [a["id"] for a in answers] == ["r0", "r1", "r2"]
    assert "adaptive batching off (the default for format onnx" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="modelreg.runtime.dataplane"):
        _run(artifacts["skops"], lambda plane, dispatches: asyncio.sleep(0), batch_max_size=1)
    assert "adaptive batching off (MODELREG_BATCH_MAX_SIZE)" in caplog.text


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("MODELREG_BATCH_MAX_SIZE", "0", "greater than or equal to 1"),
        ("MODELREG_BATCH_MAX_SIZE", "many", "valid integer"),
        ("MODELREG_BATCH_MAX_SIZE", "100000", "less than or equal to 65536"),
        ("MODELREG_BATCH_MAX_WAIT_MS", "-1", "greater than or equal to 0"),
        ("MODELREG_BATCH_MAX_WAIT_MS", "5000", "less than or equal to 1000"),
    ],
)
def test_bad_batch_settings_exit_2_naming_the_variable(
    clean_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    fragment: str,
) -> None:
    clean_env.setenv(name, value)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert f"{name}: " in err
    assert fragment in err
    assert "Traceback" not in err


def _histogram(text: str, name: str) -> tuple[float, float]:
    """The (count, sum) of a histogram in the Prometheus text format."""
    values = {}
    for line in text.splitlines():
        for part in ("count", "sum"):
            if line.startswith(f"{name}_{part}{{"):
                values[part] = float(line.rsplit(" ", 1)[1])
    return values["count"], values["sum"]


def test_a_real_server_batches_and_counts_its_batches(artifacts: Artifacts) -> None:
    art = artifacts["onnx"]
    sizes = [1, 2, 3, 1, 2, 1, 4, 2, 1, 3, 2, 1, 1, 2, 3, 1]
    bodies = [_body(_rows(artifacts, n, i), request_id=f"r{i}") for i, n in enumerate(sizes)]
    alone = _alone(art, bodies)

    async def send(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            sent = [client.post("/v2/models/iris/infer", content=b) for b in bodies]
            return list(await asyncio.gather(*sent))

    with serve(settings_for(art, batch_max_size=8, max_queue=32)) as running:
        responses = asyncio.run(send(running.url))
        text = httpx.get(running.url + "/metrics", timeout=5).text
    for resp, want in zip(responses, alone, strict=True):
        assert resp.status_code == 200, resp.text
        _assert_same(resp.json(), want)
    batches, requests = _histogram(text, "modelreg_runtime_batch_requests")
    assert requests == len(bodies)
    assert 1 <= batches <= len(bodies)
    rows_count, rows = _histogram(text, "modelreg_runtime_batch_rows")
    assert (rows_count, rows) == (batches, sum(sizes))
    assert 'modelreg_runtime_batch_rows_bucket{le="8.0",model="iris",version="3"}' in text


@pytest.mark.parametrize(("key", "rows"), [("skops", 32), ("onnx", 1)])
def test_the_resolved_batch_size_is_a_metric(artifacts: Artifacts, key: str, rows: int) -> None:
    with serve(settings_for(artifacts[key])) as running:
        text = httpx.get(running.url + "/metrics", timeout=5).text
    assert f'modelreg_runtime_batch_max_size{{model="iris",version="3"}} {rows:.1f}' in text
