"""Helpers (no tests) shared by the SDK, CLI and MLflow e2e tests: a Model on the real S3 server,
and a kubeconfig for a ServiceAccount with exactly the RBAC a test grants (to exercise Forbidden paths for real).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.helpers import S3, Kubectl


def storage(
    s3: S3,
    namespace: str,
    model: str,
    secret: str | None = "s3-credentials",  # noqa: S107 - a Secret name
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "uri": f"s3://{s3.bucket}/{namespace}/{model}/",
        "endpoint": s3.endpoint,
        "region": s3.region,
    }
    if secret:
        out["secretRef"] = {"name": secret}
    return out


def apply_model(
    kubectl: Kubectl,
    namespace: str,
    name: str,
    *,
    storage_spec: dict[str, Any] | None,
    gates: list[dict[str, Any]] | None = None,
) -> None:
    spec: dict[str, Any] = {"promotion": {"gates": gates or []}, "serving": {"replicas": 1}}
    if storage_spec is not None:
        spec["storage"] = storage_spec
    kubectl.apply(
        {
            "apiVersion": "modelreg.dev/v1alpha1",
            "kind": "Model",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def service_account_kubeconfig(
    kubectl: Kubectl,
    namespace: str,
    name: str,
    rules: list[dict[str, Any]],
    dest: Path,
) -> Path:
    """A ServiceAccount bound to a Role with `rules`, and a kubeconfig that signs in as it."""
    kubectl("-n", namespace, "create", "serviceaccount", name)
    kubectl.apply(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": name, "namespace": namespace},
                "rules": rules,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": namespace},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": name,
                },
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            },
        ]
    )
    token = kubectl("-n", namespace, "create", "token", name, "--duration=1h").strip()
    admin = json.loads(kubectl("config", "view", "--minify", "--raw", "-o", "json"))
    cluster = admin["clusters"][0]
    dest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": name, "user": {"token": token}}],
                "contexts": [
                    {
                        "name": name,
                        "context": {
                            "cluster": cluster["name"],
                            "user": name,
                            "namespace": namespace,
                        },
                    }
                ],
                "current-context": name,
            }
        )
    )
    return dest


MODELREG_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": ["modelreg.dev"],
        "resources": ["models", "modelversions"],
        "verbs": ["get", "list", "watch", "create"],
    }
]
