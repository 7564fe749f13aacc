# sendo — set-up, run and test. `make up` and `make test` are all a newcomer needs.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: venv containers console up test lint unit integration e2e bench clean

# Podman, runc, the OCI registry and static busybox for the `docker` runtime and its
# tests (Debian packages + containers.conf); fast when already in place.
containers:
	sh scripts/setup-containers.sh

# Chromium (Debian package), which the web console's tests and benchmark drive headless
console:
	sh scripts/setup-console.sh

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	touch $(STAMP)

# `make up RUNTIME=docker` runs container pods (installing the engine first if needed)
RUNTIME ?= process
up: venv
	if [ "$(RUNTIME)" = docker ]; then sh scripts/setup-containers.sh; fi
	$(BIN)/sendo up --runtime $(RUNTIME) --apply examples/hello-web.yaml

# modules whose types mypy checks; add a module once it passes
TYPED   := sendo/client sendo/tasks.py sendo/wire.py sendo/kinds/meta.py sendo/api/paths.py sendo/api/agentlink.py sendo/api/audit.py sendo/addons sendo/kinds/addons.py sendo/controllers/addons.py

test: venv containers console lint
	$(BIN)/pytest -q -n 2 --dist loadfile tests

lint: venv
	$(BIN)/ruff check sendo tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy --ignore-missing-imports --follow-imports=silent $(TYPED)

unit: venv
	$(BIN)/pytest -q tests/unit

integration: venv containers
	$(BIN)/pytest -q tests/integration

e2e: venv containers console
	$(BIN)/pytest -q tests/e2e

bench: venv console containers
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.rbac
	$(BIN)/python -m bench.datastores
	$(BIN)/python -m bench.nodeipam
	$(BIN)/python -m bench.fuzz
	$(BIN)/python -m bench.jobs
	$(BIN)/python -m bench.volumes
	$(BIN)/python -m bench.nodeloss
	$(BIN)/python -m bench.webhooks
	$(BIN)/python -m bench.console
	$(BIN)/python -m bench.ha
	$(BIN)/python -m bench.functions
	$(BIN)/python -m bench.hpa
	$(BIN)/python -m bench.containers

clean:
	rm -rf $(VENV) .pytest_cache
