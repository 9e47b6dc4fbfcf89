"""Who asked for a stage (modelreg.lifecycle.stamps): each API-server stamp recorded once in
status.history, refused requests included, nothing trusted half-way."""

from __future__ import annotations

from typing import Any

from modelreg.api.models import HistoryEntry, ModelVersion, Phase, Stage
from modelreg.lifecycle import stamps
from tests.unit.test_plan import NOW, model, run, version

BY, AT, TO, WHY = (
    "modelreg.dev/stage-changed-by",
    "modelreg.dev/stage-changed-at",
    "modelreg.dev/stage-changed-to",
    "modelreg.dev/stage-changed-reason",
)


def stamped(mv: ModelVersion, **annotations: str) -> ModelVersion:
    body = mv.model_dump(mode="json", by_alias=True, exclude_none=True)
    body["metadata"]["annotations"] = annotations
    return ModelVersion.model_validate(body)


def with_history(mv: ModelVersion, history: list[HistoryEntry]) -> ModelVersion:
    body = mv.model_dump(mode="json", by_alias=True, exclude_none=True)
    body["status"]["history"] = [h.wire() for h in history]
    return ModelVersion.model_validate(body)


def asked(**kw: Any) -> dict[str, str]:
    stamp = {BY: "alice", AT: "2026-11-23T23:59:58Z", TO: "Staging", WHY: "beats v0"}
    return {k: v for k, v in {**stamp, **kw}.items() if v is not None}


def test_a_request_is_recorded_once_with_who_when_and_why() -> None:
    mv = stamped(version(1, "Staging", status={"stage": "None", "phase": "Ready"}), **asked())
    first = run([mv]).version_status["m-v1"].history
    assert [(h.stage, h.phase, h.by, h.requested, h.reason, h.at) for h in first] == [
        (Stage.STAGING, Phase.READY, "alice", Stage.STAGING, "beats v0", "2026-11-23T23:59:58Z")
    ]
    assert first[0].message  # the operator's words beside the user's
    # The next reconcile sees its own entry: nothing more is written.
    mv = with_history(mv, first)
    body = mv.model_dump(mode="json", by_alias=True, exclude_none=True)
    body["status"].update(run([mv]).version_status["m-v1"].wire())
    again = run([ModelVersion.model_validate(body)])
    assert "m-v1" not in again.version_status


def test_a_refused_request_is_recorded_with_what_was_asked() -> None:
    gated = model(gates=[{"metric": "auc", "min": 0.95}])
    mv = version(1, "Production", metrics={"auc": 0.9}, status={"stage": "None", "phase": "Ready"})
    mv = stamped(mv, **asked(**{TO: "Production"}))
    h = run([mv], m=gated).version_status["m-v1"].history
    assert len(h) == 1
    assert (h[0].stage, h[0].phase, h[0].requested, h[0].by) == (
        Stage.NONE,
        Phase.BLOCKED,
        Stage.PRODUCTION,
        "alice",
    )
    assert "auc" in h[0].message


def test_a_second_request_by_the_same_user_is_a_new_entry() -> None:
    mv = version(1, "Staging", status={"stage": "Staging", "phase": "Ready"})
    earlier = HistoryEntry(
        stage=Stage.STAGING, at="2026-11-23T23:00:00Z", by="alice", requested=Stage.STAGING
    )
    mv = with_history(stamped(mv, **asked()), [earlier])
    h = run([mv]).version_status["m-v1"].history
    assert [e.at for e in h] == ["2026-11-23T23:00:00Z", "2026-11-23T23:59:58Z"]


def test_no_entry_for_a_stamp_that_is_not_the_current_request() -> None:
    # Changed without the policy (or the policy off): the stamp names an older request.
    mv = stamped(version(1, "Archived", status={"stage": "None", "phase": "Ready"}), **asked())
    h = run([mv]).version_status["m-v1"].history
    assert [(e.stage, e.by) for e in h] == [(Stage.ARCHIVED, None)]


def test_a_stamp_older_than_the_kept_history_was_answered_by_a_trimmed_entry() -> None:
    mv = version(1, "Staging", status={"stage": "Staging", "phase": "Ready"})
    later = HistoryEntry(stage=Stage.STAGING, phase=Phase.READY, at="2026-11-23T23:59:59Z")
    old = stamped(mv, **asked(**{AT: "2026-11-23T23:00:00Z"}))
    assert stamps.unanswered(with_history(old, [later])) is None
    recent = stamped(mv, **asked(**{AT: "2026-11-23T23:59:40Z"}))  # within the clock slack
    assert stamps.unanswered(with_history(recent, [later])) is not None


def test_stamps_that_cannot_be_read_are_not_trusted_half_way() -> None:
    mv = version(1, "Staging")
    assert stamps.stamp(stamped(mv, **asked(**{TO: "Prod"}))) is None
    assert stamps.stamp(stamped(mv, **asked(**{BY: ""}))) is None
    assert stamps.stamp(mv) is None
    s = stamps.stamp(stamped(mv, **asked(**{AT: "yesterday", WHY: "w" * 5000, BY: "u" * 300})))
    assert s is not None
    assert (s.at, len(s.reason), len(s.by)) == ("", 1024, 253)
    s = stamps.stamp(stamped(mv, **asked(**{AT: "2026-11-24T01:00:00+01:00"})))
    assert s is not None
    assert s.at == "2026-11-24T00:00:00Z"


def test_a_stamp_without_a_time_is_recorded_at_now_and_only_once() -> None:
    mv = stamped(
        version(1, "Staging", status={"stage": "None", "phase": "Ready"}), **asked(**{AT: None})
    )
    h = run([mv]).version_status["m-v1"].history
    assert [(e.at, e.by) for e in h] == [(NOW, "alice")]
    assert stamps.unanswered(with_history(mv, h)) is None


def test_entries_written_before_message_existed_read_as_the_operators_words() -> None:
    old = HistoryEntry.model_validate({"stage": "Staging", "at": NOW, "reason": "requested"})
    assert (old.message, old.reason, old.by) == ("requested", "", None)
    new = HistoryEntry.model_validate(
        {"stage": "Staging", "at": NOW, "by": "bob", "reason": "his words"}
    )
    assert (new.message, new.reason) == ("", "his words")
