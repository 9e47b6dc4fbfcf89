"""Side virtualenvs for independent v2 implementations that cannot share the project's venv.

Used by the conformance tests (tests/unit/runtime/test_conformance_*.py) and by the runtime
benchmark (bench/runtime). `kserve` 0.21 and `mlserver` 1.7 cannot be installed together, and both
pin older protobuf/starlette than the project, so each gets its own venv under .dev/ (gitignored),
built on first use from the pins below and reused while the pins are unchanged.

A caller may ask for more than the base pins (`extra`, and `no_deps` for a package whose declared
dependencies must not be resolved): the benchmark adds the model libraries, at the versions of the
project's venv, so a peer loads the artifact with the library that wrote it. What a venv holds is
recorded in its stamp file; a venv is reused while the stamp holds every requirement asked for, so
the tests' calls and the benchmark's do not rebuild each other's additions.
"""

from __future__ import annotations

import fcntl
import re
import subprocess
import sys
import venv
from collections.abc import Sequence
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

_NO_DEPS = "--no-deps "


def _name(requirement: str) -> str:
    bare = requirement.removeprefix(_NO_DEPS)
    return re.split(r"[=<>!~\[; ]", bare, maxsplit=1)[0].lower().replace("_", "-")


def ensure(
    name: str,
    *,
    extra: Sequence[str] = (),
    no_deps: Sequence[str] = (),
    timeout: float = 1200,
) -> Path:
    """The python executable of the side venv `name`, built or completed if it lacks a pin.

    `extra` requirements are installed with the base pins; `no_deps` ones afterwards with
    `pip install --no-deps`."""
    pins = (*PINS[name], *extra)
    wanted = {*pins, *(_NO_DEPS + p for p in no_deps)}
    root = REPO / ".dev" / f"venv-{name}"
    python = root / "bin" / "python"
    stamp = root / ".modelreg-pins"
    root.parent.mkdir(parents=True, exist_ok=True)
    with (root.parent / f".venv-{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time (parallel test runs)
        have = set(stamp.read_text().splitlines()) if python.exists() and stamp.exists() else set()
        if python.exists() and wanted <= have:
            return python
        if not python.exists():
            venv.EnvBuilder(with_pip=True, clear=True).create(root)
        steps = [list(pins)] + ([["--no-deps", *no_deps]] if no_deps else [])
        for args in steps:
            proc = subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(
                    f"cannot build the {name} venv at {root} (pip install {' '.join(args)}):\n"
                    f"{proc.stderr[-2000:]}"
                )
        # A requirement asked for again at another version replaces the recorded one.
        names = {_name(w) for w in wanted}
        kept = {h for h in have if _name(h) not in names}
        stamp.write_text("\n".join(sorted(kept | wanted)) + "\n")
    return python


if __name__ == "__main__":  # python -m tests.unit.runtime.clientenv kserve mlserver
    for arg in sys.argv[1:] or list(PINS):
        print(ensure(arg))
