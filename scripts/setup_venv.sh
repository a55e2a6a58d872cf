#!/usr/bin/env bash
# Create (or reuse) .venv and install chunkwise into it. Idempotent.
# torch is installed first from the pinned CPU build so that resolving the project's
# `torch` range never pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.chunkwise-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    python -m pip install -q --disable-pip-version-check "torch==2.13.0"
    python -m pip install -q --disable-pip-version-check -e ".[dev]"
    touch "$stamp"
fi
