"""Rate–distortion–perception evaluation: images x codecs x rates → rows, summaries, files.

Codecs are this project's models (a Codec from a checkpoint or SavedModel) and the classic
codecs at target rates. Per image: bpp from the real bitstream, PSNR, MS-SSIM, LPIPS, NIQE;
per codec and rate: their means plus FID and KID over the pooled FID/256 patches (LPIPS and
the FID Inception are the real networks of hific_tf.evaluation.perceptual; docs/metrics.md).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from hific_tf.evaluation import metrics

# CompressAI's results layout names; "psnr-rgb" etc. are what its plotting tools read.
JSON_KEYS = {"bpp": "bpp", "psnr": "psnr-rgb", "ms_ssim": "ms-ssim-rgb", "lpips": "lpips",
             "niqe": "niqe", "fid": "fid", "kid": "kid"}
PER_IMAGE_METRICS = ("psnr", "ms_ssim", "lpips", "niqe")


@dataclasses.dataclass(frozen=True)
class CodedImage:
    """One image through one codec: its compressed size and reconstruction."""

    num_bytes: int
    reconstruction: np.ndarray
    reached: bool = True  # False where a classic codec could not reach the target rate


@dataclasses.dataclass(frozen=True)
class Entry:
    """A codec at one operating point."""

    codec: str
    setting: str  # "model" or "target 0.150 bpp"
    target_bpp: float | None
    code: Callable[[np.ndarray], CodedImage]


def model_entry(name: str, codec: object) -> Entry:
    """An entry for one of this project's codecs (hific_tf.codec.Codec)."""

    def code(image: np.ndarray) -> CodedImage:
        data = codec.compress(image)
        return CodedImage(len(data), codec.decompress(data))

    return Entry(codec=name, setting="model", target_bpp=None, code=code)


def classic_entry(name: str, classic: object, target_bpp: float) -> Entry:
    """An entry for a classic codec aimed at `target_bpp` by bisection."""
    from hific_tf.evaluation.classic_codecs import encode_at_bpp

    def code(image: np.ndarray) -> CodedImage:
        result = encode_at_bpp(classic, image, target_bpp)
        return CodedImage(len(result.data), classic.decode(result.data), reached=result.reached)

    return Entry(codec=name, setting=f"target {target_bpp:.3f} bpp", target_bpp=target_bpp,
                 code=code)


@dataclasses.dataclass
class Measures:
    """The perceptual measures that could be loaded; None means skipped."""

    lpips: Callable[[np.ndarray, np.ndarray], float] | None = None
    inception: Callable[[np.ndarray], np.ndarray] | None = None
    niqe: Callable[[np.ndarray], float] | None = None
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # metric → how to enable
    # Inception features by the SHA-1 of the patches they were computed from: the originals'
    # patches are the same for every codec and rate, so they run through Inception once.
    _features: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)

    def features(self, patches: np.ndarray) -> np.ndarray:
        """Inception pool_3 features [N, 2048] of uint8 patches [N, H, W, 3], memoised."""
        key = hashlib.sha1(np.ascontiguousarray(patches).data).hexdigest() + str(patches.shape)
        if key not in self._features:
            self._features[key] = self.inception(patches)
        return self._features[key]


def load_measures(wanted: Iterable[str] = ("lpips", "niqe", "fid", "kid"),
                  skip_missing: bool = True) -> Measures:
    """The perceptual networks that the `wanted` metrics need.

    Args:
        wanted: metric names; LPIPS, NIQE and the FID Inception (for fid and kid) are loaded
            as they are asked for.
        skip_missing: whether a network whose registry package is missing is skipped, with a
            note in `Measures.skipped` saying how to install it, instead of refused.

    Returns:
        The loaded measures.

    Raises:
        MissingPackageError: a package is missing and `skip_missing` is false.
    """
    from hific_tf.evaluation.perceptual.inception import InceptionFeatures
    from hific_tf.evaluation.perceptual.lpips import load_lpips
    from hific_tf.evaluation.perceptual.niqe import niqe
    from hific_tf.evaluation.perceptual.packaged import MissingPackageError

    wanted = set(wanted)
    measures = Measures(niqe=niqe if "niqe" in wanted else None)
    try:
        if "lpips" in wanted:
            measures.lpips = lpips_distance(load_lpips())
    except MissingPackageError as error:
        if not skip_missing:
            raise
        measures.skipped["lpips"] = str(error)
    try:
        if {"fid", "kid"} & wanted:
            measures.inception = InceptionFeatures()
    except MissingPackageError as error:
        if not skip_missing:
            raise
        measures.skipped["fid"] = measures.skipped["kid"] = str(error)
    return measures


def set_metrics(real_patches: np.ndarray, fake_patches: np.ndarray,
                measures: Measures) -> dict[str, float | int | None]:
    """FID and KID (with KID's standard error) between two sets of FID/256 patches, and how
    many patches per set they rest on. FID needs two patches per set; KID four (two blocks
    of at least two, for its unbiased estimate and its standard error); None below that."""
    scores = {"fid": None, "kid": None, "kid_std": None, "patches": len(real_patches)}
    if len(real_patches) < 2:
        return scores
    real_features = measures.features(real_patches)
    fake_features = measures.features(fake_patches)
    scores["fid"] = float(metrics.fid_from_features(real_features, fake_features))
    if len(real_patches) >= 4:
        kid, kid_std = metrics.kid_from_features(real_features, fake_features)
        scores.update(kid=float(kid), kid_std=float(kid_std))
    return scores


def lpips_distance(network: Callable) -> Callable[[np.ndarray, np.ndarray], float]:
    """Adapts an LPIPS network (float [0, 1] batches) to one pair of uint8 images."""
    import tensorflow as tf

    def distance(original: np.ndarray, reconstruction: np.ndarray) -> float:
        pair = [tf.constant(x[np.newaxis], tf.float32) / 255.0
                for x in (original, reconstruction)]
        return float(network(tuple(pair))[0])

    return distance


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(present)) if present else None


def evaluate(images: dict[str, np.ndarray], entries: Sequence[Entry], measures: Measures
             ) -> tuple[list[dict], list[dict]]:
    """Runs every entry on every image; returns per-image rows and per-entry summaries."""
    from hific_tf.progress import Progress

    rows, summaries = [], []
    progress = Progress(len(images) * len(entries), unit="image")
    done = 0
    for entry in entries:
        entry_rows, real_patches, fake_patches = [], [], []
        for name, image in images.items():
            coded = entry.code(image)
            height, width = image.shape[:2]
            row = {"codec": entry.codec, "setting": entry.setting,
                   "target_bpp": entry.target_bpp, "image": name, "width": width,
                   "height": height, "bytes": coded.num_bytes,
                   "bpp": 8 * coded.num_bytes / (height * width), "reached": coded.reached,
                   "psnr": float(metrics.psnr(image, coded.reconstruction)),
                   "ms_ssim": (float(metrics.ms_ssim(image, coded.reconstruction))
                               if min(height, width) >= metrics.MS_SSIM_MIN_SIDE else None),
                   "lpips": (measures.lpips(image, coded.reconstruction)
                             if measures.lpips else None),
                   "niqe": measures.niqe(coded.reconstruction) if measures.niqe else None}
            entry_rows.append(row)
            if measures.inception:
                real_patches.append(metrics.fid256_patches(image))
                fake_patches.append(metrics.fid256_patches(coded.reconstruction))
            done += 1
            progress.update(done, f"{entry.codec} {entry.setting}  {name}  "
                                  f"{row['bpp']:.3f} bpp  {row['psnr']:.2f} dB")
        summary = {"codec": entry.codec, "setting": entry.setting,
                   "target_bpp": entry.target_bpp, "images": len(entry_rows),
                   "all_reached": all(r["reached"] for r in entry_rows),
                   "bpp": _mean([r["bpp"] for r in entry_rows])}
        for metric in PER_IMAGE_METRICS:
            summary[metric] = _mean([r[metric] for r in entry_rows])
        summary.update(_set_metrics(real_patches, fake_patches, measures))
        summaries.append(summary)
        rows.extend(entry_rows)
    return rows, summaries


def _set_metrics(real: list[np.ndarray], fake: list[np.ndarray],
                 measures: Measures) -> dict[str, float | int | None]:
    if not measures.inception or not real:
        return {"fid": None, "kid": None, "kid_std": None, "patches": 0}
    return set_metrics(np.concatenate(real), np.concatenate(fake), measures)


def write_csv(rows: list[dict], path: Path) -> None:
    """`rows` (dicts with the same keys, in order) as a CSV file with a header line."""
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_reports(rows: list[dict], summaries: list[dict], measures: Measures,
                  output: Path) -> dict[str, Path]:
    """Per-image CSV, one CompressAI-layout JSON per codec, a summary JSON and the plots."""
    output.mkdir(parents=True, exist_ok=True)
    written = {"per_image": output / "per_image.csv", "summary": output / "summary.json"}
    write_csv(rows, written["per_image"])
    by_codec: dict[str, list[dict]] = {}
    for summary in summaries:
        by_codec.setdefault(summary["codec"], []).append(summary)
    for codec, points in by_codec.items():
        points = sorted(points, key=lambda s: s["bpp"])
        results = {JSON_KEYS[k]: [p[k] for p in points] for k in JSON_KEYS
                   if any(p.get(k) is not None for p in points)}
        document = {"name": codec, "description": f"{codec} on {points[0]['images']} images",
                    "results": results}
        path = output / f"{codec}.json"
        path.write_text(json.dumps(document, indent=2) + "\n")
        written[f"json:{codec}"] = path
    written["summary"].write_text(json.dumps(
        {"summaries": summaries, "skipped_metrics": measures.skipped}, indent=2) + "\n")
    written.update(plot_curves(by_codec, output))
    return written


def plot_curves(by_codec: dict[str, list[dict]], output: Path) -> dict[str, Path]:
    """bpp against each available metric, one line per codec, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = {}
    labels = {"psnr": "PSNR (dB)", "ms_ssim": "MS-SSIM", "lpips": "LPIPS (lower is better)",
              "niqe": "NIQE (lower is better)", "fid": "FID/256 (lower is better)",
              "kid": "KID/256 (lower is better)"}
    for metric, label in labels.items():
        if not any(p.get(metric) is not None for points in by_codec.values() for p in points):
            continue
        figure, axis = plt.subplots(figsize=(5, 4))
        for codec, points in by_codec.items():
            points = sorted((p for p in points if p.get(metric) is not None),
                            key=lambda p: p["bpp"])
            if points:
                axis.plot([p["bpp"] for p in points], [p[metric] for p in points],
                          marker="o", label=codec)
        axis.set_xlabel("bits per pixel")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
        figure.tight_layout()
        path = output / f"rd_{metric}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written[f"plot:{metric}"] = path
    return written


def side_by_side_figure(original: np.ndarray, panels: list[tuple[str, np.ndarray]],
                        path: Path, crop: int = 256) -> Path:
    """A crop of the original beside the same crop of each reconstruction (Figure 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height, width = original.shape[:2]
    size = min(crop, height, width)
    top, left = (height - size) // 2, (width - size) // 2
    columns = [("original", original), *panels]
    figure, axes = plt.subplots(1, len(columns), figsize=(3 * len(columns), 3.3))
    for axis, (title, image) in zip(np.atleast_1d(axes), columns, strict=True):
        axis.imshow(image[top:top + size, left:left + size], interpolation="nearest")
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
