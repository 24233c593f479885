"""Shared fixtures: the data folder, small models and a saved checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
import tensorflow as tf

from hific_tf.checkpoints import save_model
from hific_tf.configs import model_preset
from hific_tf.model import HiFiC

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data, or a skip that says it is missing."""
    if not (DATA / "photos").is_dir():
        pytest.skip(f"test photos not found: {DATA} is absent (it holds the shared data set)")
    return DATA


@pytest.fixture(scope="session")
def val768(data_dir: Path) -> list[Path]:
    """The five 768x512 validation photos."""
    return sorted((data_dir / "photos" / "val768").glob("*.png"))


def make_tiny_model(seed: int = 0) -> HiFiC:
    """A freshly initialised tiny model, prepared for coding."""
    tf.keras.utils.set_random_seed(seed)
    return HiFiC(model_preset("tiny")).prepare_for_coding()


@pytest.fixture(scope="session")
def tiny_model() -> HiFiC:
    return make_tiny_model(seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint directory of the seed-0 tiny model (the same weights as tiny_model)."""
    tf.keras.utils.set_random_seed(0)
    directory = tmp_path_factory.mktemp("tiny_checkpoint")
    save_model(HiFiC(model_preset("tiny")).build_weights(), directory)
    return directory


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def run_cli(*args: str, cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs `hific-tf ARGS` in a fresh process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "hific_tf.cli.main", *args], cwd=cwd or REPO,
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)})
