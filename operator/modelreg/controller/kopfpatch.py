"""Two fixes of kopf's internals; `handlers.install()` applies them once.

`apply_relist()`: after a watch gap (410 Gone, or an API server restart) kopf lists the objects
again but never learns which ones were deleted meanwhile, so they stay in its indexes for ever,
and the reconciler would go on planning with them (a deleted serving version kept serving). The
patched watch remembers, per watched resource and namespace, a slim copy of every object seen;
when a re-list ends, each remembered object the list did not return is reported as DELETED, as
the watch would have had it stayed connected.

`apply()`: kopf's start-up barrier at scale.

With index handlers, kopf holds every object's first event until all listed objects are indexed:
one toggle per object in a ToggleSet (`all` of them), and every toggle made or dropped wakes every
waiting object (`Condition.notify_all`), each of which re-checks the set and waits again. With N
objects that is O(N^2) wake-ups on the event loop before the first handler runs. Measured by
bench/operator/scale: ~8 s of CPU at 1,000 ModelVersions, and more than 5 minutes with no
reconcile at all at 10,000 (py-spy: 99% of the samples in kopf's aiotoggles).

Waiters only care about the set's state (`is_on()`), so we notify them only when adding or
dropping a toggle flips it. Behaviour is otherwise unchanged. When kopf's internals differ from
what this expects, nothing is patched (and a warning says so). The same change is proposed to
kopf with a test (docs/upstream/kopf-startup-barrier.md); a kopf that has it is left alone.

The patched watch stream also drops `metadata.managedFields` from every object it yields: no
handler reads them, and they are a large share of each body that kopf keeps while the start-up
barrier holds every listed object's first event.
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
    if getattr(cls, _MARK, False) or hasattr(cls, "_notify_if_flipped"):
        return True  # patched already, or kopf has the fix (docs/upstream/kopf-startup-barrier.md)
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


_RELIST_MARK = "_modelreg_relist_aware"


def _slim(obj: dict[str, Any]) -> dict[str, Any]:
    """What a synthetic DELETED event needs: identity, labels and the owning Model's name."""
    meta = obj.get("metadata") or {}
    slim: dict[str, Any] = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "labels", "resourceVersion")
            if k in meta
        },
    }
    model = (obj.get("spec") or {}).get("model") if isinstance(obj.get("spec"), dict) else None
    if model is not None:
        slim["spec"] = {"model": model}
    return slim


def relist_aware(original: Any) -> Any:
    """Wrap kopf's `continuous_watch` (one listing, then watching until a gap): report objects
    that a listing no longer returns as DELETED before the listing's end is announced."""
    known: dict[Any, dict[str, dict[str, Any]]] = {}

    async def continuous_watch(**kw: Any) -> Any:
        seen = known.setdefault((kw.get("resource"), kw.get("namespace")), {})
        listed: set[str] | None = set()  # uids of this call's listing, until it ends
        async for item in original(**kw):
            if isinstance(item, dict):
                kind = item.get("type")
                obj = item.get("object") or {}
                meta = obj.get("metadata")
                if isinstance(meta, dict):
                    meta.pop("managedFields", None)
                uid = (obj.get("metadata") or {}).get("uid")
                if uid and kind == "DELETED":
                    seen.pop(uid, None)
                elif uid and kind in (None, "ADDED", "MODIFIED"):
                    seen[uid] = _slim(obj)
                    if kind is None and listed is not None:
                        listed.add(uid)
            elif listed is not None and getattr(item, "name", "") == "LISTED":
                for uid in [u for u in seen if u not in listed]:
                    gone = seen.pop(uid)
                    log.info(
                        "%s %s/%s was deleted during a watch gap",
                        gone.get("kind"),
                        gone["metadata"].get("namespace"),
                        gone["metadata"].get("name"),
                    )
                    yield {"type": "DELETED", "object": gone}
                listed = None
            yield item

    setattr(continuous_watch, _RELIST_MARK, True)
    return continuous_watch


def apply_relist() -> bool:
    """Patch kopf's watch stream; True when the patch is (now) in place."""
    try:
        from kopf._cogs.clients import watching  # noqa: PLC0415 - only when patching
    except ImportError:
        log.warning("kopf's watching module not found: deletions during watch gaps are missed")
        return False
    current = getattr(watching, "continuous_watch", None)
    if current is None or not hasattr(watching, "Bookmark"):
        log.warning("kopf's watch stream changed shape: deletions during watch gaps are missed")
        return False
    if getattr(current, _RELIST_MARK, False):
        return True
    watching.continuous_watch = relist_aware(current)
    return True
