"""The CRDs in crds/ are generated from the pydantic schema: this fails when they drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from modelreg.api import crd

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_crds_match_the_code() -> None:
    for name, obj in crd.crds().items():
        path = CRDS / name
        assert path.exists(), f"{path} is missing: run 'make generate'"
        assert path.read_text() == crd.render(obj), (
            f"{path} drifts from the code: run 'make generate'"
        )


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(node, dict):
        if "type" in node:
            out.append((path, node))
        for key, value in node.items():
            out.extend(_walk(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.extend(_walk(value, f"{path}[{i}]"))
    return out


def test_every_string_list_and_map_is_bounded() -> None:
    for obj in crd.crds().values():
        schema = obj["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(schema["properties"]["spec"]) + _walk(
            schema["properties"]["status"]
        ):
            if node.get("x-kubernetes-preserve-unknown-fields"):
                continue  # pass-through Kubernetes types (resources, tolerations), bounded by the API
            if node["type"] == "string" and "enum" not in node:
                assert "maxLength" in node, f"unbounded string at {path}"
            if node["type"] == "array":
                assert "maxItems" in node, f"unbounded list at {path}"
            if node["type"] == "object" and "additionalProperties" in node:
                assert "maxProperties" in node, f"unbounded map at {path}"


def test_names_columns_and_subresources() -> None:
    mv = crd.crds()["modelreg.dev_modelversions.yaml"]["spec"]
    assert mv["names"]["shortNames"] == ["mv"]
    assert mv["names"]["categories"] == ["modelreg"]
    version = mv["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Model",
        "Version",
        "Desired",
        "Stage",
        "Phase",
        "Age",
    ]
    rules = yaml.safe_dump(version["schema"])
    for message in (
        "spec.model is immutable",
        "spec.version is immutable",
        "spec.artifact is immutable",
        "metadata.name must be '<spec.model>-v<spec.version>'",
        "64 hexadecimal",
        "s3://bucket/key",
    ):
        assert message in rules
    assert crd.crds()["modelreg.dev_models.yaml"]["spec"]["names"]["shortNames"] == ["mdl"]


def _schema(file: str) -> dict[str, Any]:
    spec = crd.crds()[file]["spec"]
    result: dict[str, Any] = spec["versions"][0]["schema"]["openAPIV3Schema"]
    return result


def test_metrics_and_params_are_immutable_once_set() -> None:
    rules = _schema("modelreg.dev_modelversions.yaml")["properties"]["spec"][
        "x-kubernetes-validations"
    ]
    by_path = {r["fieldPath"]: r for r in rules}
    for field in ("metrics", "params"):
        rule = by_path[f".{field}"]
        assert f"oldSelf.{field}" in rule["rule"], "a transition rule"
        assert f"has(self.{field})" in rule["rule"], "removing the map is a change too"
        assert rule["message"].startswith(f"spec.{field} is immutable once set")


def test_reserved_env_names_are_rejected_by_the_crd() -> None:
    from modelreg.api.models import RESERVED_ENV_NAMES, RESERVED_ENV_PREFIXES

    env = _schema("modelreg.dev_models.yaml")["properties"]["spec"]["properties"]["serving"][
        "properties"
    ]["env"]
    (rule,) = env["items"]["properties"]["name"]["x-kubernetes-validations"]
    for prefix in RESERVED_ENV_PREFIXES:
        assert f"self.upperAscii().startsWith('{prefix}')" in rule["rule"]
    for name in RESERVED_ENV_NAMES:
        assert f"'{name}'" in rule["rule"]
    assert "may not set ' + self + '" in rule["messageExpression"]
