# audiocraft_ext: `make test` and `make infer` set up .venv on first use (pinned requirements, then AudioCraft
# 1.3.0 without its dependencies, then this package in editable mode).
PYTHON ?= python3
VENV ?= .venv
VENV_PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?= -q
ARGS ?=

.PHONY: install test infer bench clean-venv

$(VENV_PYTHON):
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): requirements.txt setup.py | $(VENV_PYTHON)
	$(VENV_PYTHON) -m pip install -r requirements.txt
	$(VENV_PYTHON) -m pip install --no-deps audiocraft==1.3.0
	$(VENV_PYTHON) -m pip install --no-deps -e .
	touch $(INSTALLED)

install: $(INSTALLED)

test: install
	$(VENV_PYTHON) -m pytest $(PYTEST_ARGS) tests

infer: install
	PYTHON=$(abspath $(VENV_PYTHON)) bash infer.sh $(ARGS)

bench: install
	$(VENV_PYTHON) benchmarks/generation_speed.py --layers 4

clean-venv:
	rm -rf $(VENV)
