# Two commands: `make run` (the whole pipeline) and `make test` (the test suite).
# Both create .venv and install the pinned environment once; later calls skip set-up.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed

# Project-local state: Prefect's database beside the repo, so `make server` shows `make run`'s runs.
export PATH := $(BIN):$(PATH)
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export DVC_NO_ANALYTICS ?= 1
export TOKENIZERS_PARALLELISM ?= false
export HF_HUB_OFFLINE ?= 1

PREFECT_HOST ?= 127.0.0.1
PREFECT_PORT ?= 4200
MLFLOW_PORT ?= 5000
# A wheel index for torch, e.g. PyTorch's CUDA index on a GPU machine; empty: the default index.
TORCH_INDEX ?=
# What installs the pinned environment after torch: uv (pinned in constraints.txt, installed into the
# venv by pip) took 10 s where pip took 129 s, the same versions (EPYC, 2026-12-05). uv reads its own
# settings (UV_INDEX_URL, UV_EXTRA_INDEX_URL, uv.toml), not pip's: with a private index set up for pip
# only, say INSTALLER=pip. If uv fails, pip installs instead. torch itself always comes from pip.
INSTALLER ?= uv
PIP_INSTALL := $(BIN)/python -m pip install -q --no-compile -c constraints.txt -e '.[test]'

.PHONY: setup run test test-fast serve server mlflow-ui bench clean

setup: $(STAMP)

# torch goes first and pinned: an unpinned torch pulls the newest CUDA build (README: GPU)
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed, found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-compile "$$(grep '^torch==' constraints.txt)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
ifeq ($(INSTALLER),uv)
	$(BIN)/python -m pip install -q --no-compile "$$(grep '^uv==' constraints.txt)"
	$(BIN)/uv pip install -q --python $(BIN)/python -c constraints.txt -e '.[test]' \
	  || { echo "uv could not install the environment; pip will (make INSTALLER=pip skips uv)"; $(PIP_INSTALL); }
else
	$(PIP_INSTALL)
endif
	@# byte-compile on every core (pip compiles one file at a time: 2.5 of set-up's 4.5 min on 2 cores),
	@# packages' own test suites left out (nothing imports them: 53 of 64 s). A few packages ship
	@# files for other Pythons that do not compile, which imports never read.
	@$(BIN)/python -m compileall -q -j 0 -x '/tests/' $(VENV)/lib > /dev/null || true
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m flows.pipeline run

# two workers, each taking the next test when it is free: much of the suite is stage processes
# starting up (imports), which runs on one core, so one worker leaves the other core idle.
# Each worker and the stage processes it starts get half as many torch threads as there are cores,
# at least one: torch's default of one per core put 4 busy threads on 2 cores, and the three
# pipeline tests took 462, 287 and 184 s instead of 320, 202 and 143 s (EPYC, 2026-12-05).
TEST_THREADS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n > 3 ? n / 2 : 1 )))
test: $(STAMP)
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m pytest -q -n 2 --dist worksteal

# the unit and contract tests only (seconds), for the edit-test loop
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# the Prefect server and UI on http://$(PREFECT_HOST):$(PREFECT_PORT)
server: $(STAMP)
	$(BIN)/prefect server start --host $(PREFECT_HOST) --port $(PREFECT_PORT)

# serve the pipeline on params.yaml's schedule.cron against that server
serve: $(STAMP)
	PREFECT_API_URL=http://$(PREFECT_HOST):$(PREFECT_PORT)/api $(BIN)/python -m flows.pipeline serve

mlflow-ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db} --host 127.0.0.1 --port $(MLFLOW_PORT)

# every benchmark; reward_gap.py reads a finished run, so it waits for `make run`
bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; \
	  if [ $$b = benchmarks/reward_gap.py ] && [ ! -f metrics/comparisons.json ]; then \
	    echo "skipped: it reads a finished run, and this repo has none yet (make run)"; continue; fi; \
	  $(BIN)/python $$b || exit 1; done

clean:
	rm -rf data/raw data/prompts data/quarantine data/sft data/comparisons models metrics plots reports dvc.lock
