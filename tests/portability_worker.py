"""One numeric configuration of a process, coding or decoding a set of files for
tests/test_portability.py and benchmarks/portability_full_size.py: run as
`python tests/portability_worker.py JOB.json`.

The job names the model (a bundled name, a checkpoint or a SavedModel directory), the
intra-op thread count and the steps: `encode` (photos → .hfc files) and `decode` (.hfc files →
PNG images and, except with a SavedModel, y_hat as .npy). TF_ENABLE_ONEDNN_OPTS is set by the
caller's environment, since TensorFlow reads it at import.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf


def main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    tf.config.threading.set_intra_op_parallelism_threads(job["threads"])
    tf.config.threading.set_inter_op_parallelism_threads(job["threads"])
    from hific_tf.codec import Codec, is_saved_model, load_codec
    from hific_tf.storage import checkpoints, zoo
    from hific_tf.storage.images import read_image, write_png

    if job["model"] in zoo.bundled_names():
        model = zoo.load_bundled(job["model"])
    elif not is_saved_model(job["model"]):
        model = checkpoints.load_for_coding(job["model"])
    else:
        model = None
    codec = load_codec(job["model"]) if model is None else Codec(model, job["model"])
    for source, target in job.get("encode", []):
        Path(target).mkdir(parents=True, exist_ok=True)
        for photo in sorted(Path(source).glob("*.png")):
            data = codec.compress(read_image(photo))
            (Path(target) / f"{photo.stem}.hfc").write_bytes(data)
    for source, target in job.get("decode", []):
        Path(target).mkdir(parents=True, exist_ok=True)
        for path in sorted(Path(source).glob("*.hfc")):
            data = path.read_bytes()
            write_png(Path(target) / f"{path.stem}.png", codec.decompress(data))
            if model is not None:
                y_hat = model.decode_latent(tf.constant(data)).y_hat.numpy()
                np.save(Path(target) / f"{path.stem}.y_hat.npy", y_hat)


if __name__ == "__main__":
    main(sys.argv[1])
