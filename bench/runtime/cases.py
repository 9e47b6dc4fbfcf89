"""The runtime benchmark's two cases: each model, its artifacts, the request body and the answer.

Called by `bench.runtime.bench` before any server starts. Each model is fitted once in this
process and saved in every format a server under test reads, from the same fitted object; the
expected answer is computed here from that object, and `check_answer` holds every server's response
to it (a benchmark of servers that answer differently is not a result).

- `small`: scikit-learn LogisticRegression on iris (150 x 4). modelreg serves the `.skops` file
  (its safe scikit-learn format); MLServer's `mlserver_sklearn` and KServe's sklearn server read
  the joblib file. One row, FP64: every server computes `estimator.predict` and answers with the
  one label.
- `xgboost`: an xgboost regressor (squared error, hist, on a synthetic 20,000 x 32 data set) saved
  in xgboost's JSON format, which all three load natively (modelreg `xgboost`, MLServer
  `mlserver_xgboost`, KServe's xgbserver). Requests of 256 rows FP32: every server returns 256
  floats from the same booster.

Each request names the one output it wants. modelreg and MLServer call the output of `predict`
`predict` and get the same bytes, `outputs: [{"name": "predict"}]`; KServe's sklearn and xgboost
servers call their only output `output-0` (and answer 400 to a request for `predict`), so KServe
gets the same bytes with that name instead (`Case.request`): one byte longer, the same work.

Artifacts are cached under .dev/bench-runtime/ by a key of the recipe and library versions, so a
`--quick` development run does not refit.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]

SMALL_ROW = [5.1, 3.5, 1.4, 0.2]
INPUT_NAME = "input-0"  # modelreg's advertised name; MLServer and KServe take any name


@dataclass(frozen=True)
class XGBoostRecipe:
    trees: int = 800
    depth: int = 8
    rows: int = 256  # per request
    features: int = 32
    samples: int = 20_000
    seed: int = 7


@dataclass(frozen=True)
class Case:
    key: str  # "small" | "xgboost"
    title: str
    model_name: str
    description: str
    inputs: list[dict[str, Any]]  # the request's `inputs`, the same for every server
    folder: Path
    modelreg_artifact: Path
    modelreg_format: str  # MODELREG_ARTIFACT_FORMAT
    peer_artifact: Path  # what MLServer and KServe load
    mlserver_implementation: str
    kserve_kind: str  # "sklearn" | "xgboost", see bench/runtime/kserve_peer.py
    expected: Array
    exact: bool  # labels compare equal; floats allclose
    # MODELREG_BATCH_MAX_SIZE of an extra modelreg row, for a case whose requests are too big
    # for the format's default (BATCH_MAX_SIZE_DEFAULTS) to put two of them in one call; None:
    # the defaults and "batching off" rows say all there is.
    large_batch_rows: int | None

    def request(self, output: str = "predict") -> tuple[bytes, Path]:
        """The request body asking for `output` (the server's name for `predict`), and a file
        holding it for the load client."""
        body = json.dumps(
            {"inputs": self.inputs, "outputs": [{"name": output}]}, separators=(",", ":")
        ).encode()
        path = self.folder / f"body-{output}.json"
        if not path.exists() or path.read_bytes() != body:
            path.write_bytes(body)
        return body, path


def _inputs(data: list[float], shape: list[int], datatype: str) -> list[dict[str, Any]]:
    return [{"name": INPUT_NAME, "shape": shape, "datatype": datatype, "data": data}]


def _cache_key(*parts: object) -> str:
    versions = [metadata.version(d) for d in ("scikit-learn", "skops", "joblib", "numpy")]
    return hashlib.sha256(repr((parts, versions)).encode()).hexdigest()[:16]


def small_case(work: Path) -> Case:
    import joblib
    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    folder = work / f"small-{_cache_key('logreg-iris', 500)}"
    skops_path, joblib_path = folder / "model.skops", folder / "model.joblib"
    if not (skops_path.exists() and joblib_path.exists()):
        folder.mkdir(parents=True, exist_ok=True)
        X, y = load_iris(return_X_y=True)
        est = LogisticRegression(max_iter=500).fit(X, y)
        sio.dump(est, skops_path)
        joblib.dump(est, joblib_path)
    est = joblib.load(joblib_path)
    expected = np.asarray(est.predict(np.array([SMALL_ROW], dtype=np.float64)))
    inputs = _inputs(SMALL_ROW, [1, 4], "FP64")
    size = len(json.dumps(inputs, separators=(",", ":")))
    return Case(
        key="small",
        title="small model: scikit-learn LogisticRegression (iris), 1 row",
        model_name="iris",
        description=(
            "scikit-learn LogisticRegression fitted on iris, saved from the same object as skops "
            "(modelreg) and joblib (MLServer, KServe); request: one row `[1,4]` FP64 "
            f"(`inputs` {size} bytes) asking for the one output of `predict`; every server "
            "answers the label only"
        ),
        inputs=inputs,
        folder=folder,
        modelreg_artifact=skops_path,
        modelreg_format="skops",
        peer_artifact=joblib_path,
        mlserver_implementation="mlserver_sklearn.SKLearnModel",
        kserve_kind="sklearn",
        expected=expected,
        exact=True,
        large_batch_rows=None,  # the default (32 rows) already holds 32 one-row requests
    )


def xgboost_case(work: Path, recipe: XGBoostRecipe) -> Case:
    import xgboost as xgb
    from sklearn.datasets import make_regression

    key = _cache_key("xgb-regression", recipe, metadata.version("xgboost-cpu"))
    folder = work / f"xgboost-{key}"
    model_path = folder / "model.json"
    X, y = make_regression(
        n_samples=recipe.samples,
        n_features=recipe.features,
        n_informative=recipe.features * 3 // 4,
        noise=5.0,
        random_state=recipe.seed,
    )
    if not model_path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        params = {
            "objective": "reg:squarederror",
            "tree_method": "hist",
            "max_depth": recipe.depth,
            "eta": 0.05,
            "seed": recipe.seed,
        }
        booster = xgb.train(
            params, xgb.DMatrix(X.astype(np.float32), y), num_boost_round=recipe.trees
        )
        booster.save_model(str(model_path.with_suffix(".tmp.json")))
        model_path.with_suffix(".tmp.json").rename(model_path)
    # Three decimals: short JSON numbers, parsed to the same float32 by every server.
    rows = np.round(X[: recipe.rows].astype(np.float64), 3)
    booster = xgb.Booster(model_file=str(model_path))
    booster.set_param({"nthread": 1})
    expected = np.asarray(booster.inplace_predict(rows.astype(np.float32)))
    inputs = _inputs(rows.ravel().tolist(), [recipe.rows, recipe.features], "FP32")
    size = len(json.dumps(inputs, separators=(",", ":")))
    return Case(
        key="xgboost",
        title=(
            f"compute-heavy: xgboost, {recipe.trees} trees of depth {recipe.depth}, "
            f"{recipe.rows} rows per request"
        ),
        model_name="trees",
        description=(
            f"xgboost regressor ({recipe.trees} trees, max depth {recipe.depth}, "
            f"{recipe.features} features, fitted on {recipe.samples:,} synthetic rows) saved once "
            "in xgboost's JSON format and loaded natively by all three; request: "
            f"`[{recipe.rows},{recipe.features}]` FP32 (`inputs` {size / 1024:.0f} KiB) asking "
            f"for the one output of `predict`; every server answers {recipe.rows} predictions"
        ),
        inputs=inputs,
        folder=folder,
        modelreg_artifact=model_path,
        modelreg_format="xgboost",
        peer_artifact=model_path,
        mlserver_implementation="mlserver_xgboost.XGBoostModel",
        kserve_kind="xgboost",
        expected=expected,
        exact=False,
        # The default, 32 rows, is less than one request: each is predicted alone. 1024 rows
        # put up to 4 requests in one call.
        large_batch_rows=4 * recipe.rows,
    )


class WrongAnswer(RuntimeError):
    pass


def check_answer(case: Case, server: str, response: dict[str, Any]) -> None:
    """Raise WrongAnswer unless `response` is one output holding the expected predictions."""
    outputs = response.get("outputs")
    if not isinstance(outputs, list) or len(outputs) != 1:
        raise WrongAnswer(f"{server}: expected exactly one output, got {str(response)[:300]}")
    got = np.asarray(outputs[0].get("data"), dtype=np.float64).ravel()
    want = case.expected.astype(np.float64).ravel()
    same = got.shape == want.shape and (
        np.array_equal(got, want) if case.exact else np.allclose(got, want, rtol=1e-5)
    )
    if not same:
        raise WrongAnswer(
            f"{server} answers {got[:5].tolist()}... for the {case.key} case; the model says "
            f"{want[:5].tolist()}..."
        )
