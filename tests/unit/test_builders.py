"""The serving Deployment and Service builders: pure dicts, checked without a cluster."""

from __future__ import annotations

import json
from typing import Any

from modelreg.api.models import Model, ModelVersion
from modelreg.lifecycle import builders, naming

DEFAULTS = builders.ServingDefaults(
    builtin_image="registry.local/modelreg:1", mlserver_image="mls:1"
)


def _model(**serving: object) -> Model:
    return Model.model_validate(
        {
            "metadata": {
                "name": "credit",
                "namespace": "risk",
                "uid": "u-model",
                "labels": {"argocd.argoproj.io/instance": "risk-app", "team": "x"},
            },
            "spec": {
                "storage": {
                    "uri": "s3://models/credit/",
                    "endpoint": "http://minio:9000",
                    "region": "eu-west-1",
                    "secretRef": {"name": "s3-creds"},
                },
                "serving": serving,
            },
        }
    )


def _mv(n: int = 3) -> ModelVersion:
    return ModelVersion.model_validate(
        {
            "metadata": {
                "name": f"credit-v{n}",
                "namespace": "risk",
                "uid": "u-mv",
                "labels": {"argocd.argoproj.io/instance": "x"},
            },
            "spec": {
                "model": "credit",
                "version": n,
                "artifact": {
                    "uri": f"s3://models/credit/{n}/m.onnx",
                    "sha256": "AB" * 32,
                    "format": "onnx",
                },
            },
        }
    )


def test_deployment_is_restricted_and_owned_and_labelled_without_copying() -> None:
    d = builders.build_deployment(_model(replicas=2), _mv(), DEFAULTS)
    assert d["metadata"]["name"] == "credit-v3"
    assert d["metadata"]["labels"] == {
        naming.MANAGED_BY: "modelreg",
        naming.MODEL_LABEL: "credit",
        naming.VERSION_LABEL: "3",
    }
    assert "argocd.argoproj.io/instance" not in json.dumps(d)
    assert d["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "modelreg.dev/v1alpha1",
            "kind": "Model",
            "name": "credit",
            "uid": "u-model",
            "controller": True,
        }
    ]
    pod = d["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    # A pod going away keeps serving while every kube-proxy drops it (the kubelet's sleep action).
    assert c["lifecycle"] == {"preStop": {"sleep": {"seconds": builders.DRAIN_SECONDS}}}
    assert {"name": "model", "mountPath": "/models"} in c["volumeMounts"]
    assert c["image"] == "registry.local/modelreg:1"
    assert c["command"] == ["python", "-m", "modelreg.runtime"]
    env = {e["name"]: e for e in c["env"]}
    assert env["MODELREG_ARTIFACT_SHA256"]["value"] == "ab" * 32
    assert env["MODELREG_ARTIFACT_URI"]["value"] == "s3://models/credit/3/m.onnx"
    assert env["MODELREG_ARTIFACT_FORMAT"]["value"] == "onnx"
    assert env["MODELREG_MODEL_NAME"]["value"] == "credit"
    assert env["MODELREG_S3_ENDPOINT"]["value"] == "http://minio:9000"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key] == {
            "name": key,
            "valueFrom": {"secretKeyRef": {"name": "s3-creds", "key": key}},
        }
    assert d["spec"]["replicas"] == 2
    assert d["spec"]["progressDeadlineSeconds"] == 300


def test_custom_runtime_uses_given_image_command_args() -> None:
    d = builders.build_deployment(
        _model(runtime="custom", image="me/server:2", command=["/srv"], args=["--x"]),
        _mv(),
        DEFAULTS,
    )
    c = d["spec"]["template"]["spec"]["containers"][0]
    assert (c["image"], c["command"], c["args"]) == ("me/server:2", ["/srv"], ["--x"])


def test_service_selects_the_serving_version_and_is_owned_by_the_model() -> None:
    s = builders.build_service(_model(), 7)
    assert s["metadata"]["name"] == "credit"
    assert s["spec"]["selector"] == {naming.MODEL_LABEL: "credit", naming.VERSION_LABEL: "7"}
    assert s["metadata"]["ownerReferences"][0]["kind"] == "Model"
    assert "team" not in s["metadata"]["labels"]


def test_long_names_are_shortened_stably() -> None:
    long = "m" * 63
    a = naming.deployment_name(long, 12345)
    assert len(a) <= 63
    assert a == naming.deployment_name(long, 12345)
    assert a != naming.deployment_name(long, 12346)
    assert naming.deployment_name("short", 1) == "short-v1"


def test_reserved_env_names_from_the_model_never_reach_the_pod() -> None:
    """Defence in depth behind the CRD's rule (objects stored before it, or a CRD not updated)."""
    user_env = [
        {"name": "MODELREG_ALLOW_PICKLE", "value": "true"},
        {"name": "modelreg_allow_pickle", "value": "true"},  # the model server ignores case
        {"name": "MODELREG_ARTIFACT_SHA256", "value": "00" * 32},
        {"name": "AWS_SESSION_TOKEN", "value": "forged"},
        {"name": "AWS_PROFILE", "value": "other"},
        {"name": "AWS_ENDPOINT_URL_S3", "value": "http://elsewhere:9000"},
        {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/token"},
        {"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": "http://169.254.170.2/x"},
        {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "x", "key": "y"}}},
        {"name": "LOG_LEVEL", "value": "debug"},
        {"name": "AWS_MAX_ATTEMPTS", "value": "5"},
    ]
    d = builders.build_deployment(_model(env=user_env), _mv(), DEFAULTS)
    (c,) = d["spec"]["template"]["spec"]["containers"]
    names = [e["name"] for e in c["env"]]
    assert len(names) == len(set(names))
    env = {e["name"]: e for e in c["env"]}
    for dropped in (
        "MODELREG_ALLOW_PICKLE",
        "modelreg_allow_pickle",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL_S3",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        assert dropped not in env, dropped
    assert env["MODELREG_ARTIFACT_SHA256"]["value"] == "ab" * 32
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"] == {
        "secretKeyRef": {"name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"}
    }
    assert env["LOG_LEVEL"] == {"name": "LOG_LEVEL", "value": "debug"}
    assert env["AWS_MAX_ATTEMPTS"] == {"name": "AWS_MAX_ATTEMPTS", "value": "5"}


def test_reserved_env_names_are_matched_without_regard_to_case() -> None:
    from modelreg.api.models import is_reserved_env

    for name in (
        "MODELREG_X",
        "Modelreg_Allow_Pickle",
        "aws_secret_access_key",
        "AWS_ENDPOINT_URL",
    ):
        assert is_reserved_env(name), name
    for name in ("MODELREG", "AWS_REGION", "AWS_DEFAULT_REGION", "MY_MODELREG_X", "HTTP_PROXY"):
        assert not is_reserved_env(name), name


SIGNATURE = {
    "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
    ],
}


def _signed(n: int = 3) -> ModelVersion:
    mv = _mv(n)
    return ModelVersion.model_validate(
        {**mv.wire(), "spec": {**mv.spec.wire(), "signature": SIGNATURE}}
    )


def _env_of(d: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (c,) = d["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in c["env"]}


def test_signature_env_only_when_the_version_has_one() -> None:
    signed = builders.build_deployment(_model(), _signed(), DEFAULTS)
    env = _env_of(signed)
    value = env["MODELREG_SIGNATURE"]["value"]
    assert isinstance(value, str)
    assert json.loads(value) == SIGNATURE
    assert " " not in value  # compact
    assert value == builders.signature_json(_signed())

    unsigned = builders.build_deployment(_model(), _mv(), DEFAULTS)
    assert "MODELREG_SIGNATURE" not in _env_of(unsigned)
    assert builders.signature_json(_mv()) == ""
    # The signature is part of the pod spec: a new one rolls the Deployment.
    assert (
        signed["metadata"]["annotations"][naming.SPEC_HASH]
        != unsigned["metadata"]["annotations"][naming.SPEC_HASH]
    )


def test_signature_env_is_for_the_builtin_runtime_only() -> None:
    for runtime in ("mlserver", "custom"):
        d = builders.build_deployment(_model(runtime=runtime), _signed(), DEFAULTS)
        assert "MODELREG_SIGNATURE" not in _env_of(d), runtime


def test_a_models_env_cannot_set_the_signature() -> None:
    forged = [
        {"name": "MODELREG_SIGNATURE", "value": '{"inputs": []}'},
        {"name": "modelreg_signature", "value": '{"inputs": []}'},
    ]
    env = _env_of(builders.build_deployment(_model(env=forged), _signed(), DEFAULTS))
    assert "modelreg_signature" not in env
    assert json.loads(env["MODELREG_SIGNATURE"]["value"]) == SIGNATURE
    env = _env_of(builders.build_deployment(_model(env=forged), _mv(), DEFAULTS))
    assert "MODELREG_SIGNATURE" not in env
    assert "modelreg_signature" not in env


def test_the_builtin_runtime_serves_grpc_on_its_own_port_and_the_service_exposes_it() -> None:
    dep = builders.build_deployment(_model(), _mv(), DEFAULTS)
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8080, "grpc": 9000}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["MODELREG_GRPC_PORT"] == "9000"
    svc = builders.build_service(_model(), 3)
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["grpc"] == {
        "name": "grpc",
        "port": 9000,
        "targetPort": "grpc",
        "protocol": "TCP",
        "appProtocol": "grpc",
    }
    assert ports["http"]["port"] == 80


def test_grpc_port_zero_and_other_runtimes_expose_no_grpc() -> None:
    for m in (_model(grpcPort=0), _model(runtime="mlserver")):
        dep = builders.build_deployment(m, _mv(), DEFAULTS)
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        assert [p["name"] for p in c["ports"]] == ["http"]
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["MODELREG_GRPC_PORT"] == "0", "the runtime is told, not left at its default"
        assert [p["name"] for p in builders.build_service(m, 3)["spec"]["ports"]] == ["http"]


def test_batching_reaches_the_builtin_runtime_as_its_settings() -> None:
    dep = builders.build_deployment(
        _model(batching={"maxBatchSize": 64, "maxWaitMs": 2.5}), _mv(), DEFAULTS
    )
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert (env["MODELREG_BATCH_MAX_SIZE"], env["MODELREG_BATCH_MAX_WAIT_MS"]) == ("64", "2.5")
    # Off unless asked for: the runtime's own default (1 = no batching) applies.
    (c,) = builders.build_deployment(_model(), _mv(), DEFAULTS)["spec"]["template"]["spec"][
        "containers"
    ]
    assert "MODELREG_BATCH_MAX_SIZE" not in {e["name"] for e in c["env"]}


def test_a_model_can_turn_batching_off() -> None:
    (c,) = builders.build_deployment(_model(batching={"maxBatchSize": 1}), _mv(), DEFAULTS)["spec"][
        "template"
    ]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["MODELREG_BATCH_MAX_SIZE"] == "1"
