"""What the pages derive: best metric and its direction, deltas, gate verdicts, who approved."""

from __future__ import annotations

from modelreg.api.models import Gate, Model, ModelVersion
from modelreg.ui import present
from tests.unit.ui.fixtures import MODEL, registry_client


def data() -> tuple[Model, list[ModelVersion]]:
    client, _ = registry_client()
    return client.get_model(MODEL), client.list(MODEL)


def test_direction_comes_from_the_gate_else_the_name() -> None:
    gates = [Gate(metric="auc", min=0.8), Gate(metric="score", max=3)]
    assert present.higher_is_better("auc", gates)
    assert not present.higher_is_better("score", gates)  # a max gate: lower is better
    assert not present.higher_is_better("latency_p99_ms")
    assert not present.higher_is_better("val_loss")
    assert present.higher_is_better("f1")


def test_best_marks_ties_and_nothing_when_all_equal_or_alone() -> None:
    assert present.best({1: 0.8, 2: 0.9, 3: 0.9}, higher=True) == {2, 3}
    assert present.best({1: 30.0, 2: 20.0, 3: None}, higher=False) == {2}
    assert present.best({1: 0.5, 2: 0.5}, higher=True) == set()
    assert present.best({1: 0.5, 2: None}, higher=True) == set()


def test_delta_against_the_first() -> None:
    assert present.delta(0.93, 0.88) == "+0.05 (+5.7%)"
    assert present.delta(24, 35) == "-11 (-31.4%)"
    assert present.delta(1.0, 1.0) == "±0"
    assert present.delta(None, 1.0) == ""
    assert present.delta(2.0, 0.0) == "+2"


def test_gate_rows_say_which_versions_pass_each_gate() -> None:
    m, versions = data()
    rows = present.gate_rows(m, versions)
    assert [present.gate_text(r.gate) for r in rows] == ["auc >= 0.8", "latency_p99_ms <= 50"]
    assert rows[0].passing == [2, 3, 4, 5, 6]  # v1: auc 0.78
    assert rows[1].passing == [1, 2, 4, 5, 6]  # v3: 58 ms
    assert [mv.spec.version for mv in versions if present.passes_all(m, mv)] == [2, 4, 5, 6]


def test_who_approved_is_the_last_request_for_staging_or_production() -> None:
    _, versions = data()
    by = {mv.spec.version: present.approved_by(mv) for mv in versions}
    assert by == {1: None, 2: None, 3: "alice", 4: "alice", 5: "bob", 6: "carol"}


def test_stage_shows_what_was_asked_when_it_is_not_held() -> None:
    _, versions = data()
    v3 = next(mv for mv in versions if mv.spec.version == 3)
    assert present.stage(v3) == present.Shown("None, asked Production", "busy")
    assert present.phase(v3) == present.Shown("Blocked", "bad")


def test_live_cells_cover_the_model_and_every_version() -> None:
    m, versions = data()
    cells = present.live_cells([m], versions)
    assert cells[f"{MODEL}/production"].text == "v5"
    assert cells[f"{MODEL}/replicas"] == present.Shown("2 ready of 2", "ok")
    assert cells[f"{MODEL}/v6/phase"].text == "Ready"
    assert {k for k in cells if k.endswith("/phase")} == {
        f"{MODEL}/v{n}/phase" for n in range(1, 7)
    }


def test_timeline_is_newest_first_and_keeps_who_and_why() -> None:
    _, versions = data()
    moments = present.timeline(versions)
    assert moments == sorted(moments, key=lambda x: (x.at, x.version), reverse=True)
    promoted = next(x for x in moments if x.by == "bob")
    assert promoted.version == 5
    assert promoted.reason.startswith("approved in CAB-2291")
    assert promoted.from_stage is not None
    assert promoted.from_stage.value == "Staging"


def test_the_list_filters() -> None:
    client, _ = registry_client()
    models, versions = client.list_models(), client.list()

    def names(q: str = "", stage: str = "", ready: str = "") -> list[str]:
        return [m.metadata.name for m in models if present.matches(m, versions, q, stage, ready)]

    assert names() == ["churn", "credit-scoring", "fraud-detection"]
    assert names(q="PAYMENTS") == ["fraud-detection"]  # a tag value, any case
    assert names(q="team-risk") == ["credit-scoring"]  # the owner
    assert names(stage="Staging") == ["credit-scoring"]
    assert names(ready="no") == ["churn"]
    assert names(ready="yes", stage="Production") == ["credit-scoring", "fraud-detection"]
