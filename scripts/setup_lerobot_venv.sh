#!/usr/bin/env bash
# Create (or reuse) the lerobot venv: Python 3.12 with the real lerobot 0.6.1 and chunkwise
# installed editable, where `--policy.type=lerobot` and tests/policies/test_lerobot.py run.
# lerobot needs Python >= 3.12 and torch < 2.12; from PyPI that is a CUDA torch 2.11 build
# (venv ~5.8 GB, ~4 min here on a fresh machine; pip's cache makes a rebuild quicker).
# chunkwise's own torch range admits it (and 2.13, the core venv's CPU build).
#
# Where: .venv-lerobot, or $CHUNKWISE_LEROBOT_VENV (CI keeps it outside the clone so that it
# is reused between runs on the same machine). Idempotent: the stamp records a hash of
# pyproject.toml and this script, and the checkout chunkwise is installed from; a new
# checkout with the same hash only re-points the editable install (seconds).
# Exits non-zero and says why if the venv cannot be built.
set -euo pipefail
trap 'echo "setup_lerobot_venv: failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."
venv=${CHUNKWISE_LEROBOT_VENV:-.venv-lerobot}
stamp=$venv/.chunkwise-lerobot-installed
want_hash=$(cat pyproject.toml scripts/setup_lerobot_venv.sh | sha256sum | cut -d' ' -f1)
here=$(pwd -P)
pip=( "$venv/bin/python" -m pip install -q --disable-pip-version-check )
if [ -f "$stamp" ] && [ "$(sed -n 1p "$stamp")" = "$want_hash" ] \
        && "$venv/bin/python" -c "import lerobot" 2>/dev/null; then
    if [ "$(sed -n 2p "$stamp")" != "$here" ]; then
        "${pip[@]}" --no-deps -e .
        printf '%s\n%s\n' "$want_hash" "$here" > "$stamp"
    fi
    "$venv/bin/python" -c "import lerobot, chunkwise" && exit 0
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
if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$(dirname "$venv")"
    "$PY" -m venv "$venv"
fi
rm -f "$stamp"
# one resolve for everything, so lerobot's pins (numpy<2.3, torch<2.12, ...) and chunkwise's
# meet; diffusion adds diffusers for LeRobot's Diffusion policy, accelerate is what lerobot-train
# needs, openpi the packages of `chunkwise serve --openpi_port`
"${pip[@]}" "torch>=2.11,<2.12" "lerobot[dataset,diffusion,accelerate-dep]==0.6.1" -e ".[dev,lerobot,openpi]"
"$venv/bin/python" -c "import lerobot, chunkwise, torch; print('setup_lerobot_venv: lerobot', lerobot.__version__, 'torch', torch.__version__)"
printf '%s\n%s\n' "$want_hash" "$here" > "$stamp"
