"""The verifier's trust rules, with a fake object store and Kubernetes at the adapter boundary
(tests/e2e/test_trust.py runs the same rules against the real API server and S3 server):
policy verdicts before any I/O, a sealed record trusted and an unsealed or copied one not, a
confirmation before Staging/Production, and changed ETags or VersionIds sending the version back
to a full check."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr

from modelreg.adapters import objectstore as store
from modelreg.api.models import ArtifactStatus, Model, ModelVersion
from modelreg.controller import verifier as verifier_module
from modelreg.controller.verifier import Verifier
from modelreg.lifecycle.plan import Verdict
from modelreg.settings import OperatorSettings

SHA = "a" * 64
URI = "s3://models/m/1/model.onnx"


class FakeKube:
    def get_secret_data(self, namespace: str, name: str) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}


class FakeStore:
    """What the store answers: the current object's ETag and VersionId; every call recorded."""

    etag = "e1"
    version_id: str | None = "v1"
    calls: list[str] = []

    def __init__(self, config: store.StoreConfig, **_: Any) -> None:
        pass

    down = False

    async def head(self, uri: str) -> store.ObjectInfo:
        FakeStore.calls.append(f"head {uri}")
        if FakeStore.down:
            raise store.StoreUnavailable("connection refused")
        return store.ObjectInfo(size=3, etag=FakeStore.etag, version_id=FakeStore.version_id)

    async def sha256(self, uri: str) -> store.Digest:
        FakeStore.calls.append(f"get {uri}")
        return store.Digest(
            sha256=SHA, size=3, etag=FakeStore.etag, version_id=FakeStore.version_id
        )

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def fake_store(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeStore.etag, FakeStore.version_id, FakeStore.calls, FakeStore.down = "e1", "v1", [], False
    monkeypatch.setattr(verifier_module.store, "ObjectStore", FakeStore)


def model(**storage: Any) -> Model:
    return Model.model_validate(
        {
            "metadata": {"name": "m", "namespace": "ns", "uid": "mu"},
            "spec": {
                "storage": {
                    "uri": "s3://models/m/",
                    "endpoint": "http://127.0.0.1:9000",
                    "secretRef": {"name": "s3"},
                    **storage,
                }
            },
        }
    )


def version(asked: str = "None", uid: str = "u1", **status: Any) -> ModelVersion:
    return ModelVersion.model_validate(
        {
            "metadata": {"name": "m-v1", "namespace": "ns", "uid": uid},
            "spec": {"model": "m", "version": 1, "stage": asked,
                     "artifact": {"uri": URI, "sha256": SHA}},
            "status": status,
        }
    )  # fmt: skip


def make(**settings: Any) -> tuple[Verifier, list[Any]]:
    kicked: list[Any] = []
    v = Verifier(
        FakeKube(),  # type: ignore[arg-type]
        OperatorSettings(seal_key=SecretStr("k"), **settings),
        kicked.append,
    )
    return v, kicked


async def settle(*verifiers: Verifier) -> None:
    """Until no check or confirmation runs (the store client is built in a thread)."""
    for _ in range(500):
        await asyncio.sleep(0.01)
        if not any(v._tasks for v in verifiers):
            return
    raise AssertionError("checks still running")


def recorded(v: Verifier, uid: str = "u1", **fields: Any) -> dict[str, Any]:
    art = ArtifactStatus(
        verified=True, uri=URI, sha256=SHA, size_bytes=3, etag="e1", version_id="v1", **fields
    )
    art = art.model_copy(update={"seal": v.seal(uid, art)})
    return art.model_dump(by_alias=True, exclude_none=True)


def test_policy_verdicts_come_before_any_io() -> None:
    async def go() -> None:
        v, _ = make(allowed_endpoint_hosts=["s3.internal:9000"])
        out = v.verdict(model(), version("Staging"))
        assert (out.verdict, out.reason) == (Verdict.FAILED, "EndpointNotAllowed")
        v, _ = make()
        no_secret = model(secretRef=None)
        out = v.verdict(no_secret, version("Staging"))
        assert (out.verdict, out.reason) == (Verdict.FAILED, "CredentialsRequired")
        v, _ = make(allow_ambient_credentials=True)
        assert v.verdict(no_secret, version("Staging")).verdict is Verdict.VERIFYING
        await v.close()

    asyncio.run(go())
    assert FakeStore.calls == []


def test_a_sealed_record_is_trusted_and_an_unsealed_or_copied_one_is_not() -> None:
    async def go() -> None:
        v, _ = make()
        sealed = recorded(v)
        assert v.verdict(model(), version(artifact=sealed)).verdict is Verdict.VERIFIED
        unsealed = {k: x for k, x in sealed.items() if k != "seal"}
        v2, _ = make()
        assert (
            v2.verdict(model(), version(uid="u2", artifact=unsealed)).verdict is Verdict.VERIFYING
        )
        copied = version(uid="u3", artifact=sealed)  # another version's seal
        assert v2.verdict(model(), copied).verdict is Verdict.VERIFYING
        other_key = Verifier(
            FakeKube(),  # type: ignore[arg-type]
            OperatorSettings(seal_key=SecretStr("another")),
            lambda _: None,
        )
        assert other_key.seal("u1", ArtifactStatus.model_validate(sealed)) != sealed["seal"]
        await settle(v, v2)
        await v.close()
        await v2.close()
        await other_key.close()

    asyncio.run(go())
    assert FakeStore.calls.count(f"get {URI}") == 2  # the unsealed and the copied: read in full


def test_entering_staging_waits_for_a_confirmation() -> None:
    async def go() -> None:
        v, kicked = make()
        mv = version("Staging", artifact=recorded(v), stage="None", phase="Ready")
        out = v.verdict(model(), mv)
        assert (out.verdict, out.reason) == (Verdict.VERIFYING, "Confirming")
        assert "ETag and VersionId" in out.message
        await settle(v)
        assert FakeStore.calls == [f"head {URI}"]
        assert kicked == [("ns", "m")]
        assert v.verdict(model(), mv).verdict is Verdict.VERIFIED
        await v.close()

    asyncio.run(go())


@pytest.mark.parametrize(("etag", "version_id"), [("e2", "v1"), ("e1", "v2"), ("e1", None)])
def test_a_changed_object_goes_back_to_a_full_check(etag: str, version_id: str | None) -> None:
    async def go() -> None:
        v, _ = make()
        FakeStore.etag, FakeStore.version_id = etag, version_id
        mv = version("Production", artifact=recorded(v), stage="Staging", phase="Ready")
        assert v.verdict(model(), mv).reason == "Confirming"
        await settle(v)
        out = v.verdict(model(), mv)
        assert out.verdict is not Verdict.VERIFIED
        await settle(v)
        await v.close()

    asyncio.run(go())
    assert FakeStore.calls[:2] == [f"head {URI}", f"get {URI}"]


def test_a_resting_version_is_confirmed_in_the_background_and_expires() -> None:
    async def go() -> None:
        v, kicked = make(artifact_confirm_seconds=0.05)
        mv = version("Staging", artifact=recorded(v), stage="Staging", phase="Ready")
        assert v.verdict(model(), mv).verdict is Verdict.VERIFIED  # no wait: it is staged
        await settle(v)
        assert FakeStore.calls == [f"head {URI}"]
        await asyncio.sleep(0.1)
        assert ("ns", "m") in kicked  # the expiry looks at the Model again
        assert v.verdict(model(), mv).verdict is Verdict.VERIFIED
        await settle(v)
        assert FakeStore.calls == [f"head {URI}", f"head {URI}"]
        v.forget("ns", "m-v1")
        assert v._confirmed == {}
        assert v._expiries == {}
        await v.close()

    asyncio.run(go())


def test_an_unreachable_store_keeps_the_version_waiting_and_is_asked_again() -> None:
    async def go() -> None:
        v, kicked = make(retry_max_seconds=0.05)
        FakeStore.down = True
        mv = version("Production", artifact=recorded(v), stage="Staging", phase="Ready")
        assert v.verdict(model(), mv).reason == "Confirming"
        await settle(v)
        assert v.verdict(model(), mv).reason == "Confirming"  # not promoted unconfirmed
        await settle(v)
        await asyncio.sleep(0.1)
        assert ("ns", "m") in kicked  # looked at again after the retry delay
        FakeStore.down = False
        v.verdict(model(), mv)
        await settle(v)
        assert v.verdict(model(), mv).verdict is Verdict.VERIFIED
        await v.close()

    asyncio.run(go())


def test_a_promotion_during_a_background_confirmation_is_confirmed_and_kicked() -> None:
    """A resting version's background confirmation is in flight when the version is asked into
    Production: its end brings the pass that confirms it for Production (a new operator leader
    confirms every artifact at start, and a promotion may come at that moment)."""

    async def go() -> None:
        v, kicked = make()
        resting = version("None", artifact=recorded(v), stage="None", phase="Ready")
        assert v.verdict(model(), resting).verdict is Verdict.VERIFIED  # background HEAD starts
        asked = version("Production", artifact=recorded(v), stage="None", phase="Ready")
        assert v.verdict(model(), asked).reason == "Confirming"  # the HEAD is still in flight
        await settle(v)
        assert ("ns", "m") in kicked, "nobody looks at the Model again: the promotion waits"
        assert v.verdict(model(), asked).reason == "Confirming"  # its own confirmation now
        await settle(v)
        assert FakeStore.calls == [f"head {URI}", f"head {URI}"]
        assert v.verdict(model(), asked).verdict is Verdict.VERIFIED
        await v.close()

    asyncio.run(go())


def test_a_new_versions_first_status_waits_for_a_short_check_but_not_for_a_long_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = asyncio.Event()
    real_sha256 = FakeStore.sha256
    clock = [1000.0]  # the verifier's monotonic clock, moved by the test only

    async def slow_sha256(self: FakeStore, uri: str) -> store.Digest:
        await gate.wait()
        return await real_sha256(self, uri)

    monkeypatch.setattr(FakeStore, "sha256", slow_sha256)
    # The verifier's `time` only (asyncio's own clock keeps running).
    monkeypatch.setattr(verifier_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))

    async def go() -> None:
        v, _ = make(verify_hold_seconds=2, verify_concurrency=1)
        first, second = version(uid="u1"), version(uid="u2")
        assert v.holding(first) is None  # no check yet
        assert v.verdict(model(), first).verdict is Verdict.VERIFYING
        assert v.verdict(model(), second).verdict is Verdict.VERIFYING
        # Held from the pass that started the checks (their tasks have not run yet, so both are
        # queued): that pass writes no Verifying.
        assert v.holding(first) == verifier_module.HOLD_QUEUED
        assert v.holding(second) == verifier_module.HOLD_QUEUED
        await asyncio.sleep(0.05)  # the first check takes the one slot; the second waits
        clock[0] += 0.5
        assert v.holding(first) == 1.5  # running for 0.5 s of its 2 s
        assert v.holding(second) == verifier_module.HOLD_QUEUED - 0.5  # queued
        written = version(uid="u1", observedGeneration=1, phase="Verifying")
        assert v.holding(written) is None  # a version with a status is never held
        clock[0] += 2
        assert v.holding(first) is None  # running longer than the hold: show Verifying
        assert v.holding(second) is not None  # still queued behind it
        clock[0] += verifier_module.HOLD_QUEUED
        assert v.holding(second) is None  # queued too long: show Verifying
        gate.set()
        await settle(v)
        # Both ended while a pass may still be writing the Verifying it planned before: held a
        # little longer, for the pass their end kicked, which writes the verdict.
        assert v.holding(first) == verifier_module.DONE_RECHECK
        assert v.holding(second) == verifier_module.DONE_RECHECK
        assert v.verdict(model(), first).verdict is Verdict.VERIFIED
        await v.close()

    asyncio.run(go())
    off, _ = make(verify_hold_seconds=0)
    assert off.holding(version()) is None


def test_a_check_that_could_not_decide_is_not_held(monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that cannot be reached: Verifying with its reason is shown at once (no hold)."""

    async def unreachable(self: FakeStore, uri: str) -> store.Digest:
        raise store.StoreUnavailable("connection refused")

    monkeypatch.setattr(FakeStore, "sha256", unreachable)

    async def go() -> None:
        v, _ = make(verify_hold_seconds=5)
        mv = version(uid="u9")
        v.verdict(model(), mv)
        await settle(v)
        out = v.verdict(model(), mv)
        assert out.verdict is Verdict.UNKNOWN
        assert v.holding(mv) is None
        await v.close()

    asyncio.run(go())
