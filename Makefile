# gesturert: set-up and the jobs the README names. Every target sets up first,
# so `make demo` and `make test` each work on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint typecheck pytest bundle bench clean debs voices

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
pytest: setup debs
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "ERROR: pytest collected no tests" >&2; exit 1; fi; exit $$rc

test: lint typecheck pytest

# Reproduce the shipped default bundle (sdk/data/default_bundle): voiced corpus (every
# registry voice, espeak-ng and flite, 4 min each; three held out, never trained on; 3
# gesture styles shared round-robin by the voices) -> PoseSyncNet, FGD encoder, generator
# with the default configs, two trainings at once (the audio-shuffled baseline beside the
# generator) -> export, validate, held-out evaluation. Times: benchmarks/results/training/.
BUNDLE_CORPUS = --voices all --held-out-voices espeak-en-us-f4,espeak-it-f4,flite-slt --styles 3 --minutes 4
bundle: setup voices
	$(BIN)/python scripts/make_default_bundle.py $(BUNDLE_CORPUS) --jobs 2 --evaluate --shuffled-baseline

# Full benchmark on this machine (JSON + Markdown + PNG under benchmarks/results/).
bench: setup
	$(BIN)/gesturert bench --compare-sliding-window

clean:
	rm -rf $(VENV) .stubs .pytest_cache .mypy_cache .ruff_cache

# Debian packages, installed when missing (root, or sudo): `apt-get update` once, then
# `apt-get install -y` of what is missing. The tests use all of them: chromium for the live
# page's browser test (headless, fake microphone), haproxy and nginx-light for the fleet
# tests (the shipped balancer configurations on loopback), espeak-ng and flite for the
# voiced corpus (`gesturert data synth --voices`), festival and two of its voices for the
# engine no model heard (benchmarks.voices_acceptance), alsa-utils for its recorded speech
# prompts, the one recording of a person speaking here (benchmarks.recorded_voice).
# `make voices` installs only these.
# MBROLA would need contrib + non-free in the apt sources (not enabled here) and its voices
# are non-commercial, so it is not used.
VOICE_DEBS := espeak-ng flite festival festvox-kdlpc16k festvox-us-slt-hts alsa-utils
TEST_DEBS := chromium haproxy nginx-light $(VOICE_DEBS)
define install_debs
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; \
	  else echo "ERROR: need root to install$$missing (apt-get install -y$$missing)" >&2; exit 1; fi; \
	  echo "installing$$missing"; \
	  $$sudo apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q -o DPkg::Lock::Timeout=300 $$missing; \
	fi
endef

debs:
	$(call install_debs,$(TEST_DEBS))

voices:
	$(call install_debs,$(VOICE_DEBS))

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

# There, name the commit: make gpu-check GESTURERT_GIT_SHA=<sha> (benchmarks/common.py).
gpu-check:
	GESTURERT_GIT_SHA=$(GESTURERT_GIT_SHA) $(PY) scripts/gpu_check.py --out $(GPU_CHECK_OUT)
