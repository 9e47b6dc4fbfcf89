"""`python -m bench.operator`: the operator's benchmarks (see `bench.operator`)."""

from __future__ import annotations

from bench.operator import main

raise SystemExit(main())
