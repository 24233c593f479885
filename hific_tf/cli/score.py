"""hific-tf score --reference=REF [--metrics=psnr,ms_ssim,lpips,niqe,fid,kid]
[--output=FILE.csv] IMAGE_OR_FOLDER...

Scores decoded images (the output of any codec) against their originals: decoded images in
folders are matched to the originals in the --reference folder by file stem. Per image:
PSNR, MS-SSIM, LPIPS, NIQE (CSV columns image,reference,psnr,ms_ssim,lpips,niqe; a metric
not asked for is left empty). Per set: FID and KID over the FID/256 patches, printed and
written to FILE.json beside the CSV.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from hific_tf.cli import common
from hific_tf.errors import UserError

_REFERENCE = flags.DEFINE_string("reference", None, "The originals: a folder (matched to the "
                                 "decoded images by file stem) or one image file.")
_METRICS = flags.DEFINE_list("metrics", ["psnr", "ms_ssim", "lpips", "niqe", "fid", "kid"],
                             "Metrics to compute.")
_OUTPUT = flags.DEFINE_string("output", None, "CSV file for the per-image scores; the set "
                              "scores go to the same name ending in .json. Default: print "
                              "only.")


def main(argv: list[str]) -> int:
    from hific_tf.evaluation import scoring
    from hific_tf.evaluation.report import load_measures

    if not _REFERENCE.value:
        raise UserError("--reference is required: the folder of originals (or one image)")
    wanted = scoring.parse_metrics(_METRICS.value)
    output = Path(_OUTPUT.value) if _OUTPUT.value else None
    if output is not None and output.suffix.lower() != ".csv":
        raise UserError(f"--output={output} must name a .csv file")
    pairs = scoring.pair_with_references(argv[1:], _REFERENCE.value)
    measures = load_measures(wanted, skip_missing=False)
    rows, set_scores = scoring.score(pairs, wanted, measures,
                                     report=lambda line: print(line, flush=True))
    for metric in ("fid", "kid"):
        if metric not in wanted:
            continue
        value = set_scores[metric]
        if value is None:
            needed = 2 if metric == "fid" else 4
            print(f"{metric.upper()}/256: not defined: {set_scores['patches']} FID/256 patch(es) "
                  f"in the originals, at least {needed} needed (256x256 each)")
        else:
            spread = f" ± {set_scores['kid_std']:.5f}" if metric == "kid" else ""
            print(f"{metric.upper()}/256: {value:.5f}{spread} over {set_scores['patches']} "
                  f"patches of {set_scores['images']} images")
    if output is not None:
        json_path = scoring.write_scores(rows, set_scores, wanted, output)
        print(f"written: {output}, {json_path}")
    return 0


def run(argv: list[str]) -> None:
    common.run(main, argv)
