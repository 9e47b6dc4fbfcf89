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


def test_a_relist_reports_objects_deleted_during_the_gap() -> None:
    import asyncio

    from kopf._cogs.clients import watching

    from modelreg.controller.kopfpatch import relist_aware

    def obj(uid: str) -> dict[str, object]:
        return {
            "apiVersion": "modelreg.dev/v1alpha1",
            "kind": "ModelVersion",
            "metadata": {"name": uid, "namespace": "ns", "uid": uid, "labels": {}},
            "spec": {"model": "m", "artifact": {"uri": "s3://b/k"}},
        }

    rounds = [
        [{"type": None, "object": obj("a")}, {"type": None, "object": obj("b")}],
        [{"type": None, "object": obj("b")}],  # "a" was deleted while the watch was gone
    ]

    async def fake_watch(**_: object):  # type: ignore[no-untyped-def]
        for item in rounds.pop(0):
            yield item
        yield watching.Bookmark.LISTED

    async def collect() -> list[object]:
        wrapped = relist_aware(fake_watch)
        out: list[object] = []
        for _ in range(2):
            async for item in wrapped(resource="mv", namespace="ns"):
                out.append(item)
        return out

    seen = asyncio.run(collect())
    deleted = [e for e in seen if isinstance(e, dict) and e["type"] == "DELETED"]
    assert [e["object"]["metadata"]["uid"] for e in deleted] == ["a"]
    assert deleted[0]["object"]["spec"] == {"model": "m"}
    # The DELETED comes before the end of the listing is announced.
    assert seen.index(deleted[0]) < len(seen) - 1
    assert seen[-1] is watching.Bookmark.LISTED


def test_the_watch_stream_drops_managed_fields_and_keeps_the_rest() -> None:
    import asyncio

    from kopf._cogs.clients import watching

    from modelreg.controller.kopfpatch import relist_aware

    fields = [{"manager": "modelreg", "operation": "Update", "fieldsV1": {"f:status": {}}}]
    body = {
        "kind": "ModelVersion",
        "metadata": {"name": "m-1", "uid": "u1", "labels": {"a": "b"}, "managedFields": fields},
        "spec": {"model": "m"},
        "status": {"phase": "Ready"},
    }

    async def fake_watch(**_: object):  # type: ignore[no-untyped-def]
        yield {"type": "MODIFIED", "object": body}
        yield watching.Bookmark.LISTED

    async def collect() -> list[object]:
        return [item async for item in relist_aware(fake_watch)(resource="mv", namespace="ns")]

    first = asyncio.run(collect())[0]
    assert isinstance(first, dict)
    assert first["object"]["metadata"] == {"name": "m-1", "uid": "u1", "labels": {"a": "b"}}
    assert first["object"]["status"] == {"phase": "Ready"}
