"""Model loaders: one verified artifact file in, one `LoadedModel` out.

Called by `modelreg.runtime.dataplane` after the artifact's sha256 has been checked, never before.
Each format's library is imported only when that format is loaded, so a server pays for one.

Every loaded model describes its tensors (`inputs`, `outputs`: name, v2 datatype, shape with -1
for a free dimension) and predicts from named numpy arrays. ONNX models take their names and
types from the graph. The other formats have one input (any name is accepted, `input-0` is
advertised) and outputs named after the estimator's methods, as MLServer names them: `predict`,
plus `predict_proba` for classifiers that have it.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelreg.runtime.codec import DATATYPES, datatype_of
from modelreg.runtime.errors import BadRequest, ModelLoadError, PredictionFailed
from modelreg.runtime.settings import SAFE_FORMATS, ArtifactFormat

log = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class LoadOptions:
    allow_pickle: bool = False
    skops_trusted_types: tuple[str, ...] = ()
    threads: int = 1


class LoadedModel(ABC):
    """A model ready to predict. `predict` is thread-safe."""

    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    # Whether `inputs`/`outputs` come from the artifact itself (an ONNX graph) rather than being
    # guessed by the loader; a registered signature must then agree with them to be reported.
    native_signature: bool = False

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)

    def check_outputs(self, names: Sequence[str]) -> None:
        known = self.output_names
        for n in names:
            if n not in known:
                raise BadRequest(f"unknown output {n!r}; this model has {', '.join(known)}")

    @abstractmethod
    def predict(self, inputs: dict[str, Array], outputs: Sequence[str]) -> dict[str, Array]:
        """Run the model; `outputs` are names from `self.outputs` (already checked)."""


def load_model(path: Path, fmt: ArtifactFormat, options: LoadOptions) -> LoadedModel:
    """Load a verified artifact. Raises ModelLoadError with a human message."""
    refuse_unsafe(fmt, options)
    try:
        if fmt is ArtifactFormat.ONNX:
            return OnnxModel(path, options.threads)
        if fmt is ArtifactFormat.XGBOOST:
            return XGBoostModel(path, options.threads)
        if fmt is ArtifactFormat.LIGHTGBM:
            return LightGBMModel(path, options.threads)
        if fmt is ArtifactFormat.SKOPS:
            return EstimatorModel(_load_skops(path, options.skops_trusted_types), "skops")
        return EstimatorModel(_load_pickle(path), "sklearn")
    except ModelLoadError:
        raise
    except ImportError as e:
        raise ModelLoadError(
            f"the {fmt.value} library is not installed in this image ({e}); install "
            "modelreg[runtime]"
        ) from e
    except Exception as e:
        raise ModelLoadError(
            f"cannot load {path.name} as {fmt.value}: {type(e).__name__}: {_short(e)}"
        ) from e


def refuse_unsafe(fmt: ArtifactFormat, options: LoadOptions) -> None:
    """Refuse pickle-based formats unless explicitly allowed; checked before any download."""
    if fmt is ArtifactFormat.SKLEARN and not options.allow_pickle:
        raise ModelLoadError(
            "refusing to load format 'sklearn': it is a pickle (joblib), and unpickling runs "
            "code from the file. Set MODELREG_ALLOW_PICKLE=true only if you trust whoever wrote "
            f"the artifact, or publish it in a safe format: {', '.join(SAFE_FORMATS)}."
        )


def _short(e: BaseException, limit: int = 400) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------------------------------
# ONNX

_ONNX_TYPES = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(float16)": "FP16",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}


def _dims(shape: Sequence[Any]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in shape)


class OnnxModel(LoadedModel):
    """onnxruntime on the CPU. Sequence-of-map outputs (skl2onnx's ZipMap probabilities) are
    served as a [batch, classes] FP32 tensor, columns in the order of the sorted class labels."""

    platform = "onnxruntime_onnx"
    native_signature = True

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort  # noqa: PLC0415 - only when serving ONNX

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # Spinning workers burn the cores that the HTTP loop needs between requests.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        self._ort = ort
        self._session = ort.InferenceSession(
            os.fspath(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        inputs: list[TensorSpec] = []
        self._input_dtypes: dict[str, np.dtype[Any]] = {}
        for arg in self._session.get_inputs():
            datatype = _ONNX_TYPES.get(arg.type)
            if datatype is None:
                raise ModelLoadError(f"ONNX input {arg.name!r} has unsupported type {arg.type}")
            inputs.append(TensorSpec(arg.name, datatype, _dims(arg.shape)))
            self._input_dtypes[arg.name] = DATATYPES[datatype]
        outputs: list[TensorSpec] = []
        self._zipmap: set[str] = set()
        for arg in self._session.get_outputs():
            datatype = _ONNX_TYPES.get(arg.type)
            if datatype is None and arg.type.startswith("seq(map("):
                self._zipmap.add(arg.name)
                outputs.append(TensorSpec(arg.name, "FP32", (-1, -1)))
                continue
            if datatype is None:
                raise ModelLoadError(f"ONNX output {arg.name!r} has unsupported type {arg.type}")
            outputs.append(TensorSpec(arg.name, datatype, _dims(arg.shape)))
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)

    def predict(self, inputs: dict[str, Array], outputs: Sequence[str]) -> dict[str, Array]:
        feed: dict[str, Array] = {}
        for spec in self.inputs:
            array = inputs.get(spec.name)
            if array is None:
                raise BadRequest(
                    f"missing input {spec.name!r}; this model takes "
                    f"{', '.join(s.name for s in self.inputs)}"
                )
            _check_shape(spec, array)
            want = self._input_dtypes[spec.name]
            if spec.datatype == "BYTES":
                array = np.array([_text(v) for v in array.ravel()], dtype=object).reshape(
                    array.shape
                )
            elif array.dtype != want:
                array = array.astype(want)
            feed[spec.name] = array
        if len(inputs) != len(feed):
            extra = sorted(set(inputs) - set(feed))
            raise BadRequest(
                f"unknown input {extra[0]!r}; this model takes "
                f"{', '.join(s.name for s in self.inputs)}"
            )
        try:
            results = self._session.run(list(outputs), feed)
        except self._ort.capi.onnxruntime_pybind11_state.InvalidArgument as e:
            raise BadRequest(f"the model rejected the input: {_short(e)}") from None
        except Exception as e:
            raise PredictionFailed(f"the model failed: {type(e).__name__}: {_short(e)}") from e
        out: dict[str, Array] = {}
        for name, value in zip(outputs, results, strict=True):
            if name in self._zipmap:
                out[name] = _zipmap_to_array(value)
            else:
                out[name] = np.asarray(value)
        return out


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _zipmap_to_array(rows: list[dict[Any, float]]) -> Array:
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    keys = sorted(rows[0])
    return np.array([[row[k] for k in keys] for row in rows], dtype=np.float32)


def _check_shape(spec: TensorSpec, array: Array) -> None:
    if len(spec.shape) != array.ndim or any(
        d >= 0 and d != a for d, a in zip(spec.shape, array.shape, strict=True)
    ):
        want = ["-1" if d < 0 else str(d) for d in spec.shape]
        raise BadRequest(
            f"input {spec.name!r} has shape {list(array.shape)}, the model expects "
            f"[{', '.join(want)}]"
        )


# ------------------------------------------------------------------------------------------------
# Estimators with one 2-D input: xgboost, lightgbm, scikit-learn (skops or pickle)


class _SingleInputModel(LoadedModel):
    """One [batch, features] input under any name; outputs computed per requested method."""

    input_name = "input-0"

    def _matrix(self, inputs: dict[str, Array], dtype: type[np.generic] | None) -> Array:
        if len(inputs) != 1:
            raise BadRequest(
                f"this model takes exactly one input tensor ([batch, features]); got {len(inputs)}"
            )
        (array,) = inputs.values()
        if array.dtype.kind not in "biuf":
            raise BadRequest(
                f"this {self.platform} model takes numbers; got {datatype_of(array.dtype)}"
            )
        if array.ndim == 1:
            array = array.reshape(1, -1)
        _check_shape(
            TensorSpec(self.input_name, self.inputs[0].datatype, self.inputs[0].shape), array
        )
        if dtype is not None and array.dtype != dtype:
            array = array.astype(dtype)
        return array


class XGBoostModel(_SingleInputModel):
    platform = "xgboost"

    def __init__(self, path: Path, threads: int) -> None:
        import xgboost as xgb  # noqa: PLC0415 - only when serving xgboost

        data = path.read_bytes()
        self._booster = xgb.Booster()
        # JSON and UBJSON both start with '{'; xgboost detects which from the buffer.
        self._booster.load_model(bytearray(data))
        if threads:
            self._booster.set_param({"nthread": threads})
        n = int(self._booster.num_features())
        self.inputs = (TensorSpec(self.input_name, "FP32", (-1, n)),)
        self.outputs = (_probe_output(self, "predict", n, np.float32),)

    def predict(self, inputs: dict[str, Array], outputs: Sequence[str]) -> dict[str, Array]:
        x = self._matrix(inputs, np.float32)
        try:
            y = self._booster.inplace_predict(x, validate_features=False)
        except Exception as e:
            raise PredictionFailed(f"xgboost failed: {_short(e)}") from e
        return {"predict": np.asarray(y)}


class LightGBMModel(_SingleInputModel):
    platform = "lightgbm"

    def __init__(self, path: Path, threads: int) -> None:
        import lightgbm as lgb  # noqa: PLC0415 - only when serving lightgbm

        self._booster = lgb.Booster(model_file=os.fspath(path))
        self._threads = threads
        n = int(self._booster.num_feature())
        self.inputs = (TensorSpec(self.input_name, "FP64", (-1, n)),)
        self.outputs = (_probe_output(self, "predict", n, np.float64),)

    def predict(self, inputs: dict[str, Array], outputs: Sequence[str]) -> dict[str, Array]:
        x = self._matrix(inputs, np.float64)
        kwargs: dict[str, Any] = {"num_threads": self._threads} if self._threads else {}
        try:
            y = self._booster.predict(x, **kwargs)
        except Exception as e:
            raise PredictionFailed(f"lightgbm failed: {_short(e)}") from e
        return {"predict": np.asarray(y)}


class EstimatorModel(_SingleInputModel):
    """A scikit-learn estimator or pipeline (from skops or joblib/pickle)."""

    def __init__(self, estimator: Any, source: str) -> None:
        if not callable(getattr(estimator, "predict", None)):
            raise ModelLoadError(
                f"the {source} artifact holds a {type(estimator).__name__}, which has no predict()"
            )
        self.platform = f"sklearn ({source})"
        self._est = estimator
        n = getattr(estimator, "n_features_in_", None)
        features = int(n) if isinstance(n, (int, np.integer)) else -1
        self.inputs = (TensorSpec(self.input_name, "FP64", (-1, features)),)
        methods = ["predict"]
        if callable(getattr(estimator, "predict_proba", None)):
            methods.append("predict_proba")
        self.outputs = tuple(_probe_output(self, m, features, np.float64) for m in methods)

    def predict(self, inputs: dict[str, Array], outputs: Sequence[str]) -> dict[str, Array]:
        x = self._matrix(inputs, None)
        out: dict[str, Array] = {}
        for name in outputs:
            try:
                out[name] = np.asarray(getattr(self._est, name)(x))
            except ValueError as e:
                raise BadRequest(f"the model rejected the input: {_short(e)}") from None
            except Exception as e:
                raise PredictionFailed(f"{name} failed: {type(e).__name__}: {_short(e)}") from e
        return out


def _probe_output(
    model: _SingleInputModel, name: str, features: int, dtype: type[np.generic]
) -> TensorSpec:
    """Learn an output's datatype and trailing shape from one prediction on a zero row.

    Doubles as a warm-up. When it fails (a pipeline that needs other inputs), the output is still
    served; its metadata just says less.
    """
    if features > 0:
        try:
            y = np.asarray(
                model.predict({"probe": np.zeros((1, features), dtype=dtype)}, [name])[name]
            )
            return TensorSpec(name, datatype_of(y.dtype), (-1, *y.shape[1:]))
        except Exception as e:  # metadata only; predictions will report errors
            log.warning("could not probe output %s: %s", name, _short(e))
    return TensorSpec(name, "FP64", (-1,))


def _load_skops(path: Path, extra_trusted: Sequence[str]) -> Any:
    import skops.io as sio  # noqa: PLC0415 - only when serving skops

    untrusted = sio.get_untrusted_types(file=path)
    refused = sorted(set(untrusted) - set(extra_trusted))
    if refused:
        raise ModelLoadError(
            "the skops file contains types that are not trusted by default: "
            f"{', '.join(refused)}. If they are expected, list them in "
            "MODELREG_SKOPS_TRUSTED_TYPES (a JSON list)."
        )
    return sio.load(path, trusted=list(untrusted))


def _load_pickle(path: Path) -> Any:
    import joblib  # noqa: PLC0415 - only when pickle is explicitly allowed

    return joblib.load(path)
