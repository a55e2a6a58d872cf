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
# CI (CI=true) also installs the LIBERO extra (~2 GB, ~1.5 min) so tests/envs/test_libero.py
# runs; CHUNKWISE_LIBERO=1 does the same elsewhere. A failed install leaves the core venv as
# it is and those tests skip (pytest's summary says so).
if { [ "${CI:-}" = "true" ] || [ "${CHUNKWISE_LIBERO:-}" = "1" ]; } \
        && { [ ! -f "$stamp-libero" ] || [ pyproject.toml -nt "$stamp-libero" ]; }; then
    if python -m pip install -q --disable-pip-version-check -e ".[dev,libero]"; then
        touch "$stamp-libero"
    else
        echo "setup_venv: warning: the libero extra did not install; its tests will be skipped" >&2
    fi
fi
