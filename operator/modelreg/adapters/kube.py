"""The Kubernetes API, seen through one narrow adapter: the only module that imports `kubernetes`.

The controller (`modelreg.controller`) and the SDK (`modelreg.sdk`) call it. Library exceptions end
here: every `ApiException` or connection failure becomes a `KubeError` subclass with a human message.
The client library is synchronous, so async callers go through `asyncio.to_thread` (`Kube.call`);
the SDK, which is synchronous, calls the plain methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from modelreg.adapters import impersonation
from modelreg.api.models import GROUP, VERSION

T = TypeVar("T")
Body = dict[str, Any]

MODELS = "models"
MODEL_VERSIONS = "modelversions"
# Children are written with server-side apply under this field manager, nothing else.
FIELD_MANAGER = "modelreg"
FIELD_LABEL = "app.kubernetes.io/managed-by"
APPLY = "application/apply-patch+yaml"


class KubeError(Exception):
    """A Kubernetes API call failed; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    """409: AlreadyExists on create, or a stale resourceVersion on update."""


class Forbidden(KubeError):
    pass


class Invalid(KubeError):
    """422/400: the API server (schema, CEL rules or admission) rejected the object."""


class Unavailable(KubeError):
    """The API server could not be reached or answered 5xx/429: worth retrying."""


class ConfigError(KubeError):
    """No usable kubeconfig or in-cluster configuration."""


class Fenced(KubeError):
    """A write refused before it was sent: this replica no longer holds the leader Lease."""


# Client methods that change something: the ones a fence stops (see `Kube.fence`).
_WRITES = ("create_", "patch_", "replace_", "delete_")


def _message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        body = {}
    msg = body.get("message") if isinstance(body, dict) else None
    return str(msg or exc.reason or f"HTTP {exc.status}")


def translate(exc: Exception) -> KubeError:
    """Map a client-library exception onto our error types (the one boundary, STYLE rule 3)."""
    if isinstance(exc, KubeError):
        return exc
    if isinstance(exc, ApiException):
        status = exc.status or 0
        msg = _message(exc)
        if status == 404:
            return NotFound(msg, status)
        if status == 409:
            return Conflict(msg, status)
        if status in (401, 403):
            return Forbidden(msg, status)
        if status in (400, 422):
            return Invalid(msg, status)
        if status == 429 or status >= 500 or status == 0:
            return Unavailable(msg or "the API server is unavailable", status or None)
        return KubeError(msg, status)
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return Unavailable(f"cannot reach the Kubernetes API server: {exc.__class__.__name__}")
    if isinstance(exc, ConfigException):
        return ConfigError(f"no usable Kubernetes configuration: {exc}")
    return KubeError(f"{exc.__class__.__name__}: {exc}")


def api_client(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    pool: int = 32,
    impersonate: impersonation.Impersonation | None = None,
) -> client.ApiClient:
    """An ApiClient from a kubeconfig (or $KUBECONFIG, ~/.kube/config), else in-cluster config.

    Like kubectl, it acts as the user the kubeconfig's user impersonates (`as`, `as-groups`,
    `as-uid`, `as-user-extra`); `impersonate` (the --as/--as-group flags) overrides those fields.
    """
    cfg = client.Configuration()
    found = impersonation.Impersonation()
    try:
        try:
            config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=cfg
            )
            found = impersonation.from_kubeconfig(kubeconfig, context)
        except ConfigException:
            if kubeconfig or context:
                raise
            config.load_incluster_config(client_configuration=cfg)
        lines = (impersonate or impersonation.Impersonation()).over(found).headers()
    except (ConfigException, OSError) as e:
        raise ConfigError(
            f"no usable Kubernetes configuration ({e}); set KUBECONFIG or pass --kubeconfig"
        ) from e
    except impersonation.ImpersonationError as e:
        raise ConfigError(str(e)) from e
    cfg.connection_pool_maxsize = pool
    cfg.retries = False
    api = client.ApiClient(cfg)
    if lines:
        api.rest_client.close()
        api.rest_client = impersonation.ImpersonatingREST(cfg, lines)
    return api


def _delete_options(uid: str | None, propagation: str | None = None) -> client.V1DeleteOptions:
    """Delete options; with `uid`, a precondition: only that very object, never a namesake."""
    return client.V1DeleteOptions(
        propagation_policy=propagation,
        preconditions=client.V1Preconditions(uid=uid) if uid else None,
    )


class Kube:
    """The calls modelreg makes, each translated; thread-safe (one ApiClient, pooled)."""

    def __init__(self, api: client.ApiClient, *, request_timeout: float = 30.0) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.autoscaling = client.AutoscalingV2Api(api)
        self.coordination = client.CoordinationV1Api(api)
        self.timeout = request_timeout
        self._lock = threading.Lock()
        self.requests = 0  # API calls made: the benchmarks report requests per version
        # Leader election: a write is sent only while this returns None (else: why not). Checked
        # in the worker thread right before the request; the Lease's own writes are not fenced.
        self.fence: Callable[[], str | None] | None = None

    def _do(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        fence = self.fence
        if (
            fence is not None
            and fn.__name__.startswith(_WRITES)
            and getattr(fn, "__self__", None) is not self.coordination
        ):
            why = fence()
            if why is not None:
                raise Fenced(f"not writing ({fn.__name__}): {why}")
        with self._lock:
            self.requests += 1
        try:
            return fn(*args, _request_timeout=self.timeout, **kwargs)
        except Exception as e:
            raise translate(e) from e

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one (blocking) call of this adapter in a worker thread."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    # -- modelreg.dev objects ------------------------------------------------------------------

    def get_object(self, plural: str, namespace: str, name: str) -> Body:
        result: Body = self._do(
            self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name
        )
        return result

    def list_objects(self, plural: str, namespace: str, label_selector: str = "") -> list[Body]:
        result = self._do(
            self.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            plural,
            label_selector=label_selector,
        )
        items: list[Body] = result.get("items", [])
        return items

    def create_object(self, plural: str, namespace: str, body: Body) -> Body:
        result: Body = self._do(
            self.custom.create_namespaced_custom_object, GROUP, VERSION, namespace, plural, body
        )
        return result

    def patch_object(self, plural: str, namespace: str, name: str, patch: Body) -> Body:
        """JSON merge patch of a modelreg object's spec or metadata (clients only, never the operator)."""
        result: Body = self._do(
            self.custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            patch,
        )
        return result

    def delete_object(self, plural: str, namespace: str, name: str) -> None:
        self._do(
            self.custom.delete_namespaced_custom_object, GROUP, VERSION, namespace, plural, name
        )

    def patch_status(self, plural: str, namespace: str, name: str, status: Body) -> Body:
        """Merge-patch `status` through the status subresource: the operator's only write to us."""
        result: Body = self._do(
            self.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            {"status": status},
        )
        return result

    # -- the leader Lease (coordination.k8s.io/v1) ----------------------------------------------

    def get_lease(self, namespace: str, name: str) -> Body | None:
        """The Lease as JSON (its spec's times as the API server wrote them), or None."""
        try:
            found = self._do(
                self.coordination.read_namespaced_lease, name, namespace, _preload_content=False
            )
        except NotFound:
            return None
        lease: Body = json.loads(found.data)
        return lease

    def create_lease(self, namespace: str, name: str, spec: Body, labels: dict[str, str]) -> Body:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": spec,
        }
        found = self._do(
            self.coordination.create_namespaced_lease, namespace, body, _preload_content=False
        )
        lease: Body = json.loads(found.data)
        return lease

    def replace_lease(
        self, namespace: str, name: str, spec: Body, resource_version: str, labels: dict[str, str]
    ) -> Body:
        """Write the Lease's spec if it is still at `resource_version` (else Conflict)."""
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "resourceVersion": resource_version,
                "labels": labels,
            },
            "spec": spec,
        }
        found = self._do(
            self.coordination.replace_namespaced_lease,
            name,
            namespace,
            body,
            _preload_content=False,
        )
        lease: Body = json.loads(found.data)
        return lease

    # -- children --------------------------------------------------------------------------------

    def get_secret_data(self, namespace: str, name: str) -> dict[str, str]:
        """The decoded data of a Secret. Values are credentials: never log or store them."""
        import base64  # noqa: PLC0415 - only this call needs it

        secret = self._do(self.core.read_namespaced_secret, name, namespace)
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    def seal_key(self, namespace: str, name: str) -> str:
        """The operator's seal key, kept in the Secret `name` of its own namespace: read it, or
        create it with a random key the first time (a racing replica's key wins, both read it).
        The key never leaves the operator's namespace, and no Model's tenant can read it."""
        import base64  # noqa: PLC0415
        import secrets  # noqa: PLC0415

        def fresh() -> Body:
            return {"key": base64.b64encode(secrets.token_hex(32).encode()).decode()}

        data = self.get_or_create_secret(namespace, name, fresh)
        key = base64.b64decode(data.get("key", "")).decode()
        if not key:
            raise KubeError(f"the seal Secret {namespace}/{name} has no data key 'key'")
        return key

    # -- the custom metrics API server (modelreg.metricsapi) -----------------------------------

    def list_pods(self, namespace: str, label_selector: str) -> list[Body]:
        """The pods of a namespace that a label selector matches, as JSON bodies."""
        found = self._do(self.core.list_namespaced_pod, namespace, label_selector=label_selector)
        pods: list[Body] = self.api.sanitize_for_serialization(found).get("items", [])
        return pods

    def get_config_map_data(self, namespace: str, name: str) -> dict[str, str]:
        found = self._do(self.core.read_namespaced_config_map, name, namespace)
        return dict(found.data or {})

    def access_review(self, spec: Body) -> tuple[bool, str]:
        """A SubjectAccessReview (authorization.k8s.io/v1) of `spec`: (allowed, the reason)."""
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview"}
        found = self._do(
            client.AuthorizationV1Api(self.api).create_subject_access_review,
            {**review, "spec": spec},
        )
        st = found.status
        return bool(st.allowed), str(st.reason or st.evaluation_error or "")

    def get_or_create_secret(self, namespace: str, name: str, make: Callable[[], Body]) -> Body:
        """The Secret's data (base64, as stored), created from `make()` (data, same encoding)
        when there is none; a racing replica's Secret wins and both read it."""
        try:
            found = self._do(self.core.read_namespaced_secret, name, namespace)
        except NotFound:
            body = client.V1Secret(
                metadata=client.V1ObjectMeta(name=name, labels={FIELD_LABEL: "modelreg"}),
                type="Opaque",
                data=make(),
            )
            with contextlib.suppress(Conflict):
                self._do(self.core.create_namespaced_secret, namespace, body)
            found = self._do(self.core.read_namespaced_secret, name, namespace)
        return dict(found.data or {})

    def replace_secret_data(self, namespace: str, name: str, data: Body) -> None:
        self._do(self.core.patch_namespaced_secret, name, namespace, {"data": data})

    def set_apiservice_ca(self, name: str, ca_bundle: str) -> bool:
        """Point an APIService's caBundle (base64 PEM) at our CA; False when it already was."""
        reg = client.ApiregistrationV1Api(self.api)
        found = self._do(reg.read_api_service, name)
        if found.spec.ca_bundle == ca_bundle:
            return False
        self._do(reg.patch_api_service, name, {"spec": {"caBundle": ca_bundle}})
        return True

    def _apply(self, patch: Callable[..., Any], namespace: str, body: Body) -> Body:
        applied: Body = self.api.sanitize_for_serialization(
            self._do(
                patch,
                body["metadata"]["name"],
                namespace,
                body,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type=APPLY,
            )
        )
        return applied

    def _metadata(self, read: Callable[..., Any], namespace: str, name: str) -> Body | None:
        """An object's metadata (labels, owner references), or None when there is none."""
        try:
            found = self._do(read, name, namespace)
        except NotFound:
            return None
        meta: Body = self.api.sanitize_for_serialization(found.metadata)
        return {"metadata": meta}

    def apply_deployment(self, namespace: str, body: Body) -> Body:
        """Server-side apply of the whole Deployment as field manager `modelreg`: a field the
        operator no longer sets (an env entry, a limit, a nodeSelector key) is removed."""
        return self._apply(self.apps.patch_namespaced_deployment, namespace, body)

    def set_deployment_owner(self, namespace: str, name: str, uid: str, owner: Body) -> None:
        """Make `owner` the Deployment's only owner reference (a JSON patch guarded by the
        Deployment's uid): an older operator's Deployment handed to its Model."""
        self._do(
            self.apps.patch_namespaced_deployment,
            name,
            namespace,
            [
                {"op": "test", "path": "/metadata/uid", "value": uid},
                {"op": "replace", "path": "/metadata/ownerReferences", "value": [owner]},
            ],
            _content_type="application/json-patch+json",
        )

    def get_deployment(self, namespace: str, name: str) -> Body | None:
        """The Deployment's metadata (labels, owner references), or None when there is none."""
        return self._metadata(self.apps.read_namespaced_deployment, namespace, name)

    def delete_deployment(self, namespace: str, name: str, uid: str | None = None) -> None:
        """Delete the Deployment; with `uid`, only that very object (a precondition)."""
        with contextlib.suppress(NotFound):
            self._do(
                self.apps.delete_namespaced_deployment,
                name,
                namespace,
                body=_delete_options(uid, propagation="Background"),
            )

    def apply_service(self, namespace: str, body: Body) -> Body:
        """Server-side apply of the Service as field manager `modelreg`."""
        return self._apply(self.core.patch_namespaced_service, namespace, body)

    def get_service(self, namespace: str, name: str) -> Body | None:
        return self._metadata(self.core.read_namespaced_service, namespace, name)

    def apply_autoscaler(self, namespace: str, body: Body) -> Body:
        """Server-side apply of the Model's HorizontalPodAutoscaler (autoscaling/v2)."""
        return self._apply(
            self.autoscaling.patch_namespaced_horizontal_pod_autoscaler, namespace, body
        )

    def get_autoscaler(self, namespace: str, name: str) -> Body | None:
        return self._metadata(
            self.autoscaling.read_namespaced_horizontal_pod_autoscaler, namespace, name
        )

    def delete_autoscaler(self, namespace: str, name: str, uid: str | None = None) -> None:
        with contextlib.suppress(NotFound):
            self._do(
                self.autoscaling.delete_namespaced_horizontal_pod_autoscaler,
                name,
                namespace,
                body=_delete_options(uid),
            )

    def delete_version(self, namespace: str, name: str, uid: str) -> None:
        """Delete a ModelVersion (retention): only that very object (a uid precondition)."""
        with contextlib.suppress(NotFound):
            self._do(
                self.custom.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                "modelversions",
                name,
                body=_delete_options(uid),
            )

    def delete_service(self, namespace: str, name: str, uid: str | None = None) -> None:
        with contextlib.suppress(NotFound):
            self._do(
                self.core.delete_namespaced_service,
                name,
                namespace,
                body=_delete_options(uid),
            )

    def create_event(self, namespace: str, body: Body) -> str:
        """Post an Event; returns its name (for a later count update)."""
        created = self._do(self.core.create_namespaced_event, namespace, body)
        return str(created.metadata.name)

    def patch_event(self, namespace: str, name: str, patch: Body) -> None:
        """Merge-patch an Event we posted (its count, lastTimestamp and series)."""
        self._do(self.core.patch_namespaced_event, name, namespace, patch)

    # -- client-side helpers (the SDK) -----------------------------------------------------------

    @staticmethod
    def default_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
        """The namespace of the kubeconfig context (as kubectl picks it), else the pod's own
        namespace when running in a cluster, else "default"."""
        try:
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
        except (ConfigException, OSError, TypeError, ValueError):
            contexts, active = [], None
        chosen = active
        if context:
            chosen = next((c for c in contexts or [] if c.get("name") == context), None)
        if chosen:
            ns = (chosen.get("context") or {}).get("namespace")
            return str(ns) if ns else "default"
        try:
            with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
                return f.read().strip() or "default"
        except OSError:
            return "default"


class ClientKube(Kube):
    """The SDK's Kube: the same calls on modelreg objects, without the typed core/apps clients.

    `modelreg register` must stay small (issue 5: peak RSS < 150 MiB), and building
    `CoreV1Api`/`AppsV1Api` loads ~25 MiB of generated code that the SDK never needs: it reads
    modelreg objects (CustomObjectsApi) and one Secret, which it fetches through the raw REST path.
    The Deployment/Service/Event methods of `Kube` are not available here (the operator's).
    """

    def __init__(self, api: client.ApiClient, *, request_timeout: float = 30.0) -> None:
        # Deliberately not Kube.__init__: it builds the typed clients this class exists to avoid.
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.timeout = request_timeout
        self._lock = threading.Lock()
        self.requests = 0
        self.fence = None  # the SDK acts for its user: no leader, nothing fenced

    def get_secret_data(self, namespace: str, name: str) -> dict[str, str]:
        """The decoded data of a Secret. Values are credentials: never log or store them."""
        import base64  # noqa: PLC0415 - only this call needs it

        def read(_request_timeout: float | None = None) -> Body:
            param = self.api.param_serialize(
                method="GET",
                resource_path="/api/v1/namespaces/{namespace}/secrets/{name}",
                path_params={"namespace": namespace, "name": name},
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
            )
            resp = self.api.call_api(*param, _request_timeout=_request_timeout)
            resp.read()
            types: dict[str, Any] = {"200": "object"}
            body: Body = self.api.response_deserialize(resp, types).data
            return body

        secret = self._do(read)
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    def list_events(self, namespace: str, involved_name: str) -> list[Body]:
        """The Events about object `involved_name` (events.k8s.io/v1 bodies: the Events the
        operator posts to core/v1, as that group serves them), through the custom-objects client
        so that no typed core client is loaded."""
        result = self._do(
            self.custom.list_namespaced_custom_object,
            "events.k8s.io",
            "v1",
            namespace,
            "events",
            field_selector=f"regarding.name={involved_name}",
        )
        items: list[Body] = result.get("items", [])
        return items
