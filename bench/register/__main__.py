"""`python -m bench.register`: the register benchmark (writes the register section of RESULTS.md)."""

from __future__ import annotations

from bench.register import main

raise SystemExit(main())
