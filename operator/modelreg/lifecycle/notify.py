"""Which ModelVersion transitions are notified, and how each is put on the wire. Pure.

The reconciler (`modelreg.controller.reconciler`) calls `events()` once a version's new status
is written, with the status as it was and the one the planner computed; the notifier
(`modelreg.controller.notifier`) sends each event to the Model's `spec.notifications` that
`wants()` it, as a CloudEvents 1.0 request in binary HTTP mode (`binary_request`). No I/O and no
clock: an event's id and time come from the written status, so the same transition always makes
the same event, and a retried delivery carries the same `ce-id` (receivers dedupe by it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from modelreg.api.models import (
    API_VERSION,
    DeliveryStatus,
    ModelStatus,
    ModelVersion,
    ModelVersionStatus,
    Notification,
    NotificationEvent,
    Phase,
    Stage,
)
from modelreg.lifecycle import conditions

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
TYPE_PREFIX = "dev.modelreg.modelversion."
SIGNATURE_HEADER = "X-Modelreg-Signature"

# Entering one of these phases is an event of the same name.
_PHASE_EVENTS = {
    Phase.BLOCKED: NotificationEvent.BLOCKED,
    Phase.SERVING: NotificationEvent.SERVING,
    Phase.FAILED: NotificationEvent.FAILED,
    Phase.ARCHIVED: NotificationEvent.ARCHIVED,
}
_PROMOTED_TO = (Stage.STAGING, Stage.PRODUCTION)
_ORDER = {e: i for i, e in enumerate(NotificationEvent)}

# CloudEvents HTTP binding 3.1.3.2: header values are percent-encoded outside printable ASCII,
# and for space, '"' and '%'.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')


@dataclass(frozen=True)
class CloudEvent:
    """One notification: the CloudEvents attributes and the JSON `data`."""

    id: str
    source: str
    type: str
    subject: str
    time: str
    event: NotificationEvent
    data: dict[str, Any]

    def body(self) -> bytes:
        return json.dumps(self.data, separators=(",", ":"), sort_keys=True).encode()


def _verified_record(st: ModelVersionStatus) -> tuple[Any, ...] | None:
    a = st.artifact
    if a is None or not a.verified:
        return None
    return (a.uri, a.sha256, a.etag, a.version_id, a.verified_at)


def transitions(old: ModelVersionStatus, new: ModelVersionStatus) -> list[NotificationEvent]:
    """The events of one status change, in the order of NotificationEvent.

    - created: the first status written for the version;
    - verified: ArtifactVerified is True with a verification that `old` did not record. Before
      every promotion the operator confirms the artifact (the condition is Unknown meanwhile):
      that is not a new verification, and sends nothing;
    - promoted: status.stage became Staging or Production;
    - blocked, serving, failed, archived: status.phase became that phase.
    """
    out: list[NotificationEvent] = []
    if old.phase is None and old.observed_generation is None and new.phase is not None:
        out.append(NotificationEvent.CREATED)
    verified = conditions.get_condition(new.conditions, conditions.ARTIFACT_VERIFIED)
    record = _verified_record(new)
    if (
        verified is not None
        and verified.status == "True"
        and record is not None
        and record != _verified_record(old)
    ):
        out.append(NotificationEvent.VERIFIED)
    if new.stage in _PROMOTED_TO and new.stage != old.stage:
        out.append(NotificationEvent.PROMOTED)
    if new.phase in _PHASE_EVENTS and new.phase != old.phase:
        out.append(_PHASE_EVENTS[new.phase])
    return sorted(out, key=_ORDER.__getitem__)


def _when(event: NotificationEvent, old: ModelVersionStatus, new: ModelVersionStatus) -> str:
    """The time the new status records for this transition: the artifact's verification time,
    or the history entry the change appended (its `at` is the stage request's stamp when a user
    asked, the planner's time otherwise); "" when the status records none."""
    if event is NotificationEvent.VERIFIED:
        art = new.artifact
        cond = conditions.get_condition(new.conditions, conditions.ARTIFACT_VERIFIED)
        return (
            (art.verified_at if art else None) or (cond.last_transition_time if cond else "") or ""
        )
    if new.history and (not old.history or old.history[-1] != new.history[-1]):
        return new.history[-1].at
    ready = conditions.get_condition(new.conditions, conditions.READY)
    return (ready.last_transition_time or "") if ready is not None else ""


def source(namespace: str, model: str) -> str:
    return f"/apis/{API_VERSION}/namespaces/{namespace}/models/{model}"


def events(
    namespace: str,
    model: str,
    mv: ModelVersion,
    old: ModelVersionStatus,
    new: ModelVersionStatus,
    *,
    now: str,
) -> list[CloudEvent]:
    """The CloudEvents of `mv`'s change from `old` to `new` (see `transitions`).

    `id` is `<version uid>:<event>:<generation>:<time>`, the time being the one the new status
    records for the change, so it is the same for every delivery attempt and for any plan that
    reaches the same status. `now` is used only when the status records no time at all."""
    out = []
    ready = conditions.get_condition(new.conditions, conditions.READY)
    generation = new.observed_generation or 0
    for event in transitions(old, new):
        at = _when(event, old, new) or now
        out.append(
            CloudEvent(
                id=f"{mv.metadata.uid}:{event.value}:{generation}:{at}",
                source=source(namespace, model),
                type=TYPE_PREFIX + event.value,
                subject=mv.metadata.name,
                time=at,
                event=event,
                data={
                    "model": model,
                    "namespace": namespace,
                    "version": mv.spec.version,
                    "name": mv.metadata.name,
                    "event": event.value,
                    "stage": new.stage.value if new.stage is not None else None,
                    "phase": new.phase.value if new.phase is not None else None,
                    "reason": ready.reason if ready is not None else "",
                    "message": ready.message if ready is not None else "",
                    "generation": generation,
                    "artifact": {"uri": mv.spec.artifact.uri, "sha256": mv.spec.artifact.sha256},
                },
            )
        )
    return out


def wants(notification: Notification, event: NotificationEvent) -> bool:
    """Does this notification ask for the event? All events when its `events` is empty."""
    return not notification.events or event in notification.events


def signature(key: bytes, ce_id: str, ce_time: str, body: bytes) -> str:
    """The X-Modelreg-Signature value: `sha256=` and the hex HMAC-SHA256, under the Secret's key,
    of the ce-id header value, ".", the ce-time header value, ".", and the body's bytes."""
    message = f"{ce_id}.{ce_time}.".encode() + body
    return "sha256=" + hmac.new(key, message, hashlib.sha256).hexdigest()


def _header(value: str) -> str:
    return quote(value, safe=_HEADER_SAFE)


def binary_request(event: CloudEvent, key: bytes | None) -> tuple[dict[str, str], bytes]:
    """Headers and body of the event in CloudEvents binary HTTP mode; signed when `key` is set."""
    body = event.body()
    headers = {
        "ce-specversion": SPECVERSION,
        "ce-id": _header(event.id),
        "ce-source": _header(event.source),
        "ce-type": _header(event.type),
        "ce-subject": _header(event.subject),
        "ce-time": _header(event.time),
        "Content-Type": CONTENT_TYPE,
    }
    if key is not None:
        headers[SIGNATURE_HEADER] = signature(key, headers["ce-id"], headers["ce-time"], body)
    return headers, body


def with_deliveries(
    planned: ModelStatus | None, old: ModelStatus, deliveries: Sequence[DeliveryStatus]
) -> ModelStatus | None:
    """The Model status to write: the planned one (or, when the plan changes nothing, the old one)
    with `notifications` set to the notifier's figures; None when nothing changes."""
    figures = list(deliveries)
    if planned is None:
        if figures == old.notifications:
            return None
        planned = old
    return planned.model_copy(update={"notifications": figures})
