# The two set-up commands of the README: `make demo` and `make test`.
# Each creates/reuses .venv (scripts/setup_venv.sh) and is idempotent.
# `make test-lerobot`: the LeRobot stage (docs/lerobot.md) in its own Python 3.12 venv
# (scripts/setup_lerobot_venv.sh; $(LEROBOT_VENV)); if that venv cannot be built (no Python
# 3.12, no registry), it says why and skips instead of failing.
SHELL := /bin/bash
VENV := .venv/bin
export MUJOCO_GL ?= egl

LEROBOT_VENV ?= .venv-lerobot
LEROBOT_SETUP_TIMEOUT ?= 1500

.PHONY: venv openpi demo test test-all test-lerobot clean

venv:
	@bash scripts/setup_venv.sh

# The openpi websocket endpoint's packages (the `openpi` extra) in .venv, and the real
# openpi-client in its own .venv-openpi (it pins numpy<2). A failure only skips
# tests/serving/test_openpi*.py (the reason is printed), never the rest.
openpi: venv
	@$(VENV)/python -c "import websockets, msgpack" 2>/dev/null \
		|| $(VENV)/python -m pip install -q --disable-pip-version-check -e ".[openpi]" \
		|| echo "make: warning: the openpi extra did not install; tests/serving/test_openpi*.py will skip" >&2
	@bash scripts/setup_openpi_venv.sh \
		|| echo "make: warning: .venv-openpi could not be built; tests/serving/test_openpi_client.py will skip" >&2

demo: venv
	$(VENV)/chunkwise demo --output_dir=outputs/demo

test: venv openpi
	$(VENV)/python -m pytest -q

test-all: venv openpi
	$(VENV)/python -m pytest -q -m ""

test-lerobot:
	@if CHUNKWISE_LEROBOT_VENV=$(LEROBOT_VENV) PIP_DEFAULT_TIMEOUT=60 \
			timeout $(LEROBOT_SETUP_TIMEOUT) nice -n 5 bash scripts/setup_lerobot_venv.sh; then \
		$(LEROBOT_VENV)/bin/python -m pytest -q tests/policies/test_lerobot.py tests/policies/test_lerobot_checkpoint.py; \
	else \
		echo "test-lerobot: SKIPPED: the lerobot venv ($(LEROBOT_VENV)) could not be built; see the lines above"; \
	fi

clean:
	rm -rf outputs .pytest_cache
