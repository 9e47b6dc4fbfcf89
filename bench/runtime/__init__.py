"""bench.runtime: modelreg's model server against MLServer and KServe (see `bench.runtime.bench`).

`main(argv)` is what `python -m bench.runtime` and `python -m bench` call.
"""

from __future__ import annotations

from bench.runtime.bench import main

__all__ = ["main"]
