"""The package's front door: the names a user needs, importable from `hific_tf` itself."""

import subprocess
import sys

import hific_tf


def test_the_public_names_import_from_the_package():
    from hific_tf import HiFiC, load_codec, model_preset, training_preset

    assert HiFiC.__module__ == "hific_tf.coding.model"
    assert callable(load_codec)
    assert model_preset("tiny").latent_channels > 0
    assert training_preset("tiny-mselpips").recipe.model == "tiny"
    assert {name for name in hific_tf.__all__ if name != "__version__"} <= set(dir(hific_tf))


def test_importing_the_package_imports_no_tensorflow():
    code = "import sys, hific_tf; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


def test_every_codec_keeps_the_one_codec_contract():
    from hific_tf.codec import Codec, FileCodec
    from hific_tf.published.converted import TfciCoder
    from hific_tf.published.runner import PublishedModel

    contract = {name for name in dir(FileCodec) if not name.startswith("_")}
    contract |= set(FileCodec.__annotations__) - {"name"}  # `name` is set per instance
    assert {"compress", "decompress", "set_memory_budget", "file_suffix"} <= contract
    for codec in (Codec, PublishedModel, TfciCoder):
        assert contract <= set(dir(codec)), codec.__name__
    assert Codec.file_suffix == ".hfc"
    assert PublishedModel.file_suffix == TfciCoder.file_suffix == ".tfci"
