"""`python -m modelreg.runtime`: the serving container's command (see `modelreg.runtime.server`)."""

from __future__ import annotations

from modelreg.runtime.server import main

raise SystemExit(main())
