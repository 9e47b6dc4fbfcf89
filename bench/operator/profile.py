"""Summaries of py-spy's folded stacks (`py-spy record --format raw`): where the samples go.

`python -m bench.operator.profile FILE [N]` prints the top frames by inclusive and by self share;
the scale benchmark puts the same table into RESULTS.md when it ran under py-spy.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m.group("file")
    for marker in ("site-packages/", "python3.11/", "operator/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m.group('fn')} ({path})"


def summarize(
    path: Path, top: int = 15
) -> tuple[int, list[tuple[str, float]], list[tuple[str, float]]]:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";")]
        # The thread's name leads each stack in py-spy's raw output; drop it.
        if frames and frames[0].startswith(("thread ", "process ")):
            frames = frames[1:]
        if not frames:
            continue
        total += n
        for f in set(frames):
            inclusive[f] += n
        own[frames[-1]] += n
    if not total:
        return 0, [], []
    inc = [(f, 100 * c / total) for f, c in inclusive.most_common(top * 4)]
    # Inclusive shares of generic frames (thread bootstraps, the event loop) say little; keep the rest.
    boring = ("threading.py", "concurrent/futures", "asyncio/", "runpy", "<module>")
    inc = [(f, p) for f, p in inc if not any(b in f for b in boring)][:top]
    slf = [(f, 100 * c / total) for f, c in own.most_common(top)]
    return total, inc, slf


def markdown(path: Path, top: int = 12) -> str:
    total, inc, slf = summarize(path, top)
    if not total:
        return "(empty profile)"
    rows = [f"| {p:.1f} % | `{f}` |" for f, p in inc]
    rows2 = [f"| {p:.1f} % | `{f}` |" for f, p in slf]
    return "\n".join(
        [
            f"{total} samples (py-spy `--gil`: 50 Hz, only the thread holding the GIL, i.e. Python CPU time).",
            "",
            "| inclusive | frame |",
            "| --- | --- |",
            *rows,
            "",
            "| self | frame |",
            "| --- | --- |",
            *rows2,
        ]
    )


if __name__ == "__main__":
    print(markdown(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 25))
