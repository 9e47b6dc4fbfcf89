"""The upload progress bar of `modelreg register`, drawn on stderr.

Called by `modelreg.cli.main` as the SDK's `progress(sent, total)` callback. On a terminal it
redraws one line at most ten times a second; elsewhere (CI logs, pipes) it prints nothing until a
single summary line at the end, so logs stay readable. stdout is left to the command's result.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from modelreg.cli.output import human_bytes

_WIDTH = 30


class ProgressBar:
    def __init__(self, label: str, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._sent = 0
        self._total = 0

    def __call__(self, sent: int, total: int) -> None:
        self._sent, self._total = sent, total
        if not self.tty:
            return
        now = time.monotonic()
        if sent < total and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        self.stream.write("\r" + self.line(now) + "\x1b[K")
        self.stream.flush()

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self._start, 1e-6)
        frac = self._sent / self._total if self._total else 1.0
        filled = int(frac * _WIDTH)
        bar = "#" * filled + "-" * (_WIDTH - filled)
        rate = self._sent / elapsed
        return (
            f"{self.label} [{bar}] {frac * 100:5.1f}% "
            f"{human_bytes(self._sent)}/{human_bytes(self._total)} {human_bytes(rate)}/s"
        )

    def done(self) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r" + self.line() + "\x1b[K\n")
        else:
            elapsed = time.monotonic() - self._start
            self.stream.write(
                f"{self.label}: uploaded {human_bytes(self._sent)} in {elapsed:.1f}s\n"
            )
        self.stream.flush()
