"""Aliases: a Model's `spec.aliases` (name -> version number), like MLflow's `@champion`. Pure.

An alias follows its version's life. It resolves only to a version that exists, is not Archived
(asked for, or reached) and is not Blocked. The operator publishes the aliases that resolve in
`status.aliases` and says why the others do not. The SDK refuses to set one that would not
resolve, and it resolves `models:/<name>@<alias>` with the same rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from modelreg.api.models import (
    ALIAS_PATTERN,
    RESERVED_ALIAS_PATTERN,
    ModelVersion,
    Phase,
    Stage,
)

ALIAS_RE = re.compile(ALIAS_PATTERN)
RESERVED_RE = re.compile(RESERVED_ALIAS_PATTERN)

ALIASES_RESOLVED = "AliasesResolved"


def name_problem(alias: str) -> str | None:
    """Why `alias` cannot name an alias, or None when it can."""
    if not ALIAS_RE.match(alias):
        return (
            f"alias {alias!r} is not a valid name: a letter, then at most 62 letters, digits, "
            "'_' or '-'"
        )
    if RESERVED_RE.match(alias):
        return f"alias {alias!r} is reserved: 'latest' and v<N> already mean a version"
    return None


def version_problem(model: str, alias: str, n: int, mv: ModelVersion | None) -> str | None:
    """Why `alias` may not point at version `n` (the object `mv`, None when it does not exist)."""
    if mv is None or mv.metadata.deletion_timestamp:
        return f"alias {alias!r} of {model} points at version {n}, which does not exist"
    if mv.spec.stage is Stage.ARCHIVED or mv.status.phase is Phase.ARCHIVED:
        return f"alias {alias!r} of {model} points at version {n}, which is Archived"
    if mv.status.phase is Phase.BLOCKED:
        return f"alias {alias!r} of {model} points at version {n}, which is Blocked"
    return None


@dataclass(frozen=True)
class Resolution:
    valid: dict[str, int] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # alias -> why it does not resolve

    @property
    def message(self) -> str:
        if self.problems:
            return "; ".join(self.problems[a] for a in sorted(self.problems))
        if not self.valid:
            return "the Model defines no aliases"
        return ", ".join(f"@{a} -> v{n}" for a, n in sorted(self.valid.items()))


def resolve(model: str, aliases: Mapping[str, int], versions: Iterable[ModelVersion]) -> Resolution:
    """Which of `aliases` resolve, given the Model's versions, and why the others do not."""
    by_number = {mv.spec.version: mv for mv in versions if mv.spec.model == model}
    out = Resolution()
    for alias, n in sorted(aliases.items()):
        why = name_problem(alias) or version_problem(model, alias, n, by_number.get(n))
        if why is None:
            out.valid[alias] = n
        else:
            out.problems[alias] = why
    return out


def aliases_of(aliases: Mapping[str, int], version: int) -> list[str]:
    """The aliases that name `version`, sorted."""
    return sorted(a for a, n in aliases.items() if n == version)
