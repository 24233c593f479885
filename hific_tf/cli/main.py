"""`hific-tf <command> [flags]`: dispatches to one absl app per command.

Only the chosen command's module is imported, so each declares its own flags where they are
used without clashing with the others.
"""

from __future__ import annotations

import importlib
import os
import sys

COMMANDS = {
    "compress": "images → .hfc files",
    "decompress": ".hfc files → PNG images",
    "export": "checkpoint → SavedModel with compress/decompress signatures",
    "convert": "published model (hific-lo/-mi/-hi) → checkpoint directory",
    "train": "train a model from a preset (two-stage HiFiC recipe)",
    "evaluate": "rate–distortion–perception report: models and classic codecs",
    "score": "decoded images vs their originals: PSNR, MS-SSIM, LPIPS, NIQE, FID, KID",
    "bundle": "trained checkpoint → package weights file (float16)",
    "demo": "the whole pipeline on a folder of photos",
}


def usage() -> str:
    """The top-level help text."""
    lines = ["usage: hific-tf <command> [flags] [arguments]", "", "commands:"]
    lines += [f"  {name:<11} {summary}" for name, summary in COMMANDS.items()]
    lines += ["", "hific-tf <command> --help lists a command's flags."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `hific-tf` console script."""
    argv = list(sys.argv if argv is None else argv)
    # TensorFlow's C++ start-up chatter is noise for a command-line user.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(usage())
        sys.exit(0 if len(argv) >= 2 else 2)
    command = argv[1]
    if command not in COMMANDS:
        print(f"hific-tf: error: unknown command {command!r}; choose one of "
              f"{', '.join(COMMANDS)}", file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(f"hific_tf.cli.{command}")
    module.run([f"hific-tf {command}", *argv[2:]])


if __name__ == "__main__":
    main()
