"""`python -m bench.runtime`: the model-server benchmark (writes the runtime section of RESULTS.md)."""

from __future__ import annotations

from bench.runtime import main

raise SystemExit(main())
