#!/usr/bin/env bash
# Create (or reuse) .venv-openpi: the real `openpi-client` from PyPI, which pins numpy<2 and
# so cannot share .venv (pyarrow there needs numpy>=2). Used only to check that chunkwise's
# openpi endpoint and msgpack-numpy codec are byte-compatible with openpi's own client
# (tests/serving/test_openpi_client.py). chunkwise itself is not installed here: the test
# starts the server from .venv and imports nothing but openpi-client in this venv.
# Idempotent; exits non-zero (and prints why) if the venv cannot be built.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
stamp=.venv-openpi/.openpi-installed
if [ -f "$stamp" ] && .venv-openpi/bin/python -c "import openpi_client.websocket_client_policy" 2>/dev/null; then
    exit 0
fi
if [ ! -x .venv-openpi/bin/python ]; then
    "$PY" -m venv .venv-openpi
fi
.venv-openpi/bin/python -m pip install -q --disable-pip-version-check "openpi-client" "websockets>=13" "msgpack>=1.0" typing_extensions  # 0.1.2 imports it without declaring it
.venv-openpi/bin/python -c "import openpi_client.websocket_client_policy, openpi_client.action_chunk_broker"
touch "$stamp"
