# vxplane developer entry points. `make help` lists them.
#
# demo, demo-down, deps and test need root (apt, network namespaces, Open vSwitch daemons);
# test-unit and lint do not.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := .venv
PY          := $(VENV)/bin/python
PYTEST      := $(VENV)/bin/pytest
RUFF        := $(VENV)/bin/ruff
VXPLANE     := $(VENV)/bin/vxplane
ARTIFACTS   := test-artifacts

TEST_TIMEOUT ?= 300
PYTEST_ARGS  ?=
DEMO_ARGS    ?=
DOCKER       ?=
BENCH_ARGS   ?=

PYTEST_FLAGS := -q --timeout=$(TEST_TIMEOUT) -p no:cacheprovider

define require_root
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "make $(or $(MAKECMDGOALS),$@): needs root (network namespaces, Open vSwitch, apt)." >&2; \
	  echo "  run it as root, e.g. 'sudo make $(or $(MAKECMDGOALS),$@)'; 'make test-unit' and 'make lint' need no root." >&2; \
	  exit 1; \
	fi
endef

.PHONY: help deps venv demo demo-down test test-unit lint bench clean distclean

help:
	@echo "make deps       install apt packages and .venv (root; idempotent, fast when done)"
	@echo "make demo       start the demo lab (root); DEMO_ARGS='...' passed to 'vxplane demo'"
	@echo "                DOCKER=1: also a dockerd per host and Docker containers (vxplane driver)"
	@echo "make demo-down  tear the demo lab down (root)"
	@echo "make test       the whole test suite (root); PYTEST_ARGS='...', TEST_TIMEOUT=$(TEST_TIMEOUT)"
	@echo "make test-unit  tests/unit and tests/api (no root)"
	@echo "make lint       ruff check + ruff format --check + mypy"
	@echo "make bench      benchmarks (bench/run.py); BENCH_ARGS='...'"
	@echo "make clean      remove caches and test artifacts (distclean: also .venv)"

deps:
	$(require_root)
	bash scripts/install-deps.sh

venv:
	bash scripts/install-deps.sh --venv-only

demo: deps
	$(require_root)
	$(VXPLANE) demo $(DEMO_ARGS) $(if $(filter-out 0,$(DOCKER)),--docker)

demo-down:
	$(require_root)
	$(VXPLANE) demo down

# pytest's exit code is kept in $(ARTIFACTS)/pytest.rc for .ci/run; make fails on any
# non-zero code, including 5 (no tests collected).
test: deps
	$(require_root)
	@mkdir -p $(ARTIFACTS)
	@rm -f $(ARTIFACTS)/pytest.rc
	@start=$$(date +%s); \
	set -o pipefail; \
	$(PYTEST) $(PYTEST_FLAGS) --junitxml=$(ARTIFACTS)/junit.xml $(PYTEST_ARGS) 2>&1 \
	  | tee $(ARTIFACTS)/pytest.log; \
	rc=$${PIPESTATUS[0]}; \
	echo $$rc > $(ARTIFACTS)/pytest.rc; \
	echo "----------------------------------------------------------------"; \
	summary=$$(grep -E '(passed|failed|errors?|skipped|deselected|no tests ran).* in [0-9.]+s' \
	  $(ARTIFACTS)/pytest.log | tail -n 1); \
	case $$rc in \
	  0) verdict=PASSED ;; \
	  5) verdict="FAILED (no tests collected)" ;; \
	  *) verdict=FAILED ;; \
	esac; \
	echo "make test: $$verdict, pytest exit $$rc, $$(( $$(date +%s) - start ))s: $$summary"; \
	echo "  log: $(ARTIFACTS)/pytest.log  junit: $(ARTIFACTS)/junit.xml"; \
	exit $$rc

test-unit: venv
	$(PYTEST) $(PYTEST_FLAGS) $(PYTEST_ARGS) tests/unit tests/api

lint: venv
	$(RUFF) check .
	$(RUFF) format --check .
	$(VENV)/bin/mypy controller hostagent vxcommon vxlab bench tests/unit/agentfakes.py

bench: venv
	@test -f bench/run.py || { echo "make bench: bench/run.py does not exist yet" >&2; exit 1; }
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(ARTIFACTS) build dist .pytest_cache .ruff_cache .mypy_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
