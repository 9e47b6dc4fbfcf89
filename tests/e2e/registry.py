"""Building blocks for operator e2e tests: Models, artifacts in the real S3 server, versions."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from tests.e2e.helpers import S3, Kubectl, wait_for
from tests.e2e.helpers import condition as condition_of


@dataclass
class Registry:
    kubectl: Kubectl
    namespace: str
    s3: S3
    secret: str

    def prefix(self, model: str) -> str:
        return f"s3://{self.s3.bucket}/{self.namespace}/{model}/"

    def model(
        self,
        name: str = "credit",
        *,
        gates: list[dict[str, Any]] | None = None,
        serving: dict[str, Any] | None = None,
        storage: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body = {
            "apiVersion": "modelreg.dev/v1alpha1",
            "kind": "Model",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "description": "e2e model",
                "owner": "team-e2e",
                "storage": storage
                or {
                    "uri": self.prefix(name),
                    "endpoint": self.s3.endpoint,
                    "region": self.s3.region,
                    "secretRef": {"name": self.secret},
                },
                "promotion": {"gates": gates or []},
                "serving": {"replicas": 1, **(serving or {})},
            },
        }
        self.kubectl.apply(body)
        return body

    def artifact(self, model: str, n: int, data: bytes | None = None) -> tuple[str, str]:
        """Upload an artifact for version n; returns (uri, sha256)."""
        key = f"{self.namespace}/{model}/{n}/model.onnx"
        sha = self.s3.put(key, data if data is not None else os.urandom(4096))
        return f"s3://{self.s3.bucket}/{key}", sha

    def version(
        self,
        model: str,
        n: int,
        stage: str = "None",
        *,
        uri: str | None = None,
        sha256: str | None = None,
        metrics: dict[str, float] | None = None,
        upload: bool = True,
    ) -> dict[str, Any]:
        if uri is None or sha256 is None:
            up_uri, up_sha = (
                self.artifact(model, n)
                if upload
                else (f"{self.prefix(model)}{n}/model.onnx", "0" * 64)
            )
            uri = uri or up_uri
            sha256 = sha256 or up_sha
        body = {
            "apiVersion": "modelreg.dev/v1alpha1",
            "kind": "ModelVersion",
            "metadata": {"name": f"{model}-v{n}", "namespace": self.namespace},
            "spec": {
                "model": model,
                "version": n,
                "stage": stage,
                "artifact": {"uri": uri, "sha256": sha256, "format": "onnx"},
                "framework": "sklearn",
                "metrics": metrics or {"auc": 0.9},
                "params": {"max_depth": "6"},
                "lineage": {"run": f"run-{n}"},
            },
        }
        self.kubectl.apply(body)
        return body

    def stage(self, model: str, n: int, stage: str) -> None:
        self.kubectl(
            "-n",
            self.namespace,
            "patch",
            "mv",
            f"{model}-v{n}",
            "--type=merge",
            "-p",
            json.dumps({"spec": {"stage": stage}}),
        )

    def mv(self, model: str, n: int) -> dict[str, Any]:
        body = self.kubectl.get("mv", f"{model}-v{n}", self.namespace)
        assert body is not None, f"{model}-v{n} is gone"
        return body

    def status(self, model: str, n: int) -> dict[str, Any]:
        status: dict[str, Any] = self.mv(model, n).get("status", {})
        return status

    def condition(self, model: str, n: int, type_: str) -> dict[str, Any]:
        return condition_of({"status": self.status(model, n)}, type_)

    def wait_phase(self, model: str, n: int, phase: str, timeout: float = 60) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            st = self.status(model, n)
            return st if st.get("phase") == phase else None

        try:
            return wait_for(check, timeout=timeout, what=f"{model}-v{n} phase {phase}")
        except AssertionError as e:
            raise AssertionError(
                f"{e}\nstatus: {json.dumps(self.status(model, n), indent=1)}"
            ) from e

    def model_status(self, model: str) -> dict[str, Any]:
        body = self.kubectl.get("mdl", model, self.namespace) or {}
        status: dict[str, Any] = body.get("status", {})
        return status

    def deployments(self, model: str) -> dict[str, dict[str, Any]]:
        return {
            d["metadata"]["name"]: d
            for d in self.kubectl.items(
                "deployments", self.namespace, f"modelreg.dev/model={model}"
            )
        }

    def service_version(self, model: str) -> str | None:
        svc = self.kubectl.get("service", model, self.namespace)
        if svc is None:
            return None
        selector: dict[str, str] = svc["spec"].get("selector", {})
        return selector.get("modelreg.dev/version")

    def events(self, name: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.kubectl.items("events", self.namespace)
            if e.get("involvedObject", {}).get("name") == name
        ]
