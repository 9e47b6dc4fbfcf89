"""Retention (modelreg.lifecycle.retention, through the planner) and `Client.gc`, no cluster."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from modelreg.api.models import Model, ModelVersion
from modelreg.lifecycle import retention
from modelreg.sdk import errors
from tests.unit.sdk.fakes import NS, standard
from tests.unit.test_plan import model, run, version


def kept(keep: int, delete_artifacts: bool = False, **spec: Any) -> Model:
    body = model().model_dump(mode="json", by_alias=True, exclude_none=True)
    body["spec"]["retention"] = {"keepArchived": keep, "deleteArtifacts": delete_artifacts}
    body["spec"].update(spec)
    return Model.model_validate(body)


def retired(n: int, phase: str = "Archived", uri: str | None = None, **status: Any) -> ModelVersion:
    stage = "Archived" if phase == "Archived" else "Production"
    mv = version(
        n,
        stage,
        status={
            "phase": phase,
            "stage": "Archived" if phase == "Archived" else "None",
            "observedGeneration": 1,
            **status,
        },
    )
    if uri is None:
        return mv
    body = mv.model_dump(mode="json", by_alias=True, exclude_none=True)
    body["spec"]["artifact"]["uri"] = uri
    return ModelVersion.model_validate(body)


def test_keeps_the_newest_n_retired_versions_and_deletes_the_rest_oldest_first() -> None:
    versions = [retired(1), retired(2, "Superseded"), retired(3), retired(4), version(5, "None")]
    doomed = retention.plan(kept(2), versions, set())
    assert [(d.name, d.phase.value, d.artifact) for d in doomed] == [
        ("m-v1", "Archived", None),
        ("m-v2", "Superseded", None),
    ]
    assert retention.plan(kept(4), versions, set()) == []
    assert retention.plan(model(), versions, set()) == []  # no retention: nothing


def test_never_the_serving_an_aliased_a_staged_or_a_stale_version() -> None:
    stale = retired(2)
    body = stale.model_dump(mode="json", by_alias=True, exclude_none=True)
    body["metadata"]["generation"] = 2  # archived a moment ago: status describes generation 1
    versions = [
        retired(1),
        ModelVersion.model_validate(body),
        retired(3),
        retired(4, "Superseded"),
        version(
            5, "Staging", status={"phase": "Ready", "stage": "Staging", "observedGeneration": 1}
        ),
    ]
    doomed = retention.plan(kept(0, aliases={"old": 3}), versions, {4})
    assert [d.name for d in doomed] == ["m-v1"]


def test_an_artifact_goes_only_when_no_remaining_version_references_it() -> None:
    shared = "s3://models/m/1/model.onnx"
    versions = [
        retired(1, uri=shared),
        retired(2),
        retired(3, uri=shared),  # kept: the object of v1 stays
        retired(4),
    ]
    doomed = retention.plan(kept(2, delete_artifacts=True), versions, set())
    assert [(d.name, d.artifact) for d in doomed] == [
        ("m-v1", None),
        ("m-v2", "s3://models/m/2/model.onnx"),
    ]
    # Two deleted versions of one object: deleted once.
    versions = [retired(1, uri=shared), retired(2, uri=shared), retired(3)]
    doomed = retention.plan(kept(1, delete_artifacts=True), versions, set())
    assert [(d.name, d.artifact) for d in doomed] == [("m-v1", shared), ("m-v2", None)]


def test_the_planner_protects_the_version_the_service_selects() -> None:
    versions = [retired(1), retired(2)]
    p = run(versions, m=kept(0))
    assert [d.name for d in p.delete_versions] == ["m-v1", "m-v2"]


# -- gc -------------------------------------------------------------------------------------------


def test_gc_reports_and_deletes_only_old_unreferenced_objects(tmp_path: Path) -> None:
    client, _, st, _ = standard()
    artifact = tmp_path / "m.onnx"
    artifact.write_bytes(b"x" * 100)
    client.register("credit", artifact)
    prefix = "s3://models/credit/"
    st.objects[prefix + "7/old.onnx"] = b"y" * 10  # put directly: old, referenced by none
    st.objects[prefix + "8/fresh.onnx"] = b"z"
    st.modified[prefix + "8/fresh.onnx"] = time.time()  # just uploaded: a registration in flight
    report = client.gc("credit")
    assert [o.uri for o in report.orphans] == [prefix + "7/old.onnx"]
    assert (report.scanned, report.young, report.deleted) == (3, 1, [])
    assert prefix + "7/old.onnx" in st.objects  # a dry run deletes nothing
    report = client.gc("credit", dry_run=False, min_age_seconds=0)
    assert sorted(report.deleted) == [prefix + "7/old.onnx", prefix + "8/fresh.onnx"]
    assert sorted(st.objects) == [prefix + "1/m.onnx"]  # the registered version's artifact stays


def test_gc_needs_storage_and_a_sane_age() -> None:
    client, kube, _, _ = standard()
    with pytest.raises(errors.InvalidArgument, match="min_age_seconds"):
        client.gc("credit", min_age_seconds=-1)
    kube.objects[("models", NS, "credit")]["spec"].pop("storage")
    with pytest.raises(errors.PreconditionFailed, match=r"no spec\.storage"):
        client.gc("credit")
