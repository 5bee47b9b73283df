# The two set-up commands of the README: `make demo` and `make test`.
# Each works from a clean clone: it creates .venv and installs what it needs.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench-streaming clean

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	# printrun (the peer host in tests and benchmarks) without its GUI dependencies
	$(BIN)/pip install --quiet --no-deps 'printrun>=2.1'
	# OctoPrint's virtual Marlin printer (an independent firmware for tests and the
	# streaming benchmark): the package alone, its server's dependencies are not needed
	$(BIN)/pip install --quiet --no-deps 'OctoPrint==1.11.8'
	# the toolpath kernels are compiled ahead of time by the install (hatch_build.py); this
	# checks they are current (and recompiles them if a kernel changed since)
	$(BIN)/labdevices warmup
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/labdevices demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

test: $(STAMP) lint
	sh scripts/ensure-mosquitto.sh
	sh scripts/ensure-postgresql.sh
	sh scripts/ensure-poppler.sh
	sh scripts/ensure-chromium.sh
	# a kernel edited since the install is compiled again (nothing to do when current)
	$(BIN)/labdevices warmup
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
