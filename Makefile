# The two set-up commands of the README: `make demo` and `make test`.
# Each creates/reuses .venv (scripts/setup_venv.sh) and is idempotent.
SHELL := /bin/bash
VENV := .venv/bin
export MUJOCO_GL ?= egl

.PHONY: venv demo test test-all clean

venv:
	@bash scripts/setup_venv.sh

demo: venv
	$(VENV)/chunkwise demo --output_dir=outputs/demo

test: venv
	$(VENV)/python -m pytest -q

test-all: venv
	$(VENV)/python -m pytest -q -m ""

clean:
	rm -rf outputs .pytest_cache
