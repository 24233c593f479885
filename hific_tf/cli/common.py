"""What the commands share: error handling, input/output pairing, folder coding loops, the
evaluation report (evaluate, demo)."""

from __future__ import annotations

import re
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from absl import app, logging

from hific_tf.coding.bitstream import FILE_SUFFIX
from hific_tf.errors import UserError
from hific_tf.progress import Progress
from hific_tf.storage import images
from hific_tf.storage.files import check_writable, write_atomic

if TYPE_CHECKING:
    import numpy as np

    from hific_tf.codec import Codec
    from hific_tf.evaluation.classic_codecs import ClassicCodec
    from hific_tf.evaluation.report import Entry, Measures


_SIZE_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20,
               "mb": 10**6, "mib": 2**20, "g": 2**30, "gb": 10**9, "gib": 2**30,
               "t": 2**40, "tb": 10**12, "tib": 2**40}


def open_codec_for_coding(model: str, published_dir: str | None,
                          memory_budget: int) -> Codec:
    """The codec `compress` and `decompress` code with, loaded after their flags are checked
    (TensorFlow imports here).

    Once it is loaded (its coding tables fixed), Grappler's constant folding is switched off:
    it takes about 0.2 s of the first call of a coding function (measured with the bundled
    hific-small on a 768x512 photo: first decompress 1.39 s against 1.58 s, mean of 3) and
    gains nothing once traced (the full-size model codes 2560x1600 no slower without it), so
    a single photo starts faster; the files and decoded images are the same. Not before
    loading: tables computed without it differ in their last bits, and so would the model
    identifier of a checkpoint without stored tables.
    """
    import tensorflow as tf

    from hific_tf.codec import load_codec

    codec = load_codec(model, published_dir, memory_budget)
    tf.config.optimizer.set_experimental_options({"constant_folding": False})
    return codec


def parse_memory_size(text: str, flag: str = "memory_budget") -> int:
    """'2GiB', '1.5GB', '512M', '3000000000' → bytes (K/M/G alone are binary units); a
    UserError naming --`flag` for anything else or a size under 1 MiB."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*", text)
    if match is None or match[2].lower() not in _SIZE_UNITS:
        raise UserError(f"--{flag}={text} is not a memory size; write it like 2GiB, 1.5GB "
                        "or 512MiB")
    size = int(float(match[1]) * _SIZE_UNITS[match[2].lower()])
    if size < 2**20:
        raise UserError(f"--{flag}={text} is below 1 MiB; give the memory in bytes or with "
                        "a unit, e.g. 2GiB")
    return size


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


def refuse_arguments(argv: list[str]) -> None:
    """Refuses positional arguments, for the commands that take flags only.

    Raises:
        UserError: naming the arguments given.
    """
    if len(argv) > 1:
        raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")


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


def report(images: dict[str, np.ndarray], models: list[Entry], classics: list[ClassicCodec],
           rates: list[float], measures: Measures, output: Path) -> dict[str, Path]:
    """Evaluates the models, then the classic codecs at `rates` (default: the first model's
    mean bpp and twice it); writes the report and a figure of the first image (the models
    and each classic codec at the first rate) into `output`; prints a table and the files."""
    from hific_tf.evaluation import report
    for metric, how in measures.skipped.items():
        print(f"skipping {metric.upper()}: {how}", flush=True)
    rows, summaries = report.evaluate(images, models, measures)
    if not rates:
        rates = [summaries[0]["bpp"], 2 * summaries[0]["bpp"]]
    classic_entries = [report.classic_entry(codec.name, codec, rate)
                       for codec in classics for rate in rates]
    more_rows, more_summaries = report.evaluate(images, classic_entries, measures)
    rows += more_rows
    summaries += more_summaries

    written = report.write_reports(rows, summaries, measures, output)
    first_image = next(iter(images.values()))
    panels = []
    for entry in [*models, *(e for e in classic_entries if e.target_bpp == rates[0])]:
        coded = entry.code(first_image)
        bpp = 8 * coded.num_bytes / (first_image.shape[0] * first_image.shape[1])
        panels.append((f"{entry.codec}, {bpp:.3f} bpp", coded.reconstruction))
    written["figure"] = report.side_by_side_figure(first_image, panels,
                                                       output / "figure.png")

    print(f"\n{'codec':<16} {'setting':<20} {'bpp':>7} {'PSNR':>7} {'MS-SSIM':>7} "
          f"{'LPIPS':>7} {'NIQE':>7} {'FID':>7} {'KID':>7} {'patches':>7}")
    for s in summaries:
        cells = [f"{s[k]:>7.4f}" if s.get(k) is not None else f"{'-':>7}"
                 for k in ("bpp", "psnr", "ms_ssim", "lpips", "niqe", "fid", "kid")]
        print(f"{s['codec']:<16} {s['setting']:<20} " + " ".join(cells) +
              f" {s.get('patches', 0):>7}")
    if measures.inception:
        print("FID and KID are FID/256 figures: each compares as many 256x256 patches of the "
              "originals and of the reconstructions as the 'patches' column says")
    print("\nwritten:")
    for what, path in written.items():
        print(f"  {what:<14} {path}")
    if measures.skipped:
        print("skipped metrics: " + ", ".join(sorted(measures.skipped)) +
              " (see the lines above for how to enable them)")
    return written
