"""Model checkpoints: a directory with the architecture (JSON) and tf.train.Checkpoint files.

The codec's weights sit under the key "model", so a training checkpoint (which adds the
discriminator, optimizers and step under other keys) loads here unchanged.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from hific_tf.configs import ModelConfig
from hific_tf.errors import UserError
from hific_tf.model import HiFiC

CONFIG_FILE = "model_config.json"


def write_config(config: ModelConfig, directory: str | Path) -> None:
    """Writes the architecture beside the checkpoints."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(config.to_json() + "\n")


def read_config(directory: str | Path) -> ModelConfig:
    """Reads the architecture of a checkpoint directory."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{directory} is not a hific-tf checkpoint directory (no {CONFIG_FILE}); "
                        "pass a directory written by hific-tf train or an exported SavedModel")
    try:
        return ModelConfig.from_json(path.read_text())
    except (ValueError, TypeError) as error:
        raise UserError(f"{path} is not a valid model configuration: {error}") from None


def save_model(model: HiFiC, directory: str | Path) -> str:
    """Saves the architecture and weights of `model`; returns the checkpoint prefix."""
    write_config(model.config, directory)
    checkpoint = tf.train.Checkpoint(model=model)
    return tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=1).save()


def load_model(directory: str | Path) -> HiFiC:
    """Builds the model of a checkpoint directory and restores its latest weights."""
    config = read_config(directory)
    prefix = tf.train.latest_checkpoint(str(directory))
    if prefix is None:
        raise UserError(f"{directory} has {CONFIG_FILE} but no checkpoint files; "
                        "point --model at a directory with a finished checkpoint")
    model = HiFiC(config).build_weights()
    try:
        status = tf.train.Checkpoint(model=model).restore(prefix)
        status.expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UserError(f"cannot restore the weights in {prefix}: they do not match "
                        f"{CONFIG_FILE} or are damaged ({first_line[:200]})") from None
    return model
