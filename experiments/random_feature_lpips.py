r"""Writes a stand-in for the LPIPS weights: AlexNet with random features, for one ablation.

The bundled stage 2 trains without the perceptual term (k_P = 0: the LPIPS weights were not
available where it was trained), and its GAN laid a regular grid over the reconstructions
(experiments/README.md). Random convolutional features also measure fine structure, so
training with k_P = 1 on them asks whether a perceptual term of this kind keeps the GAN from
that grid. This is not LPIPS: the distances it gives are not LPIPS values and are never
reported as such. Training reads the file with `--lpips_stand_in=FILE` instead of the real
LPIPS weights:

    .venv/bin/python experiments/random_feature_lpips.py --output=$HOME/runs/exp/rlpips.npz
    hific-tf train --preset=small-hific --init_from=mselpips-small --crop_size=256 \
        --target_rate=0.19 --num_steps=1000 \
        --learning_rate_schedule='{"values": [1, 0.1], "boundaries": [750]}' \
        --k_p=1 --lpips_stand_in=$HOME/runs/exp/rlpips.npz --beta=0.15 \
        --run_dir=$HOME/runs/s2-256-rl-b0.15 ...   # and --beta=0, s2-256-rl-b0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def random_weights(seed: int, head: float) -> dict[str, np.ndarray]:
    """He-normal AlexNet kernels, zero biases and every linear head equal to `head`."""
    from hific_tf.evaluation.perceptual.lpips import weight_shapes

    generator = np.random.default_rng(seed)
    weights = {}
    for name, shape in weight_shapes().items():
        if name.endswith("/bias"):
            weights[name] = np.zeros(shape, np.float32)
        elif name.startswith("lin"):
            weights[name] = np.full(shape, head, np.float32)
        else:
            fan_in = shape[0] * shape[1] * shape[2]
            weights[name] = (generator.standard_normal(shape)
                             * np.sqrt(2.0 / fan_in)).astype(np.float32)
    return weights


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="the .npz file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--head", type=float, default=1.0,
                        help="weight of every channel in the linear heads")
    arguments = parser.parse_args()
    path = Path(arguments.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **random_weights(arguments.seed, arguments.head))
    print(f"random-feature stand-in written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
