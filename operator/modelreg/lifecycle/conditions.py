"""Status conditions, written through one helper (Kubernetes API conventions, positive polarity).

`lastTransitionTime` moves only when a condition's status flips; an unchanged condition is returned
as it was, so a converged object produces an identical status and the operator writes nothing.
"""

from __future__ import annotations

from modelreg.api.models import Condition

ARTIFACT_VERIFIED = "ArtifactVerified"
GATES_PASSED = "GatesPassed"
AUDITED = "Audited"

# Ready reasons of a version the audit gate keeps out of Staging and Production, and the one of a
# version waiting while the advisory database is read.
VULNERABLE = "Vulnerable"
ADVISORIES_UNAVAILABLE = "AdvisoriesUnavailable"
NO_ENVIRONMENT = "NoEnvironment"
AUDIT_NOT_CONFIGURED = "AuditNotConfigured"
AUDIT_BLOCKS = frozenset({VULNERABLE, ADVISORIES_UNAVAILABLE, NO_ENVIRONMENT, AUDIT_NOT_CONFIGURED})
AUDITING = "Auditing"
SERVING = "Serving"
READY = "Ready"


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now: str,
) -> list[Condition]:
    """A copy of `conditions` with `type_` set; None means Unknown."""
    value = "Unknown" if status is None else ("True" if status else "False")
    old = next((c for c in conditions if c.type == type_), None)
    since = old.last_transition_time if old is not None and old.status == value else now
    new = Condition(
        type=type_,
        status=value,  # type: ignore[arg-type,unused-ignore]
        reason=reason,
        message=message[:4000],
        observed_generation=generation,
        last_transition_time=since,
    )
    out = [c for c in conditions if c.type != type_]
    out.append(new)
    order = {ARTIFACT_VERIFIED: 0, GATES_PASSED: 1, AUDITED: 2, SERVING: 3, READY: 4}
    return sorted(out, key=lambda c: (order.get(c.type, 9), c.type))


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)
