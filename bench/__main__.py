"""`python -m bench` (`make bench`): every benchmark group, then bench/RESULTS.md is complete.

    python -m bench [--only operator,runtime,register,ui] [--quick]

Runs `bench.operator` (this repository's operator benchmarks), then `bench.runtime`, `bench.ui` and
`bench.register` when those packages exist; each exposes `main(argv) -> int` and writes its own
sections of RESULTS.md. A missing group is reported and skipped, a failing one makes the exit code
non-zero without stopping the others. `--quick` is passed to the operator group only (the other
groups have their own flags: `python -m bench.runtime --help`).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
import time

from bench.common import log, write_header

GROUPS = ("operator", "runtime", "register", "ui")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--only", default=",".join(GROUPS), help="comma-separated: " + ", ".join(GROUPS))
    p.add_argument("--quick", action="store_true", help="the short variant of the operator group")
    args, rest = p.parse_known_args(argv)
    chosen = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = set(chosen) - set(GROUPS)
    if unknown:
        p.error(f"unknown group(s): {', '.join(sorted(unknown))}")
    if not args.quick:
        write_header()
    status: dict[str, str] = {}
    for group in chosen:
        try:
            module = importlib.import_module(f"bench.{group}")
        except ModuleNotFoundError as e:
            if e.name not in (f"bench.{group}", "bench"):
                raise
            status[group] = "absent (no bench/" + group + "/ package): skipped"
            log(f"bench.{group}: {status[group]}")
            continue
        entry = getattr(module, "main", None)
        if entry is None:
            status[group] = "has no main(): skipped"
            log(f"bench.{group}: {status[group]}")
            continue
        group_argv: list[str] = []
        if group == "operator":
            group_argv = (["--quick"] if args.quick else []) + rest
        t0 = time.monotonic()
        log(f"bench.{group}: starting")
        try:
            takes_argv = bool(inspect.signature(entry).parameters)
            code = entry(group_argv) if takes_argv else entry()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except Exception as e:
            log(f"bench.{group} crashed: {e.__class__.__name__}: {e}")
            code = 1
        status[group] = f"exit {code} after {time.monotonic() - t0:.0f} s"
        log(f"bench.{group}: {status[group]}")
    for group, what in status.items():
        print(f"bench.{group}: {what}", file=sys.stderr)
    bad = [
        g
        for g, what in status.items()
        if what.startswith("exit") and not what.startswith("exit 0 ")
    ]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
