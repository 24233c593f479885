"""HiFiC: E, G and the hyperprior tied together, for training and for coding whole files.

`compress` and `decompress` are tf.functions with input signatures, so eager use, the CLI
and the exported SavedModel all run the same graph.
"""

from __future__ import annotations

import hashlib
import logging
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from hific_tf.coding import bitstream, tiling
from hific_tf.coding.entropy_coding import CodingTables, ZTables
from hific_tf.coding.hyperprior import Coded, Hyperprior, check_prepared
from hific_tf.coding.tiling import Tiler, reflect_indices, to_uint8
from hific_tf.configs import ModelConfig
from hific_tf.nn.networks import Encoder, Generator


class ForwardOutputs(NamedTuple):
    """A training-mode pass: what the losses and the discriminator need."""

    reconstruction: tf.Tensor  # G(y_hat), linear output on the [0, 1] scale
    y_hat: tf.Tensor  # straight-through quantised latent (D's condition)
    y_bits: tf.Tensor  # per-image noisy bits of y
    z_bits: tf.Tensor  # per-image noisy bits of z
    bpp: tf.Tensor  # per-image (y_bits + z_bits) / pixels
    quantized_bpp: tf.Tensor  # per-image bpp of the rounded latents (rate control)


class Latent(NamedTuple):
    """The decoder-side quantised latent of one image and the image's size."""

    y_hat: tf.Tensor  # [1, H'/16, W'/16, C_y], H' and W' padded to a multiple of 16
    height: tf.Tensor
    width: tf.Tensor


def reflect_pad(image: tf.Tensor, multiple: int) -> tf.Tensor:
    """Pads [H, W, C] at the bottom and right to multiples of `multiple` by mirroring.

    The mirror repeats as often as needed, so images smaller than the padding (down to 1x1)
    are handled too.
    """

    def mirrored_indices(size: tf.Tensor) -> tf.Tensor:
        return reflect_indices(size, (size + multiple - 1) // multiple * multiple)

    shape = tf.shape(image)
    image = tf.gather(image, mirrored_indices(shape[0]), axis=0)
    return tf.gather(image, mirrored_indices(shape[1]), axis=1)


def note_whole_image(config: ModelConfig) -> None:
    """Logs one line when `config`'s E and G normalise over the whole image, which they
    then code in one tile (tiling.Tiler's `whole_image`)."""
    if config.whole_image_normalization:
        logging.warning("normalization %r depends on the whole image: E and G code each image "
                        "in one tile, whatever the memory budget", config.normalization)


class HiFiC(tf.keras.Model):
    """The codec: encoder E, generator G and hyperprior P (D lives with training)."""

    def __init__(self, config: ModelConfig, name: str = "hific") -> None:
        super().__init__(name=name)
        self.config = config
        self.encoder = Encoder(config)
        self.generator = Generator(config)
        self.hyperprior = Hyperprior(config)
        self.model_id: tf.Variable | None = None
        self.tiler: Tiler | None = None

    def build_weights(self) -> HiFiC:
        """Creates every variable, in a forward pass's order, by running each network once
        on a minimal input; returns self. (Not the forward pass itself, whose entropy models
        take seconds eagerly: start-up time of every command.)"""
        if not self.encoder.built:
            side = self.config.pad_multiple
            y = self.encoder(tf.zeros([1, side, side, 3]))
            z = self.hyperprior.analysis(y)
            self.hyperprior.synthesis_mean(z)
            self.hyperprior.synthesis_scale(z)
            self.generator(y)
        return self

    def call(self, images: tf.Tensor, training: bool = False) -> ForwardOutputs:
        """A pass over a batch in [0, 1] whose sides are multiples of 16: with `training`,
        uniform noise stands in for rounding in the rates (what the losses need); without,
        the latents are rounded (inference, the default)."""
        y = self.encoder(images)
        latent = self.hyperprior(y, training=training)
        reconstruction = self.generator(latent.y_hat)
        shape = tf.shape(images)
        pixels = tf.cast(shape[1] * shape[2], latent.y_bits.dtype)
        return ForwardOutputs(
            reconstruction=reconstruction, y_hat=latent.y_hat, y_bits=latent.y_bits,
            z_bits=latent.z_bits, bpp=(latent.y_bits + latent.z_bits) / pixels,
            quantized_bpp=latent.quantized_bits / pixels)

    def reconstruct_for_discriminator(self, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """G's reconstruction and y_hat as a training pass makes them, without the rates
        (and their entropy models): what D's update needs."""
        y_hat = self.hyperprior.latent_for_discriminator(self.encoder(images))
        return self.generator(y_hat), y_hat

    def reconstruct_photo(self, photo: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Estimated bits of the rounded latents and the uint8 reconstruction of one whole
        uint8 [H, W, 3] photo, padded as `compress` pads it: what validation and the stage-2
        studies measure without range coding."""
        height, width = tf.shape(photo)[0], tf.shape(photo)[1]
        padded = reflect_pad(tf.cast(photo, tf.float32) / 255.0, self.config.pad_multiple)
        outputs = self(padded[tf.newaxis], training=False)
        pixels = tf.cast(tf.reduce_prod(tf.shape(padded)[:2]), outputs.quantized_bpp.dtype)
        reconstruction = to_uint8(outputs.reconstruction[0, :height, :width])
        return outputs.quantized_bpp[0] * pixels, reconstruction

    def moving_statistics(self) -> list[tf.Variable]:
        """Batch normalization's moving means and variances in E and G (none for the other
        normalizations): weights like any other at inference, stored and hashed after the
        trainable ones."""
        return self.encoder.non_trainable_variables + self.generator.non_trainable_variables

    def prepare_for_coding(self, tables: CodingTables | None = None,
                           z_tables: ZTables | None = None) -> HiFiC:
        """Fixes the coding tables and the model identifier; returns self.

        Call once, after the weights are final. `tables` are stored tables (bundled,
        converted or exported models), used as they are; without them they are computed from
        the weights, with z's from `z_tables` if given (an imported graph's).
        """
        self.build_weights()
        self.hyperprior.prepare_for_coding(tables, z_tables)
        self.model_id = tf.Variable(self.fingerprint(), trainable=False, name="model_id")
        halo = self.hyperprior.strip_halo
        note_whole_image(self.config)
        self.tiler = Tiler(self.encoder, self.generator,
                           sum(int(tf.size(v)) * v.dtype.size for v in self.variables
                               if v.dtype != tf.string),
                           None if halo is None else self.hyperprior.synthesis_mean,
                           halo or (0, 0), self.config.whole_image_normalization)
        return self

    @property
    def coding_tables(self) -> CodingTables:
        """The fixed coding tables (after prepare_for_coding)."""
        check_prepared(self.model_id is not None)
        return self.hyperprior.tables

    @property
    def tile_settings(self) -> tiling.TileSettings:
        """The memory budget and tile cap that coding reads (tiling.py)."""
        check_prepared(self.model_id is not None)
        return self.tiler.settings

    def set_memory_budget(self, memory_budget: int | None = None, max_tile: int = 0) -> None:
        """Sets the memory (bytes, whole process; None: 2 GiB) that coding aims to stay
        within, which sizes E's and G's tiles, and optionally a cap on tile sides in
        latents (0: none)."""
        tiling.configure(self.tile_settings, memory_budget, max_tile)

    def fingerprint(self) -> bytes:
        """A 16-byte hash of the architecture, every weight (batch normalization's moving
        statistics included) and the coding tables.

        Only stored values enter it (the weights as float32, the tables as stored), so the
        same model has the same identifier on every machine.
        """
        if not self.hyperprior.prepared:
            raise RuntimeError("the identifier covers the coding tables: prepare_for_coding()")
        digest = hashlib.sha256(self.config.to_json().encode())
        for variable in self.trainable_variables + self.moving_statistics():
            value = np.ascontiguousarray(variable.numpy())
            digest.update(f"{value.dtype.str}{value.shape}".encode())
            digest.update(value.tobytes())
        self.hyperprior.tables.update_digest(digest)
        return digest.digest()[:bitstream.MODEL_ID_BYTES]

    def encode(self, image: tf.Tensor, with_y_hat: bool = True
               ) -> tuple[Coded, tf.Tensor, tf.Tensor]:
        """Codes one uint8 [H, W, 3] image; returns the coded latents (y_hat None unless
        `with_y_hat`: the file does not need it) and H, W."""
        check_prepared(self.model_id is not None)
        shape = tf.shape(image, out_type=tf.int64)
        height, width = shape[0], shape[1]
        size_ok = bitstream.check(
            tf.reduce_all([height >= 1, width >= 1, height <= bitstream.MAX_SIDE,
                           width <= bitstream.MAX_SIDE]),
            "image size ", tf.strings.as_string(height), "x", tf.strings.as_string(width),
            f" is outside 1x1 to {bitstream.MAX_SIDE}x{bitstream.MAX_SIDE}")
        with tf.control_dependencies([size_ok]):
            image = tf.identity(image)
        # E pads its strips to the latent stride as it gathers them, as reflect_pad pads.
        y = self.tiler.encode(self.encoder, image)
        z_rows = self.tiler.hyper_rows(tf.shape(y)[1], tf.shape(y)[2])
        return self.hyperprior.compress(y, z_rows, with_y_hat), height, width

    def decode_latent(self, data: tf.Tensor) -> Latent:
        """Validates a file and decodes its quantised latent y_hat."""
        check_prepared(self.model_id is not None)
        parsed = bitstream.unpack(data, self.model_id)
        stride = self.config.latent_stride
        y_shape = tf.cast(tf.stack([(parsed.height + stride - 1) // stride,
                                    (parsed.width + stride - 1) // stride]), tf.int32)
        y_hat = self.hyperprior.decompress(
            parsed.z_string[tf.newaxis], parsed.y_string[tf.newaxis], y_shape,
            self.tiler.hyper_rows(y_shape[0], y_shape[1]))
        return Latent(y_hat=y_hat, height=parsed.height, width=parsed.width)

    def synthesize(self, latent: Latent) -> tf.Tensor:
        """G applied to a decoded latent, cropped to the image size, as uint8 [H, W, 3]."""
        return self.tiler.synthesize(self.generator, latent.y_hat, latent.height,
                                     latent.width)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8, name="image")],
                 autograph=False)
    def compress(self, image: tf.Tensor) -> tf.Tensor:
        """uint8 [H, W, 3] image → the bytes of a whole `.hfc` file (scalar string)."""
        coded, height, width = self.encode(image, with_y_hat=False)
        return bitstream.pack(self.model_id, height, width, coded.z_strings[0],
                              coded.y_strings[0])

    @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="data")],
                 autograph=False)
    def decompress(self, data: tf.Tensor) -> tf.Tensor:
        """The bytes of an `.hfc` file → the uint8 [H, W, 3] image."""
        return self.synthesize(self.decode_latent(data))
