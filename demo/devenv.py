"""What `make cluster-up` makes, as the demo, the e2e fixtures and the benchmarks see it.

`.dev/s3.env` is a file of shell assignments (KEY=value), so that a shell can `source` it too.
The real node (tools/node.sh) is `REAL_NODE`, labelled and tainted so that only pods carrying
`ON_REAL_NODE` land there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

REAL_NODE = "modelreg-node"
ON_REAL_NODE: dict[str, Any] = {
    "nodeSelector": {"modelreg.dev/real-node": "true"},
    "tolerations": [
        {
            "key": "modelreg.dev/real-node",
            "operator": "Equal",
            "value": "true",
            "effect": "NoSchedule",
        }
    ],
}


def read_env_file(path: Path) -> dict[str, str]:
    """The KEY=value lines of a shell assignment file; comments and blank lines are skipped."""
    out: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip().strip("'\"")
    return out
