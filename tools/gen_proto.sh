#!/usr/bin/env bash
# Regenerates the model server's gRPC messages (operator/modelreg/runtime/proto/*_pb2.py, .pyi)
# from grpc_predict_v2.proto with grpcio-tools' protoc. Called by `make generate`; `make check`
# fails when the committed files differ from what this writes.
#
# No *_pb2_grpc.py: modelreg.runtime.grpc registers its handlers itself, typed.
#
# The messages are built into a descriptor pool of their own instead of protobuf's default one.
# tritonclient.grpc (and KServe, MLServer) register the same `inference.*` names in the default
# pool, and a second registration there fails at import ("duplicate symbol
# 'inference.ServerLiveRequest'"): with our own pool the server and those clients live in one
# process. Names never travel on the wire, only field numbers and the service's path.
#
#   PYTHON   the interpreter with grpcio-tools (default: .venv/bin/python)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
case $python in /*) ;; */*) python=$PWD/$python ;; esac  # relative to the caller: we cd below
proto=modelreg/runtime/proto/grpc_predict_v2.proto
out=$root/operator/modelreg/runtime/proto

cd "$root/operator"
"$python" -m grpc_tools.protoc -I . --python_out=. --pyi_out=. "$proto"
"$python" - "$out/grpc_predict_v2_pb2.py" <<'EOF'
import sys
from pathlib import Path

path = Path(sys.argv[1])
text = path.read_text()
default = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
if text.count(default) != 1:
    sys.exit(f"gen_proto: {path.name} no longer registers its file the expected way: {default!r}")
own = "DESCRIPTOR = _descriptor_pool.DescriptorPool().AddSerializedFile("
note = "# modelreg (tools/gen_proto.sh): a pool of its own; tritonclient fills the default one.\n"
path.write_text(text.replace(default, note + own))
EOF
echo "gen_proto: wrote ${out#"$root"/}/grpc_predict_v2_pb2.py and .pyi"
