"""The reconciler's read-your-writes cache: two quick status writes never bring the first back."""

from __future__ import annotations

import asyncio
from typing import Any

from modelreg.controller.auditor import Auditor
from modelreg.controller.reconciler import Caches, Reconciler, compact, compact_slice
from modelreg.settings import OperatorSettings


class FakeKube:
    """The adapter boundary: patch_status answers like the API server, with a new rv each time."""

    def __init__(self) -> None:
        self.rv = 100

    async def call(self, fn: Any, *args: Any) -> Any:
        return fn(*args)

    def patch_status(self, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> Any:
        self.rv += 1
        return {
            "metadata": {"name": name, "uid": "u1", "resourceVersion": str(self.rv)},
            "spec": {},
            "status": patch,
        }


def body(rv: str, phase: str) -> bytes:
    return compact({"metadata": {"uid": "u1", "resourceVersion": rv}, "status": {"phase": phase}})


KEY = ("ns", "m")


def test_two_quick_writes_keep_the_second_body_until_the_cache_catches_up() -> None:
    r = Reconciler(kube=FakeKube(), settings=OperatorSettings())  # type: ignore[arg-type]

    async def go() -> None:
        await r._write_status(KEY, "modelversions", "m-v1", "u1", "100", {}, {"phase": "Rolling"})
        seen = r._fresh(body("100", "Verifying"))
        assert seen["status"]["phase"] == "Rolling"
        rv = seen["metadata"]["resourceVersion"]
        await r._write_status(KEY, "modelversions", "m-v1", "u1", rv, {}, {"phase": "Serving"})

    asyncio.run(go())
    # The cache still shows the original, then the first write: both are older than the second.
    assert r._fresh(body("100", "Verifying"))["status"]["phase"] == "Serving"
    assert r._fresh(body("101", "Rolling"))["status"]["phase"] == "Serving"
    # It caught up: the cache is the truth again, and the kept body is freed.
    assert r._fresh(body("102", "Serving"))["metadata"]["resourceVersion"] == "102"
    assert "u1" not in r._written


def test_the_echo_of_a_written_status_is_known_and_asks_for_one_more_pass() -> None:
    r = Reconciler(kube=FakeKube(), settings=OperatorSettings())  # type: ignore[arg-type]
    asyncio.run(r._write_status(KEY, "modelversions", "m-v1", "u1", "100", {}, {"phase": "Ready"}))
    written = r._written["u1"].rv
    assert r.is_echo("u1", written)  # the watch brings back what we wrote: no kick needed
    assert not r.is_echo("u1", "100")  # older
    assert not r.is_echo("u1", "")  # unknown
    assert not r.is_echo("u2", written)  # another object
    assert KEY in r._patched  # ... because the pass that wrote asks for one more itself
    asyncio.run(r._write_status(KEY, "models", "m", "mu", "7", {"a": 1}, {"a": 1}))
    assert "mu" not in r._written  # nothing to patch: nothing sent, nothing to echo


def test_forget_frees_what_was_kept_about_a_deleted_version() -> None:
    r = Reconciler(kube=FakeKube(), settings=OperatorSettings())  # type: ignore[arg-type]
    asyncio.run(
        r._write_status(KEY, "modelversions", "m-v1", "u1", "100", {}, {"phase": "Rolling"})
    )
    r._rolling_since["u1"] = 1.0
    r.forget("ns", "m-v1", "u1")
    assert r._written == {}
    assert r._rolling_since == {}


# -- children the cache still shows after they are gone ------------------------------------------


class ChildKube:
    """Deployments and Services as the API server keeps them: a uid per object, a new one when a
    deleted name is applied again. The cache (`shown`) lags behind, as a watch does."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.serial = 0
        self.log: list[str] = []
        self.resources: dict[str, dict[str, Any]] = {}  # Models and ModelVersions by name

    async def call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        return fn(*args, **kw)

    def _apply(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        had = self.objects.get((kind, name))
        self.serial += 1
        uid = had["metadata"]["uid"] if had else f"{kind}-{name}-{self.serial}"
        self.objects[(kind, name)] = {**body, "metadata": {**body["metadata"], "uid": uid}}
        return self.objects[(kind, name)]

    def apply_deployment(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.log.append(f"apply Deployment {body['metadata']['name']}")
        return self._apply("Deployment", body)

    def apply_service(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        selector = body["spec"]["selector"]["modelreg.dev/version"]
        self.log.append(f"switch Service to v{selector}")
        return self._apply("Service", body)

    def endpoint_slice(self) -> bytes:
        """The Service's EndpointSlice: one ready pod of the version it selects."""
        svc = self.objects.get(("Service", "m"))
        n = svc["spec"]["selector"]["modelreg.dev/version"] if svc else None
        pods = [{"targetRef": {"kind": "Pod", "name": f"m-v{n}-1"}, "conditions": {"ready": True}}]
        labels = {"kubernetes.io/service-name": "m"}
        return compact_slice({"metadata": {"labels": labels}, "endpoints": pods if n else []})

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get(("Deployment", name))

    def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get(("Service", name))

    def delete_deployment(self, namespace: str, name: str, uid: str | None = None) -> None:
        self.log.append(f"delete Deployment {name}")
        self.objects.pop(("Deployment", name), None)

    def delete_service(self, namespace: str, name: str, uid: str | None = None) -> None:
        self.objects.pop(("Service", name), None)

    def patch_status(self, plural: str, namespace: str, name: str, patch: Any) -> Any:
        body = self.resources[name]
        self.serial += 1
        body["metadata"]["resourceVersion"] = str(self.serial)
        body["status"] = merge_patch_apply(body.get("status") or {}, patch)
        return body

    def create_event(self, namespace: str, body: Any) -> Any:
        return {"metadata": {"name": "e"}}

    def patch_event(self, *args: Any) -> Any:
        return {}


def merge_patch_apply(old: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386, as the API server applies a merge patch."""
    out = dict(old)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_patch_apply(out[k], v)
        else:
            out[k] = v
    return out


def _available(body: dict[str, Any]) -> bytes:
    """A Deployment as the cache shows it once its rollout completed."""
    done = {
        "observedGeneration": 1,
        "replicas": 1,
        "updatedReplicas": 1,
        "readyReplicas": 1,
        "availableReplicas": 1,
        "conditions": [{"type": "Available", "status": "True"}],
    }
    return compact({**body, "status": done}, template=False)


def test_a_deleted_deployment_the_cache_still_shows_never_receives_production() -> None:
    """The rollback race CI met: v1's Deployment was deleted as v2 took over, the watch has not
    brought the delete yet, and v1 is asked for again. Its cached Available status is the old
    object's: the Service stays on v2 until the new v1 Deployment is Available itself."""
    from tests.unit.test_plan import OK, model, version

    kube = ChildKube()
    r = Reconciler(kube=kube, settings=OperatorSettings())  # type: ignore[arg-type]

    class Fixed:
        def verdict(self, *_: Any) -> Any:
            return OK

    r.verifier = Fixed()  # type: ignore[assignment]
    # No advisory database is configured: every version's audit is off.
    r.auditor = Auditor(r.settings, r.verifier, lambda key: None)  # type: ignore[arg-type]
    key = ("ns", "m")
    dump = {"mode": "json", "by_alias": True, "exclude_none": True}
    kube.resources["m"] = model().model_dump(**dump)  # type: ignore[arg-type]
    for n in (1, 2):
        kube.resources[f"m-v{n}"] = version(n).model_dump(**dump)  # type: ignore[arg-type]
    caches = Caches(models={}, versions={}, deployments={}, services={})
    r.caches = caches

    def watch() -> None:
        """The watch catches up: every object as the API server has it, rolled out."""
        objects = kube.objects.items()
        caches.deployments = {key: [_available(o) for (k, _), o in objects if k == "Deployment"]}
        caches.services = {key: [compact(o) for (k, _), o in objects if k == "Service"]}
        caches.endpoints = {key: [kube.endpoint_slice()]}
        caches.models = {key: [compact(kube.resources["m"])]}
        caches.versions = {key: [compact(kube.resources[f"m-v{n}"]) for n in (1, 2)]}

    def stages(one: str, two: str) -> None:
        kube.resources["m-v1"]["spec"]["stage"] = one
        kube.resources["m-v2"]["spec"]["stage"] = two
        caches.versions = {key: [compact(kube.resources[f"m-v{n}"]) for n in (1, 2)]}

    def settle() -> None:
        for _ in range(3):
            asyncio.run(r.reconcile(key))
            watch()

    watch()
    stages("Production", "None")
    settle()
    assert kube.log[-1] == "switch Service to v1"
    stages("Archived", "Production")
    for _ in range(2):
        asyncio.run(r.reconcile(key))
        watch()
    asyncio.run(r.reconcile(key))  # v2 took over; v1's Deployment is deleted ...
    assert kube.log[-2:] == ["switch Service to v2", "delete Deployment m-v1"]
    assert ("Deployment", "m-v1") not in kube.objects
    # ... and before the watch brings that delete, v1 is asked for again.
    stages("Production", "Archived")
    kube.log.clear()
    asyncio.run(r.reconcile(key))
    assert kube.log == ["apply Deployment m-v1"]
    assert kube.objects[("Service", "m")]["spec"]["selector"]["modelreg.dev/version"] == "2"
    # Once the new m-v1 is Available (and only then) production moves to it.
    settle()
    assert "switch Service to v1" in kube.log
    asyncio.run(r.reconcile(key))  # the cache shows every delete: nothing is kept about them
    assert r._gone == {}
