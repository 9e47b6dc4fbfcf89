"""bench.operator: the operator's benchmarks (issue 7): promotion latency against the floor of a
plain `kubectl apply`, scale (1,000 and 10,000 versions), and 1 GiB artifact verification against
a raw streaming read.

`main(argv)` is what `python -m bench.operator` and `python -m bench` call. It needs the local
control plane and S3 server (`make cluster-up`), works only in namespaces named `bench-*` that it
creates and deletes, and writes the `operator-*` sections of bench/RESULTS.md.

    python -m bench.operator [--quick] [--only promotion,scale,verify] [--profile] [--no-write]

`--quick`: 10 promotions, the 1,000-version scale run with a 10 s idle window, one verification
round; it prints its sections and writes them only with `--write`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from bench.common import EnvError, ensure_crds, load_env, log, write_header, write_section

BENCHES = ("promotion", "scale", "verify")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.operator", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a short variant (minutes, not an hour)")
    p.add_argument(
        "--only", default=",".join(BENCHES), help="comma-separated: " + ", ".join(BENCHES)
    )
    p.add_argument("--profile", action="store_true", help="run the scale benchmark under py-spy")
    p.add_argument("--promotions", type=int, default=None, help="promotions to time (default 50)")
    p.add_argument("--no-write", action="store_true", help="print the sections only")
    p.add_argument("--write", action="store_true", help="write the sections even with --quick")
    args = p.parse_args(argv)
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = set(chosen) - set(BENCHES)
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    promotions = args.promotions or (10 if args.quick else 50)
    if not 1 <= promotions <= 200:
        p.error("--promotions must be 1..200")
    write = (args.write or not args.quick) and not args.no_write
    try:
        env = load_env()
        ensure_crds(env)
    except (EnvError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    def emit(name: str, text: str) -> None:
        if args.quick:
            text = "_Quick variant (`--quick`)._\n\n" + text
        print(text, flush=True)
        if write:
            write_header()
            write_section(name, text)
            log(f"wrote the '{name}' section of bench/RESULTS.md")

    failed: list[str] = []

    def attempt(name: str, fn: Callable[[], None]) -> None:
        log(f"operator benchmark: {name}")
        try:
            fn()
        except Exception as e:  # one benchmark failing must not lose the others' results
            log(f"{name} failed: {e.__class__.__name__}: {e}")
            failed.append(name)

    if "promotion" in chosen:
        from bench.operator import promotion

        attempt(
            "promotion",
            lambda: emit(
                "operator-promotion", promotion.markdown(promotion.run(env, promotions=promotions))
            ),
        )
    if "scale" in chosen:
        from bench.operator import scale

        def run_scale() -> None:
            sizes = [(100, 10, 600.0)] if args.quick else [(100, 10, 600.0), (1000, 10, 1800.0)]
            results = [
                scale.run(
                    env,
                    models=m,
                    per_model=v,
                    timeout=t,
                    idle_seconds=10 if args.quick else 30,
                    profile=args.profile,
                )
                for m, v, t in sizes
            ]
            emit("operator-scale", scale.markdown(results))
            if write:
                table = scale.write_sizing(results)
                emit("operator-sizing", scale.sizing_markdown(table))

        attempt("scale", run_scale)
    if "verify" in chosen:
        from bench.operator import verify

        attempt(
            "verify",
            lambda: emit(
                "operator-verify", verify.markdown(verify.run(env, rounds=1 if args.quick else 5))
            ),
        )
    if failed:
        log(f"operator benchmarks failed: {', '.join(failed)}")
        return 1
    return 0
