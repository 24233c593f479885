"""Scores decoded images against their originals: what `hific-tf score` computes.

Per image: PSNR, MS-SSIM, LPIPS (AlexNet v0.1) and NIQE of the decoded image; per set: FID
and KID between the FID/256 patches of all originals and of all decoded images. Works on the
output of any codec: decoded images are paired with their references by file stem.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from hific_tf.errors import UserError
from hific_tf.evaluation import metrics
from hific_tf.evaluation.report import PER_IMAGE_METRICS, Measures, set_metrics
from hific_tf.storage.images import IMAGE_SUFFIXES, list_images, read_image

PER_SET = ("fid", "kid")
METRICS = PER_IMAGE_METRICS + PER_SET
CSV_COLUMNS = ("image", "reference", *PER_IMAGE_METRICS)


def parse_metrics(names: Sequence[str]) -> tuple[str, ...]:
    """The metrics asked for, in their canonical order; UserError for an unknown name."""
    wanted = {name.strip().lower() for name in names if name.strip()}
    unknown = sorted(wanted - set(METRICS))
    if unknown or not wanted:
        raise UserError(f"--metrics: unknown {', '.join(unknown) or 'empty list'}; choose "
                        f"from {','.join(METRICS)}")
    return tuple(m for m in METRICS if m in wanted)


def _images_in(paths: Sequence[str | Path]) -> list[Path]:
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = list_images(path)
            if not inside:
                raise UserError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            raise UserError(f"{path} does not exist")
    return found


def pair_with_references(inputs: Sequence[str | Path],
                         reference: str | Path) -> list[tuple[Path, Path]]:
    """(decoded, original) pairs. A reference folder is matched by file stem (decoded
    `photo.jpg` ↔ original `photo.png`); a reference file pairs with a single input image."""
    decoded = _images_in(inputs)
    if not decoded:
        raise UserError("no images to score; name decoded image files or folders")
    reference = Path(reference)
    if reference.is_file():
        if len(decoded) != 1:
            raise UserError(f"--reference={reference} is one image but {len(decoded)} images "
                            "were given; pass the folder of originals to match them by name")
        return [(decoded[0], reference)]
    if not reference.is_dir():
        raise UserError(f"--reference={reference} does not exist")
    by_stem: dict[str, Path] = {}
    for path in list_images(reference):
        if path.stem in by_stem:
            raise UserError(f"{reference} holds two originals named {path.stem} "
                            f"({by_stem[path.stem].name}, {path.name}); keep one")
        by_stem[path.stem] = path
    pairs = []
    for path in decoded:
        if path.stem not in by_stem:
            raise UserError(f"{path} has no original in {reference} (matched by file name "
                            f"without suffix: expected {path.stem}.png or similar there)")
        pairs.append((path, by_stem[path.stem]))
    return pairs


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def score(pairs: Sequence[tuple[Path, Path]], wanted: Sequence[str], measures: Measures,
          report: Callable[[str], None] = print) -> tuple[list[dict], dict]:
    """Per-image rows (CSV_COLUMNS; None where not asked or not defined) and the set-level
    scores (FID, KID, KID's standard error, patch and image counts)."""
    rows, real_patches, fake_patches = [], [], []
    for index, (decoded_path, reference_path) in enumerate(pairs, start=1):
        decoded, original = read_image(decoded_path), read_image(reference_path)
        if decoded.shape != original.shape:
            raise UserError(f"{decoded_path} is {decoded.shape[1]}x{decoded.shape[0]} but its "
                            f"original {reference_path} is {original.shape[1]}x"
                            f"{original.shape[0]}; score decodes at the original's size")
        row: dict = {"image": str(decoded_path), "reference": str(reference_path)}
        row["psnr"] = (_finite(float(metrics.psnr(original, decoded)))
                       if "psnr" in wanted else None)
        row["ms_ssim"] = (float(metrics.ms_ssim(original, decoded))
                          if "ms_ssim" in wanted
                          and min(original.shape[:2]) >= metrics.MS_SSIM_MIN_SIDE else None)
        row["lpips"] = measures.lpips(original, decoded) if "lpips" in wanted else None
        row["niqe"] = measures.niqe(decoded) if "niqe" in wanted else None
        rows.append(row)
        if {"fid", "kid"} & set(wanted):
            real_patches.append(metrics.fid256_patches(original))
            fake_patches.append(metrics.fid256_patches(decoded))
        shown = "  ".join(f"{k} {row[k]:.4f}" for k in PER_IMAGE_METRICS if row[k] is not None)
        report(f"[{index}/{len(pairs)}] {decoded_path.name}  {shown}")
    set_scores: dict = {"images": len(pairs), "patches": None, "fid": None, "kid": None,
                        "kid_std": None}
    if real_patches:
        set_scores.update(set_metrics(np.concatenate(real_patches),
                                      np.concatenate(fake_patches), measures))
        if "fid" not in wanted:
            set_scores["fid"] = None
        if "kid" not in wanted:
            set_scores["kid"] = set_scores["kid_std"] = None
    return rows, set_scores


def write_scores(rows: list[dict], set_scores: dict, wanted: Sequence[str],
                 csv_path: Path) -> Path:
    """The per-image CSV at `csv_path` and the set-level JSON beside it; returns the JSON's
    path."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in CSV_COLUMNS})
    json_path = csv_path.with_suffix(".json")
    document = {"metrics": list(wanted), "protocol": "FID/256 patches (256x256, plus a grid "
                "shifted by 128 where both sides are at least 384), Inception pool_3",
                **set_scores}
    json_path.write_text(json.dumps(document, indent=2) + "\n")
    return json_path
