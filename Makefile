# ticket-triage: the two commands a new user runs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# DVC stages run `python ...`: make it the project's interpreter.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Offline defaults: no hub downloads, local SQLite MLflow store, local Bento store.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlruns.db
export BENTOML_HOME ?= $(CURDIR)/.bentoml
export BENTOML_DO_NOT_TRACK := True
export DO_NOT_TRACK := 1
export MPLBACKEND := Agg

.PHONY: help install system-deps demo test test-fast params serve bento review mlflow-ui bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install pinned dependencies (offline-friendly)

# Debian packages the tests start for real: PostgreSQL 15 (shared review store) and a Java
# runtime for Spark (`triage score --engine spark`). Installed with apt-get when missing and
# running as root; otherwise the command to run is printed.
SYSTEM_PKGS := postgresql openjdk-17-jre-headless
system-deps:  ## install PostgreSQL and Java (Debian packages) when missing
	@missing=""; \
	 { command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || missing="$$missing postgresql"; \
	 command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	 if [ -n "$$missing" ]; then \
	   if [ "$$(id -u)" = 0 ]; then \
	     DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	     DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	   else echo "missing Debian packages:$$missing -- run: sudo apt-get install -y$$missing" >&2; exit 2; fi; \
	 fi

params: install  ## recompose params.yaml from conf/
	$(BIN)/triage config compose

demo: install  ## run the whole pipeline on the bundled BANKING77 demo data
	$(BIN)/dvc pull --quiet data.dvc || { echo "dvc pull failed: is the local remote .dvcstore present?"; exit 1; }
	$(BIN)/dvc repro
	$(BIN)/triage demo-summary

test: install system-deps  ## run the test suite
	$(BIN)/python -m pytest -q --durations=25 $(PYTEST_ARGS)

test-fast: install  ## unit tests only (no slow, no browser)
	$(BIN)/python -m pytest -q -m "not slow and not browser" tests/unit

# Keep idle connections open for 75 s: uvicorn's default (5 s) equals the keep-alive of common
# HTTP clients' pools (httpx: 5 s), and a client that reuses a connection as the server closes it
# may get a ReadError (benchmarks/bench_keepalive.py: 8-9 of 180 reuses at ~5 s idle; 0 with 75 s)
SERVE_FLAGS := --host 127.0.0.1 --port 3000 --timeout-keep-alive 75

serve: install  ## serve the champion on 127.0.0.1:3000 (BentoML)
	cd serving && ../$(BIN)/bentoml serve service:TicketTriage $(SERVE_FLAGS)

serve-bento: install  ## serve the built Bento; its review queue + outbox stay in this project's var/
	TRIAGE_HOME=$(CURDIR) $(BIN)/bentoml serve ticket-triage:latest $(SERVE_FLAGS)

helpdesk: install  ## the helpdesk worker: poll, classify, draft, read corrections (Ctrl-C stops)
	$(BIN)/triage helpdesk run

bento: install  ## build the Bento with the champion inside
	$(BIN)/dvc repro package

review: install  ## the review page alone (127.0.0.1:8081/review/)
	$(BIN)/triage review

mlflow-ui: install  ## open the tracking store in the MLflow UI on 127.0.0.1:5000
	@echo "training runs: http://127.0.0.1:5000/#/experiments?workflowType=machine_learning (MLflow 3 opens in GenAI mode otherwise)"
	$(BIN)/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --host 127.0.0.1 --port 5000

bench: install  ## run the benchmarks (minutes)
	$(BIN)/python benchmarks/run_all.py

clean:  ## remove pipeline outputs (not data/, not the MLflow store)
	rm -rf artifacts
