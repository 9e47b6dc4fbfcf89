"""Aliases (set/rm/resolve, models:/ URIs) and search filters of the SDK, against the fakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelreg.api.models import ModelVersion
from modelreg.lifecycle import aliases
from modelreg.sdk import errors
from modelreg.sdk.client import Client
from modelreg.sdk.search import parse_where
from tests.unit.sdk.fakes import NS, FakeKube, standard


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    p = tmp_path / "model.onnx"
    p.write_bytes(b"onnx-bytes" * 100)
    return p


def _three(artifact: Path) -> tuple[Client, FakeKube]:
    client, kube, _st, _clock = standard()
    for auc in (0.81, 0.9, 0.95):
        client.register("credit", artifact, metrics={"auc": auc})
    kube.set_status("credit-v1", stage="Archived", phase="Archived")
    kube.set_status("credit-v2", stage="Production", phase="Serving")
    kube.set_status("credit-v3", stage="Staging", phase="Blocked")
    return client, kube


# -- aliases --------------------------------------------------------------------------------------


def test_set_alias_moves_and_resolves(artifact: Path) -> None:
    client, kube = _three(artifact)
    client.set_alias("credit", "champion", 2)
    assert kube.objects[("models", NS, "credit")]["spec"]["aliases"] == {"champion": 2}
    assert client.resolve("models:/credit@champion") == ("credit", 2)
    assert client.resolve("credit@champion") == ("credit", 2)
    assert client.get("credit@champion").metadata.name == "credit-v2"
    kube.set_status("credit-v3", stage="Staging", phase="Ready")
    client.set_alias("credit", "champion", 3)  # moves
    assert client.get("models:/credit@champion").spec.version == 3
    client.remove_alias("credit", "champion")
    assert (
        "aliases" not in kube.objects[("models", NS, "credit")]["spec"]
        or not (kube.objects[("models", NS, "credit")]["spec"]["aliases"])
    )


@pytest.mark.parametrize(
    ("alias", "version", "error", "words"),
    [
        ("champion", 1, errors.PreconditionFailed, "version 1, which is Archived"),
        ("champion", 3, errors.PreconditionFailed, "version 3, which is Blocked"),
        ("champion", 7, errors.PreconditionFailed, "version 7, which does not exist"),
        ("latest", 2, errors.InvalidArgument, "reserved"),
        ("v2", 2, errors.InvalidArgument, "reserved"),
        ("9lives", 2, errors.InvalidArgument, "not a valid name"),
        ("has space", 2, errors.InvalidArgument, "not a valid name"),
    ],
)
def test_set_alias_refuses_with_the_reason(
    artifact: Path, alias: str, version: int, error: type[Exception], words: str
) -> None:
    client, kube = _three(artifact)
    with pytest.raises(error, match=words):
        client.set_alias("credit", alias, version)
    assert not kube.objects[("models", NS, "credit")]["spec"].get("aliases")


def test_an_alias_whose_version_was_archived_no_longer_resolves(artifact: Path) -> None:
    client, kube = _three(artifact)
    client.set_alias("credit", "champion", 2)
    kube.set_status("credit-v2", stage="Archived", phase="Archived")
    with pytest.raises(errors.PreconditionFailed, match="Archived: it does not resolve"):
        client.resolve("models:/credit@champion")
    with pytest.raises(errors.NotFound, match=r"no alias 'nope' .*@champion"):
        client.resolve("credit@nope")
    with pytest.raises(errors.NotFound, match="has no alias 'nope'"):
        client.remove_alias("credit", "nope")


def test_models_uris_by_number_latest_and_stage(artifact: Path) -> None:
    client, kube = _three(artifact)
    kube.objects[("models", NS, "credit")]["status"] = {"productionVersion": 2}
    assert client.resolve("models:/credit/1") == ("credit", 1)
    assert client.resolve("models:/credit/latest") == ("credit", 3)
    assert client.resolve("models:/credit/Production") == ("credit", 2)
    kube.set_status("credit-v3", phase="Blocked")
    with pytest.raises(errors.VersionNotFound, match="no version of 'credit' is in Staging"):
        client.resolve("models:/credit/staging")
    for bad in ("models:/credit", "models:/credit/1/2", "models:/"):
        with pytest.raises(errors.InvalidArgument, match="not a model URI"):
            client.resolve(bad)
    with pytest.raises(errors.InvalidArgument, match="unknown stage"):
        client.resolve("models:/credit/Gold")


def test_resolution_rule_is_the_operators() -> None:
    def mv(n: int, stage: str = "None", phase: str | None = None) -> ModelVersion:
        return ModelVersion.model_validate(
            {
                "metadata": {"name": f"m-v{n}"},
                "spec": {
                    "model": "m",
                    "version": n,
                    "stage": stage,
                    "artifact": {"uri": "s3://b/m/1", "sha256": "ab"},
                },
                "status": {"phase": phase} if phase else {},
            }
        )

    got = aliases.resolve(
        "m",
        {"a": 1, "b": 2, "c": 3, "d": 4, "e": 9},
        [mv(1, phase="Serving"), mv(2, stage="Archived"), mv(3, phase="Blocked"), mv(4)],
    )
    assert got.valid == {"a": 1, "d": 4}
    assert set(got.problems) == {"b", "c", "e"}
    assert "version 9, which does not exist" in got.message


# -- search ---------------------------------------------------------------------------------------


def test_search_filters_combine(artifact: Path) -> None:
    client, kube = _three(artifact)
    kube.objects[("models", NS, "credit")]["spec"]["tags"] = {"team": "risk", "pii": "no"}
    client.set_alias("credit", "champion", 2)

    def names(**kw: object) -> list[str]:
        return [mv.metadata.name for mv in client.search(**kw)]  # type: ignore[arg-type]

    assert names(where=["auc>=0.9"]) == ["credit-v2", "credit-v3"]
    assert names(where=["auc>0.9", "auc<1"]) == ["credit-v3"]
    assert names(where=["loss<1"]) == []  # a missing metric never matches
    assert names(stage="Production") == ["credit-v2"]
    assert names(stage=["Archived", "Staging"]) == ["credit-v1", "credit-v3"]
    assert names(phase="serving") == ["credit-v2"]
    assert names(tags={"team": "risk"}) == ["credit-v1", "credit-v2", "credit-v3"]
    assert names(tags={"team": "fraud"}) == []
    assert names(tags={"pii": None}, alias="champion") == ["credit-v2"]
    assert names(alias="nope") == []
    with pytest.raises(errors.ModelNotFound):
        client.search("nope")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("auc", "expected METRIC OP NUMBER"),
        ("auc>=high", "'high' is not a number"),
        ("auc=>0.9", "is not a number"),
        (">=0.9", "expected METRIC OP NUMBER"),
        ("auc>=nan", "finite"),
    ],
)
def test_where_errors_are_clear(text: str, words: str) -> None:
    with pytest.raises(errors.InvalidArgument, match=words):
        parse_where(text)


def test_where_parses_every_operator() -> None:
    metrics = {"auc": 0.9}
    holds = {
        op: parse_where(f"auc{op}0.9").holds(metrics)
        for op in (">=", "<=", ">", "<", "==", "!=", "=")
    }
    assert holds == {
        ">=": True,
        "<=": True,
        ">": False,
        "<": False,
        "==": True,
        "!=": False,
        "=": True,
    }


# -- download -------------------------------------------------------------------------------------


def test_download_by_alias_into_a_directory_and_to_a_file(artifact: Path, tmp_path: Path) -> None:
    client, kube = _three(artifact)
    client.set_alias("credit", "champion", 2)
    out = tmp_path / "out"
    out.mkdir()
    got = client.download("credit@champion", path=out)
    assert got == out / "model.onnx"
    assert got.read_bytes() == artifact.read_bytes()
    mv = kube.mv("credit-v2")
    mv["status"]["artifact"] = {
        "verified": True,
        "uri": mv["spec"]["artifact"]["uri"],
        "versionId": "v-42",
    }
    target = tmp_path / "deep" / "champion.onnx"
    assert client.download("credit", 2, target) == target
    st = client._store_factory  # the fake records which object version was fetched
    assert st.downloads[-1] == ("s3://models/credit/2/model.onnx", "v-42")  # type: ignore[attr-defined]


def test_download_of_a_changed_artifact_fails_and_leaves_nothing(
    artifact: Path, tmp_path: Path
) -> None:
    client, _kube = _three(artifact)
    st = client._store_factory
    st.objects["s3://models/credit/1/model.onnx"] = b"tampered"  # type: ignore[attr-defined]
    dest = tmp_path / "m.onnx"
    with pytest.raises(errors.ArtifactMismatch, match="sha256"):
        client.download("credit-v1", path=dest)
    assert not dest.exists()
    del st.objects["s3://models/credit/1/model.onnx"]  # type: ignore[attr-defined]
    with pytest.raises(errors.ArtifactNotFound):
        client.download("credit-v1", path=dest)
