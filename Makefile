# electrum-joinmarket — see README.md. Every target installs what it needs first (idempotent).
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
export EJM_CACHE ?= $(HOME)/.cache/electrum-joinmarket

.PHONY: install test test-fast demo layers lint clean

install:
	@bash scripts/install.sh

# Parallel test workers for `make test` and `make test-fast` (pytest-xdist; tests/conftest.py groups
# the tests so that a module, the Tor tests and the packaging tests each run in one worker; every
# worker starts its own regtest stack on its own ports). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 4

# Static checks, then the whole suite, end-to-end tests included. Exit code 5 (no tests
# collected) is a failure.
test: install
	@bash scripts/lint.sh
	@EJM_TEST_WORKERS=$(TEST_WORKERS) bash scripts/run_tests.sh $(PYTEST_ARGS)

# Static checks, then the tests that need no service (no regtest stack, no IRC server, no daemon).
# EJM_NO_SERVICES=1 makes devstack refuse to start any service: a test that needs one and lacks the
# `stack` marker fails here instead of slowing the fast tier down.
test-fast: install
	@bash scripts/lint.sh
	@EJM_NO_SERVICES=1 EJM_TEST_WORKERS=$(TEST_WORKERS) bash scripts/run_tests.sh -m "not e2e and not stack" $(PYTEST_ARGS)

# The static checks alone.
lint:
	@bash scripts/lint.sh

demo: install
	@$(PY) scripts/demo.py $(DEMO_ARGS)

# The package rule alone (docs/architecture.md); standard library only, any python3 >= 3.10.
layers:
	@python3 scripts/check_layers.py .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache

# ---- packaging (see packaging/README.md) -------------------------------------------------
# The base interpreter of the build venv: the project venv's Python if it exists, else python3.
BUILD_PY = $(if $(wildcard $(PY)),$(PY),python3)

.PHONY: daemon-binary plugin-zip
# dist/jmdaemon: one-file PyInstaller build of the keyless daemon (pinned, reproducible, cached).
daemon-binary:
	@$(BUILD_PY) packaging/build_daemon.py $(BUILD_ARGS)

# dist/joinmarket-<version>.zip: the Electrum 4.8 external zip plugin (plugin + vendored jmcore).
plugin-zip:
	@$(BUILD_PY) packaging/build_plugin_zip.py $(BUILD_ARGS)
