"""Reproduce the cost of kopf's start-up barrier (index pre-population) without a cluster.

Each of N objects does what kopf's per-object worker does while the indexes fill: a toggle is made
in the operator-wide ToggleSet(all) before the worker starts, dropped once the object is indexed,
and then the worker waits for the whole set to be on. A blocker toggle (kopf's "orchestration
blocker") is dropped last. Prints the wall time and how many times the waiters' predicate ran.

    python docs/upstream/kopf-barrier-repro.py 1000 5000
"""

from __future__ import annotations

import asyncio
import sys
import time

from kopf._cogs.aiokits.aiotoggles import ToggleSet


async def barrier(n: int) -> tuple[float, int]:
    toggles = ToggleSet(all)
    blocker = await toggles.make_toggle(name="orchestration blocker")
    checks = 0
    original = toggles.is_on

    def counted() -> bool:
        nonlocal checks
        checks += 1
        return original()

    toggles.is_on = counted  # type: ignore[method-assign]

    async def worker() -> None:
        mine = await toggles.make_toggle()
        await asyncio.sleep(0)  # the index handlers run
        await toggles.drop_toggle(mine)
        await toggles.wait_for(True)

    start = time.perf_counter()
    tasks = []
    for _ in range(n):  # the watch stream delivers the listed objects one at a time
        tasks.append(asyncio.create_task(worker()))
        await asyncio.sleep(0)
    while len(toggles) > 1:
        await asyncio.sleep(0)
    await toggles.drop_toggle(blocker)
    await asyncio.gather(*tasks)
    return time.perf_counter() - start, checks


def main() -> None:
    for n in [int(a) for a in sys.argv[1:]] or [1000, 5000]:
        took, checks = asyncio.run(barrier(n))
        print(f"{n:>6} objects: {took:7.2f} s, {checks:>11,} state checks")


if __name__ == "__main__":
    main()
