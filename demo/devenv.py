"""The files `make cluster-up` writes into .dev/: read by the demo, the e2e fixtures and the benchmarks.

`.dev/s3.env` is a file of shell assignments (KEY=value), so that a shell can `source` it too.
"""

from __future__ import annotations

from pathlib import Path


def read_env_file(path: Path) -> dict[str, str]:
    """The KEY=value lines of a shell assignment file; comments and blank lines are skipped."""
    out: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip().strip("'\"")
    return out
