# Headwater — developer entry points. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin
CLUSTER := python3 hack/cluster/localcluster.py
# Set when the local cluster runs: KUBECONFIG, REGISTRY, KUBECTL, ...
CLUSTER_ENV = $(shell $(CLUSTER) env 2>/dev/null)
PYTEST_ARGS ?=

.PHONY: help
help: ## show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: install-deps
install-deps: ## install Debian packages, the venv and the Kubernetes binaries (idempotent)
	bash hack/install-deps.sh

.PHONY: lint
lint: install-deps ## ruff, ruff format --check, mypy --strict, import contracts, generated files in sync
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python hack/gen_crds.py --check
	$(BIN)/python hack/gen_install.py --check
	$(BIN)/python hack/gen_namespaced.py --check

.PHONY: test
test: install-deps lint ## everything, on a fresh machine: set-up, lint, unit and e2e tests
	$(BIN)/python -m pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: ## unit tests only (no cluster)
	$(BIN)/python -m pytest -m "not e2e" $(PYTEST_ARGS)

.PHONY: cluster-up
cluster-up: install-deps ## start the local cluster and registry; prints the env file path last
	$(CLUSTER) up

.PHONY: cluster-down
cluster-down: ## stop everything cluster-up started
	$(CLUSTER) down

.PHONY: run
run: install-deps ## the operator in the foreground: on the local cluster when it runs, else $$KUBECONFIG
	bash hack/run.sh

.PHONY: demo
demo: install-deps ## the seed's flow on the local cluster
	bash hack/demo.sh

.PHONY: bench
bench: install-deps ## performance figures against a baseline (needs make cluster-up): bench/imports.py
	$(BIN)/python bench/imports.py $(BENCH_ARGS)

.PHONY: bench-peers
bench-peers: install-deps ## Headwater beside Keel and Flux (needs make cluster-up; KEEL_SRC=keel source, QUICK=1): bench/peers.py
	$(BIN)/python bench/peers.py $(if $(QUICK),--quick) $(BENCH_ARGS)

.PHONY: manifests
manifests: ## regenerate crds/, deploy/install.yaml and deploy/namespaced/
	$(BIN)/python hack/gen_crds.py
	$(BIN)/python hack/gen_install.py
	$(BIN)/python hack/gen_namespaced.py

.PHONY: bench-scale
bench-scale: install-deps ## the operator at N ImageStreams on the local cluster (SCALE=N, default 10000; QUICK=1: 1000)
	HEADWATER_KEEP_CLUSTER=1 flock /tmp/hw-e2e.lock $(BIN)/python bench/scale.py $(BENCH_ARGS)

.PHONY: bench-console
bench-console: install-deps ## the console's overview at 500 ImageStreams / 2,000 Builds in Chromium (needs make cluster-up): bench/console.py
	HEADWATER_KEEP_CLUSTER=1 flock /tmp/hw-e2e.lock $(BIN)/python bench/console.py $(BENCH_ARGS)
