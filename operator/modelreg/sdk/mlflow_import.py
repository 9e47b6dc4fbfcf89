"""Importing an MLflow model registry into modelreg: Models and ModelVersions, artifacts copied.

Called by `Client.import_mlflow` and the `modelreg import-mlflow` command. MLflow is read through
`modelreg.adapters.mlflow_source`; each version's model directory is downloaded, its main file (the
one a model server loads: `model.onnx`, `model.skops`, ...) or else the whole directory as a tar is
uploaded under the Model's storage prefix, and a ModelVersion is created like `register` does.

The mapping:
- registered model name -> Model name (lowercased, other characters turned into '-'), or as given;
- MLflow version N -> `<model>-vN` when that number is free, else the next free number;
- stage: an alias in `alias_stages` wins (default: champion/production -> Production,
  challenger/staging -> Staging); else the MLflow stage (Production, Staging, Archived); else None;
- every MLflow alias also becomes an alias (`spec.aliases`) of the imported version, unless its
  name is not a valid alias or the version is imported as Archived (the report says why);
- the run's metrics (finite ones) and params, the run id as lineage.run, the git commit tag as
  lineage.gitCommit, the version's description;
- the model directory's requirements.txt, python_env.yaml and conda.yaml as spec.environment
  (Python version and pinned packages, see `modelreg.sdk.environment.from_mlflow`): a requirement
  not pinned with `==` is left out, and the version's report line says which; a version whose
  directory has none of these files gets no environment.
- the `signature:` block of the model directory's MLmodel as spec.signature (see
  `modelreg.sdk.signature.from_mlflow`); without one, an ONNX model's graph. Tensors with no v2
  datatype are left out, and a signature that cannot be read is not recorded; the version's
  report line says so either way.

Idempotent: every imported version carries the annotation `modelreg.dev/mlflow-version` =
`<registered name>/<N>`, and a version already carrying it is skipped, so a second run creates
nothing. A Model that does not exist is created with storage under `storage_prefix`.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from modelreg.adapters import kube as k
from modelreg.adapters.mlflow_source import (
    MainFile,
    MlflowSource,
    MlflowSourceError,
    SourceModel,
    SourceVersion,
    environment_files,
    main_file,
    mlmodel_text,
)
from modelreg.api.models import (
    LONG_STR,
    MAP_MAX,
    NAME_MAX,
    SHORT_STR,
    ArtifactFormat,
    Model,
    ModelSpec,
    SecretRef,
    Stage,
    Storage,
    version_name,
)
from modelreg.lifecycle import aliases as alias_rules
from modelreg.sdk import artifacts
from modelreg.sdk import environment as envs
from modelreg.sdk import signature as sigs
from modelreg.sdk.client import parse_version_ref
from modelreg.sdk.errors import (
    InvalidArgument,
    MlflowError,
    ModelNotFound,
    NoStorageConfigured,
    from_kube,
)

if TYPE_CHECKING:
    from modelreg.sdk.client import Client

ANNOTATION = "modelreg.dev/mlflow-version"
IMPORTED_FROM = "modelreg.dev/imported-from"

DEFAULT_ALIAS_STAGES: Mapping[str, Stage] = {
    "champion": Stage.PRODUCTION,
    "production": Stage.PRODUCTION,
    "prod": Stage.PRODUCTION,
    "challenger": Stage.STAGING,
    "staging": Stage.STAGING,
}
_STAGE_RANK = {Stage.PRODUCTION: 3, Stage.STAGING: 2, Stage.ARCHIVED: 1, Stage.NONE: 0}


@dataclass(frozen=True)
class ImportedVersion:
    source: str  # "<registered name>/<N>"
    target: str  # the ModelVersion's name ("" when skipped before one was chosen)
    action: str  # created | exists | skipped | would-create
    stage: Stage
    detail: str = ""
    # Requirements of the model directory left out of spec.environment (not pinned with ==).
    skipped_requirements: tuple[str, ...] = ()


@dataclass
class ImportReport:
    models_created: list[str] = field(default_factory=list)
    versions: list[ImportedVersion] = field(default_factory=list)
    # Model -> the MLflow aliases carried over as spec.aliases (alias -> version number).
    aliases: dict[str, dict[str, int]] = field(default_factory=dict)
    # MLflow aliases not carried over, each with why.
    aliases_skipped: list[str] = field(default_factory=list)

    @property
    def created(self) -> list[ImportedVersion]:
        return [v for v in self.versions if v.action == "created"]


def model_name_for(registered: str) -> str:
    """A valid Model name (DNS label) for an MLflow registered-model name."""
    slug = re.sub(r"[^a-z0-9]+", "-", registered.lower()).strip("-")
    slug = slug[:NAME_MAX].strip("-")
    if not slug:
        raise InvalidArgument(f"cannot derive a Model name from {registered!r}; map it explicitly")
    return slug


def stage_for(version: SourceVersion, alias_stages: Mapping[str, Stage]) -> Stage:
    from_aliases = [alias_stages[a.lower()] for a in version.aliases if a.lower() in alias_stages]
    if from_aliases:
        return max(from_aliases, key=lambda s: _STAGE_RANK[s])
    for s in Stage:
        if s.value.lower() == version.stage.strip().lower():
            return s
    return Stage.NONE


def import_mlflow(
    client: Client,
    tracking_uri: str,
    *,
    registry_uri: str | None = None,
    names: Sequence[str] | None = None,
    model_map: Mapping[str, str] | None = None,
    storage_prefix: str | None = None,
    storage_endpoint: str | None = None,
    storage_region: str | None = None,
    secret_name: str | None = None,
    alias_stages: Mapping[str, Stage] | None = None,
    dry_run: bool = False,
    on_version: Callable[[ImportedVersion], None] | None = None,
    source: MlflowSource | None = None,
) -> ImportReport:
    """Import the registered models (all, or `names`) of the MLflow at `tracking_uri`."""
    aliases = {key.lower(): v for key, v in (alias_stages or DEFAULT_ALIAS_STAGES).items()}
    try:
        src = source or MlflowSource(tracking_uri, registry_uri)
        models = src.models(names)
    except MlflowSourceError as e:
        raise MlflowError(str(e)) from e
    report = ImportReport()
    for sm in models:
        target = (model_map or {}).get(sm.name) or model_name_for(sm.name)
        mdl = _ensure_model(
            client,
            target,
            sm,
            report,
            storage_prefix=storage_prefix,
            endpoint=storage_endpoint,
            region=storage_region,
            secret_name=secret_name,
            dry_run=dry_run,
        )
        existing = {
            mv.metadata.annotations.get(ANNOTATION): mv.metadata.name
            for mv in (client.list(target) if mdl is not None else [])
        }
        carried: dict[str, int] = {}
        for sv in sm.versions:
            item = _import_version(client, src, mdl, target, sv, aliases, existing, dry_run)
            report.versions.append(item)
            if on_version:
                on_version(item)
            carried.update(_aliases_of(sv, item, report))
        if carried and mdl is not None and not dry_run:
            client._patch_model(target, {"spec": {"aliases": carried}}, "the aliases")
        if carried:
            report.aliases[target] = carried
    return report


def _aliases_of(sv: SourceVersion, item: ImportedVersion, report: ImportReport) -> dict[str, int]:
    """The MLflow aliases of one version that become aliases of its imported version."""
    found = parse_version_ref(item.target) if item.target else None
    out: dict[str, int] = {}
    for alias in sv.aliases:
        why = alias_rules.name_problem(alias)
        if why is None and found is None:
            why = f"version {sv.version} was not imported ({item.detail or item.action})"
        if why is None and item.stage is Stage.ARCHIVED:
            why = f"version {sv.version} is imported as Archived"
        if why is not None:
            report.aliases_skipped.append(f"{sv.model}@{alias}: {why}")
        elif found is not None:
            out[alias] = found[1]
    return out


def _ensure_model(
    client: Client,
    name: str,
    sm: SourceModel,
    report: ImportReport,
    *,
    storage_prefix: str | None,
    endpoint: str | None,
    region: str | None,
    secret_name: str | None,
    dry_run: bool,
) -> Model | None:
    """The target Model, created when missing; None in a dry run when it would be created."""
    try:
        return client.get_model(name)
    except ModelNotFound:
        pass
    if not storage_prefix:
        raise NoStorageConfigured(
            f"model {name!r} does not exist and no storage prefix was given to create it "
            "(--storage-prefix s3://bucket/prefix/)"
        )
    base = storage_prefix if storage_prefix.endswith("/") else storage_prefix + "/"
    spec = ModelSpec(
        description=sm.description[:LONG_STR],
        tags={key[:SHORT_STR]: v[:SHORT_STR] for key, v in list(sm.tags.items())[:MAP_MAX] if key},
        storage=Storage(
            uri=f"{base}{name}/",
            endpoint=endpoint,
            region=region,
            secret_ref=SecretRef(name=secret_name) if secret_name else None,
        ),
    )
    report.models_created.append(name)
    if dry_run:
        return None
    body = {
        "apiVersion": "modelreg.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name, "annotations": {IMPORTED_FROM: f"mlflow:{sm.name}"}},
        "spec": spec.wire(),
    }
    try:
        created = client.kube.create_object(k.MODELS, client.namespace, body)
    except k.Conflict:
        report.models_created.remove(name)
        return client.get_model(name)  # created meanwhile: use it
    except k.KubeError as e:
        raise from_kube(e, f"creating model {name!r}") from e
    return Model.model_validate(created)


def _import_version(
    client: Client,
    src: MlflowSource,
    mdl: Model | None,
    target: str,
    sv: SourceVersion,
    aliases: Mapping[str, Stage],
    existing: Mapping[str | None, str],
    dry_run: bool,
) -> ImportedVersion:
    ref = f"{sv.model}/{sv.version}"
    stage = stage_for(sv, aliases)
    if ref in existing:
        return ImportedVersion(ref, existing[ref], "exists", stage, "imported before")
    if sv.status.upper() != "READY":
        return ImportedVersion(ref, "", "skipped", stage, f"MLflow status is {sv.status}")
    if mdl is None or dry_run:
        return ImportedVersion(ref, version_name(target, sv.version), "would-create", stage)
    fields = client._spec_fields(
        metrics=dict(list(sv.metrics.items())[:MAP_MAX]),
        params={key: v[:LONG_STR] for key, v in list(sv.params.items())[:MAP_MAX]},
        lineage=_lineage(sv),
        framework="",
        stage=stage,
        description=sv.description[:LONG_STR],
    )
    with tempfile.TemporaryDirectory(prefix="modelreg-mlflow-") as tmp:
        try:
            model_dir = src.download(sv, Path(tmp) / "download")
        except MlflowSourceError as e:
            raise MlflowError(str(e)) from e
        main = main_file(model_dir)
        fields["framework"] = main.framework[:64]
        environment, notes, skipped = _environment(model_dir)
        if environment is not None:
            fields["environment"] = environment.wire()
        signature, signature_notes = _signature(model_dir, main)
        if signature is not None:
            fields["signature"] = signature.wire()
        notes += signature_notes
        path = main.path or model_dir
        with artifacts.prepared(path, ArtifactFormat(main.format), tar_name="model.tar") as art:
            mv = client._publish(
                mdl,
                art,
                fields,
                prefer=sv.version,
                annotations={ANNOTATION: ref},
            )
    return ImportedVersion(
        ref, mv.metadata.name, "created", stage, "; ".join(notes), skipped_requirements=skipped
    )


def _environment(model_dir: Path) -> tuple[envs.Environment | None, list[str], tuple[str, ...]]:
    """The version's spec.environment from its model directory, the notes for its report line,
    and the requirements left out. A directory whose files cannot give one imports without."""
    files = environment_files(model_dir)
    if not files:
        return None, [], ()
    try:
        environment, skipped = envs.from_mlflow(files)
    except InvalidArgument as e:
        return None, [f"no environment recorded: {e}"], ()
    notes = []
    if skipped:
        shown = ", ".join(skipped[:5]) + (
            f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        )
        notes.append(
            f"{len(skipped)} requirement(s) not pinned with == left out of the environment: {shown}"
        )
    return environment, notes, tuple(skipped)


def _signature(model_dir: Path, main: MainFile) -> tuple[sigs.Signature | None, list[str]]:
    """The version's spec.signature: MLmodel's `signature:` block, else the graph of an ONNX main
    file; and the notes for its report line. A signature that cannot be read imports without."""
    text = mlmodel_text(model_dir)
    try:
        captured = sigs.from_mlflow(text) if text is not None else None
        if captured is None and main.format == ArtifactFormat.ONNX and main.path is not None:
            captured = sigs.from_onnx(main.path)
    except InvalidArgument as e:
        return None, [f"no signature recorded: {e}"]
    if captured is None:
        return None, []
    return captured.signature, [f"signature: {note}" for note in captured.notes]


def _lineage(sv: SourceVersion) -> dict[str, str]:
    out = {"mlflowModel": f"{sv.model}/{sv.version}"}
    if sv.run_id:
        out["run"] = sv.run_id
    if sv.source:
        out["source"] = sv.source
    commit = sv.run_tags.get("mlflow.source.git.commit")
    if commit:
        out["gitCommit"] = commit
    return {key: v[:LONG_STR] for key, v in out.items()}
