# Two entry points on a fresh Debian machine: `make demo` and `make test`.
# Both create the venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEB_PACKAGES := libasound2-dev alsa-utils age espeak-ng asterisk-core-sounds-en-wav \
	asterisk-moh-opsound-wav chromium openssh-server openssh-client rsync
BENCH_PACKAGES := gcc libspandsp-dev multimon-ng minimodem
# tests/system: systemd-analyze verify/security, shellcheck, YAML and nft syntax.
DEB_PACKAGES += systemd shellcheck yamllint nftables
# make image-check: a Debian root to install the appliance into (plus DEB_PACKAGES).
IMAGE_PACKAGES := debootstrap gcc
# OpenBLAS threads make small matrix work (the echo canceller) ~100x slower on 2 cores.
export OPENBLAS_NUM_THREADS := 1
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench torture deb-packages bench-packages clean \
	image-check image-packages

demo: $(STAMP)
	$(BIN)/appliance demo

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check appliance tests bench
	$(BIN)/ruff format --check appliance tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP) bench-packages
	$(BIN)/python bench/line_bench.py
	$(BIN)/python bench/vault_bench.py
	$(BIN)/python bench/dtmf/run.py
	$(BIN)/python bench/callerid/run.py

# Issue 10's long campaigns (power cuts, a day of calls, faults, line glitches, fuzzing):
# under 30 minutes here, non-zero on any failure. `make test` runs a short form of each.
# Issue 10's campaigns at full size; `make torture-power_loss ARGS="--size 200"` runs one
# (any module of bench/torture/ with its own arguments). `-m` from here: no PYTHONPATH.
torture: $(STAMP)
	$(BIN)/python -m bench.torture.run_all

torture-%: $(STAMP)
	$(BIN)/python -m bench.torture.$* $(ARGS)

# The SD card image's smoke test (slow, separate from `make test`; needs root): see
# image-build/README.md. The debootstrapped root is cached in .image-cache/.
image-check: $(STAMP) image-packages
	PYTHON=$(abspath $(BIN)/python) image-build/check/image-check

image-packages:
	@$(MAKE) --no-print-directory deb-packages DEB_PACKAGES="$(IMAGE_PACKAGES)"

bench-packages:
	@$(MAKE) --no-print-directory deb-packages DEB_PACKAGES="$(BENCH_PACKAGES)"

deb-packages:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else \
		echo "make: these Debian packages are needed: $$missing"; \
		echo "make: install them with: sudo apt-get install $$missing"; exit 1; \
	fi

$(STAMP): pyproject.toml | deb-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
