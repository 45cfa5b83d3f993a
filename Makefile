# Set-up and the two everyday jobs. Each target installs what it needs first, so on a fresh machine
#   make repro   runs the whole DVC pipeline (offline: set IMDB_SOURCE and IMDB_SHA256, see README)
#   make test    runs the test suite
PYTHON ?= python3
VENV := .venv
# Stage commands say `python`/`dvc`: the venv's, whoever runs make.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup repro test bench-prepare

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	# torch first and exactly: a looser spec would pull a multi-GB CUDA build
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e ".[test]"
	touch $@

setup: $(VENV)/.installed

repro: setup
	dvc repro

test: setup
	pytest -m "slow or not slow"   # everything; plain `pytest` runs the fast tests only

bench-prepare: setup
	python -m rnnlab.bench.prepare
