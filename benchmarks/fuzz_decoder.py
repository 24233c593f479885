"""Fuzzes the `.hfc` parser and decoder in one process with a seeded mutator.

Seed files come from the bundled models (small synthetic photos coded by each). Every case
mutates one seed (truncation, bit flips, header field edits, moved z/y boundary, swapped z and
y strings, spliced payloads, appended bytes), and half the cases then rewrite the checksum so
that the mutation reaches the later checks and the range decoder. A case passes when decoding
returns a uint8 image of the size the header declares, or raises the library's FormatError
with a one-line message; anything else is a crash. The slowest case and the process's peak
memory are recorded, so a hang or a runaway allocation shows.

    python benchmarks/fuzz_decoder.py [--cases=10000] [--output=benchmarks/results/fuzz_decoder]
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from machine import machine, peak_rss_mib

HEADER = struct.Struct(">4sB16sIIII")
FIELDS = ("version", "height", "width", "z_length", "y_length")
EDGE_VALUES = (0, 1, 2, 15, 16, 17, 64, 255, 16384, 16385, 2**31 - 1, 2**32 - 1)


def synthetic_photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth colour gradients with texture: enough structure for a realistic file."""
    rows, cols = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([np.sin(3 * rows + c) + np.cos(5 * cols - c) for c in range(3)], -1)
    image = 127 + 60 * base + rng.normal(0, 12, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def with_checksum(body: bytes) -> bytes:
    import tensorflow as tf

    from hific_tf.coding import bitstream
    return body + bytes(bitstream.checksum(tf.constant(body)).numpy())


def mutate(data: bytes, others: list[bytes], rng: np.random.Generator) -> tuple[str, bytes]:
    """One mutation of `data` (a whole file); returns its kind and the result."""
    from hific_tf.coding import bitstream
    kind = str(rng.choice(["truncate", "bit_flip", "header", "boundary", "swap", "splice",
                           "append"]))
    body = bytearray(data[:-bitstream.CHECKSUM_BYTES])
    if kind == "truncate":
        return kind, data[:int(rng.integers(0, len(data)))]
    if kind == "bit_flip":
        mutated = bytearray(data)
        for _ in range(int(rng.integers(1, 9))):
            position = int(rng.integers(0, len(mutated) * 8))
            mutated[position // 8] ^= 1 << (position % 8)
        return kind, bytes(mutated)
    magic, version, model_id, height, width, z_length, y_length = HEADER.unpack_from(body)
    values = dict(version=version, height=height, width=width, z_length=z_length,
                  y_length=y_length)
    payload = bytes(body[HEADER.size:])
    if kind == "header":
        field = str(rng.choice(FIELDS))
        limit = 255 if field == "version" else 2**32 - 1
        choice = int(rng.choice(EDGE_VALUES)) if rng.random() < 0.5 else int(
            values[field] + rng.integers(-40, 41))
        values[field] = min(max(choice, 0), limit)
    elif kind == "boundary":
        shift = int(rng.integers(-z_length, y_length + 1))
        values["z_length"], values["y_length"] = z_length + shift, y_length - shift
    elif kind == "swap":
        payload = payload[z_length:] + payload[:z_length]
        values["z_length"], values["y_length"] = y_length, z_length
    elif kind == "splice":
        other = others[int(rng.integers(0, len(others)))]
        _, _, _, _, _, other_z, other_y = HEADER.unpack_from(other)
        payload = other[HEADER.size:-bitstream.CHECKSUM_BYTES]
        values["z_length"], values["y_length"] = other_z, other_y
    else:  # append
        payload += rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    header = HEADER.pack(magic, values["version"], model_id, values["height"],
                         values["width"], values["z_length"], values["y_length"])
    mutated = header + payload
    return kind, mutated + data[-bitstream.CHECKSUM_BYTES:]


def fuzz(cases: int, seed: int = 0) -> dict:
    """Runs `cases` mutations over files from every bundled model; returns the statistics."""
    from hific_tf.codec import Codec
    from hific_tf.coding import bitstream
    from hific_tf.storage import zoo

    rng = np.random.default_rng(seed)
    codecs = {name: Codec(zoo.load_bundled(name), name) for name in zoo.SHIPPED_MODELS
              if name in zoo.bundled_names()}
    sizes = [(64, 64), (100, 74), (1, 1), (33, 130)]
    seeds = {name: [codec.compress(synthetic_photo(rng, *size)) for size in sizes]
             for name, codec in codecs.items()}
    names = sorted(codecs)
    for name in names:  # Traces each decoder once, so that the timings are of decoding.
        codecs[name].decompress(seeds[name][0])
    outcomes: Counter = Counter()
    crashes: list[str] = []
    slowest = 0.0
    start_rss = peak_rss_mib()
    started = time.perf_counter()
    for case in range(cases):
        name = names[case % len(names)]
        files = seeds[name]
        kind, data = mutate(files[int(rng.integers(0, len(files)))], files, rng)
        fixed = rng.random() < 0.5 and len(data) > bitstream.CHECKSUM_BYTES
        if fixed:
            data = with_checksum(data[:-bitstream.CHECKSUM_BYTES])
        began = time.perf_counter()
        try:
            image = codecs[name].decompress(data)
            _, _, _, height, width, _, _ = HEADER.unpack_from(data)
            if image.dtype != np.uint8 or image.shape != (height, width, 3):
                crashes.append(f"case {case} ({kind}): decoded to {image.dtype} {image.shape}")
            outcomes[f"{kind}: decoded"] += 1
        except bitstream.FormatError as error:
            if "\n" in str(error) or not str(error):
                crashes.append(f"case {case} ({kind}): message not one line: {error!r}")
            outcomes[f"{kind}: refused"] += 1
        except Exception as error:
            crashes.append(f"case {case} ({kind}): {type(error).__name__}: "
                           f"{str(error)[:300]}")
        slowest = max(slowest, time.perf_counter() - began)
        if (case + 1) % 1000 == 0:
            elapsed = time.perf_counter() - started
            print(f"{case + 1}/{cases} cases  {(case + 1) / elapsed:.0f}/s  "
                  f"{(cases - case - 1) * elapsed / (case + 1):.0f}s left  "
                  f"crashes {len(crashes)}", file=sys.stderr)
    peak_rss = peak_rss_mib()
    return {"cases": cases, "seed": seed, "models": names,
            "seed_files": {name: [len(f) for f in files] for name, files in seeds.items()},
            "crashes": crashes, "outcomes": dict(sorted(outcomes.items())),
            "slowest_case_seconds": slowest,
            "seconds": time.perf_counter() - started,
            "peak_rss_mib": peak_rss, "rss_growth_mib": peak_rss - start_rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="benchmarks/results/fuzz_decoder")
    args = parser.parse_args()
    stats = fuzz(args.cases, args.seed)
    stats["machine"] = machine()
    stats["date"] = time.strftime("%Y-%m-%d")
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "summary.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(json.dumps({k: stats[k] for k in ("cases", "slowest_case_seconds",
                                             "peak_rss_mib")}), f"crashes: {len(stats['crashes'])}")
    sys.exit(1 if stats["crashes"] else 0)


if __name__ == "__main__":
    main()
