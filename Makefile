# Real-time card-fraud pipeline. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JARS_STAMP := .jars/.complete
# Fully pinned, hashed locks (`make lock` writes them): runtime.lock is what the image installs,
# dev.lock adds the dev and infra extras at the same versions and is what .venv installs.
RUNTIME_LOCK := requirements/runtime.lock
DEV_LOCK := requirements/dev.lock
LOCK_CONSTRAINTS := requirements/constraints.txt
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
UV_COMPILE = $(UV) pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" --quiet $(if $(UPGRADE),--upgrade)
PROFILE ?= local

export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))

.PHONY: help check-tools venv lock jars class-archive browser demo test test-under-load test-fast lint format bench clean aws-start aws-stop train

help: ## Show this help.
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

check-tools: ## Check Python >= 3.11, Java >= 17 and Maven are installed.
	@bash scripts/check_tools.sh "$(PYTHON)"

$(STAMP): pyproject.toml $(DEV_LOCK)
	@bash scripts/check_tools.sh "$(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r $(DEV_LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP) ## Create .venv and install the pinned dependencies and dev tools (dev.lock).

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "uv==$(UV_VERSION)"

lock: $(UV) ## Re-pin requirements/*.lock from pyproject.toml (UPGRADE=1: newest allowed versions).
	$(UV_COMPILE) --extra dev --extra infra -c $(LOCK_CONSTRAINTS) -o $(DEV_LOCK)
	$(UV_COMPILE) -c $(DEV_LOCK) -o $(RUNTIME_LOCK)

$(JARS_STAMP): infrastructure/jars/pom.xml
	bash scripts/fetch_jars.sh

jars: $(JARS_STAMP) ## Copy the Delta and hadoop-aws JARs from Maven Central into .jars/.

class-archive: venv jars ## Build the driver JVM's class archive for these JARs and this JDK: Spark starts faster (ADR 0038).
	$(PY) -m processor.class_archive

browser: ## Install Debian's chromium for the browser tests if it is missing (root or sudo; else they skip).
	@bash scripts/ensure_chromium.sh

demo: venv jars ## Run the pipeline on the embedded AWS emulator (no cloud, no Docker).
	$(PY) -m scripts.demo --profile $(PROFILE)

test: venv jars class-archive browser ## Run the whole test suite (unit, integration and slow tests).
	$(PY) -m pytest

test-under-load: venv jars class-archive browser ## The whole suite while two busy loops hold both cores.
	bash scripts/with_busy_cores.sh 2 $(PY) -m pytest

test-fast: venv ## Run the tests that need neither Spark nor the JARs.
	$(PY) -m pytest -m "not slow"

lint: venv ## ruff (lint + format check) and mypy.
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv ## Format the code with ruff.
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: venv jars class-archive ## Run the benchmarks; figures are printed and saved under bench-results/.
	$(PY) -m scripts.bench_producer
	$(PY) -m scripts.bench_processor
	$(PY) -m scripts.bench_scoring
	$(PY) -m scripts.bench_features
	$(PY) -m scripts.bench_parse
	$(PY) -m scripts.bench_density
	$(PY) -m scripts.bench_engine
	$(PY) -m scripts.bench_engine --rate 1000 --repeats 1
	$(PY) -m scripts.bench_lake

train: venv ## Train the model on generated history into the profile's model path.
	$(PY) -m ml_model.train --profile $(PROFILE)

aws-start: venv ## Start the embedded AWS emulator (moto's server) in the background.
	$(PY) -m scripts.local_aws start --profile $(PROFILE)

aws-stop: venv ## Stop the embedded AWS emulator.
	$(PY) -m scripts.local_aws stop --profile $(PROFILE)

clean: ## Remove local data (lake, checkpoints, models) and stop the emulator.
	-$(PY) -m scripts.local_aws stop --profile $(PROFILE)
	rm -rf data bench-results spark-warehouse
