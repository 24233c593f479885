"""--memory_budget, declared only by the commands that code images (compress, decompress)."""

from __future__ import annotations

from absl import flags

MEMORY_BUDGET = flags.DEFINE_string(
    "memory_budget", "2GiB", "Memory the whole process aims to stay within while coding an "
    "image, e.g. 2GiB, 1.5GB, 512MiB: large images are coded in tiles that fit (same files, "
    "same images); more memory codes them faster.")
