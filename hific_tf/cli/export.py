"""hific-tf export --model=CHECKPOINT_DIR --output=DIR: writes a serving SavedModel."""

from __future__ import annotations

from absl import flags

from hific_tf.cli import common

_MODEL = flags.DEFINE_string("model", None, "Checkpoint directory to export.", required=True)
_OUTPUT = flags.DEFINE_string("output", None, "SavedModel directory to write.", required=True)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing SavedModel.")


def main(argv: list[str]) -> int:
    common.refuse_arguments(argv)
    from hific_tf.storage import checkpoints
    from hific_tf.storage.export import export_saved_model
    from hific_tf.storage.files import check_writable

    check_writable(_OUTPUT.value, _OVERWRITE.value)
    model = checkpoints.load_for_coding(_MODEL.value)
    export_saved_model(model, _OUTPUT.value, overwrite=_OVERWRITE.value)
    print(f"wrote SavedModel {_OUTPUT.value} (signatures: compress, decompress; model id "
          f"{model.model_id.numpy().hex()})")
    return 0


def run(argv: list[str]) -> None:
    common.run(main, argv)
