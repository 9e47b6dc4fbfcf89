"""The model server's settings: one typed object, read once at start-up from the environment.

This is the contract between the operator and the serving container: the operator writes these
variables into the Deployment (credentials through `secretKeyRef`), and
`modelreg.runtime.server.main` builds `RuntimeSettings` from them (command-line flags override).
Nothing else in the runtime reads `os.environ`.

Environment: `MODELREG_<FIELD>` (e.g. MODELREG_MODEL_NAME, MODELREG_ARTIFACT_URI), except the three
AWS variables, which keep their standard names (AWS_REGION, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY) so the same Secret works for every S3 tool.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Annotated, Self
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, StringConstraints, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class ArtifactFormat(enum.StrEnum):
    """The serialisations the builtin runtime loads (`custom` needs a custom runtime)."""

    ONNX = "onnx"
    SKLEARN = "sklearn"
    SKOPS = "skops"
    XGBOOST = "xgboost"
    LIGHTGBM = "lightgbm"


SAFE_FORMATS = ("onnx", "skops", "xgboost", "lightgbm")
"""Formats that load without running code from the artifact."""

BATCH_MAX_SIZE_DEFAULTS: dict[ArtifactFormat, int] = {
    ArtifactFormat.ONNX: 1,
    ArtifactFormat.SKLEARN: 32,
    ArtifactFormat.SKOPS: 32,
    ArtifactFormat.XGBOOST: 32,
    ArtifactFormat.LIGHTGBM: 32,
}
"""MODELREG_BATCH_MAX_SIZE of each format when it is not set. Batching pays where a call has a
fixed cost above the hop to a worker thread: a scikit-learn pipeline spends about half a
millisecond a call in Python whatever its rows, and xgboost and LightGBM set up each call too. A
small ONNX graph answers in microseconds on the event loop; with batching on, every request would
go through a worker instead (bench/runtime measures both)."""

_SHA256 = re.compile(r"^(sha256:)?[0-9a-fA-F]{64}$")
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")


class RuntimeSettings(BaseSettings):
    """Every knob of `python -m modelreg.runtime`."""

    model_config = SettingsConfigDict(
        env_prefix="MODELREG_",
        env_ignore_empty=True,
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )

    model_name: Annotated[
        str,
        StringConstraints(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
    ] = Field(description="Name the model is served under: /v2/models/<name>.")
    model_version: int = Field(
        default=1, ge=1, description="Version served: /v2/models/<name>/versions/<version>."
    )
    artifact_uri: str | None = Field(
        default=None, description="s3://bucket/key of the artifact; downloaded at start-up."
    )
    artifact_path: Path | None = Field(
        default=None,
        description="A local artifact file instead of artifact_uri (development, `modelreg "
        "serve`). Verified against artifact_sha256 when that is set.",
    )
    artifact_sha256: str | None = Field(
        default=None,
        description="Hex sha256 of the artifact; required with artifact_uri. Nothing is "
        "deserialised unless the downloaded bytes match it.",
    )
    artifact_version_id: str | None = Field(
        default=None,
        description="S3 VersionId of the artifact to fetch (the version the operator "
        "verified, in a versioned bucket); the current object when empty.",
    )
    artifact_format: ArtifactFormat = Field(
        description="onnx | sklearn | skops | xgboost | lightgbm."
    )
    signature: str | None = Field(
        default=None,
        description="The registered signature (the ModelVersion's spec.signature as JSON): the "
        "inputs and outputs the metadata endpoint reports. Read as text and checked when the "
        "model is loaded; one that does not parse is logged and ignored, never fatal.",
    )

    s3_endpoint: str | None = Field(
        default=None, description="Endpoint URL of an S3-compatible store; AWS when unset."
    )
    aws_region: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_REGION", "MODELREG_AWS_REGION")
    )
    aws_access_key_id: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("AWS_ACCESS_KEY_ID")
    )
    aws_secret_access_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("AWS_SECRET_ACCESS_KEY")
    )
    store_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Connect/read timeout of each object-store call."
    )
    download_retry_max_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Longest pause between download retries on transient errors.",
    )

    http_host: str = Field(default="0.0.0.0", description="Address the HTTP server binds.")  # noqa: S104 - a pod must listen on its IP
    http_port: int = Field(default=8080, ge=0, le=65535, description="HTTP port; 0 picks one.")
    # -- gRPC (modelreg.runtime.grpc) --
    grpc_port: int = Field(
        default=9000,
        ge=0,
        le=65535,
        description="Port of the Open Inference Protocol v2 over gRPC (and grpc.health.v1), "
        "bound on MODELREG_HTTP_HOST; 0 turns gRPC off. Messages up to "
        "MODELREG_MAX_REQUEST_BYTES are accepted.",
    )
    model_dir: Path = Field(
        default=Path("/models"),
        description="Writable directory for the downloaded artifact (an emptyDir: the root "
        "filesystem is read-only).",
    )
    allow_pickle: bool = Field(
        default=False,
        description="Allow format 'sklearn' (joblib/pickle). Unpickling runs code from the file.",
    )
    skops_trusted_types: list[str] = Field(
        default_factory=list,
        description="Extra types a skops file may contain beyond skops' defaults (JSON list).",
    )
    max_request_bytes: int = Field(
        default=16 * MIB, ge=1024, description="Largest request body accepted (413 above)."
    )
    inline_max_bytes: int = Field(
        default=16 * 1024,
        ge=0,
        description="Uncompressed requests whose Content-Length is at most this are decoded, "
        "predicted and encoded on the event loop: tens of microseconds, less than a hop to a "
        "worker. Larger, compressed or chunked ones go to the bounded executor (MODELREG_WORKERS, "
        "MODELREG_MAX_QUEUE, MODELREG_MAX_QUEUE_BYTES). If the model's predictions on small requests take more than 1 ms "
        "of CPU (median), every request goes to the executor from then on. 0: always.",
    )
    inline_max_elements: int = Field(
        default=16384,
        ge=0,
        description="A small request (MODELREG_INLINE_MAX_BYTES) with more input elements than "
        "this is predicted in the executor after all.",
    )
    workers: int = Field(
        default=2,
        ge=1,
        le=256,
        description="Requests processed at once by the executor (decoding, prediction, encoding); "
        "set it to the pod's CPU count. Each prediction uses MODELREG_INTRA_OP_THREADS.",
    )
    max_queue: int = Field(
        default=256,
        ge=0,
        description="Requests admitted beyond MODELREG_WORKERS, waiting for a worker (their "
        "bodies in memory). When workers and queue are full a request gets 503 with Retry-After. "
        "MODELREG_MAX_QUEUE_BYTES bounds the memory they hold.",
    )
    max_queue_bytes: int = Field(
        default=256 * MIB,
        ge=0,
        description="Bytes of request bodies the admitted requests that are waiting for a worker "
        "or having their body read may hold together: a body counts its Content-Length, or "
        "MODELREG_MAX_REQUEST_BYTES when it has none (chunked). A request that would take them "
        "past it gets 503 with Retry-After, unless nothing else is admitted (one large request is "
        "never refused by this rule alone). Bodies in memory stay below MODELREG_WORKERS x "
        "MODELREG_MAX_REQUEST_BYTES + MODELREG_MAX_QUEUE_BYTES.",
    )
    retry_after_seconds: int = Field(
        default=1,
        ge=0,
        description="The Retry-After header of a 503 sent because the executor is full.",
    )
    codec_process_min_bytes: int = Field(
        default=1 * MIB,
        ge=0,
        description="JSON request bodies (or the JSON header of a binary request) larger than "
        "this are parsed in a worker process, and JSON responses estimated larger than this "
        "(8 bytes per element) are written there: the JSON parser holds the interpreter lock "
        "for about 7 ms per MiB, which would stall the event loop from a thread. Up to "
        "MODELREG_WORKERS processes, started when first needed. 0 keeps all decoding in threads.",
    )
    intra_op_threads: int = Field(
        default=1,
        ge=0,
        description="onnxruntime/xgboost/lightgbm threads per prediction; 0 = library default. "
        "1 suits small requests: concurrency comes from the request stream, not one prediction.",
    )
    # -- adaptive batching (modelreg.runtime.batching) --
    batch_max_size: int | None = Field(
        default=None,
        ge=1,
        le=65536,
        description="Rows (not requests) one batched prediction may hold; 1 turns batching off. "
        "Above 1, concurrent requests with compatible inputs (same names, datatypes and shapes "
        "but dimension 0) are predicted in one call, and no prediction runs on the event loop. "
        "Unset, it depends on MODELREG_ARTIFACT_FORMAT: 32 for "
        "sklearn, skops, xgboost and lightgbm, whose calls cost more than a hop to a worker; 1 "
        "for onnx, whose small graphs answer in microseconds on the event loop. Requests waiting "
        "in a batch are admitted ones: MODELREG_MAX_QUEUE and MODELREG_MAX_QUEUE_BYTES bound "
        "them.",
    )
    batch_max_wait_ms: float = Field(
        default=1.0,
        ge=0,
        le=1000,
        description="Longest a batch waits for more requests after its first, and only while "
        "other admitted requests are still being decoded: with nothing else on its way a batch "
        "goes at once (a lone request pays no wait). Batches also fill, without waiting, while "
        "every worker is busy. 0: never wait.",
    )
    graceful_timeout_seconds: int = Field(
        default=20,
        ge=0,
        description="On SIGTERM, how long requests in flight may take to finish.",
    )
    exit_on_load_failure: bool = Field(
        default=True,
        description="Exit non-zero when the artifact cannot be verified or loaded, so the pod "
        "shows the reason; when false the server stays up and not ready.",
    )
    termination_log: Path | None = Field(
        default=Path("/dev/termination-log"),
        description="Where a fatal start-up error is written for Kubernetes to show.",
    )
    shadow_url: str | None = Field(
        default=None,
        description="Shadow comparison (a Model's spec.shadow): base URL of the shadow "
        "version's HTTP port, http://host[:port]. A sample of the inference requests answered "
        "successfully is mirrored there and the answers compared (modelreg.runtime.shadow).",
    )
    shadow_grpc_target: str | None = Field(
        default=None, description="host:port of the shadow's gRPC port: gRPC requests mirror there."
    )
    shadow_version: int | None = Field(
        default=None, ge=1, description="The version the shadow serves (required with shadow_url)."
    )
    shadow_sample_percent: float = Field(
        default=10.0, gt=0, le=100, description="Share of inference requests mirrored, percent."
    )
    shadow_tolerance: float = Field(
        default=1e-6,
        ge=0,
        description="Floating-point outputs agree within this max absolute difference.",
    )
    shadow_max_in_flight: int = Field(
        default=16, ge=1, le=1024, description="Mirrored requests in flight; beyond: dropped."
    )
    shadow_timeout_ms: int = Field(
        default=2000, ge=1, le=60_000, description="How long a mirrored request may take."
    )
    log_level: str = Field(default="info", description="debug | info | warning | error.")
    access_log: bool = Field(default=False, description="Log every request (costs throughput).")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.artifact_uri and self.artifact_path:
            raise ValueError("set either MODELREG_ARTIFACT_URI or MODELREG_ARTIFACT_PATH, not both")
        if not self.artifact_uri and not self.artifact_path:
            raise ValueError(
                "MODELREG_ARTIFACT_URI (or a local MODELREG_ARTIFACT_PATH) is required"
            )
        if self.artifact_uri and not self.artifact_sha256:
            raise ValueError(
                "MODELREG_ARTIFACT_SHA256 is required with MODELREG_ARTIFACT_URI: the runtime "
                "never loads an artifact it has not verified"
            )
        if self.artifact_sha256 is not None and not _SHA256.fullmatch(self.artifact_sha256):
            raise ValueError("MODELREG_ARTIFACT_SHA256 must be 64 hexadecimal characters")
        if self.shadow_url is not None:
            url = urlsplit(self.shadow_url)
            if url.scheme != "http" or not url.hostname or url.path not in ("", "/"):
                raise ValueError(
                    f"MODELREG_SHADOW_URL must be http://host[:port] with no path, not "
                    f"{self.shadow_url!r}"
                )
            if self.shadow_version is None:
                raise ValueError("MODELREG_SHADOW_VERSION is required with MODELREG_SHADOW_URL")
        if self.shadow_grpc_target is not None and not _HOST_PORT.fullmatch(
            self.shadow_grpc_target
        ):
            raise ValueError(
                f"MODELREG_SHADOW_GRPC_TARGET must be host:port, not {self.shadow_grpc_target!r}"
            )
        if self.log_level.lower() not in ("critical", "error", "warning", "info", "debug", "trace"):
            raise ValueError("MODELREG_LOG_LEVEL must be one of debug, info, warning, error")
        return self

    @property
    def resolved_batch_max_size(self) -> int:
        """MODELREG_BATCH_MAX_SIZE when it is set, else the default of the artifact's format."""
        if self.batch_max_size is not None:
            return self.batch_max_size
        return BATCH_MAX_SIZE_DEFAULTS[self.artifact_format]

    @property
    def expected_sha256(self) -> str | None:
        if self.artifact_sha256 is None:
            return None
        return self.artifact_sha256.lower().removeprefix("sha256:")
