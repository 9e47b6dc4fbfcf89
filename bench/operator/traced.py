"""`python -m bench.operator.traced OUT -- [operator args]`: the operator under tracemalloc.

A diagnostic for the scale benchmark's peak RSS: runs `modelreg.controller.__main__.main()` with
tracemalloc on and, every 2 s, keeps the snapshot with the most traced memory; at exit it writes
the top allocation sites of that peak (grouped by file:line, 1 frame) to OUT. Slow (tracemalloc
roughly halves the operator's speed): use it to see where memory goes, never to time anything.
"""

from __future__ import annotations

import sys
import threading
import tracemalloc
from pathlib import Path


def main() -> int:
    out = Path(sys.argv[1])
    args = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    tracemalloc.start(1)
    peak: dict[str, object] = {"size": -1, "snapshot": None}
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(2.0):
            current, _ = tracemalloc.get_traced_memory()
            if current > int(peak["size"]):  # type: ignore[call-overload]
                peak.update(size=current, snapshot=tracemalloc.take_snapshot())

    threading.Thread(target=sampler, daemon=True, name="tracemalloc-sampler").start()
    from modelreg.controller.__main__ import main as operator_main

    try:
        return operator_main(args)
    finally:
        stop.set()
        snapshot = peak["snapshot"]
        if isinstance(snapshot, tracemalloc.Snapshot):
            stats = snapshot.statistics("lineno")
            lines = [f"peak traced: {int(peak['size']) / 2**20:.1f} MiB"]  # type: ignore[call-overload]
            lines += [f"{s.size / 2**20:8.1f} MiB {s.count:8d} {s.traceback}" for s in stats[:40]]
            out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
