"""What is notified (modelreg.lifecycle.notify) and where it may go (adapters/webhook.url_refusal).

The transitions are driven through the real planner, pass by pass, each plan's status "written"
back into the version as the reconciler would: the events are those a real version's life makes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from modelreg.adapters.webhook import url_refusal
from modelreg.api.models import (
    STAGE_CHANGED_AT,
    STAGE_CHANGED_BY,
    STAGE_CHANGED_TO,
    ArtifactStatus,
    Model,
    ModelVersion,
    ModelVersionStatus,
    Notification,
    NotificationEvent,
    Stage,
)
from modelreg.lifecycle import builders, naming, notify
from modelreg.lifecycle.plan import (
    ArtifactVerdict,
    DeploymentState,
    ServiceState,
    Verdict,
    plan,
)

DEFAULTS = builders.ServingDefaults(builtin_image="img:1", mlserver_image="mls:1")
SHA = "b" * 64
URI = "s3://models/m/1/model.onnx"
E = NotificationEvent


def model() -> Model:
    return Model.model_validate(
        {
            "metadata": {"name": "m", "namespace": "ns", "uid": "model-uid", "generation": 1},
            "spec": {"storage": {"uri": "s3://models/m/", "secretRef": {"name": "s3"}}},
        }
    )


def version(stage: str = "None", annotations: dict[str, str] | None = None) -> ModelVersion:
    return ModelVersion.model_validate(
        {
            "metadata": {
                "name": "m-v1",
                "namespace": "ns",
                "uid": "uid-1",
                "generation": 1,
                "annotations": annotations or {},
            },
            "spec": {
                "model": "m",
                "version": 1,
                "stage": stage,
                "artifact": {"uri": URI, "sha256": SHA},
            },
        }
    )


def verified(at: str = "2026-11-24T00:00:05Z") -> ArtifactVerdict:
    return ArtifactVerdict(
        Verdict.VERIFIED,
        "Verified",
        "sha256 matches",
        ArtifactStatus(verified=True, uri=URI, sha256=SHA, etag='"e1"', verified_at=at),
    )


CONFIRMED = ArtifactVerdict(Verdict.VERIFIED, "Verified", "sha256 matches")  # a recorded verdict
CONFIRMING = ArtifactVerdict(Verdict.VERIFYING, "Confirming", "confirming the ETag")


def serving_children(m: Model, mv: ModelVersion) -> tuple[list[DeploymentState], ServiceState]:
    body = builders.build_deployment(m, mv, DEFAULTS)
    d = DeploymentState(
        name=body["metadata"]["name"],
        version=1,
        available=True,
        deadline_exceeded=False,
        ready_replicas=1,
        spec_hash=body["metadata"]["annotations"][naming.SPEC_HASH],
    )
    svc = builders.build_service(m, 1)
    s = ServiceState(
        version=1,
        spec_hash=svc["metadata"]["annotations"][naming.SPEC_HASH],
        ready_pods=frozenset({f"{d.name}-7f9c-0"}),
    )
    return [d], s


class Life:
    """One version through the planner; `step` returns the events of the status it wrote."""

    def __init__(self) -> None:
        self.m = model()
        self.mv = version()

    def plan_status(
        self,
        art: ArtifactVerdict,
        now: str,
        deployments: list[DeploymentState] | None = None,
        service: ServiceState | None = None,
    ) -> ModelVersionStatus | None:
        p = plan(
            namespace="ns",
            model_name="m",
            model=self.m,
            versions=[self.mv],
            artifacts={"m-v1": art},
            deployments=deployments or [],
            service=service,
            defaults=DEFAULTS,
            now=now,
        )
        return p.version_status.get("m-v1")

    def step(self, art: ArtifactVerdict, now: str, **children: Any) -> list[notify.CloudEvent]:
        new = self.plan_status(art, now, **children)
        if new is None:
            return []
        out = notify.events("ns", "m", self.mv, self.mv.status, new, now=now)
        self.mv = self.mv.model_copy(update={"status": new})
        return out

    def ask(self, stage: str, annotations: dict[str, str] | None = None) -> None:
        spec = self.mv.spec.model_copy(update={"stage": Stage(stage)})
        meta = self.mv.metadata.model_copy(
            update={"generation": self.mv.metadata.generation + 1, "annotations": annotations or {}}
        )
        self.mv = self.mv.model_copy(update={"spec": spec, "metadata": meta})


def kinds(events: list[notify.CloudEvent]) -> list[NotificationEvent]:
    return [e.event for e in events]


def test_a_version_life_registered_verified_promoted_serving_archived() -> None:
    life = Life()
    assert kinds(life.step(ArtifactVerdict(Verdict.PENDING), "2026-11-24T00:00:00Z")) == [E.CREATED]
    assert kinds(life.step(verified(), "2026-11-24T00:00:06Z")) == [E.VERIFIED]
    life.ask("Production")
    # The artifact is confirmed before it enters Production (ArtifactVerified Unknown, then True
    # with the same record): not a new verification, no event.
    assert life.step(CONFIRMING, "2026-11-24T00:00:10Z") == []
    assert life.step(CONFIRMED, "2026-11-24T00:00:11Z") == []  # Rolling
    assert life.mv.status.phase is not None
    assert life.mv.status.phase.value == "Rolling"
    deps, svc = serving_children(life.m, life.mv)
    served = life.step(CONFIRMED, "2026-11-24T00:00:20Z", deployments=deps, service=svc)
    assert kinds(served) == [E.PROMOTED, E.SERVING]
    life.ask("Archived")
    assert kinds(life.step(ArtifactVerdict(Verdict.SKIPPED), "2026-11-24T00:00:30Z")) == [
        E.ARCHIVED
    ]


def test_event_attributes_and_data() -> None:
    life = Life()
    life.step(ArtifactVerdict(Verdict.PENDING), "2026-11-24T00:00:00Z")
    (event,) = life.step(verified("2026-11-24T00:00:05Z"), "2026-11-24T00:00:06Z")
    assert event.id == "uid-1:verified:1:2026-11-24T00:00:05Z"  # the verification's own time
    assert event.source == "/apis/modelreg.dev/v1alpha1/namespaces/ns/models/m"
    assert event.type == "dev.modelreg.modelversion.verified"
    assert event.subject == "m-v1"
    assert event.time == "2026-11-24T00:00:05Z"
    assert event.data == {
        "model": "m",
        "namespace": "ns",
        "version": 1,
        "name": "m-v1",
        "event": "verified",
        "stage": "None",
        "phase": "Ready",
        "reason": "Registered",
        "message": "artifact verified",
        "generation": 1,
        "artifact": {"uri": URI, "sha256": SHA},
    }
    assert json.loads(event.body()) == event.data


def test_blocked_and_failed() -> None:
    life = Life()
    life.step(ArtifactVerdict(Verdict.PENDING), "2026-11-24T00:00:00Z")
    bad = ArtifactVerdict(Verdict.FAILED, "DigestMismatch", "sha256 differs")
    life.ask("Staging")
    assert kinds(life.step(bad, "2026-11-24T00:00:01Z")) == [E.BLOCKED]
    assert life.step(bad, "2026-11-24T00:00:02Z") == []  # still Blocked: nothing new

    life = Life()
    life.step(verified(), "2026-11-24T00:00:00Z")
    life.ask("Production")
    life.step(CONFIRMED, "2026-11-24T00:00:01Z")  # Rolling
    deps, _ = serving_children(life.m, life.mv)
    stuck = [
        DeploymentState(
            name=deps[0].name,
            version=1,
            available=False,
            deadline_exceeded=True,
            ready_replicas=0,
            spec_hash=deps[0].spec_hash,
        )
    ]
    assert kinds(life.step(CONFIRMED, "2026-11-24T00:05:01Z", deployments=stuck)) == [E.FAILED]


def test_ids_are_the_same_for_every_plan_that_reaches_the_same_status() -> None:
    a, b = Life(), Life()
    first = a.step(ArtifactVerdict(Verdict.PENDING), "2026-11-24T00:00:00Z")
    again = b.step(ArtifactVerdict(Verdict.PENDING), "2026-11-24T00:00:00Z")
    assert first == again
    assert first[0].id == "uid-1:created:1:2026-11-24T00:00:00Z"
    # Once the status is written, planning again (a retry, an operator restart) sends nothing.
    assert a.step(ArtifactVerdict(Verdict.PENDING), "2026-11-24T00:09:00Z") == []


def test_a_requested_stage_change_keeps_its_id_whenever_it_is_planned() -> None:
    """A user's promotion is stamped by the API server: its history entry, and so the event's
    id and time, carry the stamp's time, not the planner's clock."""
    stamp = {
        STAGE_CHANGED_BY: "alice",
        STAGE_CHANGED_AT: "2026-11-24T00:00:30Z",
        STAGE_CHANGED_TO: "Staging",
    }
    ids = []
    for now in ("2026-11-24T00:00:31Z", "2026-11-24T00:00:44Z"):
        life = Life()
        life.step(verified(), "2026-11-24T00:00:00Z")
        life.ask("Staging", stamp)
        (event,) = life.step(CONFIRMED, now)
        assert event.event is E.PROMOTED
        ids.append(event.id)
    assert ids == ["uid-1:promoted:2:2026-11-24T00:00:30Z"] * 2


def test_ids_are_unique_per_transition() -> None:
    life = Life()
    seen = [e.id for e in life.step(ArtifactVerdict(Verdict.PENDING), "2026-11-24T00:00:00Z")]
    seen += [e.id for e in life.step(verified(), "2026-11-24T00:00:00Z")]
    life.ask("Production")
    life.step(CONFIRMED, "2026-11-24T00:00:00Z")
    deps, svc = serving_children(life.m, life.mv)
    seen += [e.id for e in life.step(CONFIRMED, "2026-11-24T00:00:00Z", deployments=deps,
                                     service=svc)]  # fmt: skip
    assert len(seen) == len(set(seen)) == 4


def test_a_new_verification_of_a_changed_object_is_notified_again() -> None:
    life = Life()
    life.step(verified("2026-11-24T00:00:05Z"), "2026-11-24T00:00:06Z")
    reverifying = ArtifactVerdict(Verdict.VERIFYING, "Reverifying", "the object changed")
    assert life.step(reverifying, "2026-11-24T01:00:00Z") == []
    (again,) = life.step(verified("2026-11-24T01:00:03Z"), "2026-11-24T01:00:04Z")
    assert again.id == "uid-1:verified:1:2026-11-24T01:00:03Z"


@pytest.mark.parametrize(
    ("events", "event", "wanted"),
    [
        ([], E.CREATED, True),
        ([], E.ARCHIVED, True),
        (["serving"], E.SERVING, True),
        (["serving"], E.CREATED, False),
        (["blocked", "failed"], E.FAILED, True),
        (["blocked", "failed"], E.PROMOTED, False),
    ],
)
def test_filtering(events: list[str], event: NotificationEvent, wanted: bool) -> None:
    n = Notification.model_validate({"url": "https://hooks.example/x", "events": events})
    assert notify.wants(n, event) is wanted


def test_binary_request_headers_and_signature() -> None:
    life = Life()
    (event,) = life.step(ArtifactVerdict(Verdict.PENDING), "2026-11-24T00:00:00Z")
    headers, body = notify.binary_request(event, b"k3y")
    assert headers == {
        "ce-specversion": "1.0",
        "ce-id": "uid-1:created:1:2026-11-24T00:00:00Z",
        "ce-source": "/apis/modelreg.dev/v1alpha1/namespaces/ns/models/m",
        "ce-type": "dev.modelreg.modelversion.created",
        "ce-subject": "m-v1",
        "ce-time": "2026-11-24T00:00:00Z",
        "Content-Type": "application/json",
        "X-Modelreg-Signature": "sha256="
        + hmac.new(
            b"k3y", b"uid-1:created:1:2026-11-24T00:00:00Z.2026-11-24T00:00:00Z." + body,
            hashlib.sha256,
        ).hexdigest(),
    }  # fmt: skip
    unsigned, same = notify.binary_request(event, None)
    assert same == body
    assert notify.SIGNATURE_HEADER not in unsigned


def test_header_values_are_percent_encoded() -> None:
    event = notify.CloudEvent(
        id='a b"c%d', source="/s", type="t", subject="é", time="T", event=E.CREATED, data={}
    )
    headers, _ = notify.binary_request(event, None)
    assert headers["ce-id"] == "a%20b%22c%25d"
    assert headers["ce-subject"] == "%C3%A9"


# -- where events may go -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/modelreg",
        "https://hooks.example.com:8443/x?team=risk",
        "https://10.0.0.7/hook",
        "https://[2001:db8::1]/hook",
    ],
)
def test_https_is_allowed_anywhere_but_forbidden_addresses(url: str) -> None:
    assert url_refusal(url, []) is None


@pytest.mark.parametrize(
    ("url", "allowed", "ok"),
    [
        ("http://127.0.0.1:8080/hook", [], False),
        ("http://127.0.0.1:8080/hook", ["127.0.0.1:8080"], True),
        ("http://127.0.0.1:8081/hook", ["127.0.0.1:8080"], False),
        ("http://127.0.0.1:8081/hook", ["127.0.0.1"], True),
        ("http://receiver.team-a.svc/hook", ["*.svc"], True),
        ("http://receiver.team-a.svc/hook", ["*.cluster.local"], False),
        ("http://example.com/hook", ["127.0.0.1:8080"], False),
        ("http://hooks.internal/hook", ["hooks.internal:80"], True),
    ],
)
def test_plain_http_only_to_allowed_hosts(url: str, allowed: list[str], ok: bool) -> None:
    why = url_refusal(url, allowed)
    assert (why is None) is ok, why
    if not ok:
        assert "operator.notificationAllowedHosts" in (why or "")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://user:pass@hooks.example.com/x", "userinfo"),
        ("https://token@hooks.example.com/x", "userinfo"),
        ("http://u:p@127.0.0.1:8080/x", "userinfo"),
        ("https://hooks.example.com/x#frag", "fragment"),
        ("ftp://hooks.example.com/x", "scheme"),
        ("hooks.example.com/x", "scheme"),
        ("https:///x", "no host"),
        ("https://hooks.example.com:99999/x", "not a valid URL"),
        ("https://hooks.example.com/a b", "whitespace"),
    ],
)
def test_malformed_or_credential_bearing_urls_are_refused(url: str, says: str) -> None:
    why = url_refusal(url, ["127.0.0.1:8080"])
    assert why is not None
    assert says in why


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data/",
        "http://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/",
        "https://100.100.100.200/",
        "https://192.0.0.192/",
        "https://[::ffff:169.254.169.254]/",
        "https://[fe80::1%25eth0]/",
        "https://169.254.0.9:8443/",
    ],
)
def test_metadata_and_link_local_literals_are_refused_even_when_allow_listed(url: str) -> None:
    why = url_refusal(url, ["*.example", "169.254.169.254", "169.254.0.9:8443"])
    assert why is not None
    assert "never connects there" in why
