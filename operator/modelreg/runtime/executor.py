"""The bounded executor of the model server: where decoding, prediction and encoding run.

`modelreg.runtime.http` asks `DataPlane.admit` for admission before it reads a request's body, and
`modelreg.runtime.dataplane` runs every step of an admitted request here. Only requests small
enough to cost tens of microseconds (MODELREG_INLINE_MAX_BYTES) are answered on the event loop.

- Admission: at most `workers + max_queue` requests are admitted at once (body being read, waiting
  for a worker, or running), and the bodies of those not running (being read or waiting) add up
  to at most `max_queue_bytes`, each counted at its announced size. A request beyond either bound
  is refused at once with `Overloaded` (503, Retry-After), before its body is read: a flood costs
  neither memory nor CPU beyond the bound. The byte bound never refuses a request when nothing
  else is admitted. Bodies in memory: at most `workers` running ones (each under the request
  size cap) plus `max_queue_bytes`.
- Slots: at most `workers` admitted requests run at once; the others wait in arrival order. A
  request's body stops counting as waiting while it holds a slot (`slot(admission)`).
- Threads: `workers` threads decompress, decode small bodies and predict (onnxruntime, xgboost
  and LightGBM release the interpreter lock while they compute).
- Processes: up to `workers` processes (`modelreg.runtime.worker`, started when first needed)
  parse large JSON bodies and write large JSON responses. The JSON parser and numpy's conversion of nested lists hold the
  interpreter lock for the whole call (about 10 ms per MiB); in a thread that stalls the event
  loop, and its health probes, as surely as running on it.

A request holds its slot across all its steps, so neither pool ever has more than `workers` tasks:
the only queue is the admission queue, and it is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import sys
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from modelreg.runtime.errors import InferenceError, Overloaded
from modelreg.runtime.worker import FRAME, OPERATIONS

MIB = 1024 * 1024

log = logging.getLogger(__name__)

T = TypeVar("T")

_BOOTSTRAP = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from modelreg.runtime.worker import main; main()"
)
_READ_LIMIT = 8 * 1024 * 1024  # the pipe's buffer before reading pauses


class WorkerLost(InferenceError):
    """A worker process died while handling the request (killed, out of memory)."""

    status = 500


class Admission:
    """One admitted request of `size` body bytes; `release()` (or leaving the `with` block) frees
    its place."""

    __slots__ = ("_executor", "_held", "_running", "size")

    def __init__(self, executor: Executor, size: int) -> None:
        self._executor = executor
        self._held = True
        self._running = False
        self.size = size

    def release(self) -> None:
        if self._held:
            self._held = False
            self._executor._admitted -= 1
            if not self._running:
                self._executor._waiting_bytes -= self.size

    def _run(self) -> bool:
        """Its body stops counting as waiting (it got a slot); False when it already had."""
        if not self._held or self._running:
            return False
        self._running = True
        self._executor._waiting_bytes -= self.size
        return True

    def _wait(self) -> None:
        """Its body counts as waiting again (it left its slot)."""
        if self._held and self._running:
            self._running = False
            self._executor._waiting_bytes += self.size

    def __enter__(self) -> Admission:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Executor:
    """Admission, slots, and the thread and process pools of one server. Used on one event loop."""

    def __init__(
        self,
        *,
        workers: int,
        max_queue: int,
        retry_after: int,
        process_min_bytes: int,
        max_queue_bytes: int | None = None,
    ) -> None:
        """`max_queue_bytes` None: bounded by the count alone."""
        if workers < 1 or max_queue < 0 or (max_queue_bytes is not None and max_queue_bytes < 0):
            raise ValueError(
                "workers must be at least 1, and max_queue and max_queue_bytes not negative"
            )
        self.workers = workers
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        self.retry_after = retry_after
        self.process_min_bytes = process_min_bytes
        self._admitted = 0
        self._waiting_bytes = 0
        self._running = 0
        self._slots = asyncio.Semaphore(workers)
        self._threads = ThreadPoolExecutor(workers, thread_name_prefix="modelreg-worker")
        self._idle: list[_WorkerProcess] = []
        self._processes_worked = False
        self._closed = False

    # -- admission ------------------------------------------------------------------------------

    @property
    def admitted(self) -> int:
        """Requests admitted and not finished: running, waiting, or having their body read."""
        return self._admitted

    @property
    def running(self) -> int:
        return self._running

    @property
    def queued(self) -> int:
        """Admitted requests not running yet."""
        return self._admitted - self._running

    @property
    def waiting_bytes(self) -> int:
        """The body bytes of admitted requests not holding a slot (being read, or waiting)."""
        return self._waiting_bytes

    def admit(self, size: int = 0) -> Admission:
        """Admit one request whose body is `size` bytes, or raise `Overloaded` when the admitted
        requests are as many as workers and queue allow, or their waiting bodies would pass
        `max_queue_bytes` (unless nothing else is admitted)."""
        if self._admitted >= self.workers + self.max_queue:
            raise Overloaded(
                f"the server is at capacity: {self._admitted} requests are admitted, as many as "
                f"MODELREG_WORKERS ({self.workers}) + MODELREG_MAX_QUEUE ({self.max_queue}) "
                f"allow; retry after {self.retry_after}s",
                self.retry_after,
            )
        limit = self.max_queue_bytes
        if limit is not None and self._admitted and self._waiting_bytes + size > limit:
            raise Overloaded(
                f"the server is at capacity: the requests waiting hold "
                f"{_bytes(self._waiting_bytes)} of request bodies, and this one's "
                f"{_bytes(size)} (its Content-Length, or MODELREG_MAX_REQUEST_BYTES without one) "
                f"would take them past MODELREG_MAX_QUEUE_BYTES ({_bytes(limit)}); retry after "
                f"{self.retry_after}s",
                self.retry_after,
            )
        self._admitted += 1
        self._waiting_bytes += size
        return Admission(self, size)

    @contextlib.asynccontextmanager
    async def slot(self, admission: Admission | None = None) -> AsyncIterator[None]:
        """Wait for a worker; held across every step of one request. While the request of
        `admission` holds it, its body does not count as waiting (a batch, which holds a slot for
        many, passes none: its members' bodies keep counting)."""
        async with self._slots:
            self._running += 1
            ran = admission is not None and admission._run()
            try:
                yield
            finally:
                self._running -= 1
                if ran:
                    assert admission is not None
                    admission._wait()

    # -- running steps --------------------------------------------------------------------------

    def offloads(self, json_bytes: int) -> bool:
        """Whether JSON of this size is parsed or written in a worker process."""
        return 0 < self.process_min_bytes < json_bytes

    async def thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in a worker thread (call it while holding a slot)."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)

    async def process(self, operation: str, *args: Any) -> Any:
        """Run `worker.OPERATIONS[operation](*args)` in a worker process (call it while holding a
        slot); in a thread when worker processes are off."""
        if self.process_min_bytes == 0:
            return await self.thread(OPERATIONS[operation], *args)
        proc = None
        while self._idle and proc is None:
            proc = self._idle.pop()
            if not proc.alive:  # exited while idle (killed): not this request's doing
                log.warning("an idle worker process exited (%s); starting another", proc.status)
                proc = None
        if proc is None:
            try:
                proc = await _WorkerProcess.start()
            except OSError as e:
                self._disable_processes(f"cannot start a worker process ({e})")
                return await self.thread(OPERATIONS[operation], *args)
        try:
            data = await proc.call(operation, args)
        except _WorkerDied as e:
            code = await proc.reap()
            if code > 0 and not self._processes_worked:
                # It failed on its own before ever answering (cannot import, say): worker
                # processes cannot run here. Killed by a signal (out of memory) is different.
                self._disable_processes(f"the worker process exited with code {code} ({e})")
                return await self.thread(OPERATIONS[operation], *args)
            log.warning("a worker process exited (%s); a new one starts when needed", e)
            raise WorkerLost(
                "a worker process exited while handling this request (killed or out of "
                "memory); it is replaced for the next request"
            ) from None
        except BaseException:
            proc.kill()  # cancelled mid-frame: its pipe is out of step
            raise
        self._processes_worked = True
        if self._closed:
            proc.kill()
        else:
            self._idle.append(proc)
        # In a thread: string tensors are rebuilt in bytecode (`worker.unpack_strings`).
        ok, value = await self.thread(_loads, data)
        if ok:
            return value
        raise value

    def _disable_processes(self, why: str) -> None:
        log.error(
            "%s; large JSON bodies are now parsed in threads, which can delay health probes",
            why,
        )
        self.process_min_bytes = 0

    def close(self) -> None:
        """Stop the pools (after the server has drained); running threads finish on their own."""
        self._closed = True
        self._threads.shutdown(wait=False, cancel_futures=True)
        while self._idle:
            self._idle.pop().close()


class _WorkerDied(Exception):
    pass


class _WorkerProcess:
    """One `modelreg.runtime.worker` process, answering one frame at a time."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls) -> _WorkerProcess:
        # This server's sys.path: the same code, whatever put it there. No credentials.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _BOOTSTRAP,
            json.dumps(sys.path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            limit=_READ_LIMIT,
        )
        return cls(proc)

    async def call(self, operation: str, args: tuple[Any, ...]) -> bytes:
        """Send one frame and return the answer's pickle."""
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None
        assert stdout is not None
        blob = pickle.dumps((operation, args), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            stdin.write(FRAME.pack(len(blob)))
            stdin.write(blob)
            await stdin.drain()
            (size,) = FRAME.unpack(await stdout.readexactly(FRAME.size))
            data = await stdout.readexactly(size)
        except (OSError, asyncio.IncompleteReadError) as e:
            raise _WorkerDied(self.status if not self.alive else str(e)) from None
        return data

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    @property
    def status(self) -> str:
        code = self.proc.returncode
        return "running" if code is None else f"exit code {code}"

    def close(self) -> None:
        """Close its stdin: the process exits when it has nothing left to do."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    async def reap(self) -> int:
        """Its exit code (negative: the signal that killed it), killing it if it still runs."""
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(self.proc.wait(), 2.0)
        self.kill()
        return await self.proc.wait()


def _bytes(n: int) -> str:
    if n >= MIB:
        return f"{n / MIB:.1f} MiB ({n} bytes)"
    return f"{n} bytes"


def _loads(data: bytes) -> tuple[bool, Any]:
    answer: tuple[bool, Any] = pickle.loads(data)  # noqa: S301 - our own child process
    return answer
