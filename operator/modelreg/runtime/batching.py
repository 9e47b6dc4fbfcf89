"""Adaptive batching: concurrent predictions for one model, made as one call on rows stacked.

`modelreg.runtime.dataplane` creates a `Batcher` when MODELREG_BATCH_MAX_SIZE (unset: the
artifact format's default, `settings.BATCH_MAX_SIZE_DEFAULTS`) is above 1 and calls `predict` for
every decoded request instead of predicting it alone. A model whose cost is mostly per call (a
scikit-learn pipeline spends about half a millisecond per call in Python, for 1 row or 256) then
answers many requests for the price of one call.

Which requests share a call: those for the same model whose inputs have the same names,
datatypes and shapes except dimension 0 (the rows), that ask for the same outputs, and that carry
no request parameter beyond `binary_data_output` (a parameter may change what a prediction
means; such a request is predicted alone). The model must declare every input and output with a
free first dimension; when a batched call still returns an output whose dimension 0 is not the
rows (a per-batch value), its members are predicted again one by one and the model is not
batched any more.

When a batch is made, adaptively:
- A batch opens with its first request. It takes requests until it holds
  MODELREG_BATCH_MAX_SIZE rows (rows, not requests: a request that has that many goes alone).
- It waits for more only while other admitted requests are still being decoded (they may join
  it), and never longer than MODELREG_BATCH_MAX_WAIT_MS after it opened. Nothing on its way: it
  goes at once, so a lone request at low load pays no wait.
- It then waits for a worker (`Executor.slot`) and keeps taking requests while it waits: under
  load, batches fill while the workers are busy, without any timer.
- One call in a worker thread; each output is split along dimension 0 back to its request.
- A batch of one small request (`inline`, the data plane's own rule for answering on the event
  loop) first yields to the loop once, so that requests already read can join it; if none does,
  it is predicted on the loop, as it would be with batching off: a lone request at low load pays
  neither a wait nor a hop to a worker thread.

A failed batched call is not a verdict on every member: one request's bad row (a NaN, an unknown
category) must not fail its neighbours, so the members are predicted again one by one, in the
same call to the worker thread, and each gets its own result or error. A caller that goes away
(its task cancelled) leaves the batch before it is made, or has its rows computed and dropped.

Every prediction made with batching on is reported to the `observers` as a `Dispatch`:
`modelreg.runtime.server` counts them in the metrics, tests read why each batch went.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
import weakref
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelreg.runtime import codec
from modelreg.runtime.executor import Executor
from modelreg.runtime.loaders import LoadedModel, TensorSpec

log = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]
Outputs = dict[str, Array]

# Request parameters that only say how the response is written, never what is predicted.
TRANSPORT_PARAMETERS = frozenset({"binary_data_output"})


class Reason(enum.StrEnum):
    """Why a batch stopped waiting for members."""

    FULL = "full"  # it holds MODELREG_BATCH_MAX_SIZE rows, or the next request did not fit
    IDLE = "idle"  # no other request was on its way
    DEADLINE = "deadline"  # MODELREG_BATCH_MAX_WAIT_MS after it opened, others still decoding
    ALONE = "alone"  # the request cannot share a call (parameters, shapes, the model's outputs)


@dataclass(frozen=True)
class Dispatch:
    """One prediction made by the batcher, as its observers (metrics, tests) see it."""

    rows: int
    requests: int
    reason: Reason
    ids: tuple[str | None, ...]


@dataclass(eq=False)
class _Member:
    id: str | None
    inputs: dict[str, Array]
    rows: int
    future: asyncio.Future[Outputs]

    @property
    def elements(self) -> int:
        return sum(int(a.size) for a in self.inputs.values())


@dataclass(eq=False)
class _Batch:
    key: Hashable
    model: LoadedModel
    names: tuple[str, ...]
    deadline: float
    members: list[_Member] = field(default_factory=list)
    rows: int = 0
    closed: bool = False  # takes no more members
    sealed: bool = False  # being predicted: members can no longer leave
    reason: Reason = Reason.IDLE
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class Batcher:
    """The batches of one server's data plane. Used on one event loop."""

    def __init__(
        self,
        executor: Executor,
        *,
        max_rows: int,
        max_wait_seconds: float,
        inline: Callable[[int], bool] | None = None,
        on_inline: Callable[[float], None] | None = None,
    ) -> None:
        if max_rows < 2 or max_wait_seconds < 0:
            raise ValueError("max_rows must be at least 2 and max_wait_seconds not negative")
        self.max_rows = max_rows
        self.max_wait = max_wait_seconds
        # Whether a lone request of that many elements may be predicted on the event loop, and
        # what its CPU time is reported to (the data plane's inline budget).
        self._inline = inline
        self._on_inline = on_inline
        self.observers: list[Callable[[Dispatch], None]] = []
        self._executor = executor
        self._open: dict[Hashable, _Batch] = {}
        self._arriving = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # Models seen answering a batched call with an output that is not per row.
        self._solo: weakref.WeakSet[LoadedModel] = weakref.WeakSet()

    @property
    def arriving_count(self) -> int:
        """Admitted requests being decoded: members a batch may still wait for."""
        return self._arriving

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Around the decoding of an admitted request, which may join a batch afterwards."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1
            if self._arriving == 0:
                for batch in self._open.values():
                    batch.wake.set()

    async def predict(
        self, model: LoadedModel, request: codec.InferRequest, names: Sequence[str]
    ) -> Outputs:
        """`model.predict` of the request's inputs, made alone or in a batch; in a worker."""
        inputs = {t.name: t.array for t in request.inputs}
        found = None if model in self._solo else batch_key(model, request, names)
        if found is None:
            return await self._alone(model, request.id, inputs, names)
        key, rows = found
        loop = asyncio.get_running_loop()
        member = _Member(request.id, inputs, rows, loop.create_future())
        batch = self._open.get(key)
        if batch is not None and batch.rows + rows > self.max_rows:
            self._close(batch, Reason.FULL)
            batch = None
        if batch is None:
            batch = _Batch(key, model, tuple(names), loop.time() + self.max_wait)
            self._open[key] = batch
            task = asyncio.create_task(self._dispatch(batch), name="modelreg-batch")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        batch.members.append(member)
        batch.rows += rows
        if batch.rows >= self.max_rows:
            self._close(batch, Reason.FULL)
        try:
            return await member.future
        except asyncio.CancelledError:
            if not batch.sealed:  # the caller went away: its rows are not computed
                batch.members.remove(member)
                batch.rows -= rows
            raise

    def _close(self, batch: _Batch, reason: Reason | None = None) -> None:
        if self._open.get(batch.key) is batch:
            del self._open[batch.key]
        if not batch.closed:
            batch.closed = True
            if reason is not None:
                batch.reason = reason
        batch.wake.set()

    async def _alone(
        self,
        model: LoadedModel,
        request_id: str | None,
        inputs: dict[str, Array],
        names: Sequence[str],
    ) -> Outputs:
        ex = self._executor
        async with ex.slot():
            self._observe(Dispatch(_rows(inputs), 1, Reason.ALONE, (request_id,)))
            return await ex.thread(model.predict, inputs, names)

    async def _dispatch(self, batch: _Batch) -> None:
        try:
            if not batch.closed and self._arriving:
                timed_out = True
                if self.max_wait > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout_at(batch.deadline):
                            await batch.wake.wait()  # full, or nobody left on the way
                            timed_out = False
                if timed_out and not batch.closed:
                    batch.reason = Reason.DEADLINE
            elif self._inline is not None and not batch.closed and len(batch.members) == 1:
                await asyncio.sleep(0)  # requests already read may join it now
                if self._answer_inline(batch):
                    return
            ex = self._executor
            async with ex.slot():
                # Open until now: requests that came while every worker was busy are in.
                batch.sealed = True
                self._close(batch)
                members = [m for m in batch.members if not m.future.done()]
                if not members:
                    return
                self._observe(
                    Dispatch(
                        sum(m.rows for m in members),
                        len(members),
                        batch.reason,
                        tuple(m.id for m in members),
                    )
                )
                outcomes = await self._run(batch.model, batch.names, members)
            for member, outcome in zip(members, outcomes, strict=True):
                if member.future.done():
                    continue  # its caller went away
                if isinstance(outcome, BaseException):
                    member.future.set_exception(outcome)
                else:
                    member.future.set_result(outcome)
        except BaseException as e:
            for member in batch.members:
                if member.future.done():
                    continue
                if isinstance(e, Exception):
                    member.future.set_exception(e)
                else:
                    member.future.cancel()
            if not isinstance(e, Exception):
                raise

    def _answer_inline(self, batch: _Batch) -> bool:
        """Predict a batch that is still one small request on the event loop; False when it
        has grown (or its request is not small) and goes to a worker as usual."""
        members = [m for m in batch.members if not m.future.done()]
        if len(members) != 1 or batch.closed or self._inline is None:
            return False
        (member,) = members
        if not self._inline(member.elements):
            return False
        batch.sealed = True
        self._close(batch)
        self._observe(Dispatch(member.rows, 1, batch.reason, (member.id,)))
        started = time.thread_time()  # CPU time: being preempted is not the model's cost
        (outcome,) = _predict_each(batch.model, batch.names, [member])
        if self._on_inline is not None:
            self._on_inline(time.thread_time() - started)
        if isinstance(outcome, BaseException):
            member.future.set_exception(outcome)
        else:
            member.future.set_result(outcome)
        return True

    async def _run(
        self, model: LoadedModel, names: tuple[str, ...], members: list[_Member]
    ) -> list[Outputs | Exception]:
        ex = self._executor
        if len(members) == 1:
            return await ex.thread(_predict_each, model, names, members)
        outcomes = await ex.thread(_predict_together, model, names, members)
        if outcomes is not None:
            return outcomes
        self._solo.add(model)
        log.warning(
            "the model returned an output whose dimension 0 is not the batch's rows: its "
            "outputs are not per row, so its requests are no longer batched"
        )
        return await ex.thread(_predict_each, model, names, members)

    def _observe(self, dispatch: Dispatch) -> None:
        for observe in self.observers:
            observe(dispatch)


def batch_key(
    model: LoadedModel, request: codec.InferRequest, names: Sequence[str]
) -> tuple[Hashable, int] | None:
    """What a request must share with the others in its batch, and its rows; None when it
    cannot be batched."""
    if not request.parameters.keys() <= TRANSPORT_PARAMETERS:
        return None
    if not all(_free_first(spec) for spec in (*model.inputs, *model.outputs)):
        return None
    rows = -1
    parts: list[tuple[str, str, tuple[int, ...]]] = []
    for tensor in request.inputs:
        spec = _input_spec(model, tensor.name)
        array = tensor.array
        if spec is None or array.ndim != len(spec.shape):
            return None  # the model refuses it, or reads a lone row (1-D) its own way
        if rows < 0:
            rows = array.shape[0]
        elif array.shape[0] != rows:
            return None
        parts.append((tensor.name, tensor.datatype, tuple(array.shape[1:])))
    if rows < 1:
        return None
    return (tuple(sorted(parts)), tuple(names)), rows


def _free_first(spec: TensorSpec) -> bool:
    return len(spec.shape) >= 1 and spec.shape[0] < 0


def _input_spec(model: LoadedModel, name: str) -> TensorSpec | None:
    for spec in model.inputs:
        if spec.name == name:
            return spec
    if not model.native_signature and len(model.inputs) == 1:
        return model.inputs[0]  # one input, under any name
    return None


def _rows(inputs: dict[str, Array]) -> int:
    for array in inputs.values():
        return int(array.shape[0]) if array.ndim else 1
    return 0


# ------------------------------------------------------------------------------------------------
# In a worker thread


def _predict_each(
    model: LoadedModel, names: Sequence[str], members: Sequence[_Member]
) -> list[Outputs | Exception]:
    """Each member's own prediction, or the error it raised."""
    outcomes: list[Outputs | Exception] = []
    for member in members:
        try:
            outcomes.append(model.predict(member.inputs, names))
        except Exception as e:
            outcomes.append(e)
    return outcomes


def _predict_together(
    model: LoadedModel, names: Sequence[str], members: Sequence[_Member]
) -> list[Outputs | Exception] | None:
    """One prediction on the members' rows stacked, split back to each member; None when an
    output is not per row."""
    stacked = {
        name: np.concatenate([m.inputs[name] for m in members]) for name in members[0].inputs
    }
    try:
        results = model.predict(stacked, names)
    except Exception:
        # Whose rows? Each member alone answers that, with a message about its own shapes.
        log.debug("a batch of %d requests failed; predicting them one by one", len(members))
        return _predict_each(model, names, members)
    total = sum(m.rows for m in members)
    if any(results[n].ndim == 0 or results[n].shape[0] != total for n in names):
        return None
    outcomes: list[Outputs | Exception] = []
    start = 0
    for member in members:
        stop = start + member.rows
        outcomes.append({n: results[n][start:stop] for n in names})
        start = stop
    return outcomes
