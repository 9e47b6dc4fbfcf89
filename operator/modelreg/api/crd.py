"""Renders the CustomResourceDefinitions of Model and ModelVersion from the pydantic schema.

Called by `python -m modelreg.api.crd` (`make generate`, `make check`) and by the unit test that
fails when `crds/` drifts from the code. Pydantic's JSON schema is turned into a structural
OpenAPI v3 schema (refs inlined, nulls dropped, free-form maps marked) and the CEL rules that
make the API server itself reject bad objects are attached here, each with a human message.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from modelreg.api.models import (
    ALIAS_PATTERN,
    GROUP,
    RESERVED_ALIAS_PATTERN,
    RESERVED_ENV_NAMES,
    RESERVED_ENV_PREFIXES,
    VERSION,
    ModelSpec,
    ModelStatus,
    ModelVersionSpec,
    ModelVersionStatus,
)

_DROP = {"title", "default", "propertyNames", "examples"}

Schema = dict[str, Any]


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Turn one pydantic JSON-schema node into its structural OpenAPI v3 form."""
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(options) == 1:
            return _structural({**options[0], **rest}, defs)
    out: Schema = {}
    for key, value in node.items():
        if key in _DROP or key == "$defs":
            continue
        if key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key == "additionalProperties":
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            else:
                out[key] = _structural(value, defs)
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            # JSON Schema's number form; OpenAPI v3.0 (a CRD's) has the bound and a flag.
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        else:
            out[key] = _structural(value, defs)
    if (
        out.get("type") == "object"
        and "properties" not in out
        and "additionalProperties" not in out
    ):
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def schema_of(model: type[BaseModel]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    result: Schema = _structural(raw, raw.get("$defs", {}))
    return result


# Only name and generateName may be constrained; bounding the name keeps root CEL rules cheap.
_METADATA: Schema = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 253}},
}


def _rule(rule: str, message: str, **extra: str) -> dict[str, str]:
    return {"rule": rule, "message": message, **extra}


def _model_version_schema() -> Schema:
    spec = schema_of(ModelVersionSpec)
    props = spec["properties"]
    props["model"]["x-kubernetes-validations"] = [
        _rule("self == oldSelf", "spec.model is immutable: register a new ModelVersion instead")
    ]
    props["version"]["x-kubernetes-validations"] = [
        _rule("self == oldSelf", "spec.version is immutable: register a new ModelVersion instead")
    ]
    artifact = props["artifact"]
    artifact["x-kubernetes-validations"] = [
        _rule(
            "self == oldSelf",
            "spec.artifact is immutable: a new artifact is a new version, register a new ModelVersion",
        )
    ]
    artifact["properties"]["sha256"]["x-kubernetes-validations"] = [
        _rule(
            "self.matches('^[0-9a-fA-F]{64}$')",
            "spec.artifact.sha256 must be exactly 64 hexadecimal characters (the output of sha256sum)",
        )
    ]
    artifact["properties"]["uri"]["x-kubernetes-validations"] = [
        _rule(
            "self.matches('^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^?#]+$')",
            "spec.artifact.uri must look like s3://bucket/key (a lowercase bucket name and a non-empty key)",
        ),
        _rule(
            "!self.split('/').exists(s, s == '..' || s == '.')",
            "spec.artifact.uri must not contain '.' or '..' path segments",
        ),
    ]
    for field in ("metrics", "params", "lineage"):
        props[field]["x-kubernetes-validations"] = [
            _rule(
                "self.all(k, size(k) <= 253)",
                f"spec.{field} keys must be at most 253 characters",
            )
        ]
    # Gates read a version's metrics: rewriting them after the fact would pass a gate the
    # version failed. Transition rules on spec (present in every object) so that removing the
    # map is caught too; an empty map counts as not yet set.
    spec["x-kubernetes-validations"] = [
        _rule(
            f"!has(oldSelf.{field}) || size(oldSelf.{field}) == 0 || "
            f"(has(self.{field}) && self.{field} == oldSelf.{field})",
            f"spec.{field} is immutable once set: {why}; register a new ModelVersion instead",
            fieldPath=f".{field}",
        )
        for field, why in (
            ("metrics", "promotion gates are checked against them"),
            ("params", "they record how this artifact was made"),
        )
    ] + [
        _rule(
            "!has(oldSelf.environment) || "
            "(has(self.environment) && self.environment == oldSelf.environment)",
            "spec.environment is immutable once set: the audit gate is checked against its "
            "packages; register a new ModelVersion instead",
            fieldPath=".environment",
        )
    ]
    return {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": _METADATA,
            "spec": spec,
            "status": schema_of(ModelVersionStatus),
        },
        "x-kubernetes-validations": [
            _rule(
                # string(int) has no cost bound in CEL's estimator, so the number is parsed instead.
                "self.metadata.name.startsWith(self.spec.model + '-v') && "
                "self.metadata.name.substring(size(self.spec.model) + 2).matches('^[1-9][0-9]{0,6}$') && "
                "int(self.metadata.name.substring(size(self.spec.model) + 2)) == self.spec.version",
                "metadata.name must be '<spec.model>-v<spec.version>', "
                "for example credit-scoring-v3 for model credit-scoring version 3",
            )
        ],
    }


def _model_schema() -> Schema:
    spec = schema_of(ModelSpec)
    storage = spec["properties"]["storage"]
    storage["properties"]["uri"]["x-kubernetes-validations"] = [
        _rule(
            "self.matches('^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$')",
            "spec.storage.uri must look like s3://bucket/prefix/ (a lowercase bucket name)",
        ),
        _rule(
            "!self.split('/').exists(s, s == '..' || s == '.')",
            "spec.storage.uri must not contain '.' or '..' path segments",
        ),
    ]
    storage["properties"]["endpoint"]["x-kubernetes-validations"] = [
        _rule(
            "self == '' || self.matches('^https?://[^\\\\s]+$')",
            "spec.storage.endpoint must be an http:// or https:// URL",
        )
    ]
    storage["properties"]["secretRef"]["x-kubernetes-validations"] = [
        _rule(
            "!has(self.namespace) || self.namespace == ''",
            "spec.storage.secretRef must name a Secret in the Model's own namespace: "
            "cross-namespace references are not allowed",
        )
    ]
    env_name = spec["properties"]["serving"]["properties"]["env"]["items"]["properties"]["name"]
    prefixes = " || ".join(f"self.upperAscii().startsWith('{p}')" for p in RESERVED_ENV_PREFIXES)
    names = ", ".join(f"'{n}'" for n in RESERVED_ENV_NAMES)
    env_name["x-kubernetes-validations"] = [
        _rule(
            f"!({prefixes} || self.upperAscii() in [{names}])",
            "spec.serving.env may not set a reserved name: MODELREG_* configures the model "
            "server and the AWS credential, profile and endpoint names are set from "
            "spec.storage by the operator",
            messageExpression=(
                "'spec.serving.env may not set ' + self + ': the name is reserved (MODELREG_* "
                "configures the model server; AWS credential, profile and endpoint names are "
                "set from spec.storage by the operator)'"
            ),
        )
    ]
    serving = spec["properties"]["serving"]
    serving["properties"]["autoscaling"]["x-kubernetes-validations"] = [
        _rule(
            "!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",
            "spec.serving.autoscaling: minReplicas must not exceed maxReplicas",
        )
    ]
    # The HorizontalPodAutoscaler's CPU target is a share of the pods' request: without one it
    # never scales (FailedGetResourceMetric), so the Model is refused instead.
    # requests and limits are typed (quantities by resource name, as in a container) so that the
    # rule can read them; the rest of resources stays free-form.
    quantities = {
        "type": "object",
        "maxProperties": 16,
        "additionalProperties": {"x-kubernetes-int-or-string": True, "maxLength": 64},
    }
    serving["properties"]["resources"]["properties"] = {
        "requests": quantities,
        "limits": quantities,
    }
    serving["x-kubernetes-validations"] = [
        _rule(
            "!has(self.grpcPort) || self.grpcPort == 0 || self.grpcPort >= 1024",
            "spec.serving.grpcPort must be 0 (off) or a port from 1024 to 65535",
        ),
        _rule(
            "!has(self.grpcPort) || !has(self.port) || self.grpcPort != self.port",
            "spec.serving.grpcPort and spec.serving.port must differ: HTTP and gRPC each need "
            "their own port",
        ),
        _rule(
            "!has(self.autoscaling) || (has(self.resources) && has(self.resources.requests) "
            "&& 'cpu' in self.resources.requests)",
            "spec.serving.autoscaling needs spec.serving.resources.requests.cpu: the CPU "
            "target is a percentage of the pods' CPU request",
        ),
    ]
    spec["properties"]["aliases"]["x-kubernetes-validations"] = [
        _rule(
            f"self.all(k, k.matches('{ALIAS_PATTERN}'))",
            "spec.aliases: an alias is a letter, then at most 62 letters, digits, '_' or '-'",
        ),
        _rule(
            f"!self.exists(k, k.matches('{RESERVED_ALIAS_PATTERN}'))",
            "spec.aliases: 'latest' and v<N> are reserved, they already mean a version",
        ),
    ]
    # `minimum` lets a literal 0 through on a number field (seen on 1.36): CEL says it instead.
    spec["properties"]["shadow"]["x-kubernetes-validations"] = [
        _rule(
            "!has(self.samplePercent) || self.samplePercent >= 0.01",
            "spec.shadow.samplePercent must be from 0.01 to 100 (percent of live requests)",
        )
    ]
    rollout = spec["properties"]["rollout"]
    rollout["properties"]["steps"]["x-kubernetes-validations"] = [
        _rule("self[size(self) - 1] == 100", "spec.rollout.steps must end at 100"),
        _rule(
            "self.isSorted() && self.all(x, self.exists_one(y, y == x))",
            "spec.rollout.steps must increase: each percentage above the one before",
        ),
    ]
    rollout["properties"]["analysis"]["x-kubernetes-validations"] = [
        _rule(
            "has(self.maxErrorRate) || has(self.maxP99LatencyMs)",
            "spec.rollout.analysis needs maxErrorRate, maxP99LatencyMs or both",
        ),
        _rule(
            "!has(self.maxP99LatencyMs) || self.maxP99LatencyMs >= 0.001",
            "spec.rollout.analysis.maxP99LatencyMs must be at least 0.001 (milliseconds)",
        ),
    ]
    spec["x-kubernetes-validations"] = [
        _rule(
            "!has(self.rollout) || !has(self.rollout.analysis) || !has(self.serving) || "
            "!has(self.serving.runtime) || self.serving.runtime == 'builtin'",
            "spec.rollout.analysis reads modelreg_runtime_requests_total and "
            "modelreg_runtime_request_duration_seconds from the canary pods' /metrics, which only "
            "the builtin runtime exports: it cannot judge spec.serving.runtime mlserver or custom",
        ),
        _rule(
            "!has(self.shadow) || !has(self.serving) || !has(self.serving.runtime) || "
            "self.serving.runtime == 'builtin'",
            "spec.shadow needs the builtin runtime: its serving pods mirror the requests and "
            "compare the answers, which spec.serving.runtime mlserver or custom cannot do",
        ),
    ]
    gate = spec["properties"]["promotion"]["properties"]["gates"]["items"]
    gate["x-kubernetes-validations"] = [
        _rule("has(self.min) || has(self.max)", "a gate needs min, max or both"),
        _rule(
            "!has(self.min) || !has(self.max) || self.min <= self.max",
            "a gate's min must not exceed its max",
        ),
    ]
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": _METADATA,
            "spec": spec,
            "status": schema_of(ModelStatus),
        },
        "x-kubernetes-validations": [
            _rule(
                "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && "
                "size(self.metadata.name) <= 63",
                "a Model's name must be a DNS-1035 label (a lowercase letter first, "
                "at most 63 characters): it names the serving Service",
            )
        ],
    }


def _crd(
    kind: str, plural: str, short: str, schema: Schema, columns: list[dict[str, Any]]
) -> Schema:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "modelreg"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                "categories": ["modelreg"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def crds() -> dict[str, Schema]:
    """File name under crds/ -> CRD object."""
    age = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    return {
        "modelreg.dev_models.yaml": _crd(
            "Model",
            "models",
            "mdl",
            _model_schema(),
            [
                {"name": "Production", "type": "integer", "jsonPath": ".status.productionVersion"},
                {"name": "Latest", "type": "integer", "jsonPath": ".status.latestVersion"},
                {
                    "name": "Ready",
                    "type": "string",
                    "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                },
                {
                    "name": "Endpoint",
                    "type": "string",
                    "jsonPath": ".status.endpoint",
                    "priority": 1,
                },
                age,
            ],
        ),
        "modelreg.dev_modelversions.yaml": _crd(
            "ModelVersion",
            "modelversions",
            "mv",
            _model_version_schema(),
            [
                {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
                {"name": "Version", "type": "integer", "jsonPath": ".spec.version"},
                {"name": "Desired", "type": "string", "jsonPath": ".spec.stage"},
                {"name": "Stage", "type": "string", "jsonPath": ".status.stage"},
                {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            ],
        ),
    }


HEADER = "# Generated by `python -m modelreg.api.crd` from operator/modelreg/api/models.py. Do not edit.\n"


def render(crd: Schema) -> str:
    return HEADER + yaml.safe_dump(crd, sort_keys=False, width=100)


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "crds")
    out.mkdir(parents=True, exist_ok=True)
    for name, crd in crds().items():
        (out / name).write_text(render(crd))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
