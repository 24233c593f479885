"""Shared fixtures: the photos, small models and a saved checkpoint.

`photos` are the three photos the repository ships (photos/); tests that need one of the
larger shared data sets (../shared/data beside the checkout) ask for it by name and skip,
with one line naming the set, where it is absent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
import tensorflow as tf

from hific_tf.coding.hyperprior import Hyperprior, check_prepared
from hific_tf.coding.model import HiFiC
from hific_tf.coding.tiling import to_uint8
from hific_tf.configs import model_preset
from hific_tf.storage.checkpoints import save_model

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO / "photos"
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_data(relative: str) -> Path:
    """`relative` inside ../shared/data, or a skip that names the missing data set."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"needs the shared data set {relative} ({path} is absent)")
    return path


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    """The 768x512 photos the repository ships, sorted by name."""
    return sorted(PHOTOS.glob("*.png"))


@pytest.fixture(scope="session")
def val768() -> list[Path]:
    """The five 768x512 validation photos of the shared data set."""
    return sorted(shared_data("photos/val768").glob("*.png"))


@pytest.fixture(scope="session")
def train_photos() -> Path:
    """The shared data set's 20 training originals."""
    return shared_data("photos/train")


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


def compiled_untiled_decode(model: HiFiC, y_hat: tf.Tensor, height: int,
                            width: int) -> np.ndarray:
    """G on the whole latent, cropped and rounded to uint8, in a tf.function as
    `decompress` runs it: the untiled reference that decoding is compared with, bit for
    bit. Eager ops are another execution path: oneDNN's graph rewrites (fused convolutions,
    a division by a square root turned into rsqrt) round differently in the last bits, and
    now and then move a pixel by a grey level."""
    decode = tf.function(
        lambda latent, rows, columns: to_uint8(model.generator(latent)[0, :rows, :columns]),
        input_signature=[tf.TensorSpec([1, None, None, model.config.latent_channels]),
                         tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)],
        autograph=False)
    return decode(y_hat, height, width).numpy()


def compiled_y_hat(model: HiFiC, image: np.ndarray) -> np.ndarray:
    """The encoder's quantised latent of a uint8 image, in a tf.function as `compress`
    runs it (see compiled_untiled_decode: eager E may put a latent on the other side of a
    rounding boundary)."""
    encode = tf.function(lambda pixels: model.encode(pixels)[0].y_hat,
                         input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)],
                         autograph=False)
    return encode(tf.constant(image)).numpy()


def coding_parameters(hyperprior: Hyperprior, z_hat: tf.Tensor, y_shape: tf.Tensor,
                      z_rows: tf.Tensor | None = None
                      ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """y's means and int32 table indexes from z_hat, cropped to y's [height, width]
    `y_shape`, as encoder and decoder compute them, and whether they are exact (always true
    in float mode, which promises nothing); whole, joined from strips of `z_rows` rows of z
    if given (see `Hyperprior._over_strips`, which coding uses without joining them)."""
    def keep(_top, mean, index, exact, state):
        return (tf.logical_and(state[0], exact),), (mean, index)

    (exact,), (mean, index) = hyperprior._over_strips(z_hat, y_shape, z_rows, keep,
                                                      (tf.constant(True),),
                                                      (tf.float32, tf.int32))
    return mean, index, exact


def information_content(hyperprior: Hyperprior, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Bits of y_hat and z_hat per image under the coding distributions (−log2 p): a tight
    lower bound on what the range coder writes, to measure coding overhead."""
    check_prepared(hyperprior.prepared)
    z = hyperprior.analysis(y)
    _, z_bits = hyperprior.z_model(z, training=False)
    _, z_hat = hyperprior.coder.encode_z(z)
    mean, index, _ = coding_parameters(hyperprior, z_hat, tf.shape(y)[1:3])
    _, y_bits = hyperprior.y_model(y, tf.cast(index, tf.float32), loc=mean, training=False)
    return y_bits, z_bits


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
