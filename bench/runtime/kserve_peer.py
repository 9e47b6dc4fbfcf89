# mypy: ignore-errors
# (Run by the python of .dev/venv-kserve, whose kserve, joblib and xgboost the project's mypy
# cannot see; nothing in the project imports this file.)
"""KServe's sklearn and xgboost model servers, as the runtime benchmark runs them.

Started by `bench.runtime.servers.kserve` as
`.dev/venv-kserve/bin/python bench/runtime/kserve_peer.py --kind sklearn|xgboost --model_dir DIR
--model_name NAME [kserve.ModelServer flags]`.

KServe's own `sklearnserver` and `xgbserver` are separate packages in the kserve repository
(python/sklearnserver, python/xgbserver) and are not published on PyPI; the `kserve` 0.21 SDK is.
So this file does what their `model.py` and `__main__.py` do, with that SDK and nothing else:

- sklearn: `joblib.load` of the one model file in the directory; `predict` takes
  `get_predict_input(payload)`, calls the estimator's `predict` (or `predict_proba` when the
  PREDICT_PROBA environment variable is "true", read per request as sklearnserver does), and
  returns `get_predict_response(payload, result, name)` (one output, `output-0`);
- xgboost: `xgb.Booster(params={"nthread": N}, model_file=...)` (`--nthread`, default 1 as in
  xgbserver); `predict` builds `xgb.DMatrix(instances, nthread=N)` and calls `booster.predict`;
- both: `kserve.ModelServer().start([model])`, configured by KServe's own command-line flags
  (`kserve.model_server.parser`), any error wrapped in `InferenceError`.
"""

import argparse
import os
import pathlib

import joblib
import kserve
import xgboost as xgb
from kserve import Model
from kserve import logging as kserve_logging
from kserve.errors import InferenceError, ModelMissingError
from kserve.utils.utils import get_predict_input, get_predict_response

SKLEARN_EXTENSIONS = (".joblib", ".pkl", ".pickle")
XGBOOST_EXTENSIONS = (".bst", ".json", ".ubj")
ENV_PREDICT_PROBA = "PREDICT_PROBA"


def _model_file(model_dir, extensions):
    path = pathlib.Path(model_dir)
    files = [p for p in path.iterdir() if p.is_file() and p.name.endswith(extensions)]
    if not files:
        raise ModelMissingError(str(path))
    if len(files) > 1:
        raise RuntimeError(f"More than one model file is detected: {files}")
    return files[0]


class SKLearnModel(Model):
    def __init__(self, name, model_dir):
        super().__init__(name)
        self.model_dir = model_dir
        self.ready = False

    def load(self):
        self._model = joblib.load(_model_file(self.model_dir, SKLEARN_EXTENSIONS))
        self.ready = True
        return self.ready

    def predict(self, payload, headers=None):
        try:
            instances = get_predict_input(payload)
            if os.environ.get(ENV_PREDICT_PROBA, "false").lower() == "true" and hasattr(
                self._model, "predict_proba"
            ):
                result = self._model.predict_proba(instances)
            else:
                result = self._model.predict(instances)
            return get_predict_response(payload, result, self.name)
        except Exception as e:
            raise InferenceError(str(e)) from e


class XGBoostModel(Model):
    def __init__(self, name, model_dir, nthread):
        super().__init__(name)
        self.model_dir = model_dir
        self.nthread = nthread
        self.ready = False

    def load(self):
        self._booster = xgb.Booster(
            params={"nthread": self.nthread},
            model_file=str(_model_file(self.model_dir, XGBOOST_EXTENSIONS)),
        )
        self.ready = True
        return self.ready

    def predict(self, payload, headers=None):
        try:
            instances = get_predict_input(payload)
            dmatrix = xgb.DMatrix(instances, nthread=self.nthread)
            result = self._booster.predict(dmatrix)
            return get_predict_response(payload, result, self.name)
        except Exception as e:
            raise InferenceError(str(e)) from e


parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
parser.add_argument("--kind", choices=("sklearn", "xgboost"), required=True)
parser.add_argument("--model_dir", required=True, help="A local path to the model directory")
parser.add_argument("--nthread", default=1, type=int, help="Number of threads used by XGBoost.")
args, _ = parser.parse_known_args()

if __name__ == "__main__":
    if args.configure_logging:
        kserve_logging.configure_logging(args.log_config_file)
    if args.kind == "sklearn":
        model = SKLearnModel(args.model_name, args.model_dir)
    else:
        model = XGBoostModel(args.model_name, args.model_dir, args.nthread)
    model.load()
    kserve.ModelServer().start([model])
