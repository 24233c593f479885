"""Wall time of `hific-tf compress` and `decompress` of one 768x512 photo with a bundled
model, against `python -c "import tensorflow, tensorflow_compression"` alone.

Every command runs REPEATS times in a fresh process, the commands in turn (round-robin, so
that a shared machine's load weighs on all alike); medians are reported. A second set of
processes does what the command does with clocks in between, to split its time into
import (Python, TensorFlow, tensorflow-compression, hific_tf), load (the bundled model:
build, weights, coding tables) and code (read, trace on first use, code, write). With --saved_model,
also the commands with the same model exported as a SavedModel. Writes
benchmarks/results/cli_startup.{json,png}.

    python benchmarks/cli_startup.py [--data=../shared/data] [--model=hific-small]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
REPEATS = 5
PHOTO = "photos/val768/mate_Aqua.png"
ENVIRONMENT = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}


def wall_time(command: list[str]) -> float:
    """Seconds from starting `command` to its exit (which must be 0)."""
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=ENVIRONMENT)
    return time.perf_counter() - started


def phases(operation: str, model: str, source: Path, target: Path) -> dict:
    """In this fresh process: the CLI's steps, timed (seconds since the clock started)."""
    started = time.perf_counter()
    import tensorflow  # noqa: F401
    import tensorflow_compression  # noqa: F401

    from hific_tf.codec import load_codec
    from hific_tf.storage import images
    from hific_tf.storage.files import write_atomic

    imported = time.perf_counter()
    codec = load_codec(model)
    loaded = time.perf_counter()
    if operation == "compress":
        write_atomic(target, codec.compress(images.read_image(source)), overwrite=True)
    else:
        images.write_png(target, codec.decompress(source.read_bytes()), overwrite=True)
    coded = time.perf_counter()
    return {"import": imported - started, "load": loaded - imported, "code": coded - loaded}


def plot(report: dict, path: Path) -> None:
    """Stacked import / load / code bars per command beside the bare import."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    baseline = report["import_tf_and_tfc_median_s"]
    for index, operation in enumerate(("compress", "decompress")):
        entry = report[operation]
        bottom = entry["python_start_median_s"]
        axis.bar(index, bottom, color="lightgrey", label="python start" if index == 0 else None)
        for part, colour in (("import", "tab:blue"), ("load", "tab:orange"),
                             ("code", "tab:green")):
            value = entry["phases_median_s"][part]
            axis.bar(index, value, bottom=bottom, color=colour,
                     label=part if index == 0 else None)
            bottom += value
        axis.plot([index - 0.4, index + 0.4], [entry["cli_median_s"]] * 2, color="black")
        axis.text(index + 0.42, entry["cli_median_s"], f"CLI {entry['cli_median_s']:.1f} s",
                  va="center", fontsize=8)
    axis.axhline(baseline, color="tab:red", linestyle="--", linewidth=1)
    axis.axhline(baseline + 3, color="tab:red", linestyle=":", linewidth=1)
    axis.text(1.45, baseline, "import tensorflow, tfc", fontsize=7, color="tab:red")
    axis.text(1.45, baseline + 3, "+ 3 s", fontsize=7, color="tab:red")
    axis.set_xticks([0, 1], [f"compress\n{report['model']}", f"decompress\n{report['model']}"])
    axis.set_xlim(-0.6, 2.3)
    axis.set_ylabel("seconds (median of 5)")
    axis.legend(fontsize=8, loc="lower right")
    axis.set_title("hific-tf on one 768x512 photo, CPU")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--model", default=None, help="Bundled model (default: the first "
                        "shipped one).")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Output folder.")
    parser.add_argument("--saved_model", action="store_true", help="Also time the model "
                        "exported as a SavedModel.")
    parser.add_argument("--phases", choices=["compress", "decompress"])
    parser.add_argument("--source", type=Path)
    parser.add_argument("--target", type=Path)
    args = parser.parse_args()
    if args.phases:
        print(json.dumps(phases(args.phases, args.model, args.source, args.target)))
        return
    photo = args.data / PHOTO
    if not photo.is_file():
        print(f"skipped: {photo} not found (pass --data=PATH)")
        return
    sys.path.insert(0, str(REPO))
    from machine import machine

    from hific_tf.storage import zoo
    model = args.model or zoo.SHIPPED_MODELS[0]
    report = {"benchmark": "cli_startup", "model": model, "photo": PHOTO,
              "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
              "load_average_1min_before": os.getloadavg()[0]}
    bare_import = [sys.executable, "-c", "import tensorflow, tensorflow_compression"]
    runs = {"import": [], "compress": [], "decompress": []}
    splits = {"compress": [], "decompress": []}
    outer = {"compress": [], "decompress": []}
    with tempfile.TemporaryDirectory() as scratch:
        coded = Path(scratch) / "photo.hfc"
        decoded = Path(scratch) / "photo.png"
        steps = (("compress", photo, coded), ("decompress", coded, decoded))
        # Round-robin, so that a busy (shared) machine weighs on every measure alike.
        for round_ in range(REPEATS):
            runs["import"].append(wall_time(bare_import))
            for operation, source, target in steps:
                runs[operation].append(wall_time(
                    [sys.executable, "-m", "hific_tf.cli.main", operation, f"--model={model}",
                     str(source), f"--output={target}", "--overwrite"]))
                started = time.perf_counter()
                output = subprocess.run(
                    [sys.executable, __file__, f"--phases={operation}", f"--model={model}",
                     f"--source={source}", f"--target={target}"], check=True,
                    capture_output=True, text=True, env=ENVIRONMENT).stdout
                outer[operation].append(time.perf_counter() - started)
                splits[operation].append(json.loads(output.strip().splitlines()[-1]))
            print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s"
                                                     for k, v in runs.items()), flush=True)
        report["import_tf_and_tfc_s"] = runs["import"]
        report["import_tf_and_tfc_median_s"] = statistics.median(runs["import"])
        for operation, _, _ in steps:
            medians = {part: statistics.median(s[part] for s in splits[operation])
                       for part in ("import", "load", "code")}
            start = statistics.median(o - sum(s.values()) for o, s in
                                      zip(outer[operation], splits[operation], strict=True))
            cli = runs[operation]
            report[operation] = {"cli_s": cli, "cli_median_s": statistics.median(cli),
                                 "phases_s": splits[operation], "phases_median_s": medians,
                                 "python_start_median_s": start}
            margin = statistics.median(cli) - report["import_tf_and_tfc_median_s"]
            print(f"hific-tf {operation}: {statistics.median(cli):.2f} s "
                  f"(import + {margin:.2f} s); split: python start {start:.2f} s, "
                  + ", ".join(f"{k} {v:.2f} s" for k, v in medians.items()))
        if args.saved_model:
            # The same model exported as a SavedModel: nothing to build or trace.
            from hific_tf.storage.export import export_saved_model

            saved_model = Path(scratch) / "saved_model"
            export_saved_model(zoo.load_bundled(model), saved_model)
            for operation, source, target in steps:
                cli = [wall_time([sys.executable, "-m", "hific_tf.cli.main", operation,
                                  f"--model={saved_model}", str(source), f"--output={target}",
                                  "--overwrite"]) for _ in range(REPEATS)]
                report[f"{operation}_saved_model"] = {"cli_s": cli,
                                                      "cli_median_s": statistics.median(cli)}
                print(f"hific-tf {operation} with {model} as a SavedModel: "
                      f"{statistics.median(cli):.2f} s")
    report["load_average_1min_after"] = os.getloadavg()[0]
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "cli_startup.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.results / "cli_startup.png")
    print(f"wrote {args.results}/cli_startup.json and .png")


if __name__ == "__main__":
    main()
