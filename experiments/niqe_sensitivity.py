r"""How NIQE on val768 answers to fine patterns, and how much of a regular grid stage 2 adds.

Why stage 2 had not lowered NIQE (experiments/README.md): the GAN adds a
regular grid (the pattern of the generator's stride-2 upsampling) instead of texture. This
measures both sides:

- NIQE of the stage-1 model's reconstructions (a bundled model by name) and of the original
  photos, unchanged and with a known pattern added: Gaussian noise, a period-2 checkerboard,
  period-2 horizontal stripes (each of a given amplitude in grey levels) and unsharp masking;
- the amplitude of periodic patterns of period 2, 4 and 8 (`periodic_amplitudes`: the RMS
  in grey levels of luma of the part of each 16 x 16 block that repeats with that period),
  over the blocks where the original photo is flat and over all blocks, in the originals,
  in the stage-1 reconstructions and in those of the stage-2 checkpoints named by
  --checkpoints, with their NIQE. Noise and texture leave a floor that grows with the
  period (Gaussian noise of σ = 1 gives 0.11, 0.21 and 0.42): compare with the originals.

Writes summary.json, per_image.csv and sensitivity.png to
experiments/results/niqe_sensitivity/ (or --output), with the machine. `--input` is the
folder of the five val768 photos (the shared data set's photos/val768) in both commands.

    .venv/bin/python experiments/niqe_sensitivity.py --reference=mselpips-small \
        --checkpoints=$HOME/runs/s2-256-b0:1000,$HOME/runs/s2-256:1000,\
$HOME/runs/s2-256-b0.15:500,$HOME/runs/s2-256-b0.15:1000,\
$HOME/runs/s2-256-rl-b0:1000,$HOME/runs/s2-256-rl-b0.15:1000
    .venv/bin/python experiments/niqe_sensitivity.py --reference=mselpips-small \
        --checkpoints=$HOME/runs/s2-256-ds-b0.03:500,$HOME/runs/s2-256-ds-b0.03:1000,\
$HOME/runs/s2-256-ds-b0.15:500,$HOME/runs/s2-256-ds-b0.15:1000 \
        --output=experiments/results/grid_dshift
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

# What the results ran on: benchmarks/machine.py, shared with the benchmarks.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from machine import machine

RESULTS = Path(__file__).parent / "results" / "niqe_sensitivity"
BLOCK = 16
PERIODS = (2, 4, 8)
FLAT_DEVIATION = 2.0


def period_two_patterns(height: int, width: int) -> dict[str, np.ndarray]:
    """The three ±1 patterns of period 2: checkerboard, horizontal and vertical stripes."""
    rows, columns = np.indices((height, width))
    return {"checkerboard": 1.0 - 2.0 * ((rows + columns) % 2),
            "horizontal stripes": 1.0 - 2.0 * (rows % 2),
            "vertical stripes": 1.0 - 2.0 * (columns % 2)}


def luma_blocks(image: np.ndarray) -> np.ndarray:
    """Luma in grey levels, cut into BLOCK x BLOCK blocks: shape (blocks, BLOCK, BLOCK)."""
    luma = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    rows, columns = luma.shape[0] // BLOCK, luma.shape[1] // BLOCK
    blocks = luma[:rows * BLOCK, :columns * BLOCK].reshape(rows, BLOCK, columns, BLOCK)
    return blocks.transpose(0, 2, 1, 3).reshape(-1, BLOCK, BLOCK)


def without_plane(blocks: np.ndarray) -> np.ndarray:
    """Each block minus its least-squares plane, so that a smooth ramp is not a pattern."""
    rows, columns = np.indices((BLOCK, BLOCK)).reshape(2, -1)
    design = np.stack([np.ones(BLOCK * BLOCK), rows, columns], axis=1)
    values = blocks.reshape(len(blocks), -1).T
    fitted = design @ np.linalg.lstsq(design, values, rcond=None)[0]
    return (values - fitted).T.reshape(blocks.shape)


def flat_blocks(photo: np.ndarray) -> np.ndarray:
    """The blocks where the original photo is flat (luma deviation from its plane below 2
    grey levels): sky, water, walls, where a regular pattern is an artefact, not texture."""
    return without_plane(luma_blocks(photo)).std(axis=(1, 2)) < FLAT_DEVIATION


def periodic_amplitudes(image: np.ndarray) -> dict[int, np.ndarray]:
    """Per period p in PERIODS and block: the RMS (grey levels) of the part of the block that
    repeats exactly every p pixels in both directions and not already every p / 2 — the
    grid that p-fold upsampling leaves. The block is folded onto a p x p tile (the mean of
    its (BLOCK / p)^2 copies); noise and texture average out, a grid of period p stays."""
    blocks = without_plane(luma_blocks(image))
    amplitudes, coarser = {}, np.zeros((len(blocks), 1, 1))
    for period in PERIODS:
        copies = BLOCK // period
        tile = blocks.reshape(len(blocks), copies, period, copies, period).mean(axis=(1, 3))
        tile -= tile.mean(axis=(1, 2), keepdims=True)
        finer = np.tile(coarser, (1, period // coarser.shape[1], period // coarser.shape[2]))
        amplitudes[period] = np.sqrt(np.mean(np.square(tile - finer), axis=(1, 2)))
        coarser = tile
    return amplitudes


def perturbations(seed: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Named changes to a float RGB image in grey levels (before rounding to uint8)."""
    from scipy import ndimage

    generator = np.random.default_rng(seed)

    def pattern(name: str, amplitude: float) -> Callable[[np.ndarray], np.ndarray]:
        return lambda image: image + amplitude * period_two_patterns(
            *image.shape[:2])[name][..., np.newaxis]

    def noise(sigma: float) -> Callable[[np.ndarray], np.ndarray]:
        return lambda image: image + generator.normal(0.0, sigma, image.shape)

    def unsharp(amount: float) -> Callable[[np.ndarray], np.ndarray]:
        return lambda image: image + amount * (
            image - ndimage.gaussian_filter(image, (1.0, 1.0, 0.0)))

    changes = {"none": lambda image: image}
    changes |= {f"gaussian noise σ={sigma:g}": noise(sigma) for sigma in (0.5, 1, 2, 4)}
    changes |= {f"checkerboard ±{amplitude:g}": pattern("checkerboard", amplitude)
                for amplitude in (0.5, 1, 2)}
    changes |= {f"horizontal stripes ±{amplitude:g}": pattern("horizontal stripes", amplitude)
                for amplitude in (0.5, 1, 2)}
    changes |= {f"unsharp mask {amount:g}": unsharp(amount) for amount in (0.5, 1)}
    return changes


def reconstruct(model, photo: np.ndarray) -> np.ndarray:
    """The model's uint8 reconstruction of `photo` from the rounded latents."""
    return model.reconstruct_photo(photo)[1].numpy()


def checkpoint_model(spec: str):
    """The model of `RUN:STEP`, restored from that run's checkpoint."""
    import tensorflow as tf

    from hific_tf.coding.model import HiFiC
    from hific_tf.storage.checkpoints import read_config

    run, step = spec.rsplit(":", 1)
    run = str(Path(run).expanduser())
    model = HiFiC(read_config(run)).build_weights()
    tf.train.Checkpoint(model=model).restore(f"{run}/ckpt-{step}").expect_partial()
    return model


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, *rights) = plt.subplots(1, 3, figsize=(18, 6.5))
    changes = list(summary["perturbed_niqe"]["reconstructions"])
    positions = np.arange(len(changes))
    for offset, source in ((-0.2, "reconstructions"), (0.2, "originals")):
        values = [summary["perturbed_niqe"][source][change] for change in changes]
        left.barh(positions + offset, values, height=0.4,
                  label=f"{summary['reference']} reconstructions" if source ==
                  "reconstructions" else "original photos")
    left.set_yticks(positions, changes, fontsize=8)
    left.invert_yaxis()
    left.set_xlabel("mean NIQE on val768 (lower is better)")
    left.set_title("NIQE after adding a known pattern")
    left.legend(fontsize=8)
    sources = summary["periodic"]
    names = list(sources)
    labels = [f"{name}, NIQE {sources[name]['niqe']:.2f}" for name in names]
    for axes, area, where in zip(rights, ("flat", "all"),
                                 ("where the photo is flat", "in all blocks"), strict=True):
        for index, period in enumerate(PERIODS):
            axes.bar(np.arange(len(names)) + (index - 1) * 0.27,
                     [sources[name][area][str(period)] for name in names], width=0.27,
                     label=f"period {period}")
        axes.set_xticks(np.arange(len(names)), labels, fontsize=7, rotation=35, ha="right")
        axes.set_ylabel("RMS of the periodic part of luma (grey levels)")
        axes.set_title(f"Regular grids {where} ({summary['block']} x {summary['block']} "
                       "blocks)")
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default="mselpips-small",
                        help="the bundled stage-1 model whose reconstructions are perturbed")
    parser.add_argument("--checkpoints", default="",
                        help="stage-2 checkpoints as RUN:STEP, commas (optional)")
    parser.add_argument("--input", required=True, help="folder of photos, e.g. val768")
    parser.add_argument("--output", default=str(RESULTS), help="folder for the results")
    parser.add_argument("--seed", type=int, default=0, help="seed of the added noise")
    arguments = parser.parse_args()
    if not Path(arguments.input).is_dir():
        print(f"skipped: {arguments.input} is not there (the project's photos)")
        return 0
    from hific_tf.evaluation.perceptual.niqe import niqe
    from hific_tf.evaluation.report import write_csv
    from hific_tf.storage import zoo
    from hific_tf.storage.images import list_images, read_image

    photos = {Path(path).name: read_image(path) for path in list_images(arguments.input)}
    reference = zoo.load_weights(zoo.bundled_folder() / f"{arguments.reference}{zoo.SUFFIX}")
    images = {"originals": photos,
              "reconstructions": {name: reconstruct(reference, photo)
                                  for name, photo in photos.items()}}
    rows = []
    for change_name, change in perturbations(arguments.seed).items():
        for source, source_images in images.items():
            for name, image in source_images.items():
                changed = np.clip(np.round(change(image.astype(np.float64))), 0, 255)
                rows.append({"source": source, "change": change_name, "photo": name,
                             "niqe": niqe(changed.astype(np.uint8))})
        means = {source: np.mean([r["niqe"] for r in rows if r["change"] == change_name
                                  and r["source"] == source]) for source in images}
        print(f"{change_name}: mean NIQE "
              + ", ".join(f"{source} {mean:.2f}" for source, mean in means.items()), flush=True)
    sources = {"original photos": images["originals"],
               f"{arguments.reference} (no GAN)": images["reconstructions"]}
    for spec in filter(None, arguments.checkpoints.split(",")):
        run, step = spec.rsplit(":", 1)
        model = checkpoint_model(spec)
        sources[f"{Path(run).name} step {step}"] = {
            name: reconstruct(model, photo) for name, photo in photos.items()}
    flat = {name: flat_blocks(photo) for name, photo in photos.items()}
    periodic = {}
    for label, source_images in sources.items():
        amplitudes = {name: periodic_amplitudes(image) for name, image in source_images.items()}
        periodic[label] = {
            "niqe": float(np.mean([niqe(image) for image in source_images.values()])),
            **{area: {str(period): float(np.mean(np.concatenate(
                [amplitudes[name][period][flat[name] if area == "flat" else slice(None)]
                 for name in source_images]))) for period in PERIODS}
               for area in ("flat", "all")}}
        print(f"{label}: {periodic[label]}", flush=True)
    summary = {
        "machine": machine(), "input": arguments.input, "reference": arguments.reference,
        "perturbed_niqe": {source: {change: float(np.mean(
            [r["niqe"] for r in rows if r["source"] == source and r["change"] == change]))
            for change in perturbations(arguments.seed)} for source in images},
        "block": BLOCK, "flat_blocks": int(sum(mask.sum() for mask in flat.values())),
        "blocks": int(sum(mask.size for mask in flat.values())), "periodic": periodic}
    output = Path(arguments.output)
    output.mkdir(parents=True, exist_ok=True)
    write_csv(rows, output / "per_image.csv")
    (output / "summary.json").write_text(json.dumps(summary, indent=2,
                                                    ensure_ascii=False) + "\n")
    plot(summary, output / "sensitivity.png")
    print(f"results in {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
