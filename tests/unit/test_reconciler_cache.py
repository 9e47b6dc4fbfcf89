"""The reconciler's read-your-writes cache: two quick status writes never bring the first back."""

from __future__ import annotations

import asyncio
from typing import Any

from modelreg.controller.reconciler import Reconciler, compact
from modelreg.settings import OperatorSettings


class FakeKube:
    """The adapter boundary: patch_status answers like the API server, with a new rv each time."""

    def __init__(self) -> None:
        self.rv = 100

    async def call(self, fn: Any, *args: Any) -> Any:
        return fn(*args)

    def patch_status(self, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> Any:
        self.rv += 1
        return {
            "metadata": {"name": name, "uid": "u1", "resourceVersion": str(self.rv)},
            "spec": {},
            "status": patch,
        }


def body(rv: str, phase: str) -> bytes:
    return compact({"metadata": {"uid": "u1", "resourceVersion": rv}, "status": {"phase": phase}})


def test_two_quick_writes_keep_the_second_body_until_the_cache_catches_up() -> None:
    r = Reconciler(kube=FakeKube(), settings=OperatorSettings())  # type: ignore[arg-type]

    async def go() -> None:
        await r._write_status("modelversions", "m-v1", "ns", "u1", "100", {}, {"phase": "Rolling"})
        seen = r._fresh(body("100", "Verifying"))
        assert seen["status"]["phase"] == "Rolling"
        rv = seen["metadata"]["resourceVersion"]
        await r._write_status("modelversions", "m-v1", "ns", "u1", rv, {}, {"phase": "Serving"})

    asyncio.run(go())
    # The cache still shows the original, then the first write: both are older than the second.
    assert r._fresh(body("100", "Verifying"))["status"]["phase"] == "Serving"
    assert r._fresh(body("101", "Rolling"))["status"]["phase"] == "Serving"
    # It caught up: the cache is the truth again, and the kept body is freed.
    assert r._fresh(body("102", "Serving"))["metadata"]["resourceVersion"] == "102"
    assert "u1" not in r._written


def test_forget_frees_what_was_kept_about_a_deleted_version() -> None:
    r = Reconciler(kube=FakeKube(), settings=OperatorSettings())  # type: ignore[arg-type]
    asyncio.run(
        r._write_status("modelversions", "m-v1", "ns", "u1", "100", {}, {"phase": "Rolling"})
    )
    r._rolling_since["u1"] = 1.0
    r.forget("ns", "m-v1", "u1")
    assert r._written == {}
    assert r._rolling_since == {}
