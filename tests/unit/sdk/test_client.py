"""Unit tests of modelreg.sdk.client.Client against the in-memory adapter fakes (tests/unit/sdk/fakes)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
from pathlib import Path
from typing import Any

import pytest

from modelreg.adapters import objectstore as store
from modelreg.adapters.upload import MissingCredentials
from modelreg.api.models import Phase, Stage
from modelreg.sdk import errors
from modelreg.sdk.client import parse_stage, parse_version_ref
from tests.unit.sdk.fakes import CREDS, NS, STORAGE, FakeKube, make_client, standard


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    p = tmp_path / "model.onnx"
    p.write_bytes(b"onnx-bytes" * 1000)
    return p


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- register -------------------------------------------------------------------------------------


def test_register_uploads_and_creates_next_version(artifact: Path) -> None:
    client, kube, st, _ = standard()
    seen: list[tuple[int, int]] = []
    mv = client.register(
        "credit",
        artifact,
        metrics={"auc": 0.91, "latency_p99_ms": 21},
        params={"max_depth": 6},
        lineage={"run": "abc", "dataset": None},
        framework="sklearn",
        progress=lambda sent, total: seen.append((sent, total)),
    )
    assert mv.metadata.name == "credit-v1"
    uri = "s3://models/credit/1/model.onnx"
    assert st.objects[uri] == artifact.read_bytes()
    body = kube.mv("credit-v1")
    assert body["spec"]["artifact"] == {
        "uri": uri,
        "sha256": sha(artifact.read_bytes()),
        "format": "onnx",
    }
    assert body["spec"]["metrics"] == {"auc": 0.91, "latency_p99_ms": 21.0}
    assert body["spec"]["params"] == {"max_depth": "6"}
    assert body["spec"]["lineage"] == {"run": "abc"}
    assert body["spec"]["stage"] == "None"
    assert body["metadata"]["labels"] == {"modelreg.dev/model": "credit"}
    assert seen[0] == (0, artifact.stat().st_size)
    assert seen[-1] == (artifact.stat().st_size, artifact.stat().st_size)
    assert st.configs[0].access_key_id == CREDS["AWS_ACCESS_KEY_ID"]
    assert st.closed == 1

    second = client.register("credit", artifact, stage="staging")
    assert second.spec.version == 2
    assert second.spec.stage == Stage.STAGING
    assert "s3://models/credit/2/model.onnx" in st.objects


def test_register_skips_numbers_already_used(artifact: Path) -> None:
    client, kube, st, _ = standard()
    kube.objects[("models", NS, "credit")]["status"] = {"latestVersion": 4}
    st.objects["s3://models/credit/5/leftover.bin"] = b"x"  # an interrupted upload
    mv = client.register("credit", artifact)
    assert mv.spec.version == 6
    assert mv.spec.artifact.uri == "s3://models/credit/6/model.onnx"


def test_register_conflict_moves_to_next_free_number(artifact: Path) -> None:
    client, kube, st, _ = standard()
    raced = []

    def someone_else_wins(plural: str, body: dict[str, Any]) -> None:
        if not raced:
            raced.append(body["metadata"]["name"])
            other = {
                **body,
                "metadata": {"name": "credit-v1"},
                "spec": {**body["spec"], "version": 1},
            }
            kube.before_create = None
            kube.create_object(plural, NS, other)
            kube.before_create = someone_else_wins

    kube.before_create = someone_else_wins
    mv = client.register("credit", artifact)
    assert raced == ["credit-v1"]
    assert mv.metadata.name == "credit-v2"
    assert mv.spec.artifact.uri == "s3://models/credit/2/model.onnx"
    assert "s3://models/credit/1/model.onnx" not in st.objects  # ours moved, nothing left behind
    assert st.objects["s3://models/credit/2/model.onnx"] == artifact.read_bytes()


def test_register_pinned_version_taken(artifact: Path) -> None:
    client, _kube, st, _ = standard()
    client.register("credit", artifact)
    with pytest.raises(errors.AlreadyExists, match="version 1"):
        client.register("credit", artifact, version=1)
    assert list(st.objects) == ["s3://models/credit/1/model.onnx"]
    assert client.register("credit", artifact, version=7).metadata.name == "credit-v7"


def test_register_a_directory_is_a_reproducible_tar(tmp_path: Path) -> None:
    d = tmp_path / "bundle"
    (d / "sub").mkdir(parents=True)
    (d / "MLmodel").write_text("flavors: {}\n")
    (d / "sub" / "weights.bin").write_bytes(b"\x00" * 100)
    client, _, st, _ = standard()
    a = client.register("credit", d)
    b = client.register("credit", d)
    assert a.spec.artifact.uri == "s3://models/credit/1/bundle.tar"
    assert a.spec.artifact.format.value == "custom"
    assert a.spec.artifact.sha256 == b.spec.artifact.sha256
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(st.objects[a.spec.artifact.uri])) as tar:
        assert sorted(tar.getnames()) == ["MLmodel", "sub/weights.bin"]


def test_register_missing_model_and_storage(artifact: Path) -> None:
    client, kube, st, _ = make_client()
    with pytest.raises(errors.ModelNotFound, match="'nope' not found in namespace 'risk'"):
        client.register("nope", artifact)
    kube.add_model("bare")
    with pytest.raises(errors.NoStorageConfigured, match=r"spec\.storage"):
        client.register("bare", artifact)
    assert st.objects == {}


def test_register_credentials_fall_back_to_environment(artifact: Path) -> None:
    kube = FakeKube()
    kube.add_model("credit", storage=dict(STORAGE))
    kube.forbidden_secrets.add("s3-credentials")
    client, _, st, _ = make_client(
        kube, env={"AWS_ACCESS_KEY_ID": "envkey", "AWS_SECRET_ACCESS_KEY": "envsecret"}
    )
    client.register("credit", artifact)
    assert st.configs[0].access_key_id == "envkey"


def test_register_without_any_credentials(artifact: Path) -> None:
    kube = FakeKube()
    kube.add_model("credit", storage=dict(STORAGE))
    kube.forbidden_secrets.add("s3-credentials")
    client, _, st, _ = make_client(kube)
    with pytest.raises(errors.NoCredentials, match="cannot read Secret 's3-credentials'") as e:
        client.register("credit", artifact)
    assert e.value.exit_code == errors.EXIT_PRECONDITION
    assert st.objects == {}


def test_register_secret_without_keys(artifact: Path) -> None:
    client, kube, _, _ = standard()
    kube.secrets[(NS, "s3-credentials")] = {"password": "x"}
    with pytest.raises(errors.NoCredentials, match="lacks AWS_ACCESS_KEY_ID"):
        client.register("credit", artifact)


def test_register_endpoint_override(artifact: Path) -> None:
    kube = FakeKube()
    kube.add_model("credit", storage={**STORAGE, "endpoint": "http://minio.storage:9000"})
    kube.secrets[(NS, "s3-credentials")] = dict(CREDS)
    client, _, st, _ = make_client(kube, env={"MODELREG_S3_ENDPOINT": "http://127.0.0.1:7070"})
    client.register("credit", artifact)
    assert st.configs[0].endpoint == "http://127.0.0.1:7070"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metrics": {"auc": float("nan")}}, "must be finite"),
        ({"metrics": {"auc": "high"}}, "must be a number"),
        ({"metrics": {"auc": True}}, "must be a number"),
        ({"stage": "Prod"}, "unknown stage 'Prod'"),
        ({"format": "pt"}, "unknown artifact format"),
        ({"framework": "x" * 100}, "framework"),
    ],
)
def test_register_rejects_bad_input_before_uploading(
    artifact: Path, kwargs: dict[str, Any], match: str
) -> None:
    client, _, st, _ = standard()
    with pytest.raises(errors.InvalidArgument, match=match) as e:
        client.register("credit", artifact, **kwargs)
    assert e.value.exit_code == errors.EXIT_USAGE
    assert st.objects == {}


DIGEST_IMAGE = "registry.example.com/train@sha256:" + "b" * 64


def test_register_records_the_environment(artifact: Path, tmp_path: Path) -> None:
    client, kube, _, _ = standard()
    req = tmp_path / "requirements.txt"
    req.write_text("scikit-learn==1.3.0\nnumpy==1.26.4 # pinned\n")
    client.register("credit", artifact, requirements=req, python="3.11.7", image=DIGEST_IMAGE)
    assert kube.mv("credit-v1")["spec"]["environment"] == {
        "python": "3.11.7",
        "packages": ["numpy==1.26.4", "scikit-learn==1.3.0"],
        "image": DIGEST_IMAGE,
    }

    mv = client.register("credit", artifact, environment="current")
    env = kube.mv("credit-v2")["spec"]["environment"]
    assert env["python"] == platform.python_version()
    assert f"pydantic=={importlib.metadata.version('pydantic')}" in env["packages"]
    assert mv.spec.environment is not None
    assert mv.spec.environment.packages == env["packages"]

    client.register("credit", artifact, environment={"packages": ["torch==2.1.0"]})
    assert kube.mv("credit-v3")["spec"]["environment"] == {"packages": ["torch==2.1.0"]}

    client.register("credit", artifact)
    assert "environment" not in kube.mv("credit-v4")["spec"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"requirements": "REQ"}, "line 2 'pandas>=2'"),
        ({"environment": "current", "requirements": "REQ"}, "not both"),
        ({"image": "train:latest"}, "not pinned by digest"),
        ({"python": "three"}, "is not a version"),
        ({"environment": {"packages": ["numpy"]}}, "'numpy' is not NAME==VERSION"),
    ],
)
def test_register_rejects_a_bad_environment_before_uploading(
    artifact: Path, tmp_path: Path, kwargs: dict[str, Any], match: str
) -> None:
    client, kube, st, _ = standard()
    req = tmp_path / "requirements.txt"
    req.write_text("numpy==1.26.4\npandas>=2\n")
    kwargs = {key: req if v == "REQ" else v for key, v in kwargs.items()}
    with pytest.raises(errors.InvalidArgument, match=match):
        client.register("credit", artifact, **kwargs)
    assert st.objects == {}
    assert not [key for key in kube.objects if key[0] == "modelversions"]


def test_register_missing_path(tmp_path: Path) -> None:
    client, _, _, _ = standard()
    with pytest.raises(errors.InvalidArgument, match="no such file or directory"):
        client.register("credit", tmp_path / "missing.onnx")


def test_register_store_errors_are_typed(artifact: Path) -> None:
    client, _, st, _ = standard()
    st.fail_upload = store.AccessDenied("put s3://models/credit/1/model.onnx: access denied")
    with pytest.raises(errors.PermissionDenied):
        client.register("credit", artifact)
    st.fail_upload = MissingCredentials("put s3://...: no usable object-store credentials")
    with pytest.raises(errors.NoCredentials):
        client.register("credit", artifact)
    st.fail_upload = store.StoreUnavailable("connection refused")
    with pytest.raises(errors.Unavailable):
        client.register("credit", artifact)


def test_register_rejected_by_api_server_removes_the_upload(artifact: Path) -> None:
    client, kube, st, _ = standard()

    def reject(plural: str, body: dict[str, Any]) -> None:
        from modelreg.adapters import kube as k

        raise k.Invalid("spec.artifact.uri must be under the Model's storage prefix", 422)

    kube.before_create = reject
    with pytest.raises(errors.Rejected, match="storage prefix"):
        client.register("credit", artifact)
    assert st.objects == {}


# -- reading ------------------------------------------------------------------------------------------


def test_get_list_and_refs(artifact: Path) -> None:
    client, kube, _, _ = standard()
    kube.add_model("other", storage={"uri": "s3://models/other/"})
    kube.secrets[(NS, "s3-credentials")] = dict(CREDS)
    client.register("credit", artifact)
    client.register("credit", artifact)
    client.register("other", artifact, version=3)
    assert client.get("credit", 2).metadata.name == "credit-v2"
    assert client.get("credit-v1").spec.version == 1
    assert [mv.metadata.name for mv in client.list("credit")] == ["credit-v1", "credit-v2"]
    assert [mv.metadata.name for mv in client.list()] == ["credit-v1", "credit-v2", "other-v3"]
    with pytest.raises(errors.VersionNotFound, match="credit-v9"):
        client.get("credit", 9)
    with pytest.raises(errors.InvalidArgument):
        client.get("credit", 0)
    assert parse_version_ref("credit-scoring-v12") == ("credit-scoring", 12)
    assert parse_version_ref("credit") is None
    assert parse_stage("production") is Stage.PRODUCTION


def test_history_and_compare(artifact: Path) -> None:
    client, kube, _, _ = standard()
    client.register("credit", artifact, metrics={"auc": 0.8, "loss": 0.3})
    client.register("credit", artifact, metrics={"auc": 0.9})
    kube.set_status(
        "credit-v1",
        history=[
            {
                "stage": "Production",
                "phase": "Serving",
                "at": "2026-01-01T00:00:01Z",
                "reason": "promoted",
            },
            {
                "stage": "Archived",
                "phase": "Archived",
                "at": "2026-01-01T00:00:03Z",
                "reason": "rollback",
            },
        ],
    )
    kube.set_status(
        "credit-v2",
        history=[
            {
                "stage": "Production",
                "phase": "Serving",
                "at": "2026-01-01T00:00:02Z",
                "reason": "promoted",
            },
        ],
    )
    merged = client.history("credit")
    assert [(r.version, r.at[-3:-1]) for r in merged] == [(1, "01"), (2, "02"), (1, "03")]
    assert [r.stage for r in client.history("credit", 1)] == [Stage.PRODUCTION, Stage.ARCHIVED]
    with pytest.raises(errors.ModelNotFound):
        client.history("ghost")

    c = client.compare("credit")
    assert c.metrics == ["auc", "loss"]
    assert c.table == {"auc": {1: 0.8, 2: 0.9}, "loss": {1: 0.3, 2: None}}
    assert [mv.spec.version for mv in client.compare("credit", [2]).versions] == [2]


def test_verify(artifact: Path) -> None:
    client, _, st, _ = standard()
    mv = client.register("credit", artifact)
    report = client.verify("credit", 1)
    assert report.ok
    assert report.size_bytes == artifact.stat().st_size
    st.objects[mv.spec.artifact.uri] = b"tampered"
    report = client.verify("credit-v1")
    assert not report.ok
    assert report.actual_sha256 == sha(b"tampered")
    del st.objects[mv.spec.artifact.uri]
    with pytest.raises(errors.ArtifactNotFound):
        client.verify("credit-v1")


# -- wait -----------------------------------------------------------------------------------------


def test_wait_polls_until_the_condition_holds_on_a_current_status(artifact: Path) -> None:
    client, kube, _, clock = standard()
    client.register("credit", artifact)
    gets = {"n": 0}

    def progress(plural: str, name: str) -> None:
        gets["n"] += 1
        if gets["n"] == 2:  # an old status: about generation 0, must be ignored
            kube.set_status(
                "credit-v1", observedGeneration=0, conditions=[{"type": "Ready", "status": "True"}]
            )
        if gets["n"] == 4:
            kube.set_status(
                "credit-v1", phase="Ready", conditions=[{"type": "Ready", "status": "True"}]
            )

    kube.on_get = progress
    mv = client.wait("credit-v1", timeout=30)
    assert mv.status.phase == Phase.READY
    assert gets["n"] == 4
    assert clock.sleeps == [1.0, 1.0, 1.0]


def test_wait_raises_blocked_with_the_reason(artifact: Path) -> None:
    client, kube, _, _ = standard()
    client.register("credit", artifact)
    kube.set_status(
        "credit-v1",
        phase="Blocked",
        conditions=[
            {
                "type": "GatesPassed",
                "status": "False",
                "reason": "GateFailed",
                "message": "auc 0.7 < min 0.8",
            },
            {"type": "Ready", "status": "False", "reason": "Blocked"},
        ],
    )
    with pytest.raises(
        errors.VersionBlocked, match=r"GatesPassed: GateFailed - auc 0\.7 < min 0\.8"
    ) as e:
        client.wait("credit-v1", phase="Serving")
    assert e.value.exit_code == errors.EXIT_PRECONDITION
    # Waiting for Blocked itself is fine.
    assert client.wait("credit-v1", phase="blocked").status.phase == Phase.BLOCKED


def test_wait_times_out_with_the_last_state(artifact: Path) -> None:
    client, kube, _, clock = standard()
    client.register("credit", artifact)
    kube.set_status("credit-v1", phase="Verifying")
    with pytest.raises(
        errors.Timeout, match=r"after 5s .* phase Serving; last seen phase=Verifying"
    ) as e:
        client.wait("credit", 1, phase=Phase.SERVING, timeout=5)
    assert e.value.exit_code == errors.EXIT_TIMEOUT
    assert clock.now == pytest.approx(5.0)
    with pytest.raises(errors.InvalidArgument):
        client.wait("credit-v1", phase="Flying")


# -- stages -----------------------------------------------------------------------------------------


def _serve_when_production(kube: FakeKube) -> None:
    """A stand-in for the operator: a version asking for Production serves at the next look."""

    def on_get(plural: str, name: str) -> None:
        if plural != "modelversions":
            return
        body = kube.mv(name)
        if body["spec"]["stage"] == "Production":
            kube.set_status(name, phase="Serving", stage="Production")

    kube.on_get = on_get


def test_promote_archives_outranking_at_once_and_older_after_serving(artifact: Path) -> None:
    client, kube, _, _ = standard()
    for _ in range(3):
        client.register("credit", artifact)
    kube.mv("credit-v1")["spec"]["stage"] = "Production"
    kube.mv("credit-v3")["spec"]["stage"] = "Production"
    _serve_when_production(kube)
    result = client.promote("credit", 2, archive_previous=True, wait=True)
    assert result.version.status.phase == Phase.SERVING
    assert result.archived == ["credit-v3", "credit-v1"]
    assert kube.mv("credit-v1")["spec"]["stage"] == "Archived"
    assert kube.mv("credit-v2")["spec"]["stage"] == "Production"
    # v3 was archived before v2 was waited on; v1 only after v2 served.
    patches = [c[2] for c in kube.calls if c[0] == "patch"]
    assert patches == ["credit-v2", "credit-v3", "credit-v1"]


def test_promote_keep_refuses_when_outranked(artifact: Path) -> None:
    client, kube, _, _ = standard()
    client.register("credit", artifact)
    client.register("credit", artifact, stage="Production")
    with pytest.raises(errors.PreconditionFailed, match="credit-v2 also ask"):
        client.promote("credit-v1")
    assert kube.mv("credit-v1")["spec"]["stage"] == "None"


def test_promote_without_wait_leaves_older_versions(artifact: Path) -> None:
    client, kube, _, _ = standard()
    client.register("credit", artifact, stage="Production")
    client.register("credit", artifact)
    result = client.promote("credit-v2", archive_previous=True)
    assert result.archived == []
    assert result.left_requesting == ["credit-v1"]
    assert kube.mv("credit-v1")["spec"]["stage"] == "Production"


def test_promote_denied_by_admission(artifact: Path) -> None:
    client, kube, _, _ = standard()
    client.register("credit", artifact)
    kube.forbidden_patch_stage.add("Production")
    with pytest.raises(errors.PermissionDenied, match="'promote' verb") as e:
        client.promote("credit-v1")
    assert e.value.exit_code == errors.EXIT_FORBIDDEN


def test_rollback_to_next_requesting_version(artifact: Path) -> None:
    client, kube, _, _ = standard()
    for _ in range(3):
        client.register("credit", artifact, stage="Production")
    kube.objects[("models", NS, "credit")]["status"] = {"productionVersion": 3}
    kube.set_status("credit-v2", phase="Blocked")
    kube.set_status("credit-v1", phase="Superseded")
    r = client.rollback("credit")
    assert (r.archived, r.target) == ("credit-v3", "credit-v1")
    assert kube.mv("credit-v3")["spec"]["stage"] == "Archived"


def test_rollback_reasks_the_previous_production_version(artifact: Path) -> None:
    client, kube, _, _ = standard()
    client.register("credit", artifact)
    client.register("credit", artifact)
    client.register("credit", artifact, stage="Production")
    kube.objects[("models", NS, "credit")]["status"] = {"productionVersion": 3}
    kube.mv("credit-v1")["spec"]["stage"] = "Archived"
    kube.set_status("credit-v1", history=[{"stage": "Production", "at": "2026-01-01T00:00:05Z"}])
    kube.set_status(
        "credit-v2",
        history=[
            {"stage": "Production", "at": "2026-01-01T00:00:09Z"},
            {"stage": "Archived", "at": "2026-01-01T00:00:10Z"},
        ],
    )
    _serve_when_production(kube)
    r = client.rollback("credit", wait=True)
    assert (r.archived, r.target) == ("credit-v3", "credit-v2")
    assert r.version.status.phase == Phase.SERVING
    assert kube.mv("credit-v2")["spec"]["stage"] == "Production"


def test_rolling_back_twice_goes_further_back_not_to_the_version_just_rolled_back(
    artifact: Path,
) -> None:
    client, kube, _, _ = standard()
    for _ in range(3):
        client.register("credit", artifact)
    kube.objects[("models", NS, "credit")]["status"] = {"productionVersion": 2}
    kube.mv("credit-v2")["spec"]["stage"] = "Production"
    kube.mv("credit-v1")["spec"]["stage"] = "Archived"
    kube.mv("credit-v3")["spec"]["stage"] = "Archived"
    # v1 served, then v2, then v3; v3 was rolled back to v2, which serves again.
    kube.set_status("credit-v1", history=[{"stage": "Production", "at": "2026-01-01T00:00:01Z"}])
    kube.set_status("credit-v2", history=[{"stage": "Production", "at": "2026-01-01T00:00:09Z"}])
    kube.set_status(
        "credit-v3",
        history=[
            {"stage": "Production", "at": "2026-01-01T00:00:05Z"},
            {"stage": "Archived", "at": "2026-01-01T00:00:08Z"},
        ],
    )
    r = client.rollback("credit")
    assert (r.archived, r.target) == ("credit-v2", "credit-v1")
    assert kube.mv("credit-v1")["spec"]["stage"] == "Production"


def test_rollback_with_nothing_to_fall_back_on(artifact: Path) -> None:
    client, kube, _, _ = standard()
    with pytest.raises(errors.NothingToRollBack, match="no version of 'credit' is serving"):
        client.rollback("credit")
    client.register("credit", artifact, stage="Production")
    kube.set_status("credit-v1", phase="Serving", stage="Production")
    with pytest.raises(errors.NothingToRollBack, match="promote one first"):
        client.rollback("credit")
    assert kube.mv("credit-v1")["spec"]["stage"] == "Production"  # untouched
    with pytest.raises(errors.VersionNotFound):
        client.rollback("credit", to=5)


def test_register_never_overwrites_an_object_written_meanwhile(artifact: Path) -> None:
    client, _kube, st, _ = standard()

    def concurrent_writer(uri: str) -> None:
        if uri == "s3://models/credit/1/model.onnx" and uri not in st.objects:
            st.objects[uri] = b"someone else's model"

    st.before_upload = concurrent_writer
    mv = client.register("credit", artifact)
    assert mv.metadata.name == "credit-v2"
    assert st.objects["s3://models/credit/1/model.onnx"] == b"someone else's model"
    assert st.objects["s3://models/credit/2/model.onnx"] == artifact.read_bytes()

    # A pinned version whose key gets written between the check and the upload:
    def writer5(uri: str) -> None:
        st.objects[uri] = b"y"

    st.before_upload = writer5
    with pytest.raises(errors.AlreadyExists, match="version 5 is taken"):
        client.register("credit", artifact, version=5)
    assert "credit-v5" not in [mv.metadata.name for mv in client.list("credit")]


def test_reads_are_retried_while_the_api_server_is_unavailable(artifact: Path) -> None:
    from modelreg.adapters import kube as k

    client, kube, _, clock = standard()
    failures = {"left": 2}
    real_get = kube.get_object

    def flaky(plural: str, namespace: str, name: str) -> dict[str, Any]:
        if failures["left"]:
            failures["left"] -= 1
            raise k.Unavailable("cannot reach the Kubernetes API server: ProtocolError")
        return real_get(plural, namespace, name)

    kube.get_object = flaky  # type: ignore[method-assign]
    assert client.get_model("credit").metadata.name == "credit"
    assert clock.sleeps == [0.5, 1.0]
    failures["left"] = 10
    with pytest.raises(errors.Unavailable, match="ProtocolError"):
        client.get_model("credit")


# -- reasons (who asked is stamped by the API server; the SDK sends only the reason) -------------

REASON = "modelreg.dev/reason"


def test_a_reason_goes_with_the_stage_in_one_write_and_no_reason_clears_it(artifact: Path) -> None:
    client, kube, _, _ = standard()
    client.register("credit", artifact)
    client.register("credit", artifact)
    client.promote("credit", 1, reason="beats the baseline on the May holdout")
    annotations = kube.mv("credit-v1")["metadata"]["annotations"]
    assert annotations[REASON] == "beats the baseline on the May holdout"
    assert kube.mv("credit-v1")["spec"]["stage"] == "Production"
    # A later change without a reason must not record the old one as its own.
    client.archive("credit", 1)
    assert REASON not in kube.mv("credit-v1")["metadata"].get("annotations", {})
    # A version archived because another was promoted says so, with the user's reason.
    client.promote("credit", 1)
    client.promote("credit", 2, reason="retrained on June", archive_previous=True)
    kube.set_status("credit-v2", phase="Serving", stage="Production")
    assert kube.mv("credit-v2")["metadata"]["annotations"][REASON] == "retrained on June"


def test_rollback_records_why_on_both_versions(artifact: Path) -> None:
    client, kube, _, _ = standard()
    for _ in range(2):
        client.register("credit", artifact, stage="Production")
    kube.objects[("models", NS, "credit")]["status"] = {"productionVersion": 2}
    kube.set_status("credit-v1", phase="Ready")
    r = client.rollback("credit", reason="p99 doubled")
    assert (r.archived, r.target) == ("credit-v2", "credit-v1")
    assert kube.mv("credit-v2")["metadata"]["annotations"][REASON] == (
        "rollback of credit-v2: p99 doubled"
    )


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("x" * 1025, "a reason is at most 1024 characters (got 1025)"),
        ("   ", "a reason must be text"),
        ("a\x00b", "a reason must be text"),
    ],
)
def test_a_bad_reason_is_refused_before_anything_is_written(
    artifact: Path, reason: str, message: str
) -> None:
    client, kube, _, _ = standard()
    client.register("credit", artifact)
    before = list(kube.calls)
    for call in (
        lambda: client.promote("credit", 1, reason=reason),
        lambda: client.archive("credit", 1, reason=reason),
        lambda: client.rollback("credit", reason=reason),
    ):
        with pytest.raises(
            errors.InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")
        ):
            call()
    assert [c for c in kube.calls if c[0] == "patch"] == [c for c in before if c[0] == "patch"]
    assert kube.mv("credit-v1")["spec"]["stage"] == "None"
