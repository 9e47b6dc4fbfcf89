"""Side virtualenvs for independent v2 implementations that cannot share the project's venv.

Used by the conformance tests (tests/unit/runtime/test_conformance_*.py) and by the runtime
benchmark (bench/runtime). `kserve` 0.21 and `mlserver` 1.7 cannot be installed together, and both
pin older protobuf/starlette than the project, so each gets its own venv under .dev/ (gitignored),
built on first use from the pins below and reused while the pins are unchanged.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

PINS: dict[str, tuple[str, ...]] = {
    "kserve": ("kserve==0.21.0",),
    # httptools: uvicorn's fast HTTP parser, so the benchmark does not handicap MLServer with h11.
    # uvloop<0.22: MLServer 1.7's inference workers call asyncio.get_event_loop() outside a loop,
    # which uvloop 0.22 turned into an error (every worker dies and the model never loads).
    "mlserver": (
        "mlserver==1.7.1",
        "mlserver-sklearn==1.7.1",
        "httptools>=0.6",
        "uvloop>=0.19,<0.22",
    ),
}


def ensure(name: str, *, timeout: float = 1200) -> Path:
    """The python executable of the side venv `name`, built if missing or out of date."""
    pins = PINS[name]
    root = REPO / ".dev" / f"venv-{name}"
    python = root / "bin" / "python"
    stamp = root / ".modelreg-pins"
    wanted = "\n".join(pins) + "\n"
    root.parent.mkdir(parents=True, exist_ok=True)
    with (root.parent / f".venv-{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time (parallel test runs)
        if python.exists() and stamp.exists() and stamp.read_text() == wanted:
            return python
        if not python.exists():
            venv.EnvBuilder(with_pip=True, clear=True).create(root)
        proc = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"cannot build the {name} venv at {root} (pip install {' '.join(pins)}):\n"
                f"{proc.stderr[-2000:]}"
            )
        stamp.write_text(wanted)
    return python


if __name__ == "__main__":  # python -m tests.unit.runtime.clientenv kserve mlserver
    for arg in sys.argv[1:] or list(PINS):
        print(ensure(arg))
