"""How close the float h_s comes to the scale table's boundaries, and what the exact integer
h_s costs in rate, on the validation photos with a bundled model.

For each photo: the float path's scales (h_s in float32, as trained) and their relative
distance to the nearest index threshold; how many indexes a relative perturbation of 1e-6
(uniform, as a different CPU's last bits might add) moves; and the file size with the integer
h_s (what hific-tf writes) against the float h_s with the same tables.

    python benchmarks/entropy_parameters.py --data=../shared/data [--model=hific-small]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from machine import machine

FOLDERS = ("photos/val768", "photos/more/val768")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="the shared data set (its photos/val768 and photos/more/val768)")
    parser.add_argument("--model", default=None, help="bundled model (default: the first)")
    parser.add_argument("--output", default="benchmarks/results/entropy_parameters")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tensorflow as tf

    from hific_tf.coding import entropy_coding
    from hific_tf.coding.model import HiFiC, reflect_pad
    from hific_tf.storage import zoo
    from hific_tf.storage.images import read_image

    folders = [args.data / folder for folder in FOLDERS]
    photos = sorted(p for folder in folders if folder.is_dir() for p in folder.glob("*.png"))
    if not photos:
        raise SystemExit(f"no photos: {folders[0]} is absent")
    name = args.model or zoo.SHIPPED_MODELS[0]
    model = zoo.load_bundled(name)
    float_model = HiFiC(dataclasses.replace(model.config, hyper_synthesis="float"))
    float_model.build_weights()
    for mine, theirs in zip(float_model.trainable_variables, model.trainable_variables,
                            strict=True):
        mine.assign(theirs)
    tables = model.coding_tables
    float_model.prepare_for_coding(tables._replace(
        scale_thresholds=entropy_coding.scale_thresholds(
            tables.scale_table, model.config.latent_channels, None)))
    boundaries = tables.scale_table[:-1].astype(np.float64)
    rng = np.random.default_rng(0)
    rows = []
    for path in photos:
        image = read_image(path)
        x = reflect_pad(tf.cast(image, tf.float32) / 255.0, model.config.pad_multiple)
        _, z_hat = model.hyperprior.coder.encode_z(model.hyperprior.analysis(
            model.encoder(x[tf.newaxis])))
        scale_map = model.hyperprior.synthesis_scale(z_hat).numpy().astype(np.float64)
        scale = scale_map.ravel()
        inside = (scale > boundaries[0]) & (scale < boundaries[-1])
        nearest = np.min(np.abs(scale[:, None] - boundaries[None, :]) / boundaries[None, :],
                         axis=1)[inside]
        thresholds = np.tile(boundaries, (model.config.latent_channels, 1))
        index = entropy_coding.table_index(scale_map, thresholds).numpy()
        noisy = scale * (1 + rng.uniform(-1e-6, 1e-6, scale.shape))
        moved = np.count_nonzero(entropy_coding.table_index(
            noisy.reshape(index.shape), thresholds).numpy() != index)
        integer_file = model.compress(image).numpy()
        float_file = float_model.compress(image).numpy()
        integer_bytes, float_bytes = len(integer_file), len(float_file)
        pixels = image.shape[0] * image.shape[1]
        rows.append({"image": path.name, "elements": scale.size,
                     "min_relative_distance": float(nearest.min()),
                     "within_1e-6": int(np.count_nonzero(nearest < 1e-6)),
                     "within_1e-5": int(np.count_nonzero(nearest < 1e-5)),
                     "within_1e-4": int(np.count_nonzero(nearest < 1e-4)),
                     "moved_by_1e-6_noise": int(moved),
                     "same_payload": integer_file[21:-8] == float_file[21:-8],
                     "bpp_integer": 8 * integer_bytes / pixels,
                     "bpp_float": 8 * float_bytes / pixels,
                     "rate_cost_percent": 100 * (integer_bytes - float_bytes) / float_bytes})
        print(rows[-1])
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    with open(output / "per_image.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    costs = np.array([row["rate_cost_percent"] for row in rows])
    summary = {
        "model": name, "photos": len(rows), "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "elements": int(sum(row["elements"] for row in rows)),
        "min_relative_distance": min(row["min_relative_distance"] for row in rows),
        "within_1e-6": sum(row["within_1e-6"] for row in rows),
        "within_1e-5": sum(row["within_1e-5"] for row in rows),
        "within_1e-4": sum(row["within_1e-4"] for row in rows),
        "moved_by_1e-6_noise": sum(row["moved_by_1e-6_noise"] for row in rows),
        "photos_with_a_moved_index": sum(row["moved_by_1e-6_noise"] > 0 for row in rows),
        "photos_with_the_same_payload": sum(row["same_payload"] for row in rows),
        "rate_cost_percent": {"mean": float(costs.mean()), "min": float(costs.min()),
                              "max": float(costs.max())},
    }
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.bar(range(len(rows)), [max(row["min_relative_distance"], 1e-9) for row in rows])
    left.set_yscale("log")
    left.axhline(1e-6, color="red", linestyle="--", label="1e-6")
    left.set(xlabel="photo", ylabel="closest float scale to a threshold (relative)",
             title="float h_s: distance to the index thresholds")
    left.legend()
    right.bar(range(len(rows)), costs)
    right.set(xlabel="photo", ylabel="rate change, integer vs float h_s (%)",
              title="cost of the exact integer h_s")
    figure.tight_layout()
    figure.savefig(output / "entropy_parameters.png", dpi=100)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
