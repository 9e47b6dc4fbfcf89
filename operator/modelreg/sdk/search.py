"""Search over model versions: `modelreg list --stage/--phase/--tag/--alias/--where`. Pure.

A version matches when every filter given holds:
- stage: its stage as the registry holds it (`status.stage`; `spec.stage` until the operator has
  written a status);
- phase: `status.phase` is one of those given;
- tag: its Model carries every `key=value` (or just `key`) given;
- alias: one of its Model's aliases that resolve names it;
- where: each `metric OP number` holds for `spec.metrics` (a missing metric does not match).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from modelreg.api.models import Model, ModelVersion, Phase, Stage
from modelreg.lifecycle import aliases as alias_rules
from modelreg.sdk.errors import InvalidArgument

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    "=": operator.eq,
}
_WHERE_RE = re.compile(
    r"^\s*(?P<metric>[^<>=!\s]+)\s*(?P<op>>=|<=|==|!=|>|<|=)\s*(?P<value>\S+)\s*$"
)


@dataclass(frozen=True)
class Condition:
    metric: str
    op: str
    value: float

    def holds(self, metrics: Mapping[str, float]) -> bool:
        actual = metrics.get(self.metric)
        return actual is not None and math.isfinite(actual) and _OPS[self.op](actual, self.value)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


def parse_where(text: str) -> Condition:
    """`auc>=0.9` -> Condition("auc", ">=", 0.9); a clear error for anything else."""
    m = _WHERE_RE.match(text)
    if m is None:
        raise InvalidArgument(
            f"--where {text!r}: expected METRIC OP NUMBER with OP one of >=, <=, >, <, ==, != "
            "(for example auc>=0.9)"
        )
    try:
        value = float(m.group("value"))
    except ValueError:
        raise InvalidArgument(f"--where {text!r}: {m.group('value')!r} is not a number") from None
    if not math.isfinite(value):
        raise InvalidArgument(f"--where {text!r}: the bound must be a finite number")
    return Condition(m.group("metric"), m.group("op"), value)


@dataclass(frozen=True)
class Filter:
    stages: frozenset[Stage] = frozenset()
    phases: frozenset[Phase] = frozenset()
    tags: Mapping[str, str | None] = field(default_factory=dict)  # None: the key only
    alias: str | None = None
    where: Sequence[Condition] = ()

    def select(
        self, versions: Iterable[ModelVersion], models: Mapping[str, Model]
    ) -> list[ModelVersion]:
        everyone = list(versions)
        named: dict[str, set[int]] = {}
        if self.alias is not None:
            for name, mdl in models.items():
                resolved = alias_rules.resolve(name, mdl.spec.aliases, everyone)
                if self.alias in resolved.valid:
                    named[name] = {resolved.valid[self.alias]}
        return [mv for mv in everyone if self._matches(mv, models.get(mv.spec.model), named)]

    def _matches(self, mv: ModelVersion, mdl: Model | None, named: Mapping[str, set[int]]) -> bool:
        stage = mv.status.stage or mv.spec.stage
        if self.stages and stage not in self.stages:
            return False
        if self.phases and mv.status.phase not in self.phases:
            return False
        if self.tags:
            tags = mdl.spec.tags if mdl is not None else {}
            for key, value in self.tags.items():
                if key not in tags or (value is not None and tags[key] != value):
                    return False
        if self.alias is not None and mv.spec.version not in named.get(mv.spec.model, set()):
            return False
        return all(c.holds(mv.spec.metrics) for c in self.where)
