"""--published_dir, declared only by the commands that can run a published model (compress,
decompress, evaluate, train, convert), so the others do not offer a flag they would ignore."""

from __future__ import annotations

from absl import flags

PUBLISHED_DIR = flags.DEFINE_string(
    "published_dir", None, "Folder holding the published hific-lo/-mi/-hi .metagraph files "
    "you placed there (default $HIFIC_TF_PUBLISHED_DIR, else the download cache).")
