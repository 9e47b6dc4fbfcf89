"""The schema of modelreg's custom resources: Model and ModelVersion, group modelreg.dev.

These pydantic models are THE schema. `modelreg.api.crd` renders the CustomResourceDefinitions in
`crds/` from them (a unit test and `make check` fail on drift); the controller parses every object
it receives through them; the SDK builds objects with them. Field names follow the Kubernetes
camelCase convention on the wire and snake_case in Python.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.alias_generators import to_camel

GROUP = "modelreg.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Bounds that keep every object small enough for etcd and every CEL rule within its cost budget.
NAME_MAX = 63
SHORT_STR = 253
LONG_STR = 4096
URI_MAX = 1024
MAP_MAX = 64
LIST_MAX = 32
HISTORY_MAX = 20

# Who asked for a stage: the user's optional reason, and the stamp the chart's stage-audit
# MutatingAdmissionPolicy writes on every change of spec.stage (the API server overwrites any value
# a client sends, so the stamp names the requesting user as the API server authenticated them).
REASON_ANNOTATION = f"{GROUP}/reason"
STAGE_CHANGED_BY = f"{GROUP}/stage-changed-by"
STAGE_CHANGED_AT = f"{GROUP}/stage-changed-at"
STAGE_CHANGED_TO = f"{GROUP}/stage-changed-to"
STAGE_CHANGED_REASON = f"{GROUP}/stage-changed-reason"
REASON_MAX = 1024

DNSName = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=NAME_MAX, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    ),
]
ShortStr = Annotated[str, StringConstraints(max_length=SHORT_STR)]
LongStr = Annotated[str, StringConstraints(max_length=LONG_STR)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=SHORT_STR)]
AliasName = Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX)]
# An alias's name, and the names a `models:/` URI already gives a meaning (checked by the CRD's
# CEL rules and by modelreg.lifecycle.aliases).
ALIAS_PATTERN = "^[A-Za-z][A-Za-z0-9_-]{0,62}$"
RESERVED_ALIAS_PATTERN = "^(latest|[vV][0-9]+)$"


class Stage(enum.StrEnum):
    """A lifecycle stage, as in MLflow's model registry."""

    NONE = "None"
    STAGING = "Staging"
    PRODUCTION = "Production"
    ARCHIVED = "Archived"


class Phase(enum.StrEnum):
    """Where a ModelVersion is in its life; `status.phase`."""

    PENDING = "Pending"
    VERIFYING = "Verifying"
    BLOCKED = "Blocked"
    READY = "Ready"
    ROLLING = "Rolling"
    SERVING = "Serving"
    SUPERSEDED = "Superseded"
    FAILED = "Failed"
    ARCHIVED = "Archived"


class ArtifactFormat(enum.StrEnum):
    ONNX = "onnx"
    SKLEARN = "sklearn"
    SKOPS = "skops"
    XGBOOST = "xgboost"
    LIGHTGBM = "lightgbm"
    CUSTOM = "custom"


class Runtime(enum.StrEnum):
    BUILTIN = "builtin"
    MLSERVER = "mlserver"
    CUSTOM = "custom"


class _Wire(BaseModel):
    """Base of every schema object: camelCase on the wire, unknown fields kept out."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", use_enum_values=False
    )

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, no unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# ----------------------------------------------------------------------------------------------
# Model


class SecretRef(_Wire):
    name: DNSName = Field(description="Name of a Secret in the Model's namespace.")
    namespace: Annotated[str, StringConstraints(max_length=NAME_MAX)] | None = Field(
        default=None,
        description="Not allowed: the Secret must live in the Model's own namespace.",
    )


class Storage(_Wire):
    uri: Annotated[str, StringConstraints(min_length=6, max_length=URI_MAX)] = Field(
        description="s3://bucket/prefix/ under which every version's artifact must live."
    )
    endpoint: Annotated[str, StringConstraints(max_length=URI_MAX)] | None = Field(
        default=None, description="Endpoint URL of an S3-compatible store; AWS when empty."
    )
    region: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="Region of the bucket."
    )
    secret_ref: SecretRef | None = Field(
        default=None,
        description="Secret in the same namespace with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.",
    )


class Gate(_Wire):
    metric: Key = Field(description="Name of a metric in the version's spec.metrics.")
    min: float | None = Field(default=None, description="The metric must be >= min.")
    max: float | None = Field(default=None, description="The metric must be <= max.")


class Severity(enum.StrEnum):
    """A finding's severity: the advisory's own rating, or its CVSS score's; UNKNOWN when the
    advisory gives neither (a gate counts it as CRITICAL: not known to be less)."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"
    UNKNOWN = "UNKNOWN"


ADVISORY_ID = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class AuditGate(_Wire):
    max_severity: Severity | None = Field(
        default=None,
        description="Block a version with a finding above this severity (UNKNOWN counts as "
        "CRITICAL).",
    )
    block_vulnerable: bool = Field(
        default=False, description="Block a version with any finding at all."
    )
    allow: list[ADVISORY_ID] = Field(
        default_factory=list,
        max_length=MAP_MAX,
        description="Advisory ids (or aliases such as CVE ids) accepted as known risks: they are "
        "still reported, never gate.",
    )


class Promotion(_Wire):
    gates: list[Gate] = Field(
        default_factory=list,
        max_length=LIST_MAX,
        description="Every gate must pass for a version to enter Staging or Production.",
    )
    audit: AuditGate | None = Field(
        default=None,
        description="The vulnerability gate on spec.environment.packages: a version it blocks "
        "does not enter Staging or Production. Needs an advisory database (spec.advisories, or "
        "the operator's advisoryDatabase setting); a version that cannot be audited is blocked.",
    )
    shadow: ShadowGate | None = Field(
        default=None,
        description="The shadow gate: a version enters Production only when it ran as the "
        "Model's shadow (spec.shadow) and agreed with the serving version often enough. Not "
        "checked when no version serves (there is nothing to compare with).",
    )


class ShadowGate(_Wire):
    min_agreement: float = Field(
        ge=0,
        le=1,
        description="Least share of the compared requests on which the version's answers agreed "
        "with the serving version's (its status.shadow.agreement), for it to enter Production.",
    )
    min_requests: int = Field(
        default=100,
        ge=1,
        le=100_000_000,
        description="Least number of live requests compared: fewer is not evidence yet.",
    )


class Strategy(enum.StrEnum):
    """How a new production version takes over from the serving one."""

    BLUE_GREEN = "BlueGreen"
    CANARY = "Canary"


class Analysis(_Wire):
    max_error_rate: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Most share of the canary's inference requests answered with a server error "
        "(HTTP 5xx; gRPC INTERNAL, UNKNOWN, UNAVAILABLE, DATA_LOSS, DEADLINE_EXCEEDED).",
    )
    max_p99_latency_ms: float | None = Field(
        default=None,
        ge=0.001,
        le=600_000,
        description="Most p99 latency of the canary's inference requests, in milliseconds, as the "
        "runtime measures it (modelreg_runtime_request_duration_seconds).",
    )
    min_requests: int = Field(
        default=20,
        ge=1,
        le=1_000_000,
        description="A step is judged once the canary answered this many requests in it, and "
        "ends only then: a canary that gets no traffic does not advance.",
    )


class Rollout(_Wire):
    strategy: Strategy = Field(
        default=Strategy.BLUE_GREEN,
        description="BlueGreen: the Service switches when the new Deployment is Available. "
        "Canary: the new version takes a growing share of traffic, step by step.",
    )
    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        default_factory=lambda: [25, 50, 100],
        min_length=1,
        max_length=10,
        description="Canary: the traffic percentages, increasing, ending at 100. The share is "
        "that of the canary's ready pods among all the Service's: see docs/concepts.md.",
    )
    step_seconds: int = Field(
        default=60, ge=1, le=86_400, description="Canary: how long each step lasts."
    )
    analysis: Analysis | None = Field(
        default=None,
        description="Canary: the limits each step is judged on, from the canary pods' /metrics "
        "(builtin runtime only). A breach rolls back: the version is Failed with the figures.",
    )


class Shadow(_Wire):
    version: int = Field(
        ge=1,
        le=1_000_000,
        description="The version that receives a copy of live requests. It must be verified and "
        "must not be the serving version.",
    )
    sample_percent: float = Field(
        default=10,
        ge=0.01,
        le=100,
        description="The share of live inference requests mirrored to it, in percent.",
    )
    tolerance: float = Field(
        default=1e-6,
        ge=0,
        le=1e6,
        description="Two floating-point outputs agree when no element differs by more than this "
        "(max absolute difference); integer, boolean and string outputs must be equal.",
    )
    replicas: int = Field(default=1, ge=1, le=20, description="The shadow Deployment's pods.")
    max_in_flight: int = Field(
        default=16,
        ge=1,
        le=1024,
        description="Mirrored requests in flight per serving pod; a sampled request beyond it is "
        "dropped (counted), never queued.",
    )
    timeout_ms: int = Field(
        default=2000, ge=1, le=60_000, description="How long a mirrored request may take."
    )


class Retention(_Wire):
    keep_archived: int = Field(
        ge=0,
        le=1000,
        description="Keep the newest N versions that are Archived or Superseded; older ones are "
        "deleted (never one that serves, holds Staging, or that an alias names).",
    )
    delete_artifacts: bool = Field(
        default=False,
        description="Also delete a deleted version's artifact from the store, unless a remaining "
        "version references the same object. Off: artifacts stay (see `modelreg gc`).",
    )


class NotificationEvent(enum.StrEnum):
    CREATED = "created"
    VERIFIED = "verified"
    BLOCKED = "blocked"
    PROMOTED = "promoted"
    SERVING = "serving"
    FAILED = "failed"
    ARCHIVED = "archived"


class HmacSecretRef(_Wire):
    name: DNSName = Field(description="A Secret in the Model's namespace.")
    key: Annotated[str, StringConstraints(min_length=1, max_length=SHORT_STR)] = Field(
        default="hmac-key", description="The key of the Secret holding the HMAC key."
    )


class Notification(_Wire):
    url: Annotated[str, StringConstraints(min_length=8, max_length=URI_MAX)] = Field(
        description="Receives CloudEvents 1.0 in binary HTTP mode: https://, or http:// to a host "
        "the operator's notificationAllowedHosts lists."
    )
    events: list[NotificationEvent] = Field(
        default_factory=list,
        max_length=8,
        description="The transitions sent (created, verified, blocked, promoted, serving, "
        "failed, archived); all when empty.",
    )
    secret_ref: HmacSecretRef | None = Field(
        default=None,
        description="HMAC-SHA256 key: each request carries X-Modelreg-Signature: sha256=<hex> "
        "over the body, the ce-id and the ce-time.",
    )


class Advisories(_Wire):
    uri: Annotated[str, StringConstraints(min_length=1, max_length=URI_MAX)] = Field(
        description="s3://bucket/key of an OSV-format advisory database in the Model's object "
        "store (its endpoint and credentials): a .zip of OSV JSON records as osv.dev publishes "
        "them, a .json record or array, or .jsonl. Read by the operator, never from the internet."
    )


# Names a Model's serving.env may not set, compared case-insensitively (the model server reads
# MODELREG_* without regard to case). MODELREG_* configures the model server (which artifact, its
# digest, whether pickle may load); the AWS names choose the serving pod's credentials and where
# they are sent, which is spec.storage's alone. The CRD rejects them (modelreg.api.crd) and the
# Deployment builder drops them anyway (modelreg.lifecycle.builders).
RESERVED_ENV_PREFIXES = ("MODELREG_", "AWS_ENDPOINT_URL")
RESERVED_ENV_NAMES = (
    # static credentials and session tokens
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    # other credential sources: profiles and their files
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    # web identity (IRSA) and assumed roles
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    # container credential endpoints (ECS, EKS Pod Identity) and instance metadata
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
)


def is_reserved_env(name: str) -> bool:
    """Whether a serving env name is the operator's to set (see RESERVED_ENV_NAMES)."""
    upper = name.upper()
    return upper.startswith(RESERVED_ENV_PREFIXES) or upper in RESERVED_ENV_NAMES


class EnvVar(_Wire):
    name: Annotated[str, StringConstraints(min_length=1, max_length=SHORT_STR)] = Field(
        description="Not MODELREG_* nor an AWS credential, profile or endpoint name: reserved."
    )
    value: LongStr | None = None
    value_from: dict[str, Any] | None = Field(
        default=None, description="As in a Pod's env[].valueFrom."
    )

    @property
    def reserved(self) -> bool:
        return is_reserved_env(self.name)


class Autoscaling(_Wire):
    min_replicas: int = Field(default=1, ge=1, le=100, description="Fewest replicas.")
    max_replicas: int = Field(ge=1, le=100, description="Most replicas.")
    target_cpu_utilization: int = Field(
        default=80,
        ge=1,
        le=1000,
        description="Average CPU use of the serving pods, in percent of their CPU request "
        "(spec.serving.resources.requests.cpu, which autoscaling requires).",
    )
    target_in_flight: float | None = Field(
        default=None,
        gt=0,
        le=10000,
        description="Average inference requests in flight per serving pod (queued or running, "
        "over the last sampling window) to scale on, as well as CPU. Read through the custom "
        "metrics API (custom.metrics.k8s.io, metric modelreg_requests_in_flight) that the "
        "chart's metricsApi serves; unset: CPU only.",
    )
    scale_down_stabilization_seconds: int = Field(
        default=300,
        ge=0,
        le=3600,
        description="How long a lower recommendation must last before replicas are removed.",
    )


class Batching(_Wire):
    max_batch_size: int = Field(
        default=32,
        ge=1,
        le=65536,
        description="Most rows in one prediction: concurrent requests are batched up to this; "
        "1 turns batching off.",
    )
    max_wait_ms: float = Field(
        default=1.0,
        ge=0,
        le=1000,
        description="Longest a batch waits for more requests after its first one; a lone "
        "request never waits.",
    )


class Serving(_Wire):
    runtime: Runtime = Field(default=Runtime.BUILTIN, description="builtin | mlserver | custom.")
    image: Annotated[str, StringConstraints(max_length=512)] = Field(
        default="", description="Serving image; the operator's default when empty."
    )
    command: list[LongStr] = Field(default_factory=list, max_length=LIST_MAX)
    args: list[LongStr] = Field(default_factory=list, max_length=LIST_MAX)
    replicas: int = Field(default=1, ge=0, le=100)
    port: int = Field(default=8080, ge=1024, le=65535)
    grpc_port: int = Field(
        default=9000,
        ge=0,
        le=65535,
        description="Port of the builtin runtime's Open Inference Protocol v2 over gRPC, also "
        "exposed by the Service (port name grpc); 0 turns gRPC off. Other runtimes ignore it.",
    )
    resources: dict[str, Any] = Field(
        default_factory=dict, description="As in a container's resources."
    )
    env: list[EnvVar] = Field(default_factory=list, max_length=LIST_MAX)
    node_selector: dict[Key, ShortStr] = Field(default_factory=dict, max_length=MAP_MAX)
    tolerations: list[dict[str, Any]] = Field(default_factory=list, max_length=LIST_MAX)
    service_account_name: DNSName | None = None
    progress_deadline_seconds: int = Field(default=300, ge=5, le=3600)
    batching: Batching | None = Field(
        default=None,
        description="Adaptive batching in the builtin runtime. Unset: the runtime's default for "
        "the artifact's format (32 rows for sklearn, skops, xgboost and LightGBM; off for ONNX, "
        "whose small graphs answer faster on the event loop); see docs/operator.md.",
    )
    autoscaling: Autoscaling | None = Field(
        default=None,
        description="One HorizontalPodAutoscaler, named after the Model, that follows the serving "
        "Deployment across promotions; replicas is then ignored and a new version starts at the "
        "serving one's replica count.",
    )


class ModelSpec(_Wire):
    description: LongStr = ""
    owner: ShortStr = ""
    tags: dict[Key, ShortStr] = Field(default_factory=dict, max_length=MAP_MAX)
    aliases: dict[AliasName, Annotated[int, Field(ge=1, le=1_000_000)]] = Field(
        default_factory=dict,
        max_length=MAP_MAX,
        description=(
            "Alias name -> version number, like MLflow's @champion. An alias resolves only to a "
            "version that exists and is neither Archived nor Blocked; status.aliases lists the "
            "ones that do."
        ),
    )
    storage: Storage | None = None
    promotion: Promotion = Field(default_factory=Promotion)
    serving: Serving = Field(default_factory=Serving)
    advisories: Advisories | None = Field(
        default=None,
        description="Where the operator reads the advisory database that versions' packages are "
        "audited against (overrides the operator's advisoryDatabase setting).",
    )
    rollout: Rollout = Field(default_factory=Rollout)
    shadow: Shadow | None = Field(
        default=None,
        description="Shadow comparison: a version that runs beside the serving one and gets a "
        "sample of its live requests (its answers are compared, never returned). The result is "
        "the version's status.shadow; spec.promotion.shadow can gate on it.",
    )
    retention: Retention | None = None
    notifications: list[Notification] = Field(default_factory=list, max_length=8)


class Condition(_Wire):
    type: Annotated[str, StringConstraints(max_length=64)]
    status: Literal["True", "False", "Unknown"]
    reason: Annotated[str, StringConstraints(max_length=128)] = ""
    message: Annotated[str, StringConstraints(max_length=LONG_STR)] = ""
    observed_generation: int | None = None
    last_transition_time: Annotated[str, StringConstraints(max_length=64)] | None = None


class DeliveryStatus(_Wire):
    url: Annotated[str, StringConstraints(max_length=URI_MAX)]
    delivered: int = Field(default=0, description="Events this operator delivered.")
    failed: int = Field(default=0, description="Events dropped after their last retry.")
    pending: int = Field(default=0, description="Events waiting (bounded queue).")
    last_event: Annotated[str, StringConstraints(max_length=256)] | None = None
    last_success: Annotated[str, StringConstraints(max_length=64)] | None = None
    last_error: Annotated[str, StringConstraints(max_length=1024)] | None = None


class CanaryStatus(_Wire):
    version: int = Field(description="The version being rolled out as a canary.")
    stable: int = Field(description="The version that served before it and serves the rest.")
    step: int = Field(description="The current step, from 1.")
    steps: int = Field(description="How many steps there are.")
    weight: int = Field(description="The step's percentage (spec.rollout.steps).")
    canary_replicas: int
    stable_replicas: int
    share: float = Field(description="The canary's share of ready pods behind the Service now.")
    step_started_at: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="When the step's pods were all ready and its clock started."
    )
    requests: int | None = Field(default=None, description="Canary requests in this step.")
    errors: int | None = None
    error_rate: float | None = None
    p99_latency_ms: float | None = None
    message: Annotated[str, StringConstraints(max_length=LONG_STR)] = ""


class ShadowStatus(_Wire):
    serving_version: int = Field(description="The version whose answers these were compared with.")
    since: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="When mirroring to this version began."
    )
    sample_percent: float | None = None
    requests: int = Field(default=0, description="Mirrored requests answered or failed.")
    compared: int = Field(default=0, description="Of those, answers compared.")
    agreed: int = Field(default=0, description="Of those, answers that agreed.")
    errors: int = Field(
        default=0, description="Mirrored requests the shadow failed (error, timeout, unreachable)."
    )
    dropped: int = Field(
        default=0, description="Sampled requests not mirrored: maxInFlight were in flight."
    )
    agreement: float | None = Field(default=None, description="agreed / compared.")
    p99_latency_ms: float | None = Field(
        default=None, description="p99 of the mirrored round trip, as the serving pods measure it."
    )
    updated_at: Annotated[str, StringConstraints(max_length=64)] | None = None
    message: Annotated[str, StringConstraints(max_length=LONG_STR)] = ""


class MirrorStatus(_Wire):
    version: int = Field(description="The shadow version the serving pods mirror to.")
    serving_version: int = Field(description="The serving version whose pods mirror.")
    since: Annotated[str, StringConstraints(max_length=64)] | None = None


class ModelStatus(_Wire):
    observed_generation: int | None = None
    production_version: int | None = None
    latest_version: int | None = None
    endpoint: Annotated[str, StringConstraints(max_length=URI_MAX)] | None = None
    aliases: dict[AliasName, int] = Field(
        default_factory=dict,
        max_length=MAP_MAX,
        description="The aliases of spec.aliases that resolve (see the AliasesResolved condition).",
    )
    withdraw_at: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None,
        description=(
            "No version asks for Production: the serving one keeps serving until this time "
            "(the operator's withdrawGraceSeconds after the last one stopped asking), then the "
            "Service and its Deployment are removed."
        ),
    )
    notifications: list[DeliveryStatus] = Field(default_factory=list, max_length=8)
    shadow: MirrorStatus | None = Field(
        default=None,
        description="spec.shadow: what the serving pods mirror to now (the figures are in the "
        "shadow version's status.shadow).",
    )
    canary: CanaryStatus | None = Field(
        default=None, description="The canary rollout under way (spec.rollout.strategy Canary)."
    )
    conditions: list[Condition] = Field(default_factory=list, max_length=LIST_MAX)


# ----------------------------------------------------------------------------------------------
# ModelVersion


class Artifact(_Wire):
    uri: Annotated[str, StringConstraints(min_length=6, max_length=URI_MAX)] = Field(
        description="s3://bucket/key of the artifact, under the Model's storage prefix."
    )
    sha256: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="Hex sha256 of the artifact's bytes."
    )
    format: ArtifactFormat = Field(default=ArtifactFormat.ONNX)


ENV_PACKAGES_MAX = 512
PACKAGE_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?==[A-Za-z0-9][A-Za-z0-9.+!_-]*$"
PYTHON_PATTERN = r"^[0-9]+\.[0-9]+(\.[0-9]+)?([a-z]+[0-9]*)?$"
IMAGE_DIGEST_PATTERN = r"^[^\s@]+@sha256:[0-9a-f]{64}$"


class Environment(_Wire):
    python: Annotated[str, StringConstraints(max_length=32, pattern=PYTHON_PATTERN)] | None = Field(
        default=None, description="The Python version the model was trained with (3.11.7)."
    )
    packages: list[
        Annotated[str, StringConstraints(min_length=3, max_length=128, pattern=PACKAGE_PATTERN)]
    ] = Field(
        default_factory=list,
        max_length=ENV_PACKAGES_MAX,
        description="Pinned dependencies, `name==version` (PyPI names), audited against the "
        "advisory database.",
    )
    image: (
        Annotated[str, StringConstraints(max_length=512, pattern=IMAGE_DIGEST_PATTERN)] | None
    ) = Field(default=None, description="The training image, by digest (name@sha256:...).")


class Datatype(enum.StrEnum):
    """The Open Inference Protocol v2 tensor datatypes."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"


class TensorSpec(_Wire):
    name: Annotated[str, StringConstraints(min_length=1, max_length=SHORT_STR)]
    datatype: Datatype
    shape: list[Annotated[int, Field(ge=-1)]] = Field(
        default_factory=list, max_length=16, description="-1 for a dimension of any size."
    )


class Signature(_Wire):
    inputs: list[TensorSpec] = Field(default_factory=list, max_length=LIST_MAX)
    outputs: list[TensorSpec] = Field(default_factory=list, max_length=LIST_MAX)


class ModelVersionSpec(_Wire):
    model: DNSName = Field(description="The Model in the same namespace.")
    version: int = Field(ge=1, le=1_000_000, description="Version number, unique per Model.")
    stage: Stage = Field(default=Stage.NONE, description="The desired stage.")
    artifact: Artifact
    framework: Annotated[str, StringConstraints(max_length=64)] = ""
    description: LongStr = ""
    metrics: dict[Key, float] = Field(default_factory=dict, max_length=MAP_MAX)
    params: dict[Key, LongStr] = Field(default_factory=dict, max_length=MAP_MAX)
    lineage: dict[Key, LongStr] = Field(default_factory=dict, max_length=MAP_MAX)
    environment: Environment | None = Field(
        default=None,
        description="Python, packages and image the model was trained with; immutable once set.",
    )
    signature: Signature | None = Field(
        default=None,
        description="The model's inputs and outputs (v2 name, datatype, shape), captured at "
        "register from ONNX or from MLflow's MLmodel; the runtime's metadata endpoint reports it.",
    )


class Finding(_Wire):
    id: ADVISORY_ID
    aliases: list[ADVISORY_ID] = Field(default_factory=list, max_length=8)
    package: Annotated[str, StringConstraints(max_length=128)]
    version: Annotated[str, StringConstraints(max_length=128)]
    affected: Annotated[str, StringConstraints(max_length=512)] = Field(
        default="", description="The affected range, e.g. >=5.1, <5.4."
    )
    fixed: Annotated[str, StringConstraints(max_length=128)] | None = Field(
        default=None, description="The first version that fixes it, when the advisory says."
    )
    severity: Severity = Severity.UNKNOWN
    allowed: bool = Field(default=False, description="Accepted by the gate's allow list.")
    summary: Annotated[str, StringConstraints(max_length=512)] = ""


FINDINGS_MAX = 64


class AuditStatus(_Wire):
    database: Annotated[str, StringConstraints(max_length=URI_MAX)] = Field(
        description="The advisory database audited against (URI or operator path)."
    )
    database_sha256: Annotated[str, StringConstraints(max_length=64)] | None = None
    advisories: int | None = Field(default=None, description="Records the database holds.")
    audited_at: Annotated[str, StringConstraints(max_length=64)] | None = None
    packages: int = Field(default=0, description="Packages audited.")
    findings: list[Finding] = Field(default_factory=list, max_length=FINDINGS_MAX)
    findings_total: int = Field(default=0, description="All findings (the list keeps the worst).")


class ArtifactStatus(_Wire):
    verified: bool = False
    uri: Annotated[str, StringConstraints(max_length=URI_MAX)] | None = None
    sha256: Annotated[str, StringConstraints(max_length=64)] | None = None
    size_bytes: int | None = None
    etag: Annotated[str, StringConstraints(max_length=256)] | None = None
    version_id: Annotated[str, StringConstraints(max_length=1024)] | None = Field(
        default=None,
        description="S3 VersionId of the verified object (versioned buckets); the server "
        "fetches exactly this version.",
    )
    verified_at: Annotated[str, StringConstraints(max_length=64)] | None = None
    seal: Annotated[str, StringConstraints(max_length=128)] | None = Field(
        default=None,
        description="The operator's HMAC over this verdict; a verdict without a matching seal "
        "is never trusted.",
    )
    message: Annotated[str, StringConstraints(max_length=LONG_STR)] | None = None


class GateResult(_Wire):
    metric: Key
    min: float | None = None
    max: float | None = None
    actual: float | None = None
    passed: bool
    message: Annotated[str, StringConstraints(max_length=LONG_STR)] = ""


class ServingStatus(_Wire):
    deployment: Annotated[str, StringConstraints(max_length=NAME_MAX)] | None = None
    service: Annotated[str, StringConstraints(max_length=NAME_MAX)] | None = None
    ready_replicas: int | None = None
    url: Annotated[str, StringConstraints(max_length=URI_MAX)] | None = None


class PinnedImage(_Wire):
    runtime: Runtime
    image: Annotated[str, StringConstraints(max_length=512)]


class HistoryEntry(_Wire):
    stage: Stage = Field(description="The stage the version held after this change.")
    phase: Phase | None = None
    at: Annotated[str, StringConstraints(max_length=64)]
    by: Annotated[str, StringConstraints(max_length=SHORT_STR)] | None = Field(
        default=None,
        description="Who asked for `requested` (the API server's user name, stamped by the "
        "chart's stage-audit policy); absent for the operator's own transitions.",
    )
    requested: Stage | None = Field(
        default=None, description="The stage asked for, on the entry that records a request."
    )
    reason: Annotated[str, StringConstraints(max_length=REASON_MAX)] = Field(
        default="", description="Why, in the requesting user's words (modelreg.dev/reason)."
    )
    message: Annotated[str, StringConstraints(max_length=LONG_STR)] = Field(
        default="", description="What the operator saw (the Ready condition's message)."
    )

    @model_validator(mode="before")
    @classmethod
    def _older_entries(cls, data: Any) -> Any:
        # Entries written before `message` existed kept the operator's message in `reason`.
        old = isinstance(data, dict) and not data.get("by") and not data.get("message")
        if old and data.get("reason"):
            data = {**data, "message": data["reason"], "reason": ""}
        return data


class ModelVersionStatus(_Wire):
    observed_generation: int | None = None
    stage: Stage | None = None
    phase: Phase | None = None
    artifact: ArtifactStatus | None = None
    gates: list[GateResult] = Field(default_factory=list, max_length=LIST_MAX)
    serving: ServingStatus | None = None
    failed_generation: int | None = Field(
        default=None,
        description="Generation whose rollout failed; not retried until the spec changes.",
    )
    failed_spec_hash: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None,
        description="Hash of the serving spec whose rollout failed: a fixed Model retries it.",
    )
    default_image: PinnedImage | None = Field(
        default=None,
        description="The operator's default image this version was rolled out with; kept until "
        "it leaves production, so an operator upgrade does not re-roll it.",
    )
    history: list[HistoryEntry] = Field(default_factory=list, max_length=HISTORY_MAX)
    shadow: ShadowStatus | None = Field(
        default=None,
        description="The shadow comparison of this version with the serving one (spec.shadow "
        "of its Model); kept after the shadow ends, for spec.promotion.shadow.",
    )
    audit: AuditStatus | None = Field(
        default=None, description="Known vulnerabilities of spec.environment.packages."
    )
    conditions: list[Condition] = Field(default_factory=list, max_length=LIST_MAX)


# ----------------------------------------------------------------------------------------------
# Whole objects, as the controller and SDK see them


class ObjectMeta(_Wire):
    name: str
    namespace: str = "default"
    generation: int = 0
    uid: str = ""
    resource_version: str = ""
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Model(_Wire):
    api_version: Literal["modelreg.dev/v1alpha1"] = "modelreg.dev/v1alpha1"
    kind: Literal["Model"] = "Model"
    metadata: ObjectMeta
    spec: ModelSpec = Field(default_factory=ModelSpec)
    status: ModelStatus = Field(default_factory=ModelStatus)


class ModelVersion(_Wire):
    api_version: Literal["modelreg.dev/v1alpha1"] = "modelreg.dev/v1alpha1"
    kind: Literal["ModelVersion"] = "ModelVersion"
    metadata: ObjectMeta
    spec: ModelVersionSpec
    status: ModelVersionStatus = Field(default_factory=ModelVersionStatus)


def version_name(model: str, version: int) -> str:
    """The required name of a ModelVersion: `<model>-v<version>` (a CEL rule enforces it)."""
    return f"{model}-v{version}"
