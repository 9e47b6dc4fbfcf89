"""Names and labels of the objects the operator creates; pure, called by builders and the planner."""

from __future__ import annotations

import hashlib

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "modelreg"
MODEL_LABEL = "modelreg.dev/model"
VERSION_LABEL = "modelreg.dev/version"
SPEC_HASH = "modelreg.dev/spec-hash"
# The shadow's Deployment and Service carry ROLE_LABEL=shadow; its pods carry SHADOW_OF instead of
# MODEL_LABEL, so that no serving Service (a canary's selects every pod with MODEL_LABEL) picks them.
ROLE_LABEL = "modelreg.dev/role"
SHADOW_ROLE = "shadow"
SHADOW_OF = "modelreg.dev/shadow-of"
DNS_LABEL_MAX = 63


def shorten(name: str, limit: int = DNS_LABEL_MAX) -> str:
    """`name` if it fits, else a prefix plus a stable hash suffix, so two long names stay distinct."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: limit - 11].rstrip('-')}-{digest}"


def deployment_name(model: str, version: int) -> str:
    """`<model>-v<N>`, shortened to a DNS label when the model's name is long."""
    return shorten(f"{model}-v{version}")


def service_name(model: str) -> str:
    """The stable Service is named after the Model (a CEL rule keeps Model names DNS-1035 labels)."""
    return shorten(model)


def autoscaler_name(model: str) -> str:
    """The HorizontalPodAutoscaler is named after the Model too: one per Model, never per version."""
    return shorten(model)


def shadow_name(model: str) -> str:
    """The shadow's Deployment and Service: `<model>-shadow`, one per Model whatever the version."""
    return shorten(f"{model}-shadow")


def shadow_selector(model: str) -> dict[str, str]:
    return {SHADOW_OF: shorten(model)}


def selector_labels(model: str, version: int) -> dict[str, str]:
    return {MODEL_LABEL: shorten(model), VERSION_LABEL: str(version)}


def child_labels(model: str, version: int | None = None) -> dict[str, str]:
    """Labels of every child: never copied from the parent (Argo CD's tracking label must not leak)."""
    labels = {MANAGED_BY: MANAGER, MODEL_LABEL: shorten(model)}
    if version is not None:
        labels[VERSION_LABEL] = str(version)
    return labels


def endpoint(model: str, namespace: str, domain: str = "svc") -> str:
    return f"http://{service_name(model)}.{namespace}.{domain}:80"
