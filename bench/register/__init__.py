"""bench.register: `modelreg register` of a large artifact against raw boto3 (see `bench.register.bench`).

`main(argv)` is what `python -m bench.register` and `python -m bench` call.
"""

from __future__ import annotations

from bench.register.bench import main

__all__ = ["main"]
