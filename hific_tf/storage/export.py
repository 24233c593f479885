"""SavedModel export: `compress` (uint8 image → file bytes) and `decompress` signatures.

The SavedModel holds only variables and the two traced functions, so TensorFlow Serving or
any Python process with `tensorflow` and `tensorflow_compression` imported can run it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from hific_tf.coding.model import HiFiC
from hific_tf.storage.files import check_writable


def export_saved_model(model: HiFiC, directory: str | Path, overwrite: bool = False) -> None:
    """Writes `model` (prepared for coding) as a SavedModel at `directory`, atomically."""
    directory = Path(directory)
    check_writable(directory, overwrite)
    if model.model_id is None:
        model.prepare_for_coding()
    module = tf.Module()
    module.model_variables = list(model.variables)
    # The architecture (ModelConfig JSON, as in checkpoints), so that a SavedModel says
    # what it is; the graph itself is the model, so nothing is loaded by it.
    module.model_config = tf.Variable(model.config.to_json(), trainable=False,
                                      name="model_config")
    module.compress = model.compress
    module.decompress = model.decompress
    # Loaded back, `tile_settings.memory_budget` sets the memory that coding aims for.
    module.tile_settings = model.tile_settings

    @tf.function(input_signature=model.compress.input_signature)
    def compress_signature(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"data": model.compress(image)}

    @tf.function(input_signature=model.decompress.input_signature)
    def decompress_signature(data: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"image": model.decompress(data)}

    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        tf.saved_model.save(module, str(staging), signatures={
            "compress": compress_signature, "decompress": decompress_signature})
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
