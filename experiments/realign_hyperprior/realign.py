"""Ports a bundled model's hyperprior to the authors' geometry (issue 21) by distillation.

The bundled small models were trained when h_a and h_s used Keras "same" padding and images
were padded to a multiple of 64. With the authors' explicit (k//2, (k-1)//2) padding and a pad
multiple of 16, the same kernels see z shifted by a pixel, and the models' rate on photos rose
by 14-26 %. This trains the new-geometry h_a and h_s to reproduce what the old-geometry
networks (the same weights, Keras "same" padding) computed, on the training photos' crops:
the means and the log-scales (below the 0.11 bound they are all one table entry) of y, with
E and G frozen; z's prior is trained on the bits of the new z. The model is then meant to code
as it did before, so the recipe's rate target and its other properties carry over. It is a
port, not training of the paper's: the models are to be retrained with the full recipe
(issue 24).

    python experiments/realign_hyperprior/realign.py --model=hific-small \
        --data=../shared/data/photos/train --output=experiments/realign_hyperprior/results
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import tensorflow as tf


def keras_same_copy(network: tf.keras.Sequential) -> tf.keras.Sequential:
    """`network`'s layers as Keras "same"-padded ones with the same weights: the geometry the
    bundled models were trained with."""
    layers = []
    for layer in network.layers:
        kind = (tf.keras.layers.Conv2DTranspose
                if isinstance(layer, tf.keras.layers.Conv2DTranspose) else tf.keras.layers.Conv2D)
        layers.append(kind(layer.filters, layer.kernel_size, strides=layer.strides,
                           padding="same", activation=layer.activation))
    copy = tf.keras.Sequential(layers)
    copy.build(network.input_shape)
    for mine, theirs in zip(copy.weights, network.weights, strict=True):
        mine.assign(theirs)
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="bundled model name")
    parser.add_argument("--data", required=True, help="folder of training photos")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--output", required=True, help="folder for NAME.npz and its log")
    args = parser.parse_args()
    from hific_tf.storage import zoo
    from hific_tf.training.data import training_dataset

    tf.keras.utils.set_random_seed(0)
    model = zoo.load_weights(zoo.bundled_folder() / f"{args.model}{zoo.SUFFIX}")
    hyperprior = model.hyperprior
    old_analysis = keras_same_copy(hyperprior.analysis)
    old_mean = keras_same_copy(hyperprior.synthesis_mean)
    old_scale = keras_same_copy(hyperprior.synthesis_scale)
    networks = [hyperprior.analysis, hyperprior.synthesis_mean, hyperprior.synthesis_scale]
    network_variables = [v for network in networks for v in network.trainable_variables]
    prior_variables = hyperprior.z_prior.trainable_variables
    variables = network_variables + list(prior_variables)
    optimizer = tf.keras.optimizers.Adam(args.learning_rate)
    optimizer.build(variables)
    batches = iter(training_dataset([args.data], batch_size=8, crop_size=256, seed=0,
                                    cache_decoded=True, short_side=512))
    log_floor = math.log(model.config.scale_min)

    def log_scale(scale: tf.Tensor) -> tf.Tensor:
        return tf.maximum(tf.math.log(tf.maximum(scale, 1e-9)), log_floor)

    @tf.function
    def step(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        y = tf.stop_gradient(model.encoder(images))
        z_old = old_analysis(y)
        z_old_hat = tf.round(z_old)
        target_mean = old_mean(z_old_hat)
        target_log_scale = log_scale(old_scale(z_old_hat))
        pixels = tf.cast(tf.shape(images)[1] * tf.shape(images)[2], tf.float32)
        with tf.GradientTape() as tape:
            z = hyperprior.analysis(y)
            z_hat = z + tf.stop_gradient(tf.round(z) - z)
            _, z_bits = hyperprior.z_model(tf.stop_gradient(z), training=True)
            size = tf.shape(y)[1:3]
            mean = hyperprior.synthesis_mean(z_hat)[:, :size[0], :size[1]]
            scale = hyperprior.synthesis_scale(z_hat)[:, :size[0], :size[1]]
            distillation = (tf.reduce_mean(tf.square(mean - target_mean))
                            + tf.reduce_mean(tf.square(log_scale(scale) - target_log_scale)))
            z_bpp = tf.reduce_mean(z_bits) / pixels
            loss = distillation + z_bpp
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return distillation, z_bpp

    started = time.perf_counter()
    log = []
    for index in range(1, args.steps + 1):
        distillation, z_bpp = (float(v) for v in step(next(batches)))
        if index % 50 == 0 or index == args.steps:
            elapsed = time.perf_counter() - started
            log.append({"step": index, "distillation": distillation, "z_bpp": z_bpp})
            print(f"step {index}/{args.steps}  {index / elapsed:.2f} steps/s  "
                  f"{(args.steps - index) * elapsed / index:.0f}s left  "
                  f"distillation {distillation:.4f}  z bpp {z_bpp:.4f}", file=sys.stderr)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    zoo.save_weights(model, output / f"{args.model}{zoo.SUFFIX}", overwrite=True)
    (output / f"{args.model}.log.json").write_text(json.dumps(
        {"model": args.model, "steps": args.steps, "learning_rate": args.learning_rate,
         "data": args.data, "log": log}, indent=2) + "\n")


if __name__ == "__main__":
    main()
