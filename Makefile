# audiocraft_ext: `make test` and `make infer` set up .venv on first use (pinned requirements, then AudioCraft
# 1.3.0 without its dependencies, then this package in editable mode).
PYTHON ?= python3
VENV ?= .venv
VENV_PYTHON := $(VENV)/bin/python
# no wheel cache: on a fresh machine it only doubles the disk an install needs
PIP_INSTALL := $(VENV_PYTHON) -m pip install --no-cache-dir
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?= -q
ARGS ?=

.PHONY: install browser corpus-deps test infer demo bench clean-venv

$(VENV_PYTHON):
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): requirements.txt setup.py | $(VENV_PYTHON)
	$(PIP_INSTALL) -r requirements.txt
	$(PIP_INSTALL) --no-deps audiocraft==1.3.0
	$(PIP_INSTALL) --no-deps -e .
	touch $(INSTALLED)

install: $(INSTALLED)

# Debian's Chromium for the demo's real-browser test (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q chromium; \
	  else sudo apt-get update -q && sudo apt-get install -y -q chromium; fi; }

# Debian's FluidSynth and General MIDI soundfont, to render the synthetic corpus's music (audiocraft_ext/synth/music.py;
# corpus building and its tests only: inference never needs them).
corpus-deps:
	@{ command -v fluidsynth >/dev/null 2>&1 && [ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ]; } || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q --no-install-recommends fluidsynth fluid-soundfont-gm; \
	  else sudo apt-get update -q && sudo apt-get install -y -q --no-install-recommends fluidsynth fluid-soundfont-gm; fi; }

test: install browser corpus-deps
	$(VENV_PYTHON) -m pytest $(PYTEST_ARGS) tests

infer: install
	PYTHON=$(abspath $(VENV_PYTHON)) bash infer.sh $(ARGS)

demo: install
	$(VENV_PYTHON) -m demos.VidMuse_app $(ARGS)

bench: install
	$(VENV_PYTHON) benchmarks/generation_speed.py --layers 4

clean-venv:
	rm -rf $(VENV)
