"""Retention: which versions a Model's `spec.retention` deletes, and which artifacts go with them.

`keepArchived: N` keeps the newest N versions (by number) that are Archived or Superseded and
deletes the older ones. Never deleted, whatever their phase: a version that serves or is rolling
out, one asking for or holding Staging, one an alias names, one already being deleted. With
`deleteArtifacts`, a deleted version's artifact goes too, unless a version that stays references
the same object. Deletion is planned only from a status the operator wrote for the current spec
(`observedGeneration`), so a version archived a moment ago by a user is not deleted on a stale
phase.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelreg.api.models import Model, ModelVersion, Phase, Stage

RETIRED = (Phase.ARCHIVED, Phase.SUPERSEDED)


@dataclass(frozen=True)
class Deletion:
    name: str
    uid: str
    version: int
    phase: Phase
    artifact: str | None  # the URI to delete with it (deleteArtifacts, referenced by no other)


def plan(model: Model | None, versions: list[ModelVersion], serving: set[int]) -> list[Deletion]:
    """The versions to delete now, oldest first; `serving`: the versions the Service selects or
    is about to (never deleted)."""
    if model is None or model.spec.retention is None:
        return []
    keep = model.spec.retention.keep_archived
    named = set(model.spec.aliases.values())
    live = [mv for mv in versions if not mv.metadata.deletion_timestamp]
    retired = sorted(
        (mv for mv in live if _retired(mv, serving, named)),
        key=lambda mv: mv.spec.version,
        reverse=True,
    )
    doomed = retired[keep:]
    if not doomed:
        return []
    gone = {mv.metadata.name for mv in doomed}
    referenced = {mv.spec.artifact.uri for mv in versions if mv.metadata.name not in gone}
    out = []
    for mv in sorted(doomed, key=lambda mv: mv.spec.version):
        uri = mv.spec.artifact.uri
        delete_artifact = model.spec.retention.delete_artifacts and uri not in referenced
        out.append(
            Deletion(
                name=mv.metadata.name,
                uid=mv.metadata.uid,
                version=mv.spec.version,
                phase=mv.status.phase or Phase.ARCHIVED,
                artifact=uri if delete_artifact else None,
            )
        )
        referenced.add(uri)  # two doomed versions of one object: deleted once
    return out


def _retired(mv: ModelVersion, serving: set[int], named: set[int]) -> bool:
    st = mv.status
    return (
        st.phase in RETIRED
        and st.observed_generation == mv.metadata.generation
        and mv.spec.version not in serving
        and mv.spec.version not in named
        and mv.spec.stage is not Stage.STAGING
        and st.stage is not Stage.STAGING
        and st.stage is not Stage.PRODUCTION
    )
