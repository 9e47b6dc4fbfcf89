"""Who asked for a stage: the stamp the API server writes, and whether the history answered it.

The chart's stage-audit MutatingAdmissionPolicy stamps every change of `spec.stage` with the
requesting user, the time, the stage asked for and the user's reason (annotations the API server
overwrites, so a client cannot forge them). The planner records each stamp once, in the history
entry written when the operator first sees it, whether the stage was reached or refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from modelreg.api.models import (
    REASON_MAX,
    SHORT_STR,
    STAGE_CHANGED_AT,
    STAGE_CHANGED_BY,
    STAGE_CHANGED_REASON,
    STAGE_CHANGED_TO,
    ModelVersion,
    Stage,
)

# A stamp older than the newest history entry by more than this was answered by an entry that has
# since been trimmed off the bounded history (clocks of the API server and the operator may differ
# by a little; a request is answered within a reconcile, far less than this).
STALE_AFTER = timedelta(seconds=30)


@dataclass(frozen=True)
class Stamp:
    by: str
    at: str  # RFC 3339 UTC seconds, as the API server wrote it; "" when it gave none
    to: Stage
    reason: str


def stamp(mv: ModelVersion) -> Stamp | None:
    """The version's stamp, or None when there is none or it cannot be read (no policy installed,
    or a stage that is not one: never trusted half-way)."""
    ann = mv.metadata.annotations or {}
    by, to = ann.get(STAGE_CHANGED_BY), ann.get(STAGE_CHANGED_TO)
    if not by or not to:
        return None
    try:
        stage = Stage(to)
    except ValueError:
        return None
    when = _parse(ann.get(STAGE_CHANGED_AT))
    return Stamp(
        by=by[:SHORT_STR],
        at=_format(when) if when is not None else "",
        to=stage,
        reason=ann.get(STAGE_CHANGED_REASON, "")[:REASON_MAX],
    )


def unanswered(mv: ModelVersion) -> Stamp | None:
    """The stamp, when it still asks for the desired stage and no history entry records it yet.

    An entry records a stamp when it names the same user, stage and time; a stamp without a time
    is recorded by the latest request entry alone. A stamp older than the newest entry by more
    than STALE_AFTER was recorded by an entry since trimmed off the bounded history."""
    found = stamp(mv)
    if found is None or found.to is not mv.spec.stage:
        return None
    history = mv.status.history
    asked = [h for h in history if h.by]
    if found.at:
        if any(h.by == found.by and h.requested is found.to and h.at == found.at for h in asked):
            return None
        last, when = _parse(history[-1].at) if history else None, _parse(found.at)
        if last is not None and when is not None and when < last - STALE_AFTER:
            return None
    elif asked and asked[-1].by == found.by and asked[-1].requested is found.to:
        return None
    return found


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.astimezone(UTC) if t.tzinfo is not None else None


def _format(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")
