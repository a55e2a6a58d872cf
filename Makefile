# The two set-up commands of the README: `make demo` and `make test`.
# Each creates/reuses .venv (scripts/setup_venv.sh) and is idempotent.
SHELL := /bin/bash
VENV := .venv/bin
export MUJOCO_GL ?= egl

.PHONY: venv openpi demo test test-all clean

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

clean:
	rm -rf outputs .pytest_cache
