# The two README commands: `make synth` (main job) and `make test`. Both set up what they need first.
SHELL := /bin/bash
VENV := .venv
PYTHON := $(VENV)/bin/python
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$(PATH)
export CDK_DISABLE_CLI_TELEMETRY := true
export JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION := 1
OUT := cdk.out

.PHONY: setup synth test lint clean local bench bench-handler bench-import bench-synth bench-local

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements-dev.txt
	$(PYTHON) -m pip install --quiet --no-deps -e .
	touch $@

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed node_modules/.installed

## Synthesize every stack of the configured profile (default bloom-176b-int8), with cdk-nag, then cfn-lint.
synth: setup
	rm -rf $(OUT)
	cdk synth --quiet --no-notices --output $(OUT) $(CDK_ARGS)
	$(PYTHON) -m stacks.lint_templates $(OUT)
	@echo "Templates written to $(CURDIR)/$(OUT): $$(ls $(OUT)/*.template.json | xargs -n1 basename | tr '\n' ' ')"

test: setup
	$(PYTHON) -m pytest $(PYTEST_ARGS)

## Run the API on this machine on the tiny BLOOM, without AWS or network. Options in LOCAL_ARGS, e.g. "--port 0".
local: $(VENV)/.installed
	$(VENV)/bin/bloomctl local serve $(LOCAL_ARGS)

## Benchmarks (not tests): each prints its figures with the machine and the command. Options in BENCH_ARGS.
bench: bench-handler bench-import bench-synth bench-local

bench-handler: setup
	$(PYTHON) -m benchmarks.handler_overhead $(BENCH_ARGS)

bench-import: setup
	$(PYTHON) -m benchmarks.cold_import $(BENCH_ARGS)

bench-synth: setup
	$(PYTHON) -m benchmarks.synth $(BENCH_ARGS)

bench-local: setup
	$(PYTHON) -m benchmarks.local_throughput $(BENCH_ARGS)

clean:
	rm -rf $(OUT) $(VENV) node_modules .pytest_cache
