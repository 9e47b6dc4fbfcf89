"""The Open Inference Protocol v2 over gRPC, against a real server on 127.0.0.1.

Two clients modelreg did not shape: tritonclient.grpc (which sends raw_input_contents, as Triton's
users do) and a stub over our own generated messages that sends typed `contents`. Their answers
are compared with onnxruntime run here and with the REST endpoints of the same server. Also: the
protobuf is the one tritonclient compiled (field by field), errors map to gRPC codes with the
REST messages, grpc.health.v1 turns SERVING only once the model is loaded, BYTES tensors both
ways, the metrics count gRPC calls, and SIGTERM lets a gRPC call in flight finish.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
from google.protobuf import descriptor_pool
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2 as triton_pb
from tritonclient.utils import InferenceServerException

from modelreg.runtime.dataplane import DataPlane
from modelreg.runtime.proto import grpc_predict_v2_pb2 as pb
from modelreg.runtime.server import RuntimeServer
from modelreg.runtime.settings import RuntimeSettings
from tests.unit.runtime.conftest import (
    Artifact,
    Artifacts,
    Running,
    serve,
    settings_for,
    sha256_of,
    wait_for,
)

REPO = Path(__file__).resolve().parents[3]
SERVICE = "inference.GRPCInferenceService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
CALLS = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def target(running: Running) -> str:
    assert running.server.grpc is not None
    return f"127.0.0.1:{running.server.grpc.port}"


class Stub:
    """inference.GRPCInferenceService and grpc.health.v1 through our own generated messages."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(
            address, options=[("grpc.max_receive_message_length", -1)]
        )

    def call(self, method: str, request: Message, reply: type[Message]) -> Any:
        fn = self.channel.unary_unary(
            f"/{SERVICE}/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=reply.FromString,
        )
        return fn(request, timeout=60)

    def infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        reply: pb.ModelInferResponse = self.call("ModelInfer", request, pb.ModelInferResponse)
        return reply

    def health(self, service: str = "") -> int:
        check = health_pb2_grpc.HealthStub(self.channel).Check
        status: int = check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
        return status

    def close(self) -> None:
        self.channel.close()


def _x(artifacts: Artifacts, rows: int = 10) -> np.ndarray[Any, Any]:
    x = np.asarray(artifacts.X[::15], dtype=np.float32)  # 10 rows, all classes
    return np.tile(x, (rows // 10, 1)) if rows > 10 else x


def _reference(artifacts: Artifacts, x: np.ndarray[Any, Any]) -> tuple[Any, Any]:
    sess = ort.InferenceSession(str(artifacts["onnx"].path), providers=["CPUExecutionProvider"])
    label, proba = sess.run(None, {"X": x})
    return label, proba


def _typed_request(x: np.ndarray[Any, Any], **fields: Any) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="iris", **fields)
    tensor = request.inputs.add(name="X", datatype="FP32", shape=x.shape)
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    return request


@pytest.fixture(scope="module")
def grpc_server(artifacts: Artifacts) -> Iterator[Running]:
    with serve(settings_for(artifacts["onnx"], grpc_port=free_port())) as running:
        assert running.plane.state == "ready", running.plane.detail
        yield running


@pytest.fixture
def client(grpc_server: Running) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(target(grpc_server))
    yield c
    c.close()


@pytest.fixture
def stub(grpc_server: Running) -> Iterator[Stub]:
    s = Stub(target(grpc_server))
    yield s
    s.close()


# ------------------------------------------------------------------------------------------------
# The protobuf


def _shape_of(desc: Any) -> list[tuple[Any, ...]]:
    fields = [
        (
            f.name,
            f.number,
            f.type,
            f.is_repeated,
            f.message_type.full_name if f.message_type else None,
            f.containing_oneof.name if f.containing_oneof else None,
        )
        for f in desc.fields
    ]
    nested = [(n.name, _shape_of(n)) for n in desc.nested_types]
    return [*fields, *sorted(nested)]


def test_our_protobuf_is_the_one_tritonclient_compiled() -> None:
    ours = pb.DESCRIPTOR
    theirs = triton_pb.DESCRIPTOR
    assert ours.package == theirs.package == "inference"
    assert set(ours.message_types_by_name) <= set(theirs.message_types_by_name)
    for name, desc in ours.message_types_by_name.items():
        assert _shape_of(desc) == _shape_of(theirs.message_types_by_name[name]), name
    service = ours.services_by_name["GRPCInferenceService"]
    their_service = theirs.services_by_name["GRPCInferenceService"]
    assert [m.name for m in service.methods] == list(CALLS)
    for method in service.methods:
        other = their_service.methods_by_name[method.name]
        assert method.input_type.full_name == other.input_type.full_name
        assert method.output_type.full_name == other.output_type.full_name
    # Both load in one process: ours lives in a pool of its own, tritonclient's in the default.
    found = descriptor_pool.Default().FindMessageTypeByName("inference.ModelInferRequest")
    assert found.file.name == theirs.name
    assert pb.ModelInferRequest.DESCRIPTOR.file.name == ours.name != theirs.name


def test_generated_code_is_what_the_proto_and_tools_gen_proto_write(tmp_path: Path) -> None:
    proto = REPO / "operator" / "modelreg" / "runtime" / "proto"
    dest = tmp_path / "operator" / "modelreg" / "runtime" / "proto"
    dest.mkdir(parents=True)
    (dest / "grpc_predict_v2.proto").write_bytes((proto / "grpc_predict_v2.proto").read_bytes())
    (tmp_path / "tools").mkdir()
    script = tmp_path / "tools" / "gen_proto.sh"
    script.write_bytes((REPO / "tools" / "gen_proto.sh").read_bytes())
    proc = subprocess.run(
        ["bash", str(script)],
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi"):
        assert (dest / name).read_text() == (proto / name).read_text(), (
            f"{name} is stale: run `make generate` (tools/gen_proto.sh)"
        )


# ------------------------------------------------------------------------------------------------
# tritonclient.grpc


def test_tritonclient_health_and_metadata(
    grpc_server: Running, client: triton.InferenceServerClient
) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris")
    assert client.is_model_ready("iris", "3")
    assert not client.is_model_ready("iris", "4")
    assert not client.is_model_ready("other")
    server = client.get_server_metadata(as_json=True)
    rest_server = httpx.get(grpc_server.url + "/v2").json()
    assert server == rest_server
    meta = client.get_model_metadata("iris", "3", as_json=True)
    rest = httpx.get(grpc_server.url + "/v2/models/iris/versions/3").json()
    assert meta["name"] == rest["name"] == "iris"
    assert meta["versions"] == rest["versions"] == ["3"]
    assert meta["platform"] == rest["platform"] == "onnxruntime_onnx"
    # protobuf's JSON writes int64 as strings
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": ["-1", "4"]}]
    assert [o["name"] for o in meta["outputs"]] == [o["name"] for o in rest["outputs"]]
    assert [o["datatype"] for o in meta["outputs"]] == [o["datatype"] for o in rest["outputs"]]


@pytest.mark.parametrize("rows", [10, 2000])  # on the event loop; through the executor (32 KB)
def test_tritonclient_infer_matches_rest_and_onnxruntime(
    grpc_server: Running, client: triton.InferenceServerClient, artifacts: Artifacts, rows: int
) -> None:
    x = _x(artifacts, rows)
    tensor = triton.InferInput("X", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)  # raw_input_contents
    result = client.infer(
        "iris",
        [tensor],
        model_version="3",
        outputs=[
            triton.InferRequestedOutput("probabilities"),
            triton.InferRequestedOutput("label"),
        ],
        request_id="triton-grpc-1",
    )
    reply = result.get_response()
    assert reply.id == "triton-grpc-1"
    assert (reply.model_name, reply.model_version) == ("iris", "3")
    assert [o.name for o in reply.outputs] == ["probabilities", "label"]
    assert len(reply.raw_output_contents) == 2  # raw in, raw out
    label, proba = _reference(artifacts, x)
    np.testing.assert_array_equal(result.as_numpy("label"), label)
    got = result.as_numpy("probabilities")
    assert got is not None
    assert got.shape == proba.shape == (rows, 3)
    np.testing.assert_allclose(got, proba, rtol=1e-6)

    body = {
        "inputs": [{"name": "X", "shape": list(x.shape), "datatype": "FP32", "data": x.tolist()}]
    }
    rest = httpx.post(grpc_server.url + "/v2/models/iris/infer", json=body, timeout=30).json()
    by_name = {o["name"]: o for o in rest["outputs"]}
    assert result.as_numpy("label").tolist() == by_name["label"]["data"]
    np.testing.assert_allclose(got.ravel(), by_name["probabilities"]["data"], rtol=1e-6)


def test_tritonclient_sees_grpc_codes_with_the_rest_messages(
    client: triton.InferenceServerClient,
) -> None:
    bad = triton.InferInput("X", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(InferenceServerException) as info:
        client.infer("iris", [bad])
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "has shape [1, 3], the model expects [-1, 4]" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        client.infer("nope", [bad])
    assert info.value.status() == "StatusCode.NOT_FOUND"
    assert "'nope' is not served here" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        client.get_model_metadata("iris", "9")
    assert info.value.status() == "StatusCode.NOT_FOUND"
    assert "no version '9'" in info.value.message()
    with pytest.raises(InferenceServerException) as info:  # Triton's, not part of the protocol
        client.get_inference_statistics("iris")
    assert info.value.status() == "StatusCode.UNIMPLEMENTED"


# ------------------------------------------------------------------------------------------------
# Typed contents through our own stub


def test_typed_contents_in_typed_contents_out(stub: Stub, artifacts: Artifacts) -> None:
    x = _x(artifacts)
    reply = stub.infer(_typed_request(x, model_version="3", id="typed-1"))
    assert reply.id == "typed-1"
    assert not reply.raw_output_contents
    outputs = {o.name: o for o in reply.outputs}
    label, proba = _reference(artifacts, x)
    assert outputs["label"].datatype == "INT64"
    assert list(outputs["label"].shape) == [10]
    assert list(outputs["label"].contents.int64_contents) == label.tolist()
    assert outputs["probabilities"].datatype == "FP32"
    assert list(outputs["probabilities"].shape) == [10, 3]
    np.testing.assert_allclose(
        outputs["probabilities"].contents.fp32_contents, proba.ravel(), rtol=1e-6
    )


def test_typed_request_may_ask_for_raw_outputs(stub: Stub, artifacts: Artifacts) -> None:
    x = _x(artifacts)
    request = _typed_request(x)
    request.parameters["binary_data_output"].bool_param = True
    request.outputs.add(name="probabilities")
    reply = stub.infer(request)
    assert [o.name for o in reply.outputs] == ["probabilities"]
    assert not reply.outputs[0].contents.ListFields()
    (raw,) = reply.raw_output_contents
    _, proba = _reference(artifacts, x)
    np.testing.assert_allclose(np.frombuffer(raw, dtype="<f4").reshape(10, 3), proba, rtol=1e-6)


def test_int_contents_are_range_checked_and_widened(stub: Stub, artifacts: Artifacts) -> None:
    x = _x(artifacts)
    ints = np.rint(x * 10).astype(np.int64)
    request = pb.ModelInferRequest(model_name="iris")
    tensor = request.inputs.add(name="X", datatype="INT16", shape=x.shape)
    tensor.contents.int_contents.extend(ints.ravel().tolist())
    reply = stub.infer(request)  # the model casts INT16 to its FP32, as REST does
    label, _ = _reference(artifacts, (ints.astype(np.float32)))
    assert list(reply.outputs[0].contents.int64_contents) == label.tolist()

    tensor.datatype = "INT8"
    tensor.contents.int_contents[0] = 300
    with pytest.raises(grpc.RpcError) as info:
        stub.infer(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "input 'X': a value does not fit in INT8"


def _with(change: str) -> pb.ModelInferRequest:
    x = np.ones((1, 4), dtype=np.float32)
    request = _typed_request(x)
    tensor = request.inputs[0]
    if change == "datatype":
        tensor.datatype = "FLOAT32"
    elif change == "wrong field":
        tensor.contents.ClearField("fp32_contents")
        tensor.contents.fp64_contents.extend([1.0] * 4)
    elif change == "count":
        del tensor.shape[:]
        tensor.shape.extend([2, 4])
    elif change == "no data":
        tensor.ClearField("contents")
    elif change == "raw too short":
        tensor.ClearField("contents")
        request.raw_input_contents.append(b"\0" * 8)
    elif change == "raw and contents":
        request.raw_input_contents.append(x.tobytes())
    elif change == "raw count":
        tensor.ClearField("contents")
        request.raw_input_contents.extend([x.tobytes(), x.tobytes()])
    elif change == "fp16 typed":
        tensor.datatype = "FP16"
    elif change == "unknown output":
        request.outputs.add(name="nope")
    elif change == "no inputs":
        del request.inputs[:]
    elif change == "twice":
        request.inputs.append(tensor)
    elif change == "version":
        request.model_version = "9"
    elif change == "model":
        request.model_name = "nope"
    return request


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ("datatype", "INVALID_ARGUMENT", "input 'X': datatype 'FLOAT32' is not one of BOOL,"),
        (
            "wrong field",
            "INVALID_ARGUMENT",
            "input 'X': datatype FP32 takes its data in contents.fp32_contents, not "
            "contents.fp64_contents",
        ),
        (
            "count",
            "INVALID_ARGUMENT",
            "input 'X': shape [2, 4] holds 8 elements but contents.fp32_contents has 4",
        ),
        (
            "no data",
            "INVALID_ARGUMENT",
            "input 'X' has no data: set contents.fp32_contents or raw_input_contents",
        ),
        (
            "raw too short",
            "INVALID_ARGUMENT",
            "input 'X': shape [1, 4] of FP32 needs 16 bytes but the length of "
            "raw_input_contents[0] is 8",
        ),
        ("raw and contents", "INVALID_ARGUMENT", "so no input may also have contents"),
        ("raw count", "INVALID_ARGUMENT", "raw_input_contents has 2 entries but the request has 1"),
        ("fp16 typed", "INVALID_ARGUMENT", "FP16 has no typed contents field"),
        ("unknown output", "INVALID_ARGUMENT", "unknown output 'nope'; this model has label"),
        ("no inputs", "INVALID_ARGUMENT", "'inputs' must be a non-empty list of tensors"),
        ("twice", "INVALID_ARGUMENT", "input 'X' is given twice"),
        ("version", "NOT_FOUND", "model 'iris' has no version '9' here"),
        ("model", "NOT_FOUND", "model 'nope' is not served here"),
    ],
)
def test_bad_requests_get_the_right_code_and_a_clear_message(
    stub: Stub, change: str, code: str, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.infer(_with(change))
    assert info.value.code().name == code, info.value.details()
    assert message in info.value.details()
    assert "Traceback" not in info.value.details()


def test_metrics_count_grpc_calls_by_code(
    grpc_server: Running, stub: Stub, artifacts: Artifacts
) -> None:
    def count(endpoint: str, status: str, protocol: str = "grpc") -> float:
        for line in httpx.get(grpc_server.url + "/metrics").text.splitlines():
            if (
                line.startswith("modelreg_runtime_requests_total{")
                and f'endpoint="{endpoint}"' in line
                and f'status="{status}"' in line
                and f'protocol="{protocol}"' in line
            ):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    ok, bad, meta = (
        count("infer", "OK"),
        count("infer", "INVALID_ARGUMENT"),
        count("metadata", "OK"),
    )
    rest_ok = count("infer", "200", "http")
    stub.infer(_typed_request(_x(artifacts)))
    stub.infer(_typed_request(_x(artifacts)))
    with pytest.raises(grpc.RpcError):
        stub.infer(_with("count"))
    stub.call("ModelMetadata", pb.ModelMetadataRequest(name="iris"), pb.ModelMetadataResponse)
    assert count("infer", "OK") == ok + 2
    assert count("infer", "INVALID_ARGUMENT") == bad + 1
    assert count("metadata", "OK") == meta + 1
    assert count("infer", "200", "http") == rest_ok  # REST keeps its own series


def test_a_full_executor_is_resource_exhausted_with_a_pushback(artifacts: Artifacts) -> None:
    from tests.unit.runtime.test_overload import _body, _rows, _SlowUpload

    settings = settings_for(
        artifacts["onnx"], grpc_port=free_port(), workers=1, max_queue=0, retry_after_seconds=3
    )
    with serve(settings) as running:
        s = Stub(target(running))
        try:
            # REST and gRPC share the executor: a REST upload holds its one place.
            holder = _SlowUpload(running.url, _body(_rows(2000)))
            wait_for(lambda: running.plane.executor.admitted == 1, what="the upload's admission")
            large = _x(artifacts, 2000)  # 32 KB: above MODELREG_INLINE_MAX_BYTES
            call = s.channel.unary_unary(
                f"/{SERVICE}/ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            with pytest.raises(grpc.RpcError) as info:
                call.with_call(_typed_request(large), timeout=30)
            error: Any = info.value
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "MODELREG_MAX_QUEUE" in error.details()
            assert ("grpc-retry-pushback-ms", "3000") in tuple(error.trailing_metadata())
            # A small call is answered on the event loop, outside the executor.
            small = s.infer(_typed_request(_x(artifacts)))
            assert len(small.outputs[0].contents.int64_contents) == 10
            rejected = [
                line
                for line in httpx.get(running.url + "/metrics").text.splitlines()
                if line.startswith("modelreg_runtime_rejected_requests_total{")
            ]
            assert len(rejected) == 1, rejected
            assert 'protocol="grpc"' in rejected[0]
            assert 'endpoint="infer"' in rejected[0]
            assert rejected[0].endswith(" 1.0")
            status, _ = holder.finish()
            assert status == 200
            wait_for(lambda: running.plane.executor.admitted == 0, what="the place to free")
            label, _ = _reference(artifacts, large)
            reply = s.infer(_typed_request(large))
            assert list(reply.outputs[0].contents.int64_contents) == label.tolist()
        finally:
            s.close()


# ------------------------------------------------------------------------------------------------
# Readiness and the health service


class GatedPlane(DataPlane):
    """A data plane whose load waits for the test to open the gate."""

    gate: threading.Event

    async def load(self) -> None:
        await asyncio.to_thread(self.gate.wait)  # set by the test's thread
        await super().load()


def test_not_serving_until_the_model_is_loaded(artifacts: Artifacts) -> None:
    settings = settings_for(artifacts["onnx"], grpc_port=free_port())
    plane = GatedPlane(settings)
    plane.gate = threading.Event()
    with serve(settings, wait_ready=False, plane=plane) as running:
        s = Stub(target(running))
        client = triton.InferenceServerClient(target(running))
        try:
            assert s.health() == NOT_SERVING
            assert s.health(SERVICE) == NOT_SERVING
            assert client.is_server_live()
            assert not client.is_server_ready()
            assert not client.is_model_ready("iris")
            with pytest.raises(grpc.RpcError) as info:
                s.infer(_typed_request(_x(artifacts)))
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "is not ready: the artifact is being verified and loaded" in info.value.details()
            with pytest.raises(grpc.RpcError) as info:
                s.health("some.other.Service")
            assert info.value.code() == grpc.StatusCode.NOT_FOUND

            plane.gate.set()
            wait_for(lambda: s.health() == SERVING, what="gRPC health to turn SERVING")
            assert s.health(SERVICE) == SERVING
            assert client.is_server_ready()
            assert client.is_model_ready("iris", "3")
            assert len(s.infer(_typed_request(_x(artifacts))).outputs) == 2
        finally:
            plane.gate.set()
            client.close()
            s.close()


def test_a_model_that_failed_to_load_is_unavailable(artifacts: Artifacts) -> None:
    settings = settings_for(artifacts["onnx"], grpc_port=free_port(), artifact_sha256="0" * 64)
    with serve(settings) as running:
        assert running.plane.state == "failed"
        s = Stub(target(running))
        client = triton.InferenceServerClient(target(running))
        try:
            assert s.health() == NOT_SERVING
            assert not client.is_server_ready()
            x = triton.InferInput("X", [1, 4], "FP32")
            x.set_data_from_numpy(np.zeros((1, 4), dtype=np.float32))
            with pytest.raises(InferenceServerException) as info:
                client.infer("iris", [x])
            assert info.value.status() == "StatusCode.UNAVAILABLE"
            assert "refusing to load" in info.value.message()
            with pytest.raises(InferenceServerException) as info:
                client.get_model_metadata("iris")
            assert info.value.status() == "StatusCode.UNAVAILABLE"
        finally:
            client.close()
            s.close()


def test_a_taken_grpc_port_fails_the_start(
    artifacts: Artifacts, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = RuntimeServer(settings_for(artifacts["onnx"], grpc_port=port))
        exits: list[object] = []

        def run() -> None:
            try:
                server.run(sockets=[sock])
            except SystemExit as e:  # uvicorn's answer to a failed start-up
                exits.append(e.code)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(30)
        sock.close()
    assert not thread.is_alive()
    assert exits == [3]
    assert not server.started  # never served HTTP either: one port or both, not half a server
    assert f"cannot bind gRPC to 127.0.0.1:{port}" in caplog.text


def test_grpc_port_setting() -> None:
    base = {"model_name": "m", "artifact_path": "x", "artifact_format": "onnx"}
    assert RuntimeSettings(**base).grpc_port == 9000  # type: ignore[arg-type]
    off = RuntimeSettings(**base, grpc_port=0)  # type: ignore[arg-type]
    assert RuntimeServer(off).grpc is None


# ------------------------------------------------------------------------------------------------
# BYTES tensors


@pytest.fixture(scope="module")
def species(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """An ONNX model from species names (BYTES) to a code (INT64) and a label (BYTES)."""
    from onnx import TensorProto, helper

    encode = helper.make_node(
        "LabelEncoder",
        ["species"],
        ["code"],
        domain="ai.onnx.ml",
        keys_strings=["setosa", "versicolor", "virginica"],
        values_int64s=[0, 1, 2],
        default_int64=-1,
    )
    label = helper.make_node(
        "LabelEncoder",
        ["code"],
        ["label"],
        domain="ai.onnx.ml",
        keys_int64s=[0, 1, 2],
        values_strings=["Iris setosa", "Iris versicolor", "Iris virginica — Virginia"],
        default_string="unknown",
    )
    graph = helper.make_graph(
        [encode, label],
        "species",
        [helper.make_tensor_value_info("species", TensorProto.STRING, [None])],
        [
            helper.make_tensor_value_info("code", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("label", TensorProto.STRING, [None]),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 2)]
    )
    path = tmp_path_factory.mktemp("species") / "species.onnx"
    path.write_bytes(model.SerializeToString())
    return Artifact(path, "onnx", sha256_of(path), None)


NAMES = ["virginica", "setosa", "rosé", "versicolor"]
CODES = [2, 0, -1, 1]
LABELS = ["Iris virginica — Virginia", "Iris setosa", "unknown", "Iris versicolor"]


def test_bytes_tensors_raw_and_typed(species: Artifact) -> None:
    with serve(settings_for(species, grpc_port=free_port())) as running:
        assert running.plane.state == "ready", running.plane.detail
        client = triton.InferenceServerClient(target(running))
        s = Stub(target(running))
        try:
            meta = client.get_model_metadata("iris", as_json=True)
            assert meta["inputs"] == [{"name": "species", "datatype": "BYTES", "shape": ["-1"]}]

            tensor = triton.InferInput("species", [len(NAMES)], "BYTES")
            tensor.set_data_from_numpy(np.array([n.encode() for n in NAMES], dtype=object))
            result = client.infer("iris", [tensor])
            assert result.as_numpy("code").tolist() == CODES
            assert result.as_numpy("label").tolist() == [lb.encode() for lb in LABELS]

            request = pb.ModelInferRequest(model_name="iris")
            typed = request.inputs.add(name="species", datatype="BYTES", shape=[len(NAMES)])
            typed.contents.bytes_contents.extend(n.encode() for n in NAMES)
            reply = s.infer(request)
            assert not reply.raw_output_contents
            outputs = {o.name: o for o in reply.outputs}
            assert outputs["label"].datatype == "BYTES"
            assert list(outputs["code"].contents.int64_contents) == CODES
            assert [b.decode() for b in outputs["label"].contents.bytes_contents] == LABELS

            # A raw BYTES element whose length runs past its data is refused, not guessed at.
            broken = pb.ModelInferRequest(model_name="iris")
            broken.inputs.add(name="species", datatype="BYTES", shape=[1])
            broken.raw_input_contents.append((50).to_bytes(4, "little") + b"setosa")
            with pytest.raises(grpc.RpcError) as info:
                s.infer(broken)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "a BYTES element runs past its data" in info.value.details()
        finally:
            client.close()
            s.close()


# ------------------------------------------------------------------------------------------------
# The process: SIGTERM drains gRPC calls too


def test_sigterm_lets_the_grpc_call_in_flight_finish(artifacts: Artifacts, tmp_path: Path) -> None:
    from tests.unit.runtime.test_server import _process_env

    art = artifacts["onnx"]
    http_port, grpc_port = free_port(), free_port()
    url = f"http://127.0.0.1:{http_port}"
    env = _process_env(
        MODELREG_MODEL_NAME="iris",
        MODELREG_ARTIFACT_PATH=str(art.path),
        MODELREG_ARTIFACT_SHA256=art.sha256,
        MODELREG_ARTIFACT_FORMAT="onnx",
        MODELREG_HTTP_HOST="127.0.0.1",
        MODELREG_HTTP_PORT=str(http_port),
        MODELREG_GRPC_PORT=str(grpc_port),
        MODELREG_TERMINATION_LOG=str(tmp_path / "tl"),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelreg.runtime"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    s = Stub(f"127.0.0.1:{grpc_port}")
    try:

        def ready() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                return s.health() == SERVING
            except grpc.RpcError:
                return False

        wait_for(ready, timeout=60, what="the runtime to serve gRPC")
        rows = np.tile(artifacts.X.astype(np.float32), (2000, 1))  # 300k rows, typed: long enough
        result: dict[str, Any] = {}

        def send() -> None:
            try:
                reply = s.infer(_typed_request(rows))
                result["rows"] = reply.outputs[0].shape[0]
            except Exception as e:  # reported by the assertion below
                result["error"] = repr(e)

        sender = threading.Thread(target=send)
        sender.start()

        def in_flight() -> bool:
            text = httpx.get(url + "/metrics", timeout=5).text
            return 'modelreg_runtime_requests_in_flight{model="iris",version="1"} 1.0' in text

        wait_for(in_flight, timeout=30, what="the gRPC call to be in flight")
        proc.send_signal(signal.SIGTERM)
        sender.join(60)
        assert result == {"rows": rows.shape[0]}
        assert proc.wait(30) == 0
    finally:
        s.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    after = Stub(f"127.0.0.1:{grpc_port}")
    try:
        with pytest.raises(grpc.RpcError) as info:
            after.health()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        after.close()
