"""A fix for kopf's start-up barrier at scale; `handlers.install()` applies it once.

With index handlers, kopf holds every object's first event until all listed objects are indexed:
one toggle per object in a ToggleSet (`all` of them), and every toggle made or dropped wakes every
waiting object (`Condition.notify_all`), each of which re-checks the set and waits again. With N
objects that is O(N^2) wake-ups on the event loop before the first handler runs. Measured by
bench/operator/scale: ~8 s of CPU at 1,000 ModelVersions, and more than 5 minutes with no
reconcile at all at 10,000 (py-spy: 99% of the samples in kopf's aiotoggles).

Waiters only care about the set's state (`is_on()`), so we notify them only when adding or
dropping a toggle flips it. Behaviour is otherwise unchanged. When kopf's internals differ from
what this expects, nothing is patched (and a warning says so).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("modelreg.controller")

_MARK = "_modelreg_notify_on_flip"


def apply() -> bool:
    """Patch kopf's ToggleSet; True when the patch is (now) in place."""
    try:
        from kopf._cogs.aiokits import aiotoggles  # noqa: PLC0415 - only when patching
    except ImportError:
        log.warning("kopf's aiotoggles not found: start-up with many objects will be slow")
        return False
    cls: Any = aiotoggles.ToggleSet
    if getattr(cls, _MARK, False):
        return True
    probe = cls(all)
    if not all(
        hasattr(cls, name) for name in ("make_toggle", "drop_toggle", "drop_toggles", "is_on")
    ) or not (hasattr(probe, "_condition") and hasattr(probe, "_toggles")):
        log.warning("kopf's ToggleSet changed shape: its start-up barrier is left unpatched")
        return False

    async def make_toggle(self: Any, val: bool = False, *, name: str | None = None) -> Any:
        toggle = aiotoggles.Toggle(val, name=name, condition=self._condition)
        async with self._condition:
            before = self.is_on()
            self._toggles.add(toggle)
            if self.is_on() != before:
                self._condition.notify_all()
        return toggle

    async def drop_toggle(self: Any, toggle: Any) -> None:
        async with self._condition:
            before = self.is_on()
            self._toggles.discard(toggle)
            if self.is_on() != before:
                self._condition.notify_all()

    async def drop_toggles(self: Any, toggles: Iterable[Any]) -> None:
        async with self._condition:
            before = self.is_on()
            self._toggles.difference_update(toggles)
            if self.is_on() != before:
                self._condition.notify_all()

    cls.make_toggle = make_toggle
    cls.drop_toggle = drop_toggle
    cls.drop_toggles = drop_toggles
    setattr(cls, _MARK, True)
    return True
