"""Issue 29's declared aim, judged from evaluation summaries of the 20 validation photos:

1. hific-small's LPIPS below JPEG's at the same rate;
2. hific-small's KID/256 below JPEG's at the same rate;
3. hific-small's FID/256 below mselpips-small's, at a rate within 5 % of it;
4. hific-small's KID/256 below mselpips-small's, at a rate within 5 % of it.

`checks` reads the summaries `hific-tf evaluate` writes (summary.json); score_snapshots.py
applies it along training, and `python aim.py SUMMARY` to the shipped pair's report.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RATE_TOLERANCE = 0.05  # the control's bpp within 5 % of hific-small's


def checks(gan: dict, control: dict, jpeg: dict) -> list[dict]:
    """The four comparisons: each with both values, the margin (hific-small minus the
    other; below zero is the aim's direction), KID's standard errors where it is KID, and
    whether it held. `jpeg` is JPEG aimed at `gan`'s mean bpp."""
    rate_gap = abs(control["bpp"] - gan["bpp"]) / gan["bpp"]
    jpeg_at_rate = bool(jpeg["all_reached"]) and abs(jpeg["bpp"] - gan["bpp"]) / gan["bpp"] \
        <= RATE_TOLERANCE
    results = []
    for number, (metric, other, name, rate_ok) in enumerate(
            [("lpips", jpeg, "JPEG at the same rate", jpeg_at_rate),
             ("kid", jpeg, "JPEG at the same rate", jpeg_at_rate),
             ("fid", control, "mselpips-small within 5 % of the rate",
              rate_gap <= RATE_TOLERANCE),
             ("kid", control, "mselpips-small within 5 % of the rate",
              rate_gap <= RATE_TOLERANCE)], start=1):
        result = {"aim": number, "metric": metric, "against": name,
                  "hific_small": gan[metric], "other": other[metric],
                  "margin": gan[metric] - other[metric],
                  "hific_small_bpp": gan["bpp"], "other_bpp": other["bpp"],
                  "rate_condition_met": rate_ok,
                  "held": rate_ok and gan[metric] < other[metric]}
        if metric == "kid":
            result.update(hific_small_kid_std=gan["kid_std"], other_kid_std=other["kid_std"])
        results.append(result)
    return results


def sentence(results: list[dict]) -> str:
    """Which of the four held, in one line for the README."""
    said = {1: "LPIPS below JPEG's at the same rate", 2: "KID/256 below JPEG's",
            3: "FID/256 below mselpips-small's", 4: "KID/256 below mselpips-small's"}
    held = [said[r["aim"]] for r in results if r["held"]]
    missed = [said[r["aim"]] for r in results if not r["held"]]
    parts = []
    if held:
        parts.append("held: " + "; ".join(held))
    if missed:
        parts.append("not held: " + "; ".join(missed))
    return "Of the declared aim, " + ". ".join(parts) + "."


def from_summary(path: Path) -> list[dict]:
    """The checks on a report of both bundled models and JPEG at hific-small's rate."""
    summaries = json.loads(path.read_text())["summaries"]
    by_name = {(s["codec"], s["setting"]): s for s in summaries}
    gan = by_name[("hific-small", "model")]
    control = by_name[("mselpips-small", "model")]
    jpeg = min((s for s in summaries if s["codec"] == "jpeg"),
               key=lambda s: abs(s["target_bpp"] - gan["bpp"]))
    return checks(gan, control, jpeg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summary", type=Path, help="summary.json of the 20-photo report")
    parser.add_argument("--output", type=Path, help="write the checks here as JSON")
    args = parser.parse_args()
    results = from_summary(args.summary)
    if args.output:
        args.output.write_text(json.dumps({"checks": results, "sentence": sentence(results)},
                                          indent=2) + "\n")
    for result in results:
        print(f"aim {result['aim']}: {result['metric']} {result['hific_small']:.4g} against "
              f"{result['other']:.4g} ({result['against']}): "
              f"{'held' if result['held'] else 'not held'}")
    print(sentence(results))


if __name__ == "__main__":
    main()
