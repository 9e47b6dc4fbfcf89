"""The operator's settings: one typed object, read once at start-up from MODELREG_* variables.

`modelreg.controller` builds it in `main()` (command-line flags override the environment) and passes
it down; domain code never reads `os.environ`. The model server has its own settings object in
`modelreg.runtime`, because it runs in a different process with a different environment.
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    """Every knob of the operator. Environment: MODELREG_<FIELD>, e.g. MODELREG_NAMESPACES."""

    model_config = SettingsConfigDict(env_prefix="MODELREG_", extra="ignore")

    namespaces: list[str] = Field(
        default_factory=list,
        description="Namespaces to watch; all namespaces when empty (JSON list in the environment).",
    )
    serving_image: str = Field(
        default="ghcr.io/modelreg/modelreg:0.1.0",
        description="Image of the builtin runtime used when a Model's serving.image is empty.",
    )
    mlserver_image: str = Field(
        default="docker.io/seldonio/mlserver:1.7.1",
        description="Image used for serving.runtime: mlserver.",
    )
    cluster_domain: str = Field(
        default="svc", description="Suffix of in-cluster Service hostnames in status.endpoint."
    )
    verify_chunk_bytes: int = Field(
        default=8 * 1024 * 1024, ge=64 * 1024, description="Read size when hashing artifacts."
    )
    verify_concurrency: int = Field(
        default=4, ge=1, le=64, description="Artifacts hashed at the same time."
    )
    verify_hold_seconds: float = Field(
        default=2.0,
        ge=0,
        le=30,
        description="A new version's first status waits this long for its check's verdict "
        "(Verifying is written only if the check takes longer); 0 writes Verifying at once.",
    )
    store_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Connect/read timeout of each object-store call."
    )
    retry_initial_seconds: float = Field(
        default=2.0, gt=0, description="First retry delay after a transient failure."
    )
    retry_max_seconds: float = Field(
        default=30.0, gt=0, description="Longest retry delay (exponential backoff is capped here)."
    )
    api_qps_burst: int = Field(
        default=32, ge=1, description="Kubernetes API calls in flight at once."
    )
    history_limit: int = Field(
        default=20, ge=1, le=20, description="Stage-history entries kept in status."
    )
    metrics_port: int = Field(
        default=9464, ge=0, le=65535, description="Prometheus metrics port; 0 disables it."
    )
    metrics_host: str = Field(default="127.0.0.1", description="Address the metrics server binds.")
    liveness_endpoint: str = Field(
        default="http://127.0.0.1:8081/healthz",
        description="Kopf's liveness probe endpoint; empty disables it.",
    )
    runtime_allow_pickle: bool = Field(
        default=False,
        description="Let the builtin runtime load format 'sklearn' (pickle/joblib runs code).",
    )
    advisory_database: str = Field(
        default="",
        description=(
            "Path of an OSV-format advisory database the operator audits versions' "
            "spec.environment.packages against, when a Model names none in spec.advisories: a "
            ".zip of OSV records (osv.dev's PyPI/all.zip), a .json or .jsonl file, or a directory "
            "of .json records (a mounted volume). Never fetched from the internet."
        ),
    )
    advisory_refresh_seconds: float = Field(
        default=3600.0,
        ge=10,
        description="How often a loaded advisory database is looked at again (S3: by ETag).",
    )
    advisory_max_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=1024,
        description="Largest advisory database read (compressed size).",
    )
    withdraw_grace_seconds: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description=(
            "When no version asks for Production any more, the serving one keeps serving this "
            "long before its Service and Deployment are removed: a change that archives v2 and "
            "promotes v3 (or prunes v1.yaml and adds v2.yaml) is written object by object, and "
            "the moment between two writes must not take production down. 0: at once."
        ),
    )
    allow_ambient_credentials: bool = Field(
        default=False,
        description=(
            "Verify artifacts of a Model without spec.storage.secretRef with the operator's own "
            "credentials (its environment, IRSA, instance metadata). Off: such a version is "
            "Blocked with reason CredentialsRequired, so no tenant borrows the operator's access."
        ),
    )
    allowed_endpoint_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "Hosts a Model's spec.storage.endpoint may name: 'host', 'host:port' or "
            "'*.suffix' (JSON list in the environment); any host when empty. Link-local and "
            "cloud metadata addresses are refused whatever this says."
        ),
    )
    notification_allowed_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "Hosts a Model's spec.notifications may reach over plain http:// ('host', "
            "'host:port' or '*.suffix'; JSON list in the environment); none when empty. https:// "
            "URLs need no entry. Link-local and cloud metadata addresses are refused whatever "
            "this says."
        ),
    )
    artifact_confirm_seconds: float = Field(
        default=3600.0,
        gt=0,
        description=(
            "How long a confirmation (a HEAD that finds the verified ETag and VersionId) lasts; "
            "entering Staging or Production always confirms again."
        ),
    )
    seal_key: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "Key of the HMAC that seals status.artifact (the chart keeps it in a Secret); a "
            "recorded verdict whose seal does not match is never trusted. Empty: a random key "
            "per process, so every artifact is hashed again after a restart."
        ),
    )
    seal_secret: str = Field(
        default="",
        description=(
            "Name of the Secret, in seal_namespace, that keeps the seal key; created with a "
            "random key when missing. Used when seal_key is empty (the chart sets both names)."
        ),
    )
    seal_namespace: str = Field(
        default="", description="The operator's own namespace, where seal_secret lives."
    )
    leader_election: bool = Field(
        default=False,
        description=(
            "Run as one of several replicas: only the holder of the Lease leader_lease (in "
            "leader_namespace) reconciles and writes; the others wait as standbys. The chart "
            "turns it on."
        ),
    )
    leader_lease: str = Field(default="modelreg-operator", description="The Lease's name.")
    leader_namespace: str = Field(
        default="", description="The Lease's namespace (the chart: the operator's own)."
    )
    leader_identity: str = Field(
        default="",
        description="This replica's identity in the Lease; default: hostname (the pod's name) "
        "and a random suffix, so a restarted pod is a new holder.",
    )
    lease_duration_seconds: int = Field(
        default=10,
        ge=2,
        le=300,
        description="How long a Lease not renewed keeps standbys waiting: the longest takeover.",
    )
    renew_deadline_seconds: float = Field(
        default=7.0,
        gt=0,
        description="A leader that could not renew for this long stops writing and exits; "
        "shorter than lease_duration_seconds, so it stops before a standby may take over.",
    )
    retry_period_seconds: float = Field(
        default=2.0, gt=0, description="How often the leader renews and standbys try."
    )

    @model_validator(mode="after")
    def _deadline_before_expiry(self) -> Self:
        if self.leader_election and self.renew_deadline_seconds >= self.lease_duration_seconds:
            raise ValueError(
                f"renew_deadline_seconds ({self.renew_deadline_seconds:g}) must be shorter than "
                f"lease_duration_seconds ({self.lease_duration_seconds}): a leader must stop "
                "writing before a standby may take its Lease"
            )
        if self.leader_election and self.retry_period_seconds >= self.renew_deadline_seconds:
            raise ValueError(
                f"retry_period_seconds ({self.retry_period_seconds:g}) must be shorter than "
                f"renew_deadline_seconds ({self.renew_deadline_seconds:g})"
            )
        return self
