"""Shadow comparison (`Model.spec.shadow`): what the planner decides about a Model's shadow.

A shadow is a version that runs beside the serving one, in a Deployment of its own
(`<model>-shadow`) behind a Service of its own, and gets a copy of a sample of the live requests:
the serving pods mirror them (`modelreg.runtime.shadow`), compare the two answers and count the
outcomes on their /metrics. The shadow's answers are never returned to anyone. The operator
scrapes the serving pods (`modelreg.controller.analyst`) and writes the figures into the shadow
version's `status.shadow`; `spec.promotion.shadow` gates Production on them.

The serving pods learn where to mirror from their environment (`builders.Mirror`): setting,
changing or removing spec.shadow rolls the serving Deployment once (maxUnavailable 0), and a pod's
counters belong to the one shadow version it was started with. Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelreg.api.models import (
    MirrorStatus,
    Model,
    ModelVersion,
    Phase,
    ShadowGate,
    ShadowStatus,
)

SHADOWING = "Shadowing"  # the Model's condition


@dataclass(frozen=True)
class Children:
    """The shadow's Deployment and Service as the cache shows them (None: not there)."""

    deployment_available: bool | None = None  # None: no shadow Deployment
    deployment_version: int | None = None
    deployment_ready: int = 0
    deployment_stuck: bool = False  # its rollout missed progressDeadlineSeconds
    cluster_ip: str | None = None  # the shadow Service's ClusterIP (None: no Service yet)


@dataclass(frozen=True)
class Measured:
    """The serving pods' shadow counters for one (shadow version, serving version) pair."""

    version: int
    serving: int
    requests: int  # mirrored requests answered or failed
    errors: int
    mismatches: int  # answers compared that differed
    dropped: int
    p99_ms: float | None
    problem: str | None = None  # why some pods could not be scraped


@dataclass(frozen=True)
class Decision:
    run: int | None  # the version the shadow Deployment runs; None: no shadow objects
    mirror_to: int | None  # the serving pods mirror to this version (its Service has an IP)
    condition: tuple[bool, str, str] | None  # (status, reason, message); None: no spec.shadow
    warn: bool = False  # the condition is a misconfiguration worth a Warning Event


def mirroring(model: Model, current: int | None) -> int | None:
    """The version the serving pods mirror to now, as the Model's status recorded it."""
    st = model.status.shadow
    return (
        st.version
        if st is not None and current is not None and st.serving_version == current
        else None
    )


def mirror_status(
    model: Model, decision: Decision, current: int | None, now: str
) -> MirrorStatus | None:
    """The Model's status.shadow after this plan."""
    if decision.mirror_to is None or current is None:
        return None
    old = model.status.shadow
    if old is not None and (old.version, old.serving_version) == (decision.mirror_to, current):
        return old
    return MirrorStatus(version=decision.mirror_to, serving_version=current, since=now)


def decide(
    model: Model,
    versions: dict[int, ModelVersion],
    problems: dict[int, tuple[str, str]],
    current: int | None,
    children: Children,
) -> Decision:
    """Whether the shadow runs, and whether the serving pods mirror to it now.

    `problems`: why a version cannot run (reason, message), e.g. its artifact is not verified;
    `current`: the version serving now."""
    spec = model.spec.shadow
    if spec is None:
        return Decision(None, None, None)
    n = spec.version
    mv = versions.get(n)
    if mv is None:
        return Decision(
            None,
            None,
            (
                False,
                "ShadowVersionNotFound",
                f"spec.shadow.version is {n}, but the Model has no version {n} "
                f"(no ModelVersion {model.metadata.name}-v{n})",
            ),
            warn=True,
        )
    if n == current:
        return Decision(
            None,
            None,
            (
                False,
                "ShadowIsServing",
                f"version {n} serves production: it cannot be its own shadow. Set "
                "spec.shadow.version to another version to compare it with this one, or remove "
                "spec.shadow",
            ),
            warn=True,
        )
    if n in problems:
        reason, message = problems[n]
        return Decision(None, None, (False, reason, f"version {n} cannot run: {message}"))
    if current is None:
        return Decision(
            None,
            None,
            (
                False,
                "NoServingVersion",
                f"no version serves production: there is no live traffic to mirror to version {n}",
            ),
        )
    # The serving pods start mirroring to a version once its shadow Deployment is Available (not
    # into a Service with no endpoints yet), and go on through the shadow's own rollouts. While a
    # new shadow version comes up they keep mirroring to the one before: their environment names
    # the version, so each change of it is one roll of the serving pods, not two.
    up = children.deployment_available is True and children.deployment_version == n
    before = mirroring(model, current)
    mirror_to = (n if up else before) if children.cluster_ip else None
    if children.deployment_available is None or children.deployment_version != n:
        message = f"starting version {n} as the shadow of version {current}"
        if before is not None and before != n:
            message += f"; the serving pods mirror to version {before} until it is Available"
    elif children.deployment_stuck:
        message = (
            f"the shadow Deployment of version {n} did not become Available within "
            f"progressDeadlineSeconds ({children.deployment_ready} ready); mirrored requests fail"
        )
        return Decision(n, mirror_to, (False, "ShadowUnavailable", message), warn=True)
    elif not children.deployment_available:
        message = (
            f"waiting for the shadow Deployment of version {n} to become Available "
            f"({children.deployment_ready} ready)"
        )
    elif mirror_to is None:
        message = "waiting for the shadow Service's ClusterIP"
    else:
        return Decision(
            n,
            mirror_to,
            (
                True,
                "Mirroring",
                f"version {current} mirrors {spec.sample_percent:g}% of its inference requests "
                f"to version {n}; the figures are in {model.metadata.name}-v{n}'s status.shadow",
            ),
        )
    return Decision(n, mirror_to, (False, "Starting", message))


def record(
    old: ShadowStatus | None,
    *,
    serving: int,
    sample_percent: float,
    measured: Measured | None,
    version: int,
    now: str,
) -> ShadowStatus:
    """The shadow version's status.shadow while the serving version `serving` mirrors to it.

    A comparison with another serving version starts a new record; the figures are the serving
    pods' counters (each pod counts from its start, all of them for this one shadow version)."""
    if old is None or old.serving_version != serving:
        old = ShadowStatus(serving_version=serving, since=now, sample_percent=sample_percent)
    if measured is None or measured.version != version or measured.serving != serving:
        return old.model_copy(update={"sample_percent": sample_percent})
    compared = measured.requests - measured.errors
    agreed = compared - measured.mismatches
    figures = {
        "sample_percent": sample_percent,
        "requests": measured.requests,
        "compared": compared,
        "agreed": agreed,
        "errors": measured.errors,
        "dropped": measured.dropped,
        "agreement": round(agreed / compared, 6) if compared else None,
        "p99_latency_ms": None if measured.p99_ms is None else round(measured.p99_ms, 3),
        "message": measured.problem or "",
    }
    if all(getattr(old, k) == v for k, v in figures.items()):
        return old
    return old.model_copy(update={**figures, "updated_at": now})


def gate_block(gate: ShadowGate | None, mv: ModelVersion, current: int | None) -> str | None:
    """Why spec.promotion.shadow keeps `mv` out of Production, or None. Not checked when no
    version serves (nothing to compare with), for the serving version itself, nor for a version
    that served production before: a rollback is not held back by a comparison."""
    if gate is None or current is None or mv.spec.version == current:
        return None
    if any(h.phase is Phase.SERVING for h in mv.status.history):
        return None
    st = mv.status.shadow
    n = mv.spec.version
    need = f"minAgreement {gate.min_agreement:g} over at least {gate.min_requests} requests"
    if st is None or st.serving_version != current:
        return (
            f"the shadow gate needs a comparison with the serving version {current} on live "
            f"traffic ({need}), and none is recorded: set spec.shadow.version: {n} on the Model"
        )
    if st.compared < gate.min_requests:
        return (
            f"the shadow gate needs {need}; {st.compared} requests have been compared with "
            f"version {current} so far"
        )
    agreement = st.agreement if st.agreement is not None else 0.0
    if agreement < gate.min_agreement:
        return (
            f"the shadow gate needs {need}; version {n} agreed with version {current} on "
            f"{st.agreed} of {st.compared} compared requests ({agreement:.4g})"
        )
    return None
