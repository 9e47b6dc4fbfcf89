"""Shadow mirroring: the serving pods copy a sample of live inference requests to the Model's
shadow version (`Model.spec.shadow`) and compare the two answers.

`modelreg.runtime.server` creates a `Mirror` when MODELREG_SHADOW_URL is set (the operator writes
it, with the shadow Service's ClusterIP). After a request has been answered successfully,
`modelreg.runtime.http` (REST: the raw body, still compressed if it was, with its headers) and
`modelreg.runtime.grpc` (the raw ModelInfer message) offer it. Nothing is awaited on the live
path:

- Sampling is an accumulator: exactly MODELREG_SHADOW_SAMPLE_PERCENT of the offered requests, and a
  request not sampled costs one addition.
- At most MODELREG_SHADOW_MAX_IN_FLIGHT mirrors run at once; a sampled request beyond that is
  counted `dropped`, never queued. Each one is bounded by MODELREG_SHADOW_TIMEOUT_MS.
- The shadow's answer is decoded and compared with the live one (`compare`), in a thread when
  the answers are large, and counted in `modelreg_shadow_requests_total{version, outcome}`:
  agree, disagree, error (non-2xx or non-OK, a timeout, unreachable, an unreadable answer),
  other_version (answered by another version than MODELREG_SHADOW_VERSION: the shadow is rolling
  out; not compared) or dropped. The operator reads these counters from the serving pods.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
import numpy as np

from modelreg.runtime import codec, grpc_codec
from modelreg.runtime.errors import InferenceError
from modelreg.runtime.metrics import Metrics
from modelreg.runtime.proto import grpc_predict_v2_pb2 as pb
from modelreg.runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)

THREAD_BYTES = 64 * 1024  # answers larger than this are decoded and compared in a thread
LOG_EVERY_SECONDS = 60.0
_INFER = "/inference.GRPCInferenceService/ModelInfer"
_FLOAT = frozenset({"FP16", "FP32", "FP64"})


@dataclass(frozen=True)
class Verdict:
    agree: bool
    max_abs_diff: float | None  # over the numeric outputs; None when there were none
    why: str = ""


def compare(
    live: Sequence[codec.InputTensor], shadow: Sequence[codec.InputTensor], tolerance: float
) -> Verdict:
    """Whether two answers agree: the same outputs (names, datatypes, shapes) and values equal,
    exactly for integers, booleans and strings (labels), within `tolerance` (max absolute
    difference) for floating point; NaN equals NaN."""
    theirs = {t.name: t for t in shadow}
    if sorted(theirs) != sorted(t.name for t in live):
        return Verdict(False, None, f"outputs {sorted(t.name for t in live)} vs {sorted(theirs)}")
    worst: float | None = None
    agree, why = True, ""
    for mine in live:
        other = theirs[mine.name]
        if mine.datatype != other.datatype or mine.array.shape != other.array.shape:
            return Verdict(
                False,
                worst,
                f"{mine.name}: {mine.datatype}{list(mine.array.shape)} vs "
                f"{other.datatype}{list(other.array.shape)}",
            )
        if mine.datatype == "BYTES":
            same = bool(np.array_equal(mine.array, other.array))
            if not same and agree:
                agree, why = False, f"{mine.name}: the values differ"
            continue
        a = mine.array.astype(np.float64, copy=False)
        b = other.array.astype(np.float64, copy=False)
        both_nan = np.isnan(a) & np.isnan(b)
        diff = np.where(both_nan, 0.0, np.abs(a - b))
        largest = float(np.max(diff)) if diff.size else 0.0
        if math.isnan(largest):
            largest = math.inf  # NaN on one side only
        worst = largest if worst is None else max(worst, largest)
        limit = tolerance if mine.datatype in _FLOAT else 0.0
        if largest > limit and agree:
            agree, why = False, f"{mine.name}: max abs difference {largest:g} > {limit:g}"
    return Verdict(agree, worst, why)


class Mirror:
    """The serving pod's mirror to its shadow. Created and used on the server's event loop."""

    def __init__(self, settings: RuntimeSettings, metrics: Metrics) -> None:
        assert settings.shadow_url is not None
        assert settings.shadow_version is not None
        self.url = settings.shadow_url.rstrip("/")
        self.grpc_target = settings.shadow_grpc_target
        self.version = str(settings.shadow_version)
        self.rate = settings.shadow_sample_percent / 100.0
        self.tolerance = settings.shadow_tolerance
        self.max_in_flight = settings.shadow_max_in_flight
        self.timeout = settings.shadow_timeout_ms / 1000.0
        self.metrics = metrics
        metrics.enable_shadow(settings.shadow_version)
        self._acc = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._channel: grpc.aio.Channel | None = None
        self._call: Any = None
        self._logged = -math.inf

    def describe(self) -> str:
        where = self.url + (f" and gRPC {self.grpc_target}" if self.grpc_target else "")
        return (
            f"mirroring {self.rate * 100:g}% of inference requests to the shadow version "
            f"{self.version} at {where}"
        )

    # -- the live path's hooks: no await, no I/O -------------------------------------------------

    def _sampled(self) -> bool:
        self._acc += self.rate
        if self._acc < 1.0 - 1e-9:
            return False
        self._acc -= 1.0
        if len(self._tasks) >= self.max_in_flight:
            self.metrics.shadowed("dropped")
            return False
        return True

    def offer_rest(
        self,
        name: str,
        body: bytes,
        headers: dict[str, str],
        live: bytes,
        live_header_length: int | None,
    ) -> None:
        """A REST request answered 200: `body` as received, `live` the answer sent."""
        if self._sampled():
            self._spawn(self._rest(name, body, headers, live, live_header_length))

    def offer_grpc(self, raw: bytes, live: pb.ModelInferResponse) -> None:
        """A gRPC ModelInfer answered OK: `raw` the request message as received."""
        if self.grpc_target is not None and self._sampled():
            self._spawn(self._grpc(raw, live))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work, name="shadow-mirror")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the mirrors -----------------------------------------------------------------------------

    async def _rest(
        self,
        name: str,
        body: bytes,
        headers: dict[str, str],
        live: bytes,
        live_header_length: int | None,
    ) -> None:
        started = time.perf_counter()
        try:
            if self._session is None:
                self._session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=self.max_in_flight),
                    timeout=aiohttp.ClientTimeout(total=self.timeout),
                )
            async with self._session.post(
                f"{self.url}/v2/models/{name}/infer", data=body, headers=headers
            ) as r:
                answer = await r.read()
                status = r.status
                length = r.headers.get("Inference-Header-Content-Length")
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            self._failed(f"{type(e).__name__}: {e}")
            return
        seconds = time.perf_counter() - started
        if status != 200:
            self._failed(f"HTTP {status}: {answer[:200]!r}", seconds)
            return

        def judge() -> Verdict | None:
            version, theirs = codec.decode_response(answer, int(length) if length else None)
            if version != self.version:
                return None
            _, mine = codec.decode_response(live, live_header_length)
            return compare(mine, theirs, self.tolerance)

        await self._judge(judge, len(answer) + len(live), seconds)

    async def _grpc(self, raw: bytes, live: pb.ModelInferResponse) -> None:
        started = time.perf_counter()
        try:
            if self._call is None:
                assert self.grpc_target is not None
                self._channel = grpc.aio.insecure_channel(self.grpc_target)
                self._call = self._channel.unary_unary(
                    _INFER,
                    request_serializer=None,
                    response_deserializer=pb.ModelInferResponse.FromString,
                )
            reply: pb.ModelInferResponse = await self._call(raw, timeout=self.timeout)
        except grpc.aio.AioRpcError as e:
            self._failed(f"gRPC {e.code().name}: {e.details()}", time.perf_counter() - started)
            return
        except (TimeoutError, OSError) as e:
            self._failed(f"{type(e).__name__}: {e}")
            return
        seconds = time.perf_counter() - started

        def judge() -> Verdict | None:
            version, theirs = grpc_codec.decode_response(reply)
            if version != self.version:
                return None
            _, mine = grpc_codec.decode_response(live)
            return compare(mine, theirs, self.tolerance)

        await self._judge(judge, reply.ByteSize() + live.ByteSize(), seconds)

    async def _judge(self, judge: Callable[[], Verdict | None], size: int, seconds: float) -> None:
        try:
            if size > THREAD_BYTES:
                verdict = await asyncio.to_thread(judge)
            else:
                verdict = judge()
        except InferenceError as e:
            self._failed(f"the shadow's answer cannot be read: {e.message}", seconds)
            return
        except Exception as e:  # a bug here must never reach the live path or the loop
            log.exception("comparing the shadow's answer crashed")
            self._failed(f"{type(e).__name__}: {e}", seconds)
            return
        if verdict is None:
            self.metrics.shadowed("other_version", seconds)
            return
        if not verdict.agree:
            log.debug("the shadow version %s disagreed: %s", self.version, verdict.why)
        self.metrics.shadowed(
            "agree" if verdict.agree else "disagree", seconds, verdict.max_abs_diff
        )

    def _failed(self, why: str, seconds: float | None = None) -> None:
        self.metrics.shadowed("error", seconds)
        now = time.monotonic()
        if now - self._logged >= LOG_EVERY_SECONDS:  # at most one line a minute
            self._logged = now
            log.warning("a request mirrored to the shadow version %s failed: %s", self.version, why)

    async def close(self) -> None:
        """Cancel the mirrors in flight and close the connections (server shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._channel is not None:
            await self._channel.close()
