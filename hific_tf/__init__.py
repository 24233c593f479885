"""hific-tf: HiFiC (Mentzer et al., NeurIPS 2020) in TensorFlow 2 on tensorflow-compression.

The names a user needs, imported on first use (so that `import hific_tf` and the CLI's
start stay free of TensorFlow until a name is used)::

    from hific_tf import HiFiC, load_codec, model_preset, training_preset

    codec = load_codec("hific-small")          # a bundled, converted, published or trained model
    data = codec.compress(image_uint8_hw3)      # bytes of a file
    model = HiFiC(model_preset("hific"))        # the Keras model, for training or coding
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

# Public name → the module that defines it.
_PUBLIC = {
    "HiFiC": "hific_tf.coding.model",
    "FormatError": "hific_tf.coding.bitstream",
    "Codec": "hific_tf.codec",
    "load_codec": "hific_tf.codec",
    "ModelConfig": "hific_tf.configs",
    "TrainingConfig": "hific_tf.configs",
    "model_preset": "hific_tf.configs",
    "training_preset": "hific_tf.configs",
    "Trainer": "hific_tf.training.loop",
    "UserError": "hific_tf.errors",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> object:
    """Imports a public name's module when the name is first used (PEP 562)."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'hific_tf' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
