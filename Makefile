# gesturert: set-up and the jobs the README names. Every target sets up first,
# so `make demo` and `make test` each work on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint typecheck pytest bundle bench clean chromium

setup: $(STAMP)

# torch==2.13.0 first: the CPU build lies on disk here; an unpinned torch would pull a
# multi-GB CUDA build. tensorrt-stubs needs --no-deps (it depends on tensorrt, whose
# libraries cannot be installed on a machine without a GPU); its .pyi files need a small
# patch before mypy accepts them (scripts/patch_trt_stubs.py writes them to .stubs/).
# tritonclient: only its model_config protobuf is used, to validate Triton configs, so
# --no-deps keeps its pinned extras (ml-dtypes) out.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[cpu,demo,train,dev,live]'
	$(BIN)/pip install -q --disable-pip-version-check --no-deps tensorrt-stubs==10.13.0.35.1
	$(BIN)/python scripts/patch_trt_stubs.py
	$(BIN)/pip install -q --disable-pip-version-check --no-deps tritonclient==2.73.0
	touch $(STAMP)

demo: setup
	$(BIN)/gesturert demo

lint: setup
	$(BIN)/ruff check .

typecheck: setup
	$(BIN)/mypy

# pytest exits 5 when it collects no test: that must fail loudly, not pass.
pytest: setup chromium
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "ERROR: pytest collected no tests" >&2; exit 1; fi; exit $$rc

test: lint typecheck pytest

# Reproduce the shipped default bundle (sdk/data/default_bundle): synthetic corpus ->
# PoseSyncNet, FGD encoder, generator with the default configs -> export (~18 min on 2
# cores), then the audio-shuffled baseline generator (~14 min) and the held-out evaluation.
bundle: setup
	$(BIN)/python scripts/make_default_bundle.py --evaluate --shuffled-baseline

# Full benchmark on this machine (JSON + Markdown + PNG under benchmarks/results/).
bench: setup
	$(BIN)/gesturert bench --compare-sliding-window

clean:
	rm -rf $(VENV) .stubs .pytest_cache .mypy_cache .ruff_cache

# The live page's browser test (tests/test_live_browser.py) drives Debian's chromium
# headless with a fake microphone; install it once on a fresh machine (needs root/apt).
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

# A lent GPU machine (docs/tensorrt.md, "A lent GPU"): `make gpu-wheels` here fetches the
# Python 3.12 wheels its image lacks (scripts/gpu_wheels.txt) into .gpu_wheels/; there,
# `make gpu-check` installs them with --target and runs every gpu/tensorrt test and the
# GPU benchmarks into one folder (no venv, no network: the image's python3).
GPU_CHECK_OUT ?= benchmarks/results/gpu-check
.PHONY: gpu-wheels gpu-check
gpu-wheels: setup
	$(BIN)/pip download -q --disable-pip-version-check --only-binary=:all: \
	  --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
	  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --no-deps \
	  -r scripts/gpu_wheels.txt -d .gpu_wheels
	@du -sh .gpu_wheels

gpu-check:
	$(PY) scripts/gpu_check.py --out $(GPU_CHECK_OUT)

# The fleet tests (tests/test_fleet_*.py) run Debian's HAProxy and nginx on loopback.
# Installed when missing (root, or sudo): apt-get update once, then apt-get install -y.
FLEET_PACKAGES := haproxy nginx-light
.PHONY: fleet-deps
pytest: fleet-deps
fleet-deps:
	@if ! { command -v haproxy || test -x /usr/sbin/haproxy; } >/dev/null 2>&1 || \
	    ! { command -v nginx || test -x /usr/sbin/nginx; } >/dev/null 2>&1; then \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  $$sudo apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q $(FLEET_PACKAGES); \
	fi
