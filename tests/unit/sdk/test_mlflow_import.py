"""Unit tests of modelreg.sdk.mlflow_import with a fake MLflow source (the adapter boundary) and of
`mlflow_source.main_file` on real directories. The real MLflow round trip is tests/e2e/test_mlflow_import.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from modelreg.adapters.mlflow_source import MainFile, SourceModel, SourceVersion, main_file
from modelreg.api.models import Stage
from modelreg.sdk import errors
from modelreg.sdk.mlflow_import import (
    ANNOTATION,
    DEFAULT_ALIAS_STAGES,
    import_mlflow,
    model_name_for,
    stage_for,
)
from tests.unit.sdk.fakes import CREDS, NS, make_client, standard


def sv(
    version: int, stage: str = "None", aliases: tuple[str, ...] = (), status: str = "READY"
) -> SourceVersion:
    return SourceVersion(
        model="Credit Scoring",
        version=version,
        stage=stage,
        aliases=aliases,
        status=status,
        source=f"models:/m-{version}",
        run_id=f"run{version}",
        description=f"v{version}",
        metrics={"auc": 0.8 + version / 100},
        params={"C": str(version)},
        run_tags={"mlflow.source.git.commit": "abc123"},
    )


class FakeSource:
    def __init__(
        self, models: list[SourceModel], env_files: dict[int, dict[str, str]] | None = None
    ) -> None:
        self._models = models
        self.downloads: list[int] = []
        # version -> the environment files its model directory holds (MLflow writes them).
        self.env_files = env_files or {}

    def models(self, names: list[str] | None = None) -> list[SourceModel]:
        return [m for m in self._models if not names or m.name in names]

    def download(self, version: SourceVersion, dest: Path) -> Path:
        self.downloads.append(version.version)
        dest.mkdir(parents=True)
        (dest / "MLmodel").write_text(
            "flavors:\n  sklearn:\n    pickled_model: model.skops\n    serialization_format: skops\n"
        )
        (dest / "model.skops").write_bytes(f"weights-{version.version}".encode())
        for name, text in self.env_files.get(version.version, {}).items():
            (dest / name).write_text(text)
        return dest


def registry() -> FakeSource:
    return FakeSource(
        [
            SourceModel(
                name="Credit Scoring",
                description="credit model",
                tags={"team": "risk"},
                versions=[
                    sv(1, "Archived", aliases=("old",)),
                    sv(2, "Production"),
                    sv(3, aliases=("champion",)),
                    sv(4, "Staging", aliases=("9lives",)),
                    sv(5, status="FAILED_REGISTRATION"),
                ],
            )
        ]
    )


def test_names_and_stages() -> None:
    assert model_name_for("Credit Scoring (EU)") == "credit-scoring-eu"
    with pytest.raises(errors.InvalidArgument):
        model_name_for("***")
    assert stage_for(sv(1, "Production", ("challenger",)), DEFAULT_ALIAS_STAGES) is Stage.STAGING
    assert stage_for(sv(1, "staging"), DEFAULT_ALIAS_STAGES) is Stage.STAGING
    assert (
        stage_for(sv(1, "None", ("Champion", "challenger")), DEFAULT_ALIAS_STAGES)
        is Stage.PRODUCTION
    )
    assert stage_for(sv(1, "None", ("blue",)), DEFAULT_ALIAS_STAGES) is Stage.NONE


def test_import_creates_model_and_versions_then_is_idempotent() -> None:
    client, kube, st, _ = make_client()
    kube.secrets[(NS, "s3-credentials")] = dict(CREDS)
    src = registry()
    report = import_mlflow(
        client,
        "sqlite:///x.db",
        storage_prefix="s3://models/imported",
        secret_name="s3-credentials",
        source=src,  # type: ignore[arg-type]
    )
    assert report.models_created == ["credit-scoring"]
    model = kube.objects[("models", NS, "credit-scoring")]
    assert model["spec"]["storage"] == {
        "uri": "s3://models/imported/credit-scoring/",
        "secretRef": {"name": "s3-credentials"},
    }
    assert model["spec"]["tags"] == {"team": "risk"}
    # MLflow's aliases carried over: the valid ones on live versions.
    assert model["spec"]["aliases"] == {"champion": 3}
    assert report.aliases == {"credit-scoring": {"champion": 3}}
    assert report.aliases_skipped == [
        "Credit Scoring@old: version 1 is imported as Archived",
        "Credit Scoring@9lives: alias '9lives' is not a valid name: a letter, then at most 62 "
        "letters, digits, '_' or '-'",
    ]
    assert [(v.source, v.target, v.action, v.stage) for v in report.versions] == [
        ("Credit Scoring/1", "credit-scoring-v1", "created", Stage.ARCHIVED),
        ("Credit Scoring/2", "credit-scoring-v2", "created", Stage.PRODUCTION),
        ("Credit Scoring/3", "credit-scoring-v3", "created", Stage.PRODUCTION),
        ("Credit Scoring/4", "credit-scoring-v4", "created", Stage.STAGING),
        ("Credit Scoring/5", "", "skipped", Stage.NONE),
    ]
    v3 = kube.mv("credit-scoring-v3")
    assert v3["metadata"]["annotations"] == {ANNOTATION: "Credit Scoring/3"}
    assert v3["spec"]["artifact"]["uri"] == "s3://models/imported/credit-scoring/3/model.skops"
    assert v3["spec"]["artifact"]["format"] == "skops"
    assert v3["spec"]["framework"] == "sklearn"
    assert v3["spec"]["metrics"] == {"auc": pytest.approx(0.83)}
    assert v3["spec"]["params"] == {"C": "3"}
    assert v3["spec"]["lineage"] == {
        "mlflowModel": "Credit Scoring/3",
        "run": "run3",
        "source": "models:/m-3",
        "gitCommit": "abc123",
    }
    assert st.objects["s3://models/imported/credit-scoring/3/model.skops"] == b"weights-3"
    # The fake's model directories hold no requirements.txt, python_env.yaml or conda.yaml.
    assert "environment" not in v3["spec"]

    objects_before = dict(kube.objects)
    again = import_mlflow(
        client, "sqlite:///x.db", storage_prefix="s3://models/imported", source=src
    )  # type: ignore[arg-type]
    assert again.models_created == []
    assert again.created == []
    assert [v.action for v in again.versions] == ["exists"] * 4 + ["skipped"]
    assert kube.objects == objects_before
    assert src.downloads == [1, 2, 3, 4]


PYTHON_ENV = (
    "python: 3.10.12\nbuild_dependencies:\n- pip==23.0\n- setuptools==68.0.0\n- wheel==0.41.2\n"
    "dependencies:\n- -r requirements.txt\n"
)
CONDA = (
    "channels:\n- conda-forge\ndependencies:\n- python=3.9.18\n- pip<=23.0\n- pip:\n"
    "  - mlflow==2.9.2\n  - xgboost==2.0.3\nname: mlflow-env\n"
)


def test_import_records_each_versions_environment() -> None:
    client, kube, _, _ = standard()
    src = FakeSource(
        [SourceModel("Credit Scoring", "", {}, [sv(1), sv(2), sv(3), sv(4)])],
        env_files={
            1: {
                "requirements.txt": "mlflow==2.9.2\ncloudpickle==2.2.1\nscikit-learn==1.3.0\n",
                "python_env.yaml": PYTHON_ENV,
                "conda.yaml": CONDA,
            },
            # Unpinned requirements (given to MLflow as bare names) are left out, and said so.
            2: {"requirements.txt": "mlflow==2.9.2\nnumpy\npandas>=2.0\n"},
            3: {"conda.yaml": CONDA},
            4: {"python_env.yaml": "python: [3\n"},  # not YAML: imported without environment
        },
    )
    report = import_mlflow(client, "file:///m", model_map={"Credit Scoring": "credit"}, source=src)  # type: ignore[arg-type]
    assert [v.action for v in report.versions] == ["created"] * 4
    assert kube.mv("credit-v1")["spec"]["environment"] == {
        "python": "3.10.12",
        "packages": ["cloudpickle==2.2.1", "mlflow==2.9.2", "scikit-learn==1.3.0"],
    }
    assert kube.mv("credit-v2")["spec"]["environment"] == {"packages": ["mlflow==2.9.2"]}
    v2 = report.versions[1]
    assert v2.skipped_requirements == ("numpy", "pandas>=2.0")
    assert v2.detail == (
        "2 requirement(s) not pinned with == left out of the environment: numpy, pandas>=2.0"
    )
    assert kube.mv("credit-v3")["spec"]["environment"] == {
        "python": "3.9.18",
        "packages": ["mlflow==2.9.2", "xgboost==2.0.3"],
    }
    assert report.versions[0].detail == report.versions[2].detail == ""
    assert "environment" not in kube.mv("credit-v4")["spec"]
    assert report.versions[3].detail.startswith(
        "no environment recorded: python_env.yaml is not valid YAML"
    )


def test_import_into_existing_model_takes_free_numbers() -> None:
    client, kube, _, _ = standard()
    kube.objects[("modelversions", NS, "credit-v1")] = {
        "metadata": {"name": "credit-v1", "namespace": NS, "generation": 1},
        "spec": {
            "model": "credit",
            "version": 1,
            "artifact": {"uri": "s3://models/credit/1/a", "sha256": "0"},
        },
    }
    src = FakeSource([SourceModel("Credit Scoring", "", {}, [sv(1, aliases=("champion",)), sv(2)])])
    report = import_mlflow(client, "file:///m", model_map={"Credit Scoring": "credit"}, source=src)  # type: ignore[arg-type]
    # v1 is taken by a native version: MLflow v1 gets the next free number, v2 then the one after.
    assert [v.target for v in report.versions] == ["credit-v2", "credit-v3"]
    # The alias follows the version to its new number.
    assert kube.objects[("models", NS, "credit")]["spec"]["aliases"] == {"champion": 2}


def test_import_needs_storage_for_a_new_model() -> None:
    client, kube, _, _ = make_client()
    with pytest.raises(errors.NoStorageConfigured, match="--storage-prefix"):
        import_mlflow(client, "file:///m", source=registry())  # type: ignore[arg-type]
    assert kube.objects == {}


def test_dry_run_writes_nothing() -> None:
    client, kube, st, _ = make_client()
    report = import_mlflow(
        client, "file:///m", storage_prefix="s3://models/", dry_run=True, source=registry()
    )  # type: ignore[arg-type]
    assert report.models_created == ["credit-scoring"]
    assert [v.action for v in report.versions] == ["would-create"] * 4 + ["skipped"]
    assert kube.objects == {}
    assert st.objects == {}


@pytest.mark.parametrize(
    ("mlmodel", "files", "expected"),
    [
        (
            "flavors:\n  onnx:\n    data: model.onnx\n",
            ["model.onnx"],
            ("model.onnx", "onnx", "onnx"),
        ),
        (
            "flavors:\n  sklearn:\n    pickled_model: model.pkl\n    serialization_format: cloudpickle\n",
            ["model.pkl"],
            ("model.pkl", "sklearn", "sklearn"),
        ),
        (
            "flavors:\n  xgboost:\n    data: model.xgb\n",
            ["model.xgb"],
            ("model.xgb", "xgboost", "xgboost"),
        ),
        (
            "flavors:\n  lightgbm:\n    data: model.lgb\n",
            ["model.lgb"],
            ("model.lgb", "lightgbm", "lightgbm"),
        ),
        (
            "flavors:\n  python_function:\n    loader_module: mlflow.pytorch\n",
            ["data.pth"],
            (None, "custom", "pytorch"),
        ),
        ("flavors:\n  onnx:\n    data: missing.onnx\n", [], (None, "custom", "mlflow")),
    ],
)
def test_main_file(
    tmp_path: Path, mlmodel: str, files: list[str], expected: tuple[str | None, str, str]
) -> None:
    (tmp_path / "MLmodel").write_text(mlmodel)
    for f in files:
        (tmp_path / f).write_bytes(b"x")
    got = main_file(tmp_path)
    name, fmt, framework = expected
    assert got == MainFile(tmp_path / name if name else None, fmt, framework)
