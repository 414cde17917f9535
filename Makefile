# One command each: `make run` starts the gateway, `make test` installs what the tests need and
# runs them, `make check` adds lint and types, `make bench` compares against Faye and
# cometd-nodejs-server.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_TESTS := tests/node
NODE_BENCH := bench/faye bench/cometd
APT_PACKAGES := nodejs npm

.PHONY: install run test check lint types bench bench-quick clean system-deps node-deps

install: $(STAMP) node-deps

# System packages the tests need (apt, only when root and only what is missing): Node for the
# CometD JS client and Faye, Dovecot for the real IMAP server of the mail tests.  Packages'
# postinst scripts start no system service here (no init; policy-rc.d), and the tests start
# their own throwaway instances on free loopback ports.
system-deps:
	@missing=""; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	[ -x /usr/sbin/dovecot ] || command -v dovecot >/dev/null || missing="$$missing dovecot-imapd"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      -o DPkg::Lock::Timeout=300 $$missing; \
	  else \
	    echo "missing system packages:$$missing (run as root or install them)"; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

node-deps: system-deps
	@for dir in $(NODE_TESTS) $(NODE_BENCH); do \
	  if [ -f $$dir/package-lock.json ] && [ ! -d $$dir/node_modules ]; then \
	    npm ci --prefix $$dir --no-audit --no-fund --loglevel=error || exit 1; \
	  fi; \
	done

run: $(STAMP)
	$(BIN)/gateway serve --demo

test: install
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check protocol gateway tests bench examples
	$(BIN)/ruff format --check protocol gateway tests bench examples

types: $(STAMP)
	$(BIN)/mypy

check: lint types test

bench: install
	$(BIN)/python bench/run.py

bench-quick: install
	$(BIN)/python bench/run.py --quick

clean:
	rm -rf $(VENV) $(NODE_TESTS)/node_modules $(addsuffix /node_modules,$(NODE_BENCH)) .pytest_cache \
	  .mypy_cache .ruff_cache .hypothesis bench/results
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
