"""Reading an MLflow tracking server and model registry: the only module that imports `mlflow`.

Caller: `modelreg.sdk.mlflow_import` (the `modelreg import-mlflow` command). It sees plain
dataclasses (`SourceModel`, `SourceVersion`, `MainFile`) and one error type, `MlflowSourceError`;
no mlflow object or exception leaves this module. `mlflow` is an optional dependency (the `mlflow`
extra) and is imported on first use, so the rest of modelreg never pays for it.

Works with every backend the mlflow client supports (a `file:` or `sqlite:` store, or an HTTP
tracking server). Registry stages are deprecated in MLflow but still read: they and aliases are
both reported, and the caller maps them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ENVIRONMENT_FILES",
    "MainFile",
    "MlflowSource",
    "MlflowSourceError",
    "SourceModel",
    "SourceVersion",
    "environment_files",
    "main_file",
    "mlmodel_text",
]

_PAGE = 200
# The files of an MLflow model directory that record its environment, as MLflow names them.
ENVIRONMENT_FILES = ("requirements.txt", "python_env.yaml", "conda.yaml")
_ENV_FILE_MAX = 1024 * 1024  # an environment file larger than this is not one MLflow wrote


class MlflowSourceError(Exception):
    """Reading the MLflow registry failed; the message says what and where."""


@dataclass(frozen=True)
class SourceVersion:
    model: str  # the registered model's name in MLflow
    version: int
    stage: str  # MLflow's current_stage: None | Staging | Production | Archived
    aliases: tuple[str, ...]
    status: str  # READY | PENDING_REGISTRATION | FAILED_REGISTRATION
    source: str
    run_id: str | None
    description: str
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # the run's latest values
    params: dict[str, str] = field(default_factory=dict)
    run_tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceModel:
    name: str
    description: str
    tags: dict[str, str]
    versions: list[SourceVersion]


@dataclass(frozen=True)
class MainFile:
    """The file of an MLflow model directory that a model server loads, when one is known."""

    path: Path | None  # None: no single file; ship the whole directory
    format: str  # one of modelreg's artifact formats
    framework: str


class MlflowSource:
    """One MLflow tracking server / registry."""

    def __init__(self, tracking_uri: str, registry_uri: str | None = None) -> None:
        try:
            from mlflow.tracking import MlflowClient  # noqa: PLC0415 - heavy and optional
        except ImportError as e:
            raise MlflowSourceError(
                "the mlflow package is not installed: pip install 'modelreg[mlflow]'"
            ) from e
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        try:
            self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=self.registry_uri)
        except Exception as e:
            raise MlflowSourceError(f"cannot open MLflow at {tracking_uri}: {e}") from e

    def models(self, names: Sequence[str] | None = None) -> list[SourceModel]:
        """The registered models (all, or those named), each with its versions, oldest first."""
        try:
            if names:
                registered = [self._client.get_registered_model(n) for n in names]
            else:
                registered = list(self._paged(self._client.search_registered_models))
            return [self._model(rm) for rm in registered]
        except MlflowSourceError:
            raise
        except Exception as e:
            raise MlflowSourceError(
                f"reading the MLflow registry at {self.tracking_uri}: {e}"
            ) from e

    def download(self, version: SourceVersion, dest: Path) -> Path:
        """Download the version's model directory under `dest`; returns the directory."""
        try:
            import mlflow.artifacts  # noqa: PLC0415 - heavy and optional

            uri = self._client.get_model_version_download_uri(version.model, str(version.version))
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=str(dest), tracking_uri=self.tracking_uri
            )
        except Exception as e:
            raise MlflowSourceError(
                f"downloading {version.model} version {version.version}: {e}"
            ) from e
        return Path(local)

    # -- internals ----------------------------------------------------------------------------

    def _paged(self, search: Any, **kwargs: Any) -> Iterator[Any]:
        token = None
        while True:
            page = search(max_results=_PAGE, page_token=token, **kwargs)
            yield from page
            token = getattr(page, "token", None)
            if not token:
                return

    def _model(self, rm: Any) -> SourceModel:
        aliases: dict[int, list[str]] = {}
        for alias, number in (getattr(rm, "aliases", None) or {}).items():
            aliases.setdefault(int(number), []).append(str(alias))
        # A name with a quote cannot be filtered on; fall back to listing all versions.
        if "'" in rm.name:
            found = [
                mv for mv in self._paged(self._client.search_model_versions) if mv.name == rm.name
            ]
        else:
            found = list(
                self._paged(self._client.search_model_versions, filter_string=f"name='{rm.name}'")
            )
        versions = sorted(
            (self._version(mv, aliases.get(int(mv.version), [])) for mv in found),
            key=lambda v: v.version,
        )
        return SourceModel(
            name=rm.name,
            description=rm.description or "",
            tags={str(k): str(v) for k, v in (rm.tags or {}).items()},
            versions=versions,
        )

    def _version(self, mv: Any, aliases: list[str]) -> SourceVersion:
        metrics: dict[str, float] = {}
        params: dict[str, str] = {}
        run_tags: dict[str, str] = {}
        if mv.run_id:
            try:
                run = self._client.get_run(mv.run_id)
            except Exception:  # a deleted run leaves the version importable
                run = None
            if run is not None:
                metrics = {
                    str(k): float(v)
                    for k, v in run.data.metrics.items()
                    if isinstance(v, int | float) and math.isfinite(v)
                }
                params = {str(k): str(v) for k, v in run.data.params.items()}
                run_tags = {str(k): str(v) for k, v in run.data.tags.items()}
        return SourceVersion(
            model=mv.name,
            version=int(mv.version),
            stage=str(mv.current_stage or "None"),
            aliases=tuple(sorted({*aliases, *(getattr(mv, "aliases", None) or [])})),
            status=str(mv.status or "READY"),
            source=str(mv.source or ""),
            run_id=mv.run_id or None,
            description=mv.description or "",
            tags={str(k): str(v) for k, v in (mv.tags or {}).items()},
            metrics=metrics,
            params=params,
            run_tags=run_tags,
        )


def main_file(model_dir: Path) -> MainFile:
    """Which file of an MLflow model directory to register, read from its `MLmodel` flavors."""
    mlmodel = model_dir / "MLmodel"
    try:
        meta = yaml.safe_load(mlmodel.read_text()) if mlmodel.is_file() else {}
    except (OSError, yaml.YAMLError):
        meta = {}
    flavors: dict[str, Any] = (meta or {}).get("flavors") or {}

    def pick(rel: object, fmt: str, framework: str) -> MainFile | None:
        if isinstance(rel, str) and (model_dir / rel).is_file():
            return MainFile(model_dir / rel, fmt, framework)
        return None

    candidates: list[MainFile | None] = []
    if "onnx" in flavors:
        candidates.append(pick(flavors["onnx"].get("data"), "onnx", "onnx"))
    if "sklearn" in flavors:
        sk = flavors["sklearn"]
        fmt = "skops" if sk.get("serialization_format") == "skops" else "sklearn"
        candidates.append(pick(sk.get("pickled_model"), fmt, "sklearn"))
    if "xgboost" in flavors:
        candidates.append(pick(flavors["xgboost"].get("data"), "xgboost", "xgboost"))
    if "lightgbm" in flavors:
        candidates.append(pick(flavors["lightgbm"].get("data"), "lightgbm", "lightgbm"))
    for c in candidates:
        if c is not None:
            return c
    loader = str((flavors.get("python_function") or {}).get("loader_module") or "")
    framework = loader.removeprefix("mlflow.") if loader.startswith("mlflow.") else "mlflow"
    return MainFile(None, "custom", framework)


def environment_files(model_dir: Path) -> dict[str, str]:
    """The text of the model directory's environment files that exist, keyed by their standard
    names (`requirements.txt`, `python_env.yaml`, `conda.yaml`). Where MLmodel's python_function
    flavor names other files (`env: {virtualenv: ..., conda: ...}`, or `env: conda.yaml` in older
    MLflow), those are read. A file that is missing, unreadable, not UTF-8, larger than 1 MiB or
    outside the directory is left out."""
    names = dict(zip(ENVIRONMENT_FILES, ENVIRONMENT_FILES, strict=True))
    try:
        meta = yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        meta = None
    flavors = meta.get("flavors") if isinstance(meta, dict) else None
    pyfunc = flavors.get("python_function") if isinstance(flavors, dict) else None
    env = pyfunc.get("env") if isinstance(pyfunc, dict) else None
    if isinstance(env, str):
        names["conda.yaml"] = env
    elif isinstance(env, dict):
        for key, standard in (("virtualenv", "python_env.yaml"), ("conda", "conda.yaml")):
            if isinstance(env.get(key), str) and env[key]:
                names[standard] = env[key]
    root = model_dir.resolve()
    out: dict[str, str] = {}
    for standard, rel in names.items():
        path = (model_dir / rel).resolve()
        if not path.is_relative_to(root):
            continue
        try:
            if not path.is_file() or path.stat().st_size > _ENV_FILE_MAX:
                continue
            out[standard] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
    return out


def mlmodel_text(model_dir: Path) -> str | None:
    """The text of the model directory's `MLmodel` file (its flavors and `signature:` block);
    None when it is missing, unreadable, not UTF-8 or larger than 1 MiB."""
    path = model_dir / "MLmodel"
    try:
        if not path.is_file() or path.stat().st_size > _ENV_FILE_MAX:
            return None
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
