"""Kopf wiring: indexes that cache the world, and thin event handlers that kick the reconciler.

`install()` is called once by `modelreg.controller.__main__`. The indexes (Models, ModelVersions,
and the Deployments and Services the operator manages, each keyed by (namespace, model)) are filled
by kopf's watches before any handler runs, so the first reconcile of a Model already sees all of its
versions. Handlers do no work themselves: every event becomes `reconciler.kick(namespace, model)`.
No create/update/delete handlers are registered, so kopf adds no finalizer and writes no
bookkeeping to our objects; should it ever, its annotations carry our prefix.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from modelreg.api.models import GROUP, VERSION
from modelreg.controller import kopfpatch
from modelreg.controller.reconciler import Caches, Reconciler, compact, compact_slice
from modelreg.lifecycle import naming
from modelreg.settings import OperatorSettings

log = logging.getLogger("modelreg.controller")

MANAGED = {naming.MANAGED_BY: naming.MANAGER}


def install(reconciler: Reconciler, config: OperatorSettings) -> kopf.OperatorRegistry:
    kopfpatch.apply()  # O(N) instead of O(N^2) wake-ups while the indexes fill at start-up
    kopfpatch.apply_relist()  # a re-list after a watch gap drops what was deleted meanwhile
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kw: Any) -> kopf.ConnectionInfo | None:
        # The same kubeconfig / in-cluster resolution as adapters.kube (the `kubernetes` client).
        return kopf.login_via_client(**kw)

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        prefix = GROUP
        settings.persistence.finalizer = f"{prefix}/finalizer"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=prefix, key="last-handled-configuration"
        )
        # Our Events are posted by the reconciler, one per transition.
        settings.posting.enabled = False
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.watching.connect_timeout = 10
        settings.watching.reconnect_backoff = 1.0
        settings.networking.request_timeout = 30
        settings.execution.max_workers = max(8, config.api_qps_burst)
        # Exact namespace names need no namespace scanning (and no RBAC to list namespaces).
        settings.scanning.disabled = bool(config.namespaces)
        # Every blocking API and S3 call goes through asyncio.to_thread, i.e. the loop's default
        # executor, which has only min(32, cores + 4) threads: size it like the API client's pool.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=config.api_qps_burst, thread_name_prefix="modelreg")
        )

    @kopf.on.cleanup(registry=registry)
    async def shutdown(**_: Any) -> None:
        await reconciler.close()

    # -- indexes: the reconciler's cache ---------------------------------------------------------

    @kopf.index(GROUP, VERSION, "models", id="models_idx", registry=registry)
    def models_idx(**kw: Any) -> dict[Any, Any]:
        return {(kw["namespace"], kw["name"]): compact(kw["body"])}

    @kopf.index(GROUP, VERSION, "modelversions", id="versions_idx", registry=registry)
    def versions_idx(**kw: Any) -> dict[Any, Any]:
        return {(kw["namespace"], kw["spec"].get("model", "")): compact(kw["body"])}

    @kopf.index(
        "apps", "v1", "deployments", labels=MANAGED, id="deployments_idx", registry=registry
    )
    def deployments_idx(**kw: Any) -> dict[Any, Any]:
        return {
            (kw["namespace"], kw["labels"].get(naming.MODEL_LABEL, "")): compact(
                kw["body"], template=False
            )
        }

    @kopf.index("v1", "services", labels=MANAGED, id="services_idx", registry=registry)
    def services_idx(**kw: Any) -> dict[Any, Any]:
        return {(kw["namespace"], kw["labels"].get(naming.MODEL_LABEL, "")): compact(kw["body"])}

    # The EndpointSlice controller copies the Service's labels onto its slices.
    @kopf.index(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        labels=MANAGED,
        id="endpoints_idx",
        registry=registry,
    )
    def endpoints_idx(**kw: Any) -> dict[Any, Any]:
        return {
            (kw["namespace"], kw["labels"].get(naming.MODEL_LABEL, "")): compact_slice(kw["body"])
        }

    # spec.serving.autoscaling: the one HorizontalPodAutoscaler of a Model.
    @kopf.index(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        labels=MANAGED,
        id="autoscalers_idx",
        registry=registry,
    )
    def autoscalers_idx(**kw: Any) -> dict[Any, Any]:
        return {(kw["namespace"], kw["labels"].get(naming.MODEL_LABEL, "")): compact(kw["body"])}

    def caches(kw: dict[str, Any]) -> None:
        if reconciler.caches is None:
            reconciler.start(
                Caches(
                    models=kw["models_idx"],
                    versions=kw["versions_idx"],
                    deployments=kw["deployments_idx"],
                    services=kw["services_idx"],
                    endpoints=kw["endpoints_idx"],
                    autoscalers=kw["autoscalers_idx"],
                )
            )

    # -- events: each one only kicks the Model it concerns ---------------------------------------

    def echo(kw: dict[str, Any]) -> bool:
        """A MODIFIED event that only brings back a status this operator wrote."""
        rv = (kw["body"].get("metadata") or {}).get("resourceVersion") or ""
        return kw["event"].get("type") == "MODIFIED" and reconciler.is_echo(kw["uid"] or "", rv)

    @kopf.on.event(GROUP, VERSION, "models", registry=registry)
    async def model_event(**kw: Any) -> None:
        caches(kw)
        if kw["event"].get("type") == "DELETED":
            reconciler.forget_model(kw["namespace"], kw["name"], kw["uid"] or "")
        if not echo(kw):
            reconciler.kick(kw["namespace"], kw["name"])

    @kopf.on.event(GROUP, VERSION, "modelversions", registry=registry)
    async def version_event(**kw: Any) -> None:
        caches(kw)
        if kw["event"].get("type") == "DELETED":
            reconciler.forget(kw["namespace"], kw["name"], kw["uid"] or "")
        if not echo(kw):
            reconciler.kick(kw["namespace"], kw["spec"].get("model", ""))

    @kopf.on.event("apps", "v1", "deployments", labels=MANAGED, registry=registry)
    async def deployment_event(**kw: Any) -> None:
        caches(kw)
        reconciler.kick(kw["namespace"], kw["labels"].get(naming.MODEL_LABEL, ""))

    @kopf.on.event("v1", "services", labels=MANAGED, registry=registry)
    async def service_event(**kw: Any) -> None:
        caches(kw)
        reconciler.kick(kw["namespace"], kw["labels"].get(naming.MODEL_LABEL, ""))

    @kopf.on.event("discovery.k8s.io", "v1", "endpointslices", labels=MANAGED, registry=registry)
    async def endpoints_event(**kw: Any) -> None:
        caches(kw)
        reconciler.kick(kw["namespace"], kw["labels"].get(naming.MODEL_LABEL, ""))

    # The autoscaler writes its status at every sync (15 s): only its arrival and removal (someone
    # deleted it) concern the plan; its scaling reaches us as a Deployment event.
    @kopf.on.event(
        "autoscaling", "v2", "horizontalpodautoscalers", labels=MANAGED, registry=registry
    )
    async def autoscaler_event(**kw: Any) -> None:
        caches(kw)
        if kw["event"].get("type") != "MODIFIED":
            reconciler.kick(kw["namespace"], kw["labels"].get(naming.MODEL_LABEL, ""))

    return registry
