# mlops-metal: `make demo` and `make test` each do their own set-up on a fresh clone.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV        := .venv
PY          := $(VENV)/bin/python
REQ_HASH    := $(shell sha256sum requirements.txt | cut -c1-16)
STAMP       := $(VENV)/.installed-$(REQ_HASH)
INVENTORIES := $(sort $(wildcard inventories/*))
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_FORCE_COLOR ?= 0
export PY_COLORS ?= 0

.PHONY: help setup demo test lint yamllint ansible-lint ruff docs docs-check syntax pytest clean

help:
	@echo "make demo    set up, then run preflight against this machine (inventories/local)"
	@echo "make test    set up, then run every check CI runs"
	@echo "make docs    regenerate roles/*/README.md from meta/argument_specs.yml"
	@echo "make clean   remove the virtualenv and build output"

# Idempotent: the stamp names the hash of requirements.txt, so a changed pin reinstalls.
setup: $(STAMP)
$(STAMP): requirements.txt
	@command -v python3 >/dev/null || { echo "setup: python3 (3.11+) is required" >&2; exit 1; }
	@command -v ip >/dev/null || { echo "setup: iproute2 ('ip') is required: apt-get install iproute2 / dnf install iproute" >&2; exit 1; }
	@python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "setup: Python 3.11+ is required for ansible-core 2.19" >&2; exit 1; }
	@python3 -m venv --help >/dev/null 2>&1 || { echo "setup: python3 venv is missing: apt-get install python3-venv" >&2; exit 1; }
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@rm -f $(VENV)/.installed-* && touch $@
	@echo "setup: tools installed in $(VENV) ($$($(VENV)/bin/ansible --version | head -1))"

demo: setup
	ansible-playbook playbooks/preflight.yml -i inventories/local

test: setup lint docs-check syntax pytest
	@echo "make test: all checks passed"

lint: yamllint ansible-lint ruff

yamllint: setup
	yamllint --strict .

ansible-lint: setup
	ansible-lint --offline --profile production

ruff: setup
	ruff check .
	ruff format --check .

docs: setup
	$(PY) tools/role_docs.py

docs-check: setup
	$(PY) tools/role_docs.py --check

syntax: setup
	@for inv in $(INVENTORIES); do \
	  echo "syntax-check site.yml -i $$inv"; \
	  ansible-playbook --syntax-check -i $$inv site.yml >/dev/null; \
	  for pb in playbooks/*.yml; do ansible-playbook --syntax-check -i $$inv $$pb >/dev/null; done; \
	done

pytest: setup
	$(PY) -m pytest

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache
