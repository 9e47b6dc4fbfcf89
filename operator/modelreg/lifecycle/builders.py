"""Builders of the serving Deployment and the stable Service: pure functions returning plain dicts.

Called by the planner (`modelreg.lifecycle.plan`); tested without a cluster. Owner references are
set explicitly and the parent's labels are never copied (under Argo CD that would copy its tracking
label onto the children, and Argo would prune them). Credentials only appear as `secretKeyRef`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from modelreg.api.models import API_VERSION, Autoscaling, Model, ModelVersion, Runtime, Shadow
from modelreg.lifecycle import custom_metrics, naming

Body = dict[str, Any]

MODEL_DIR = "/models"
RUNTIME_UID = 65532
DRAIN_SECONDS = 5


@dataclass(frozen=True)
class ServingDefaults:
    """Operator settings the builders need (from `OperatorSettings`)."""

    builtin_image: str
    mlserver_image: str
    allow_pickle: bool = False


@dataclass(frozen=True)
class Mirror:
    """Where a serving pod mirrors its sample of live requests (spec.shadow): the shadow Service.

    The address is the Service's ClusterIP, not its DNS name: it needs no cluster DNS, and it is
    stable for the Service's life, so a new shadow version does not change it."""

    version: int
    cluster_ip: str
    grpc_port: int  # 0: gRPC requests are not mirrored
    shadow: Shadow

    def env(self) -> list[Body]:
        host = f"[{self.cluster_ip}]" if ":" in self.cluster_ip else self.cluster_ip
        s = self.shadow
        env: list[Body] = [
            {"name": "MODELREG_SHADOW_URL", "value": f"http://{host}:80"},
            {"name": "MODELREG_SHADOW_VERSION", "value": str(self.version)},
            {"name": "MODELREG_SHADOW_SAMPLE_PERCENT", "value": f"{s.sample_percent:g}"},
            {"name": "MODELREG_SHADOW_TOLERANCE", "value": f"{s.tolerance:g}"},
            {"name": "MODELREG_SHADOW_MAX_IN_FLIGHT", "value": str(s.max_in_flight)},
            {"name": "MODELREG_SHADOW_TIMEOUT_MS", "value": str(s.timeout_ms)},
        ]
        if self.grpc_port:
            env.append({"name": "MODELREG_SHADOW_GRPC_TARGET", "value": f"{host}:{self.grpc_port}"})
        return env


def owner_reference(kind: str, name: str, uid: str) -> Body:
    # blockOwnerDeletion is left unset: it would need update rights on the owner's finalizers.
    return {"apiVersion": API_VERSION, "kind": kind, "name": name, "uid": uid, "controller": True}


def _env(
    model: Model,
    mv: ModelVersion,
    defaults: ServingDefaults,
    version_id: str | None,
    mirror: Mirror | None,
) -> list[Body]:
    storage = model.spec.storage
    serving = model.spec.serving
    env: list[Body] = [
        {"name": "MODELREG_MODEL_NAME", "value": model.metadata.name},
        {"name": "MODELREG_MODEL_VERSION", "value": str(mv.spec.version)},
        {"name": "MODELREG_ARTIFACT_URI", "value": mv.spec.artifact.uri},
        {"name": "MODELREG_ARTIFACT_SHA256", "value": mv.spec.artifact.sha256.lower()},
        {"name": "MODELREG_ARTIFACT_FORMAT", "value": mv.spec.artifact.format.value},
    ]
    if version_id:
        # The exact object version the operator verified (a versioned bucket): an overwrite
        # after verification is never what a pod loads.
        env.append({"name": "MODELREG_ARTIFACT_VERSION_ID", "value": version_id})
    env += [
        {"name": "MODELREG_HTTP_PORT", "value": str(serving.port)},
        {"name": "MODELREG_GRPC_PORT", "value": str(grpc_port(model))},
        {"name": "MODELREG_MODEL_DIR", "value": MODEL_DIR},
    ]
    if serving.runtime is Runtime.BUILTIN and serving.batching is not None:
        env += [
            {"name": "MODELREG_BATCH_MAX_SIZE", "value": str(serving.batching.max_batch_size)},
            {"name": "MODELREG_BATCH_MAX_WAIT_MS", "value": f"{serving.batching.max_wait_ms:g}"},
        ]
    if mirror is not None and serving.runtime is Runtime.BUILTIN:
        env += mirror.env()
    if defaults.allow_pickle:
        env.append({"name": "MODELREG_ALLOW_PICKLE", "value": "true"})
    if serving.runtime is Runtime.BUILTIN and mv.spec.signature is not None:
        # The registered inputs and outputs, which the builtin server's metadata reports.
        env.append({"name": "MODELREG_SIGNATURE", "value": signature_json(mv)})
    if storage is not None:
        if storage.endpoint:
            env.append({"name": "MODELREG_S3_ENDPOINT", "value": storage.endpoint})
        if storage.region:
            env.append({"name": "AWS_REGION", "value": storage.region})
        if storage.secret_ref is not None:
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                env.append(
                    {
                        "name": key,
                        "valueFrom": {
                            "secretKeyRef": {"name": storage.secret_ref.name, "key": key}
                        },
                    }
                )
    # The CRD rejects reserved names; objects stored before that rule still never get them in.
    ours = {e["name"] for e in env}
    env.extend(e.wire() for e in serving.env if e.name not in ours and not e.reserved)
    return env


def grpc_port(model: Model) -> int:
    """The gRPC port the pods serve and the Service exposes: the builtin runtime's only; 0 = none."""
    serving = model.spec.serving
    return serving.grpc_port if serving.runtime is Runtime.BUILTIN else 0


def signature_json(mv: ModelVersion) -> str:
    """spec.signature as compact JSON (MODELREG_SIGNATURE); "" when the version has none."""
    if mv.spec.signature is None:
        return ""
    return json.dumps(mv.spec.signature.wire(), separators=(",", ":"))


def default_image(runtime: Runtime, defaults: ServingDefaults) -> str:
    """The operator's image for a runtime when the Model names none."""
    return defaults.mlserver_image if runtime is Runtime.MLSERVER else defaults.builtin_image


def model_dir_limit(size_bytes: int | None) -> str | None:
    """The model emptyDir's sizeLimit: the artifact plus 10% and 16 MiB of headroom (the download
    is written beside its final name, then renamed), in MiB. None when the size is unknown."""
    if size_bytes is None:
        return None
    mib = 1024 * 1024
    return f"{-(-(size_bytes + size_bytes // 10 + 16 * mib) // mib)}Mi"


def _container(
    model: Model,
    mv: ModelVersion,
    defaults: ServingDefaults,
    pinned_default: str | None,
    version_id: str | None,
    mirror: Mirror | None,
) -> Body:
    serving = model.spec.serving
    image = serving.image or pinned_default or default_image(serving.runtime, defaults)
    container: Body = {
        "name": "model",
        "image": image,
        "env": _env(model, mv, defaults, version_id, mirror),
        "ports": [{"name": "http", "containerPort": serving.port, "protocol": "TCP"}]
        + (
            [{"name": "grpc", "containerPort": grpc_port(model), "protocol": "TCP"}]
            if grpc_port(model)
            else []
        ),
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        # A large artifact takes time to download and hash; liveness starts after it.
        "startupProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 60,
        },
        # A pod that is going away keeps serving a moment: by the time it stops accepting
        # connections, every kube-proxy has taken it out of the Service (the kubelet's own sleep
        # action: no binary is needed in the image).
        "lifecycle": {"preStop": {"sleep": {"seconds": DRAIN_SECONDS}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "model", "mountPath": MODEL_DIR},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir, not the host's /tmp
        ],
    }
    if serving.runtime is Runtime.CUSTOM:
        if serving.command:
            container["command"] = list(serving.command)
        if serving.args:
            container["args"] = list(serving.args)
    elif serving.runtime is Runtime.BUILTIN:
        container["command"] = ["python", "-m", "modelreg.runtime"]
    if serving.resources:
        container["resources"] = serving.resources
    return container


def spec_hash(body: Body) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def build_deployment(
    model: Model,
    mv: ModelVersion,
    defaults: ServingDefaults,
    *,
    pinned_default: str | None = None,
    artifact_size: int | None = None,
    artifact_version_id: str | None = None,
    replicas: int | None = None,
    mirror: Mirror | None = None,
    shadow: bool = False,
) -> Body:
    """The Deployment `<model>-v<N>` that serves one version, owned by the Model.

    The Model, not the version, owns it: deleting the serving ModelVersion (Argo CD's prune when
    `v3.yaml` is replaced by `v4.yaml`) leaves production running until the planner hands it over.
    `pinned_default` is the default image the version was first rolled out with (its status), so
    an operator upgrade with a new default image does not re-roll every serving Deployment.
    `artifact_size` (else the size in its status) bounds the model volume;
    `artifact_version_id` (else its status's) is the S3 version the pod fetches.
    `replicas` overrides spec.serving.replicas (a canary step's count). With
    `spec.serving.autoscaling` the HorizontalPodAutoscaler owns the count: `replicas` (see
    `start_replicas`) is what the Deployment is written with, and the spec hash leaves it out, so a
    change of scale is never a change of spec that the planner would write back.
    `mirror`: the serving pods copy a sample of requests to the Model's shadow (spec.shadow).
    `shadow`: this is the shadow's Deployment `<model>-shadow` instead (see `naming.SHADOW_OF`):
    one per Model, so its selector (immutable) names no version, and spec.shadow.replicas pods.
    """
    serving = model.spec.serving
    name = naming.deployment_name(model.metadata.name, mv.spec.version)
    selector = naming.selector_labels(model.metadata.name, mv.spec.version)
    labels = naming.child_labels(model.metadata.name, mv.spec.version)
    pod_labels = dict(labels)
    auto = serving.autoscaling
    if shadow:
        assert model.spec.shadow is not None
        name = naming.shadow_name(model.metadata.name)
        selector = naming.shadow_selector(model.metadata.name)
        labels = {**labels, naming.ROLE_LABEL: naming.SHADOW_ROLE}
        pod_labels = {
            naming.MANAGED_BY: naming.MANAGER,
            **selector,
            naming.VERSION_LABEL: str(mv.spec.version),
        }
        auto, replicas, mirror = None, model.spec.shadow.replicas, None
    if mv.status.artifact is not None:
        if artifact_size is None:
            artifact_size = mv.status.artifact.size_bytes
        if artifact_version_id is None:
            artifact_version_id = mv.status.artifact.version_id
    limit = model_dir_limit(artifact_size)
    model_dir: Body = {"sizeLimit": limit} if limit else {}
    pod_spec: Body = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNTIME_UID,
            "runAsGroup": RUNTIME_UID,
            "fsGroup": RUNTIME_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            _container(model, mv, defaults, pinned_default, artifact_version_id, mirror)
        ],
        "volumes": [
            {"name": "model", "emptyDir": model_dir},
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        ],
    }
    if serving.node_selector:
        pod_spec["nodeSelector"] = dict(serving.node_selector)
    if serving.tolerations:
        pod_spec["tolerations"] = list(serving.tolerations)
    if serving.service_account_name:
        pod_spec["serviceAccountName"] = serving.service_account_name
    count = replicas if replicas is not None else auto.min_replicas if auto else serving.replicas
    spec: Body = {
        "replicas": count,
        "progressDeadlineSeconds": serving.progress_deadline_seconds,
        "revisionHistoryLimit": 2,
        "selector": {"matchLabels": selector},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": mv.metadata.namespace,
            "labels": labels,
            "annotations": {naming.SPEC_HASH: spec_hash(_hashed(spec, auto))},
            "ownerReferences": [owner_reference("Model", model.metadata.name, model.metadata.uid)],
        },
        "spec": spec,
    }


def deployment_hash(model: Model, spec: Body) -> str:
    """The spec hash a serving Deployment with this spec carries (see `build_deployment`)."""
    return spec_hash(_hashed(spec, model.spec.serving.autoscaling))


def _hashed(spec: Body, auto: Autoscaling | None) -> Body:
    """What the spec hash covers: everything the planner decides (not the autoscaler's count)."""
    if auto is None:
        return spec
    return {k: v for k, v in spec.items() if k != "replicas"}


def start_replicas(auto: Autoscaling, live: int | None) -> int:
    """The replica count a Deployment is written with under autoscaling: its own live count, or
    for a new version the serving one's (a promotion never drops capacity), within min..max."""
    n = auto.min_replicas if live is None else live
    return max(auto.min_replicas, min(auto.max_replicas, n))


def build_autoscaler(model: Model, version: int) -> Body:
    """The HorizontalPodAutoscaler `<model>` (autoscaling/v2) on the serving version's Deployment.

    One per Model, owned by the Model: a promotion moves its scaleTargetRef to the new Deployment
    (which starts at the current count), so it is never left behind on a deleted Deployment."""
    auto = model.spec.serving.autoscaling
    assert auto is not None
    spec: Body = {
        "scaleTargetRef": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": naming.deployment_name(model.metadata.name, version),
        },
        "minReplicas": auto.min_replicas,
        "maxReplicas": auto.max_replicas,
        "metrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {
                        "type": "Utilization",
                        "averageUtilization": auto.target_cpu_utilization,
                    },
                },
            },
            *_in_flight_metric(auto),
        ],
        "behavior": {
            "scaleDown": {"stabilizationWindowSeconds": auto.scale_down_stabilization_seconds}
        },
    }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": naming.autoscaler_name(model.metadata.name),
            "namespace": model.metadata.namespace,
            "labels": naming.child_labels(model.metadata.name),
            "annotations": {naming.SPEC_HASH: spec_hash(spec)},
            "ownerReferences": [owner_reference("Model", model.metadata.name, model.metadata.uid)],
        },
        "spec": spec,
    }


def _in_flight_metric(auto: Autoscaling) -> list[Body]:
    """`targetInFlight` as a Pods metric, read from the custom metrics API that
    `modelreg.metricsapi` serves: the HorizontalPodAutoscaler takes the larger of its and the
    CPU target's recommendations."""
    if auto.target_in_flight is None:
        return []
    return [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": custom_metrics.IN_FLIGHT},
                "target": {
                    "type": "AverageValue",
                    "averageValue": custom_metrics.quantity(auto.target_in_flight),
                },
            },
        }
    ]


def build_shadow_service(model: Model) -> Body:
    """The Service `<model>-shadow` in front of the shadow's pods, which the serving pods mirror
    to; it stays while spec.shadow does, whatever the version, so its ClusterIP does too."""
    return build_service(model, None, shadow=True)


def build_service(model: Model, version: int | None, *, shadow: bool = False) -> Body:
    """The stable Service `<model>`, selecting the pods of the serving version; owned by the Model.

    `version` None: every serving pod of the Model, the stable version's and a canary's (see
    `modelreg.lifecycle.canary`)."""
    name = naming.service_name(model.metadata.name)
    labels = naming.child_labels(model.metadata.name)
    if shadow:
        name = naming.shadow_name(model.metadata.name)
        labels[naming.ROLE_LABEL] = naming.SHADOW_ROLE
        selector = naming.shadow_selector(model.metadata.name)
    elif version is not None:
        selector = naming.selector_labels(model.metadata.name, version)
    else:
        selector = {naming.MODEL_LABEL: naming.shorten(model.metadata.name)}
    spec: Body = {
        "type": "ClusterIP",
        "selector": selector,
        "ports": [
            {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
        ],
    }
    if grpc_port(model):
        # The same port number as the pods': clients of KServe and Triton expect 9000/8001-like
        # dedicated gRPC ports, and appProtocol lets meshes and ingresses speak HTTP/2 to it.
        spec["ports"].append(
            {
                "name": "grpc",
                "port": grpc_port(model),
                "targetPort": "grpc",
                "protocol": "TCP",
                "appProtocol": "grpc",
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": model.metadata.namespace,
            "labels": labels,
            "annotations": {naming.SPEC_HASH: spec_hash(spec)},
            "ownerReferences": [owner_reference("Model", model.metadata.name, model.metadata.uid)],
        },
        "spec": spec,
    }
