"""modelreg's benchmarks: `python -m bench` (`make bench`) runs them and writes bench/RESULTS.md.

Each group is a package with a `main()`: `bench.operator` (promotion latency, scale, artifact
verification), and, when present, `bench.runtime` and `bench.register`. Shared helpers (the
RESULTS.md section writer, the machine header, process and cluster helpers) are in `bench.common`.
Never part of `make test`.
"""
