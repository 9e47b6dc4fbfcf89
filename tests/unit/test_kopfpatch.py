"""kopfpatch: kopf's ToggleSet wakes its waiters only when its state flips, and still wakes them."""

from __future__ import annotations

import asyncio
import time

from kopf._cogs.aiokits import aiotoggles

from modelreg.controller import kopfpatch


def test_patch_applies_once() -> None:
    assert kopfpatch.apply()
    assert kopfpatch.apply()


def test_waiters_still_wake_when_the_last_toggle_drops() -> None:
    kopfpatch.apply()

    async def scenario() -> None:
        s = aiotoggles.ToggleSet(all)
        toggles = [await s.make_toggle(name=str(i)) for i in range(3)]
        assert not s.is_on()
        waiter = asyncio.create_task(s.wait_for(True))
        off_waiter = asyncio.create_task(s.wait_for(False))
        for t in toggles[:-1]:
            await s.drop_toggle(t)
            await asyncio.sleep(0)
            assert not waiter.done()
        await asyncio.wait_for(off_waiter, 1)  # already off: returns at once
        await s.drop_toggles(toggles[-1:])
        await asyncio.wait_for(waiter, 1)
        assert s.is_on()
        # Adding an off toggle flips the set off again: waiters for False wake.
        off_again = asyncio.create_task(s.wait_for(False))
        await asyncio.sleep(0)
        await s.make_toggle(name="late")
        await asyncio.wait_for(off_again, 1)

    asyncio.run(scenario())


def test_start_up_barrier_is_linear() -> None:
    """kopf's watcher makes one toggle per listed object and starts its worker, which drops the
    toggle and waits for the whole set. Unpatched, 3,000 objects take ~40 s; patched, ~0.2 s."""
    kopfpatch.apply()

    async def scenario(n: int) -> float:
        s = aiotoggles.ToggleSet(all)
        blocker = await s.make_toggle(name="blocker")

        async def worker(t: aiotoggles.Toggle) -> None:
            await s.drop_toggle(t)
            await s.wait_for(True)

        t0 = time.perf_counter()
        tasks = []
        for i in range(n):
            t = await s.make_toggle(name=str(i))
            tasks.append(asyncio.create_task(worker(t)))
            await asyncio.sleep(0)
        await s.drop_toggle(blocker)
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        return time.perf_counter() - t0

    assert asyncio.run(scenario(3000)) < 5.0
