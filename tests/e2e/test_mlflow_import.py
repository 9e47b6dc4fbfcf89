"""`modelreg import-mlflow` against a real MLflow registry (sqlite backend, created here with the
mlflow package), the real control plane, S3 server and operator.

The registry holds an sklearn model with three versions (one Archived by stage, one aliased
`champion`, one in Staging) and an ONNX model. The import must create the Models and the
ModelVersions with the mapped stages, metrics, params and lineage, copy each artifact into the
store byte for byte (the operator verifies every sha256), and a second run must create nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from tests.e2e.helpers import REPO, S3, Kubectl, OperatorProcess, wait_for

try:
    import mlflow  # noqa: F401 - only its presence is checked here; the registry is built in a subprocess
except ImportError:  # pragma: no cover - an environment problem, reported as a failure, not a skip
    pytest.fail("the mlflow extra is not installed: pip install -e '.[mlflow]'", pytrace=False)

MAKE_REGISTRY = textwrap.dedent(
    """
    import json, sys, warnings
    warnings.filterwarnings("ignore")
    import mlflow, mlflow.onnx, mlflow.sklearn, sklearn
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    uri = sys.argv[1]
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("e2e")
    X, y = load_iris(return_X_y=True)
    runs = {}
    for c in (0.1, 1.0, 10.0):
        with mlflow.start_run() as run:
            model = LogisticRegression(C=c, max_iter=500).fit(X, y)
            mlflow.log_param("C", c)
            mlflow.log_metric("accuracy", model.score(X, y))
            mlflow.set_tag("mlflow.source.git.commit", "0123abc")
            mlflow.sklearn.log_model(
                model, name="model", registered_model_name="Iris Classifier",
                pip_requirements=[f"scikit-learn=={sklearn.__version__}", "numpy"],
                signature=infer_signature(X, model.predict(X)),
            )
            runs[str(c)] = run.info.run_id
    with mlflow.start_run() as run:
        mlflow.log_metric("auc", 0.97)
        onx = to_onnx(LogisticRegression(max_iter=500).fit(X, y), X[:1].astype("float32"))
        mlflow.onnx.log_model(
            onx, name="model", registered_model_name="Fraud Detector",
            pip_requirements=["onnx"],
        )
        runs["onnx"] = run.info.run_id
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.transition_model_version_stage("Iris Classifier", "1", "Archived")
    client.set_registered_model_alias("Iris Classifier", "champion", "2")
    client.transition_model_version_stage("Iris Classifier", "3", "Staging")
    client.update_model_version("Iris Classifier", "2", description="the champion")
    runs["sklearn"] = sklearn.__version__
    print(json.dumps(runs))
    """
)


@pytest.fixture(scope="module")
def mlflow_registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    proc = subprocess.run(
        [sys.executable, "-c", MAKE_REGISTRY, uri],
        cwd=root,  # the file artifact store lands next to the database
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    runs: dict[str, str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return uri, runs


def modelreg(kubeconfig: str, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONPATH": str(REPO / "operator")}
    return subprocess.run(
        [sys.executable, "-m", "modelreg.cli.main", "-n", namespace, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def test_import_mlflow_registry(
    mlflow_registry: tuple[str, dict[str, str]],
    kubeconfig: str,
    kubectl: Kubectl,
    namespace: str,
    s3: S3,
    s3_secret: str,
    operator: OperatorProcess,
) -> None:
    uri, runs = mlflow_registry
    args = [
        "import-mlflow", uri,
        "--storage-prefix", f"s3://{s3.bucket}/{namespace}/",
        "--storage-endpoint", s3.endpoint,
        "--storage-region", s3.region,
        "--secret", s3_secret,
    ]  # fmt: skip
    r = modelreg(kubeconfig, namespace, *args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "created 2 model(s), 4 version(s); 0 already imported"
    assert "aliases      iris-classifier: @champion -> v2" in r.stdout.splitlines()

    models = {m["metadata"]["name"]: m for m in kubectl.items("models", namespace)}
    assert set(models) == {"iris-classifier", "fraud-detector"}
    assert models["iris-classifier"]["spec"]["storage"] == {
        "uri": f"s3://{s3.bucket}/{namespace}/iris-classifier/",
        "endpoint": s3.endpoint,
        "region": s3.region,
        "secretRef": {"name": s3_secret},
    }
    versions = {mv["metadata"]["name"]: mv for mv in kubectl.items("modelversions", namespace)}
    assert set(versions) == {
        "iris-classifier-v1", "iris-classifier-v2", "iris-classifier-v3", "fraud-detector-v1"
    }  # fmt: skip
    stages = {n: mv["spec"]["stage"] for n, mv in versions.items()}
    assert stages == {
        "iris-classifier-v1": "Archived",
        "iris-classifier-v2": "Production",
        "iris-classifier-v3": "Staging",
        "fraud-detector-v1": "None",
    }
    # MLflow's alias is carried over as an alias, not only as a stage.
    assert models["iris-classifier"]["spec"]["aliases"] == {"champion": 2}
    v2 = versions["iris-classifier-v2"]["spec"]
    assert v2["params"] == {"C": "1.0"}
    assert 0.9 < v2["metrics"]["accuracy"] <= 1.0
    assert v2["lineage"]["run"] == runs["1.0"]
    assert v2["lineage"]["gitCommit"] == "0123abc"
    assert v2["lineage"]["mlflowModel"] == "Iris Classifier/2"
    assert v2["description"] == "the champion"
    assert v2["framework"] == "sklearn"
    assert v2["artifact"]["format"] == "skops"
    assert v2["artifact"]["uri"].endswith("/iris-classifier/2/model.skops")
    # The environment and signature MLflow recorded: python_env.yaml's Python, requirements.txt's
    # pins (the unpinned numpy is left out, and said so), MLmodel's tensor signature.
    env = v2["environment"]
    assert env["python"] == platform.python_version()
    assert f"scikit-learn=={runs['sklearn']}" in env["packages"]
    assert not any(p.startswith("numpy") for p in env["packages"])
    assert "left out of the environment: numpy" in r.stdout, r.stdout
    sig = v2["signature"]
    assert [(t["datatype"], t["shape"]) for t in sig["inputs"]] == [("FP64", [-1, 4])]
    assert [(t["datatype"], t["shape"]) for t in sig["outputs"]] == [("INT64", [-1])]
    onnx = versions["fraud-detector-v1"]["spec"]
    # No signature in MLmodel: the ONNX graph's input is taken.
    assert onnx["signature"]["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    assert onnx["artifact"]["format"] == "onnx"
    assert onnx["artifact"]["uri"].endswith("/fraud-detector/1/model.onnx")
    assert onnx["lineage"]["run"] == runs["onnx"]

    # The bytes in the store are MLflow's bytes.
    for mv in versions.values():
        key = mv["spec"]["artifact"]["uri"].removeprefix(f"s3://{s3.bucket}/")
        assert hashlib.sha256(s3.get(key)).hexdigest() == mv["spec"]["artifact"]["sha256"]

    # The operator agrees: every artifact verifies, and the champion serves production.
    def verified() -> bool:
        items = kubectl.items("modelversions", namespace)
        return all(
            (mv.get("status", {}).get("artifact") or {}).get("verified") is True
            or mv["spec"]["stage"] == "Archived"
            for mv in items
        )

    wait_for(verified, timeout=120, what="every imported artifact verified")
    wait_for(
        lambda: (
            (kubectl.get("mv", "iris-classifier-v2", namespace) or {})
            .get("status", {})
            .get("phase")
            == "Serving"
        ),
        timeout=120,
        what="the champion serving",
    )

    # Idempotent: a second run creates nothing and changes no spec.
    def snapshot() -> dict[str, tuple[str, int]]:
        return {
            f"{kind}/{o['metadata']['name']}": (o["metadata"]["uid"], o["metadata"]["generation"])
            for kind in ("models", "modelversions")
            for o in kubectl.items(kind, namespace)
        }

    before = snapshot()
    r = modelreg(kubeconfig, namespace, *args, "-o", "json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["modelsCreated"] == []
    assert {v["action"] for v in report["versions"]} == {"exists"}
    assert report["aliases"] == {"iris-classifier": {"champion": 2}}
    assert snapshot() == before


def test_import_mlflow_errors(
    mlflow_registry: tuple[str, dict[str, str]], kubeconfig: str, namespace: str, kubectl: Kubectl
) -> None:
    uri, _ = mlflow_registry
    r = modelreg(kubeconfig, namespace, "import-mlflow", uri)
    assert r.returncode == 5
    assert "--storage-prefix" in r.stderr
    r = modelreg(kubeconfig, namespace, "import-mlflow", uri, "--model", "No Such Model",
                 "--storage-prefix", "s3://models/x/")  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.startswith("error: reading the MLflow registry")
    assert "Traceback" not in r.stderr
    assert kubectl.items("models", namespace) == []
