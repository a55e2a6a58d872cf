#!/usr/bin/env bash
# Create (or reuse) .venv-lerobot: Python 3.12 with the real lerobot 0.6.1 and chunkwise
# installed editable, where `--policy.type=lerobot` and tests/policies/test_lerobot.py run.
# lerobot needs Python >= 3.12 and torch < 2.12; from PyPI that is a CUDA torch 2.11 build
# (~6 GB, ~5 min on a fresh machine; pip's cache makes a rebuild quick). chunkwise's own torch
# range admits it (and 2.13, the core venv's CPU build).
# Idempotent (stamp file); exits non-zero and prints why if the venv cannot be built.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-lerobot
stamp=$venv/.chunkwise-lerobot-installed
if [ -f "$stamp" ] && [ ! pyproject.toml -nt "$stamp" ] && [ ! "$0" -nt "$stamp" ] \
        && $venv/bin/python -c "import lerobot, chunkwise" 2>/dev/null; then
    exit 0
fi
PY=${PYTHON_LEROBOT:-}
if [ -z "$PY" ]; then
    for cand in python3.12 "$HOME/.pyenv/versions/3.12.1/bin/python3.12" python3.13; do
        if command -v "$cand" >/dev/null 2>&1 \
                && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
            PY=$cand
            break
        fi
    done
fi
if [ -z "$PY" ]; then
    echo "setup_lerobot_venv: no Python >= 3.12 found (lerobot needs it); set PYTHON_LEROBOT" >&2
    exit 1
fi
if [ ! -x $venv/bin/python ]; then
    "$PY" -m venv $venv
fi
pip=( $venv/bin/python -m pip install -q --disable-pip-version-check )
# one resolve for everything, so lerobot's pins (numpy<2.3, torch<2.12, ...) and chunkwise's
# meet; diffusion adds diffusers for LeRobot's Diffusion policy, accelerate is what lerobot-train needs
"${pip[@]}" "torch>=2.11,<2.12" "lerobot[dataset,diffusion,accelerate-dep]==0.6.1" -e ".[dev,lerobot]"
$venv/bin/python -c "import lerobot, chunkwise, torch; print('setup_lerobot_venv: lerobot', lerobot.__version__, 'torch', torch.__version__)"
touch "$stamp"
