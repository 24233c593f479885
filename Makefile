# Every target sets itself up: the first one run creates .venv and installs the pinned stack.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DATA ?= ../shared/data/photos/val768
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: test demo lint bench clean

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/hific-tf demo --input=$(DATA) --output=out/demo

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/codec_speed.py
	$(BIN)/python benchmarks/train_step.py

clean:
	rm -rf out .pytest_cache .ruff_cache build *.egg-info

include codec-tools.mk
