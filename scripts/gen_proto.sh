#!/usr/bin/env bash
# Regenerate src/chunkwise/wire/chunkwise_pb2.py and chunkwise_pb2_grpc.py from
# chunkwise.proto. Needs grpcio-tools (dev extra); the generated files are committed so
# users do not need it at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
"$PY" -m grpc_tools.protoc -I src \
  --python_out=src --pyi_out=src --grpc_python_out=src \
  src/chunkwise/wire/chunkwise.proto
echo "regenerated src/chunkwise/wire/chunkwise_pb2{,_grpc}.py"
