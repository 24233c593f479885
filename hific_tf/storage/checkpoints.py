"""Model checkpoints: a directory with the architecture (JSON) and tf.train.Checkpoint files.

The codec's weights sit under the key "model", so a training checkpoint (which adds the
discriminator, optimizers and step under other keys) loads here unchanged.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import tensorflow as tf

from hific_tf.coding.entropy_coding import CodingTables
from hific_tf.coding.model import HiFiC
from hific_tf.configs import ModelConfig
from hific_tf.errors import UserError
from hific_tf.storage.files import write_atomic

CONFIG_FILE = "model_config.json"
# The coding tables of the directory's latest checkpoint, fixed when it is first used to code.
TABLES_FILE = "coding_tables.npz"


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
    return _restore(directory)[0]


def load_for_coding(directory: str | Path) -> HiFiC:
    """The latest checkpoint of `directory`, prepared for coding with fixed tables.

    The tables are computed the first time a checkpoint codes and stored beside it
    (`coding_tables.npz`, naming the checkpoint), so every later load, on this machine or
    another the directory is copied to, uses the same tables and the same model identifier.
    """
    model, prefix = _restore(directory)
    path = Path(directory) / TABLES_FILE
    tables = _read_tables(path, Path(prefix).name)
    if tables is not None:
        return model.prepare_for_coding(tables)
    model.prepare_for_coding()
    try:
        store_tables(directory, prefix, model.coding_tables)
    except OSError as error:
        logging.warning("could not store the coding tables in %s (%s): another machine may "
                        "compute different ones", path, error)
    return model


def store_tables(directory: str | Path, prefix: str, tables: CodingTables) -> None:
    """Stores `tables` beside the checkpoint `prefix` of `directory` (OSError if it cannot)."""
    arrays = {"checkpoint": np.frombuffer(Path(prefix).name.encode(), np.uint8),
              **tables.arrays()}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(Path(directory) / TABLES_FILE, buffer.getvalue(), overwrite=True)


def _read_tables(path: Path, checkpoint: str) -> CodingTables | None:
    """The stored tables if they belong to `checkpoint`, else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as stored:
            if bytes(stored["checkpoint"]).decode() != checkpoint:
                return None
            return CodingTables.from_arrays({k: stored[k] for k in stored.files})
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"{path} is damaged ({error}); delete it to compute the coding "
                        "tables again") from None


def _restore(directory: str | Path) -> tuple[HiFiC, str]:
    config = read_config(directory)
    prefix = tf.train.latest_checkpoint(str(directory))
    if prefix is None:
        raise UserError(f"{directory} has {CONFIG_FILE} but no checkpoint files; "
                        "point --model at a directory with a finished checkpoint")
    model = HiFiC(config).build_weights()
    try:
        # Weights of another normalization may restore without complaint (ChannelNorm's and
        # InstanceNorm's gamma and beta are alike), but batch normalization's moving
        # statistics name it: restoring alone would skip them unnoticed.
        statistics = any(name.startswith("model/") and "/moving_mean/" in name
                         for name, _ in tf.train.list_variables(prefix))
        if statistics != bool(model.moving_statistics()):
            raise UserError(f"{prefix} {'holds' if statistics else 'has no'} batch "
                            f"normalization statistics, but {CONFIG_FILE} declares "
                            f"normalization {config.normalization!r}")
        status = tf.train.Checkpoint(model=model).restore(prefix)
        status.expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UserError(f"cannot restore the weights in {prefix}: they do not match "
                        f"{CONFIG_FILE} or are damaged ({first_line[:200]})") from None
    return model, prefix
