# Set-up and the two everyday jobs. Each target installs what it needs first, so on a fresh machine
#   make repro   runs the whole DVC pipeline (offline: set IMDB_SOURCE and IMDB_SHA256, see README)
#   make test    runs the test suite
#   make adding  the DVC stage `adding` alone: the adding problem's sweep (long the first time; resumable)
#   make ui      the MLflow UI on the project's store, http://127.0.0.1:5000 (UI_PORT=... for another port)
#   make server  a team's tracking server (PostgreSQL + mlflow server on 127.0.0.1); make server-stop
#   make slurm-up  a one-node SLURM cluster on this machine, for hydra/launcher=slurm; make slurm-down
#   make plots-offline  `dvc plots show` whose page works without a network (Vega inline, not from a CDN)
PYTHON ?= python3
VENV := .venv
# Stage commands say `python`/`dvc`: the venv's, whoever runs make.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup repro test bench-prepare search search-final ui adding article server server-stop slurm-up slurm-down \
	plots-offline

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	# torch first, at the pinned version. The pin matches the CPU and the CUDA builds alike (PEP 440 ignores the
	# local tag, +cpu): which one arrives is the package index's choice. This machine's pip serves 2.13.0+cpu from
	# its local wheels; PyPI on Linux serves the CUDA build (about 0.5 GB, plus NVIDIA's CUDA runtime wheels).
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

# Stop it any time and run it again: it trains only the runs adding.json lacks (src/rnnlab/findings/adding.py).
# Afterwards `make repro` reuses them.
adding: setup
	dvc repro adding

# DVC's plots page loads Vega, Vega-Lite and vega-embed from a CDN: without a network its two data plots stay
# blank. This fetches their current 5, 5 and 6 releases (DVC pins 5.20.2, 5.2.0, 6.18.2) from npm once (npm and a network needed then) into .dvc/tmp/vega/ and
# writes a page template holding them inline; `dvc plots show` with it (or with `dvc config --local
# plots.html_template tmp/vega/offline.html`) writes a dvc_plots/index.html that needs no network.
VEGA_DIR := .dvc/tmp/vega
plots-offline: setup $(VEGA_DIR)/offline.html
	dvc plots show --html-template $(VEGA_DIR)/offline.html

$(VEGA_DIR)/offline.html:
	npm install --silent --no-audit --no-fund --prefix $(VEGA_DIR) vega@5 vega-lite@5 vega-embed@6
	{ echo '<!DOCTYPE html><html><head><meta charset="utf-8"><title>DVC Plot</title>'; \
	  for js in vega/build/vega.min.js vega-lite/build/vega-lite.min.js vega-embed/build/vega-embed.min.js; do \
	    echo '<script>'; cat $(VEGA_DIR)/node_modules/$$js; echo '</script>'; done; \
	  echo '</head><body>{plot_divs}</body></html>'; } > $@.tmp && mv $@.tmp $@

UI_PORT ?= 5000
# The store training writes to (rnnlab.tracking: its experiments keep their artifacts in mlartifacts/); this machine only
ui: setup
	mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port $(UI_PORT)

# The equal-budget search (README "A fair comparison"; conf/search/default.yaml). Each target may be stopped and
# run again: it goes on where it stopped. Results land in data/search/, committed to git. WORKERS: trials trained
# at once, each by its own process (joblib; on SLURM: README "Scaling out"); on this 2-core machine, 1.
WORKERS ?= 1
search: setup
	python -m rnnlab.search.run -m hydra/launcher=joblib hydra.launcher.n_jobs=$(WORKERS) \
		'search.worker=range($(WORKERS))' hydra.sweep.dir=outputs/search/run
	python -m rnnlab.search.report hydra.run.dir=outputs/search/report

search-final: setup
	python -m rnnlab.search.final hydra.run.dir=outputs/search/final

# The article's Keras setup for every cell over 3 seeds (rnnlab.findings.article; resumable): data/findings/article.md
article: setup
	python -m rnnlab.findings.article hydra.run.dir=outputs/article

# A team's MLflow tracking server: PostgreSQL + mlflow server on 127.0.0.1, its data in .tracking/
# (scripts/tracking_server.py). It prints the `export MLFLOW_TRACKING_URI=...` line that sends every run there.
SERVER_PORT ?= 5001
server: setup
	scripts/install_services.sh postgres
	python scripts/tracking_server.py start --port $(SERVER_PORT)

server-stop: setup
	python scripts/tracking_server.py stop

# A one-node SLURM cluster (slurmctld + slurmd + munged, 2 CPUs, 127.0.0.1): README "Scaling out"
slurm-up:
	scripts/install_services.sh slurm
	scripts/slurm_local.sh up

slurm-down:
	scripts/slurm_local.sh down
