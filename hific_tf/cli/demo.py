"""hific-tf demo: the whole pipeline on a folder of photos.

Until the bundled trained model exists, the model is freshly initialised: the run shows the
machinery (networks, entropy coding, file format, SavedModel) working end to end, not image
quality, and says so.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from absl import flags

from hific_tf.cli import common
from hific_tf.errors import UserError
from hific_tf.files import write_atomic
from hific_tf.progress import Progress

_INPUT = flags.DEFINE_string("input", "../shared/data/photos/val768",
                             "Folder of images to code.")
_OUTPUT = flags.DEFINE_string("output", "out/demo",
                              "Folder for the results; the demo replaces its own files there.")
_PRESET = flags.DEFINE_string("preset", "tiny", "Model preset to initialise.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random initialisation.")

UNTRAINED_NOTICE = (
    "NOTE: the weights are UNTRAINED (a freshly initialised '{preset}' model, seed {seed}). "
    "Reconstructions are not meant to look like the photos and the rates say nothing about "
    "HiFiC; this run demonstrates the pipeline: networks, hyperprior entropy coding, the .hfc "
    "format, checkpoint and SavedModel.")


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
    from hific_tf import images
    from hific_tf.checkpoints import save_model
    from hific_tf.codec import codec_from_model, load_codec
    from hific_tf.configs import model_preset

    try:
        config = model_preset(_PRESET.value)
    except ValueError as error:
        raise UserError(str(error)) from None
    folder = Path(_INPUT.value)
    if not folder.is_dir():
        raise UserError(f"input folder {folder} does not exist; pass --input=FOLDER")
    sources = images.list_images(folder)
    if not sources:
        raise UserError(f"{folder} holds no images")
    output = Path(_OUTPUT.value)
    print(UNTRAINED_NOTICE.format(preset=_PRESET.value, seed=_SEED.value), flush=True)

    import tensorflow as tf

    from hific_tf.export import export_saved_model
    from hific_tf.metrics import psnr
    from hific_tf.model import HiFiC

    tf.keras.utils.set_random_seed(_SEED.value)
    model = HiFiC(config).build_weights()
    checkpoint_dir = output / "checkpoint"
    save_model(model, checkpoint_dir)
    model.prepare_for_coding()
    saved_model_dir = output / "saved_model"
    export_saved_model(model, saved_model_dir, overwrite=True)
    encoder = codec_from_model(model)
    decoder = load_codec(saved_model_dir)

    rows = []
    progress = Progress(len(sources), unit="image")
    for done, source in enumerate(sources, start=1):
        image = images.read_image(source)
        started = time.monotonic()
        data = encoder.compress(image)
        encode_seconds = time.monotonic() - started
        started = time.monotonic()
        reconstruction = decoder.decompress(data)
        decode_seconds = time.monotonic() - started
        write_atomic(output / "compressed" / f"{source.stem}.hfc", data, overwrite=True)
        images.write_png(output / "reconstructed" / f"{source.stem}.png", reconstruction,
                         overwrite=True)
        height, width = image.shape[:2]
        row = {"image": source.name, "width": width, "height": height, "bytes": len(data),
               "bpp": 8 * len(data) / (height * width),
               "psnr_db": float(psnr(image, reconstruction)),
               "encode_s": encode_seconds, "decode_s": decode_seconds}
        rows.append(row)
        progress.update(done, f"{source.name}  {row['bpp']:.4f} bpp  {row['psnr_db']:.2f} dB")

    summary = output / "summary.csv"
    with summary.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    mean_bpp = sum(r["bpp"] for r in rows) / len(rows)
    mean_psnr = sum(r["psnr_db"] for r in rows) / len(rows)
    print(f"\n{len(rows)} images: mean {mean_bpp:.4f} bpp, mean PSNR {mean_psnr:.2f} dB "
          "(untrained weights)")
    print(f"encoded with the in-memory model, decoded with the exported SavedModel\n"
          f"  checkpoint:      {checkpoint_dir}\n"
          f"  SavedModel:      {saved_model_dir}\n"
          f"  compressed:      {output / 'compressed'}\n"
          f"  reconstructions: {output / 'reconstructed'}\n"
          f"  per-image table: {summary}")
    return 0


def run(argv: list[str]) -> None:
    common.run(main, argv)
