# The frontend's targets, included by the Makefile. Node.js and npm are the ones in .venv/bin (PATH).
FRONTEND_DIR := $(CURDIR)/frontend
# npm ci empties node_modules first, so a stamp inside it also disappears when an install fails midway.
FRONTEND_STAMP := $(FRONTEND_DIR)/node_modules/.canvalo-installed
# Where `make frontend STAGE=<stage>` builds; tests point it at a temporary directory.
FRONTEND_DIST ?= $(FRONTEND_DIR)/dist-$(STAGE)

# The Vitest suite and the browser test run inside pytest (tests/frontend, tests/e2e), so that the
# requirements report sees them and they run once; pytest therefore needs the frontend's packages.
pytest: $(FRONTEND_STAMP)
# tools/bench_frontend.py builds the frontend to measure its bundle.
bench: $(FRONTEND_STAMP)

$(FRONTEND_STAMP): $(FRONTEND_DIR)/package.json $(FRONTEND_DIR)/package-lock.json $(STAMP)
	cd $(FRONTEND_DIR)
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

.PHONY: frontend-deps
frontend-deps: $(FRONTEND_STAMP) ## install the frontend's npm packages from package-lock.json

.PHONY: frontend-test
frontend-test: $(FRONTEND_STAMP) ## the frontend's TypeScript check and Vitest suite (R10.2)
	cd $(FRONTEND_DIR)
	npx tsc --noEmit -p .
	npx vitest run

.PHONY: frontend
frontend: $(FRONTEND_STAMP) ## build the frontend for STAGE=beta|gamma|prod into frontend/dist-<stage>/
	@if [ -z "$(STAGE)" ]; then echo "error: make frontend needs STAGE=beta, gamma or prod" >&2; exit 2; fi
	build_environment=$$(python -m tools.frontend_env "$(STAGE)")
	eval "$$build_environment"
	echo "building the $(STAGE) frontend into $(FRONTEND_DIST) with VITE_API_URL='$$VITE_API_URL'"
	cd $(FRONTEND_DIR)
	npx tsc --noEmit -p .
	npx vite build --logLevel warn --emptyOutDir --outDir "$(FRONTEND_DIST)"

.PHONY: frontend-dev
frontend-dev: $(FRONTEND_STAMP) ## Vite's dev server on 127.0.0.1:5173 against the local backend on :8000
	cd $(FRONTEND_DIR)
	npx vite --host 127.0.0.1 --port 5173 --strictPort

.PHONY: browser-test
browser-test: $(FRONTEND_STAMP) ## only the browser end-to-end test: headless Chromium against a local backend
	python -m pytest -q tests/e2e $(PYTEST_ARGS)
