"""What the commands share: error handling, input/output pairing, folder coding loops."""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from absl import app, logging

from hific_tf import images
from hific_tf.bitstream import FILE_SUFFIX
from hific_tf.errors import UserError
from hific_tf.files import check_writable, write_atomic
from hific_tf.progress import Progress


def fail(message: str) -> None:
    """Prints one error line to stderr."""
    print(f"hific-tf: error: {message}", file=sys.stderr, flush=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"hific-tf: warning: {message}", file=sys.stderr, flush=True)


def run(main: Callable[[list[str]], int | None], argv: list[str]) -> None:
    """Runs an absl main; a UserError becomes one line on stderr and exit status 1."""

    def guarded(args: list[str]) -> int | None:
        warnings.showwarning = _show_warning
        # TensorFlow's INFO logs (SavedModel writing and the like) are noise here.
        logging.set_verbosity(logging.WARNING)
        try:
            return main(args)
        except UserError as error:
            fail(str(error))
            return 1
        except KeyboardInterrupt:
            fail("interrupted; files already written are complete, none is partial")
            return 130

    app.run(guarded, argv=argv)


def pair_paths(inputs: Sequence[str], output: str | None, input_suffixes: Sequence[str],
               output_suffix: str) -> list[tuple[Path, Path]]:
    """Pairs each input file with its output path.

    One folder: every matching file in it, written into --output (required). Files: written
    to --output if it names one file, else into --output as a folder, else beside each input.
    """
    if not inputs:
        raise UserError("no input given; name image files or a folder")
    paths = [Path(p) for p in inputs]
    for path in paths:
        if not path.exists():
            raise UserError(f"{path} does not exist")
    if len(paths) == 1 and paths[0].is_dir():
        if output is None:
            raise UserError("--output is required when the input is a folder")
        sources = sorted(p for p in paths[0].iterdir()
                         if p.is_file() and p.suffix.lower() in input_suffixes)
        if not sources:
            raise UserError(f"{paths[0]} has no files ending in {', '.join(input_suffixes)}")
        pairs = [(p, Path(output) / (p.stem + output_suffix)) for p in sources]
    elif any(p.is_dir() for p in paths):
        raise UserError("give either one folder or a list of files, not both")
    elif output is not None and len(paths) == 1 and not Path(output).is_dir():
        pairs = [(paths[0], Path(output))]
    else:
        pairs = [(p, (Path(output) if output else p.parent) / (p.stem + output_suffix))
                 for p in paths]
    targets = [target for _, target in pairs]
    if len(set(targets)) != len(targets):
        raise UserError("two inputs would write the same output file (same name, different "
                        "suffix); rename one or code them separately")
    return pairs


def code_files(pairs: list[tuple[Path, Path]], convert: Callable[[Path], tuple[bytes, str]],
               overwrite: bool, unit: str) -> int:
    """Converts each input to its output, atomically, with progress; returns exit status.

    Existing outputs are refused up front unless `overwrite`. A failing file is reported on
    one line and the others still run; nothing is written for the failing one.
    """
    for _, target in pairs:
        check_writable(target, overwrite)
    progress = Progress(len(pairs), unit=unit)
    failures = 0
    for done, (source, target) in enumerate(pairs, start=1):
        started = time.monotonic()
        try:
            data, detail = convert(source)
        except UserError as error:
            message = str(error)
            fail(message if str(source) in message else f"{source}: {message}")
            failures += 1
            continue
        write_atomic(target, data, overwrite=overwrite)
        elapsed = time.monotonic() - started
        if len(pairs) > 1:
            progress.update(done, f"{source.name} → {target}  {detail}  {elapsed:.1f}s")
        else:
            print(f"{source} → {target}  {detail}  {elapsed:.1f}s", file=sys.stderr)
    if failures and len(pairs) > 1:
        fail(f"{failures} of {len(pairs)} files failed; the others were written")
    return 1 if failures else 0


IMAGE_INPUTS = images.IMAGE_SUFFIXES
COMPRESSED_INPUTS = (FILE_SUFFIX, ".tfci")
