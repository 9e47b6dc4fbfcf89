"""Fakes at the SDK's adapter boundary: the Kubernetes adapter (`KubeAPI`) and the object store
(`ArtifactStore`), both in memory. They behave like the real adapters where the SDK depends on it:
AlreadyExists (Conflict) on create, generation bumps on spec changes, typed errors, sha256 of the
bytes actually stored. Shared by tests/unit/sdk and tests/unit/cli.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelreg.adapters import kube as k
from modelreg.adapters import objectstore as store
from modelreg.adapters.upload import ObjectExists, StoredObject, UploadResult
from modelreg.sdk.client import Client

Body = dict[str, Any]
NS = "risk"
_uid = itertools.count(1)


def merge(target: Body, patch: Body) -> Body:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):  # RFC 7386: a null inside a new object is dropped too
            if not isinstance(target.get(key), dict):
                target[key] = {}
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Body] = {}
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.forbidden_secrets: set[str] = set()
        self.forbidden_patch_stage: set[str] = set()  # stages the admission policy refuses
        self.before_create: Callable[[str, Body], None] | None = None
        self.on_get: Callable[[str, str], None] | None = None
        self.calls: list[tuple[str, str, str]] = []

    # -- KubeAPI ---------------------------------------------------------------------------------

    def get_object(self, plural: str, namespace: str, name: str) -> Body:
        self.calls.append(("get", plural, name))
        if self.on_get:
            self.on_get(plural, name)
        try:
            return copy.deepcopy(self.objects[(plural, namespace, name)])
        except KeyError:
            raise k.NotFound(f'{plural} "{name}" not found', 404) from None

    def list_objects(self, plural: str, namespace: str, label_selector: str = "") -> list[Body]:
        self.calls.append(("list", plural, ""))
        return [
            copy.deepcopy(b)
            for (p, ns, _), b in sorted(self.objects.items())
            if p == plural and ns == namespace
        ]

    def create_object(self, plural: str, namespace: str, body: Body) -> Body:
        name = body["metadata"]["name"]
        self.calls.append(("create", plural, name))
        if self.before_create:
            self.before_create(plural, body)
        if (plural, namespace, name) in self.objects:
            raise k.Conflict(f'{plural} "{name}" already exists', 409)
        obj = copy.deepcopy(body)
        obj["metadata"].update(
            namespace=namespace,
            generation=1,
            uid=f"uid-{next(_uid)}",
            resourceVersion="1",
            creationTimestamp="2026-01-01T00:00:00Z",
        )
        obj.setdefault("status", {})
        self.objects[(plural, namespace, name)] = obj
        return copy.deepcopy(obj)

    def patch_object(self, plural: str, namespace: str, name: str, patch: Body) -> Body:
        self.calls.append(("patch", plural, name))
        key = (plural, namespace, name)
        if key not in self.objects:
            raise k.NotFound(f'{plural} "{name}" not found', 404)
        stage = patch.get("spec", {}).get("stage")
        if stage in self.forbidden_patch_stage:
            raise k.Forbidden("denied by ValidatingAdmissionPolicy modelreg-promotion", 403)
        obj = self.objects[key]
        before = copy.deepcopy(obj.get("spec"))
        merge(obj, patch)
        if obj.get("spec") != before:
            obj["metadata"]["generation"] += 1
        return copy.deepcopy(obj)

    def get_secret_data(self, namespace: str, name: str) -> dict[str, str]:
        if name in self.forbidden_secrets:
            raise k.Forbidden(f'secrets "{name}" is forbidden', 403)
        try:
            return dict(self.secrets[(namespace, name)])
        except KeyError:
            raise k.NotFound(f'secrets "{name}" not found', 404) from None

    # -- test helpers ----------------------------------------------------------------------------

    def add_model(
        self,
        name: str,
        *,
        storage: Body | None = None,
        gates: list[Body] | None = None,
        status: Body | None = None,
        namespace: str = NS,
    ) -> None:
        spec: Body = {"promotion": {"gates": gates or []}}
        if storage is not None:
            spec["storage"] = storage
        self.objects[("models", namespace, name)] = {
            "apiVersion": "modelreg.dev/v1alpha1",
            "kind": "Model",
            "metadata": {"name": name, "namespace": namespace, "generation": 1},
            "spec": spec,
            "status": status or {},
        }

    def mv(self, name: str, namespace: str = NS) -> Body:
        return self.objects[("modelversions", namespace, name)]

    def set_status(self, name: str, namespace: str = NS, **status: Any) -> None:
        obj = self.mv(name, namespace)
        status.setdefault("observedGeneration", obj["metadata"]["generation"])
        obj["status"] = status


class FakeStore:
    """An in-memory bucket namespace; `sent_progress` records the progress callbacks."""

    def __init__(self, objects: dict[str, bytes] | None = None) -> None:
        self.objects: dict[str, bytes] = objects if objects is not None else {}
        self.configs: list[store.StoreConfig] = []
        self.fail_upload: store.StoreError | None = None
        self.closed = 0
        self.uploads: list[str] = []
        self.before_upload: Callable[[str], None] | None = None
        self.downloads: list[tuple[str, str | None]] = []
        self.modified: dict[str, float] = {}  # upload times; objects put directly are old

    def __call__(self, config: store.StoreConfig) -> FakeStore:
        self.configs.append(config)
        return self

    def upload(
        self,
        src: Path,
        uri: str,
        *,
        progress: Callable[[int], None] | None = None,
        content_type: str | None = None,
        if_none_match: bool = False,
    ) -> UploadResult:
        store.S3Location.parse(uri)
        if self.before_upload:
            self.before_upload(uri)
        if self.fail_upload:
            raise self.fail_upload
        data = Path(src).read_bytes()
        if if_none_match and uri in self.objects:
            raise ObjectExists(f"put {uri}: an object already exists at this key")
        self.uploads.append(uri)
        self.objects[uri] = data
        self.modified[uri] = time.time()
        if progress:
            progress(len(data))
        return UploadResult(uri, hashlib.sha256(data).hexdigest(), len(data), "etag", 1)

    def any_under(self, prefix_uri: str) -> bool:
        return any(u.startswith(prefix_uri) for u in self.objects)

    def list_under(self, prefix_uri: str) -> list[StoredObject]:
        return [
            StoredObject(u, len(b), self.modified.get(u, 0.0))
            for u, b in sorted(self.objects.items())
            if u.startswith(prefix_uri)
        ]

    def copy(self, src_uri: str, dst_uri: str) -> None:
        if src_uri not in self.objects:
            raise store.ObjectNotFound(f"copy {src_uri}: no such object")
        self.objects[dst_uri] = self.objects[src_uri]

    def delete(self, uri: str) -> None:
        self.objects.pop(uri, None)

    def sha256(self, uri: str) -> store.Digest:
        if uri not in self.objects:
            raise store.ObjectNotFound(f"get {uri}: no such object (NoSuchKey)")
        data = self.objects[uri]
        return store.Digest(hashlib.sha256(data).hexdigest(), len(data), "etag")

    def download(
        self, uri: str, dest: Path, expected_sha256: str, version_id: str | None = None
    ) -> store.Digest:
        digest = self.sha256(uri)
        if digest.sha256 != expected_sha256:
            raise store.DigestMismatch(uri, expected_sha256, digest.sha256)
        self.downloads.append((uri, version_id))
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        Path(dest).write_bytes(self.objects[uri])
        return digest

    def close(self) -> None:
        self.closed += 1


STORAGE = {"uri": "s3://models/credit/", "secretRef": {"name": "s3-credentials"}}
CREDS = {"AWS_ACCESS_KEY_ID": "AKIAKEY", "AWS_SECRET_ACCESS_KEY": "secret-value"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_client(
    kube: FakeKube | None = None, st: FakeStore | None = None, env: dict[str, str] | None = None
) -> tuple[Client, FakeKube, FakeStore, FakeClock]:
    kube = kube or FakeKube()
    st = st or FakeStore()
    client = Client(namespace=NS, kube=kube, store_factory=st, env=env or {})
    clock = FakeClock()
    client._clock = clock
    client._sleep = clock.sleep
    return client, kube, st, clock


def standard(kube: FakeKube | None = None) -> tuple[Client, FakeKube, FakeStore, FakeClock]:
    """A client with the Model `credit` (storage + readable Secret)."""
    client, kube, st, clock = make_client(kube)
    kube.add_model("credit", storage=dict(STORAGE), gates=[{"metric": "auc", "min": 0.8}])
    kube.secrets[(NS, "s3-credentials")] = dict(CREDS)
    return client, kube, st, clock
