# One command each: `make run` installs what running needs (a venv with the package, nothing
# else) and starts the gateway; `make test` installs everything the tests need and runs them,
# `make check` adds lint and types, `make bench` compares against Faye and
# cometd-nodejs-server.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed
NODE_TESTS := tests/node
NODE_BENCH := bench/faye bench/cometd bench/faye-redis

.PHONY: install run test check lint types bench bench-quick bench-cluster clean python-venv system-deps node-deps

install: $(DEV_STAMP) node-deps

# Running needs Python's venv module only (Debian's python3-venv); apt only when root and
# only when it is missing.
python-venv:
	@if ! $(PYTHON) -c 'import venv, ensurepip' 2>/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing: python3-venv"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      -o DPkg::Lock::Timeout=300 python3-venv; \
	  else \
	    echo "missing system package: python3-venv (run as root or install it)"; exit 1; \
	  fi; \
	fi

# System packages the tests need (apt, only when root and only what is missing): Node for the
# CometD JS client and Faye, Dovecot for the real IMAP server of the mail tests, redis-server
# for the Redis engine's.  Packages'
# postinst scripts start no system service here (no init; policy-rc.d), and the tests start
# their own throwaway instances on free loopback ports.
system-deps: python-venv
	@missing=""; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	[ -x /usr/sbin/dovecot ] || command -v dovecot >/dev/null || missing="$$missing dovecot-imapd"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      -o DPkg::Lock::Timeout=300 $$missing; \
	  else \
	    echo "missing system packages:$$missing (run as root or install them)"; exit 1; \
	  fi; \
	fi

# The runtime: the package and its dependencies, no dev extras.
$(RUN_STAMP): pyproject.toml | python-venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $(RUN_STAMP)

# Everything the tests, lint and types need on top.
$(DEV_STAMP): $(RUN_STAMP) | system-deps
	$(BIN)/pip install -q -e '.[dev]'
	touch $(DEV_STAMP)

node-deps: system-deps
	@for dir in $(NODE_TESTS) $(NODE_BENCH); do \
	  if [ -f $$dir/package-lock.json ] && [ ! -d $$dir/node_modules ]; then \
	    npm ci --prefix $$dir --no-audit --no-fund --loglevel=error || exit 1; \
	  fi; \
	done

run: $(RUN_STAMP)
	$(BIN)/gateway serve --demo

test: install
	$(BIN)/pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff check protocol gateway tests bench examples
	$(BIN)/ruff format --check protocol gateway tests bench examples

types: $(DEV_STAMP)
	$(BIN)/mypy

check: lint types test

bench: install
	$(BIN)/python bench/run.py

bench-quick: install
	$(BIN)/python bench/run.py --quick

# the servers on one Redis (gateway-redis, faye-redis) against their peers; needs redis-server
bench-cluster: install
	$(BIN)/python bench/run.py --only cluster

clean:
	rm -rf $(VENV) $(NODE_TESTS)/node_modules $(addsuffix /node_modules,$(NODE_BENCH)) .pytest_cache \
	  .mypy_cache .ruff_cache .hypothesis bench/results
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
