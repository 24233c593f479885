"""Tiled E and G: any image size in bounded memory, with the untiled networks' numbers.

E runs over tiles of the padded image and G over tiles of y_hat, each tile widened by a halo
of at least the network's receptive field, so that the interior of every tile is computed
from exactly the pixels (or latents) the untiled network uses. ChannelNorm is per pixel, so
only the convolutions couple neighbours, and tile origins sit on multiples of the latent
stride, so every strided or transposed convolution sees the same phase as in the whole
image. The entropy models still see the whole latent: tiling changes neither the file
format nor the file.

G is tiled on two levels, because its cost is split unevenly: the head and residual blocks
(most of the arithmetic, little memory per latent, a halo of 1 + 2 x residual_blocks
latents) run over large tiles; the upsampling tail (little arithmetic, 256 pixels of wide
activations per latent, a halo of one or two latents) runs over small tiles inside each.

Tile sides follow from a memory budget for the whole process (weights and TensorFlow
included), read at run time from a variable, so a SavedModel honours the budget it is given
after loading. When the whole image fits, there is one tile and no halo: the untiled network.
"""

from __future__ import annotations

import math

import tensorflow as tf

from hific_tf.layers import ResidualBlock

DEFAULT_MEMORY_BUDGET = 2 * 2**30
# What the process holds besides the weights and the image: Python, TensorFlow and
# tensorflow-compression (measured: 0.57 GiB after the first convolution on this project's
# CPU machine).
RUNTIME_BYTES = 640 * 2**20
_FLOAT_BYTES = 4
# Live copies of a network's widest activation at its peak, measured with the full-size
# model (benchmarks/results/codec_speed.json: 500 bytes per pixel above the weights for E,
# 920 for G, both widest at 60 channels of full resolution); the residual blocks keep the
# head, the running sum and one temporary.
_ENCODER_COPIES = 2.5
_BODY_COPIES = 3.0
_TAIL_COPIES = 4.0
# Share of G's working memory that its large tiles (head and residual blocks) may take; the
# upsampling tail's small tiles get the rest.
_BODY_SHARE = 0.75


class TileSettings(tf.Module):
    """The memory budget and an optional cap on tile sides, read when coding runs.

    Variables rather than constants, so that setting them needs no re-tracing and an
    exported SavedModel carries them (as `loaded.tile_settings`).
    """

    def __init__(self, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> None:
        super().__init__(name="tile_settings")
        self.memory_budget = tf.Variable(int(memory_budget), dtype=tf.int64, trainable=False,
                                         name="tiling_memory_budget")
        # > 0: no tile's interior exceeds this many latents a side, whatever the budget.
        self.max_tile = tf.Variable(0, dtype=tf.int32, trainable=False,
                                    name="tiling_max_tile")


def configure(settings: TileSettings, memory_budget: int | None = None,
              max_tile: int = 0) -> None:
    """Sets a model's (or a loaded SavedModel's) `tile_settings`: the memory budget in bytes
    (None: the default) and a cap on tile sides in latents (0: none)."""
    memory_budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else int(memory_budget)
    if memory_budget <= 0 or max_tile < 0:
        raise ValueError("the memory budget must be positive and max_tile 0 or more")
    settings.memory_budget.assign(memory_budget)
    settings.max_tile.assign(max_tile)


def _interval(layers: list[tf.keras.layers.Layer], low: int, high: int) -> tuple[int, int]:
    """The input positions (along one axis) on which outputs low...high of `layers`, applied
    in order, depend; positions count in each layer's own resolution.

    A "same" convolution with kernel k and stride s pads max(k - s, 0) in total, the smaller
    half first, so output o reads inputs s*o - before ... s*o - before + k - 1; a transposed
    one is its adjoint.
    """
    for layer in reversed(layers):
        if layer.padding != "same" or any(d != 1 for d in layer.dilation_rate):
            raise ValueError(f"{layer.name}: tiling needs undilated 'same' convolutions")
        kernel, stride = layer.kernel_size[0], layer.strides[0]
        before = max(kernel - stride, 0) // 2
        if isinstance(layer, tf.keras.layers.Conv2DTranspose):
            low = -((kernel - 1 - before - low) // stride)  # ceil((low+before-k+1)/s)
            high = (high + before) // stride
        else:
            low, high = stride * low - before, stride * high - before + kernel - 1
    return low, high


def _convolutions(layers: list[tf.keras.layers.Layer]) -> list[tf.keras.layers.Layer]:
    """The convolutions of a chain of layers in order (per-pixel layers couple nothing)."""
    found = []
    for layer in layers:
        if isinstance(layer, tf.keras.layers.Conv2D):  # Conv2DTranspose included.
            found.append(layer)
        elif isinstance(layer, ResidualBlock):
            found += [layer.conv_a, layer.conv_b]
        elif isinstance(layer, tf.keras.Sequential):
            found += _convolutions(layer.layers)
    return found


def _widest(layers: list[tf.keras.layers.Layer], stride: int) -> float:
    """The most channels per reference pixel that any layer's output holds, where one
    position of the chain's input spans `stride` reference pixels along each axis (E: 1,
    the image itself; G's tail: the latent stride, its output being the reference)."""
    widest = 0.0
    for layer in layers:
        if isinstance(layer, tf.keras.layers.Conv2DTranspose):
            stride //= layer.strides[0]
        else:
            stride *= layer.strides[0]
        widest = max(widest, layer.filters / stride**2)
    return widest


class Tiler(tf.Module):
    """Runs a model's E and G tile by tile; built from the model's networks once.

    It keeps only numbers (halos, bytes per position) and the settings, never the networks,
    which the model passes to each call.
    """

    def __init__(self, encoder: tf.keras.Sequential, generator: tf.keras.Model,
                 weight_bytes: int) -> None:
        super().__init__(name="tiler")
        self.settings = TileSettings()
        encoder_convs = _convolutions(encoder.layers)
        self.stride = math.prod(layer.strides[0] for layer in encoder_convs)
        # Latent p reads pixels stride*p + low ... stride*p + high.
        low, high = _interval(encoder_convs, 0, 0)
        self.encoder_halo = (-(low // self.stride), -(-(high - self.stride + 1) // self.stride))
        body = _convolutions(generator.head.layers + list(generator.residual_blocks))
        tail = _convolutions(generator.tail.layers)
        # Pixels stride*p ... stride*(p + 1) - 1 read latents p + low ... p + high.
        low, high = _interval(tail, 0, self.stride - 1)
        self.tail_halo = (-low, high)
        reach_low, reach_high = _interval(body, 0, 0)
        self.body_halo = (-reach_low, reach_high)
        self.latent_channels = encoder_convs[-1].filters
        self.feature_channels = body[-1].filters
        self.encoder_bytes_per_pixel = _ENCODER_COPIES * _FLOAT_BYTES * _widest(encoder_convs, 1)
        self.body_bytes_per_latent = _BODY_COPIES * _FLOAT_BYTES * self.feature_channels
        self.feature_bytes_per_latent = _FLOAT_BYTES * self.feature_channels
        self.tail_bytes_per_latent = (_TAIL_COPIES * _FLOAT_BYTES * _widest(tail, self.stride)
                                      * self.stride**2)
        self.fixed_bytes = weight_bytes + RUNTIME_BYTES

    def _available(self, held: tf.Tensor) -> tf.Tensor:
        """Bytes of the budget left for tiles when `held` bytes of whole-image buffers live."""
        budget = tf.cast(self.settings.memory_budget, tf.float64)
        return tf.maximum(budget - self.fixed_bytes - held, 0.0)

    def _side(self, available: tf.Tensor, bytes_per_position: float, halo: int,
              rows: tf.Tensor, columns: tf.Tensor) -> tf.Tensor:
        """The interior side (positions) of square tiles over a rows x columns grid whose
        haloed tiles cost `bytes_per_position` each within `available` bytes; the whole
        grid (no halo) when it fits; at least 1; capped by the settings' max_tile."""
        rows, columns = tf.cast(rows, tf.float64), tf.cast(columns, tf.float64)
        available = tf.maximum(available, 0.0)
        whole = tf.maximum(rows, columns)
        fits = rows * columns * bytes_per_position <= available
        side = tf.floor(tf.sqrt(available / bytes_per_position)) - halo
        side = tf.where(fits, whole, tf.clip_by_value(side, 1.0, whole))
        side = tf.cast(side, tf.int32)
        cap = self.settings.max_tile
        return tf.where(cap > 0, tf.minimum(side, cap), side)

    def encoder_side(self, rows: tf.Tensor, columns: tf.Tensor) -> tf.Tensor:
        """The interior side, in latents, of E's tiles for a rows x columns latent grid."""
        positions = tf.cast(rows * columns, tf.float64)
        # Held whole: the padded uint8 image, y as tiles, joined, and in the hyperprior.
        held = positions * (3.0 * self.stride**2 + 3.0 * _FLOAT_BYTES * self.latent_channels)
        before, after = self.encoder_halo
        return self._side(self._available(held), self.encoder_bytes_per_pixel * self.stride**2,
                          before + after, rows, columns)

    def _generator_available(self, rows: tf.Tensor, columns: tf.Tensor) -> tf.Tensor:
        # Held whole: y_hat, and the uint8 image as tiles and joined.
        held = (tf.cast(rows * columns, tf.float64)
                * (_FLOAT_BYTES * self.latent_channels + 2.0 * 3.0 * self.stride**2))
        return self._available(held)

    def generator_side(self, rows: tf.Tensor, columns: tf.Tensor) -> tf.Tensor:
        """The interior side, in latents, of G's large tiles (head and residual blocks)
        for a rows x columns grid of y_hat."""
        available = self._generator_available(rows, columns)
        body_bytes = self.body_bytes_per_latent + self.feature_bytes_per_latent
        whole = tf.cast(rows * columns, tf.float64) * body_bytes
        # The body's share, unless the whole body fits and leaves the tail room enough.
        available = tf.where(whole <= 0.5 * available, whole, _BODY_SHARE * available)
        halo = sum(self.tail_halo) + sum(self.body_halo)
        return self._side(available, body_bytes, halo, rows, columns)

    def tail_side(self, rows: tf.Tensor, columns: tf.Tensor, tile_rows: tf.Tensor,
                  tile_columns: tf.Tensor, feature_bytes: tf.Tensor) -> tf.Tensor:
        """The interior side, in latents, of the upsampling tail's tiles inside one of G's
        large tiles (tile_rows x tile_columns latents of a rows x columns grid, whose
        features hold `feature_bytes`)."""
        available = self._generator_available(rows, columns) - feature_bytes
        return self._side(available, self.tail_bytes_per_latent, sum(self.tail_halo),
                          tile_rows, tile_columns)

    def encode(self, encoder: tf.keras.layers.Layer, padded: tf.Tensor) -> tf.Tensor:
        """E of a uint8 [H', W', 3] image padded to the latent stride → y [1, H'/s, W'/s, C]."""
        stride = self.stride
        rows, columns = tf.shape(padded)[0] // stride, tf.shape(padded)[1] // stride
        before, after = self.encoder_halo
        side = self.encoder_side(rows, columns)

        def tile(top, bottom, left, right):
            y0, y1 = tf.maximum(top - before, 0), tf.minimum(bottom + after, rows)
            x0, x1 = tf.maximum(left - before, 0), tf.minimum(right + after, columns)
            pixels = padded[stride * y0:stride * y1, stride * x0:stride * x1]
            y = encoder(tf.cast(pixels, tf.float32)[tf.newaxis] / 255.0)[0]
            return y[top - y0:bottom - y0, left - x0:right - x0]

        return _grid(tile, _spans(rows, side), _spans(columns, side),
                     self.latent_channels, tf.float32)[tf.newaxis]

    def synthesize(self, generator: tf.keras.Model, y_hat: tf.Tensor, height: tf.Tensor,
                   width: tf.Tensor) -> tf.Tensor:
        """G of y_hat [1, h, w, C], cropped to height x width, as uint8 [height, width, 3]."""
        stride = self.stride
        latent_rows, latent_columns = tf.shape(y_hat)[1], tf.shape(y_hat)[2]
        height, width = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
        # Latents wholly inside the padding shape no kept pixel but may feed a halo.
        rows = tf.minimum((height + stride - 1) // stride, latent_rows)
        columns = tf.minimum((width + stride - 1) // stride, latent_columns)
        tail_before, tail_after = self.tail_halo
        body_before, body_after = self.body_halo
        body_side = self.generator_side(latent_rows, latent_columns)

        def body_tile(top, bottom, left, right):
            # Features exact on the interior plus the tail's halo, from y_hat exact there
            # plus the body's halo.
            f0 = tf.maximum(top - tail_before, 0)
            f1 = tf.minimum(bottom + tail_after, latent_rows)
            g0 = tf.maximum(left - tail_before, 0)
            g1 = tf.minimum(right + tail_after, latent_columns)
            y0, y1 = tf.maximum(f0 - body_before, 0), tf.minimum(f1 + body_after, latent_rows)
            x0 = tf.maximum(g0 - body_before, 0)
            x1 = tf.minimum(g1 + body_after, latent_columns)
            features = generator.body(y_hat[:, y0:y1, x0:x1])
            features = features[:, f0 - y0:f1 - y0, g0 - x0:g1 - x0]
            feature_bytes = tf.cast(tf.size(features), tf.float64) * _FLOAT_BYTES
            tail_side = self.tail_side(latent_rows, latent_columns, bottom - top,
                                       right - left, feature_bytes)

            def tail_tile(top_, bottom_, left_, right_):
                top_, bottom_ = top + top_, top + bottom_
                left_, right_ = left + left_, left + right_
                t0, t1 = tf.maximum(top_ - tail_before, f0), tf.minimum(bottom_ + tail_after, f1)
                s0 = tf.maximum(left_ - tail_before, g0)
                s1 = tf.minimum(right_ + tail_after, g1)
                image = generator.tail(features[:, t0 - f0:t1 - f0, s0 - g0:s1 - g0])[0]
                # Keep the interior's pixels that lie inside the image.
                p0, p1 = stride * (top_ - t0), tf.minimum(stride * bottom_, height) - stride * t0
                q0, q1 = stride * (left_ - s0), tf.minimum(stride * right_, width) - stride * s0
                return to_uint8(image[p0:p1, q0:q1])

            return _grid(tail_tile, _spans(bottom - top, tail_side),
                         _spans(right - left, tail_side), 3, tf.uint8)

        return _grid(body_tile, _spans(rows, body_side), _spans(columns, body_side), 3,
                     tf.uint8)


def to_uint8(image: tf.Tensor) -> tf.Tensor:
    """Rounds and clips an image on the [0, 1] scale to uint8."""
    return tf.saturate_cast(tf.round(image * 255.0), tf.uint8)


def _spans(length: tf.Tensor, side: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Starts and ends of ceil(length / side) near-equal spans covering 0 ... length."""
    count = tf.maximum((length + side - 1) // side, 1)
    size = (length + count - 1) // count
    starts = tf.range(count) * size
    return starts, tf.minimum(starts + size, length)


def _grid(tile, rows: tuple[tf.Tensor, tf.Tensor], columns: tuple[tf.Tensor, tf.Tensor],
          channels: int, dtype: tf.DType) -> tf.Tensor:
    """Calls tile(top, bottom, left, right) → [bottom - top, right - left, channels] for
    every cell of a grid, one after another, and joins the results into one image."""
    row_starts, row_ends = rows
    column_starts, column_ends = columns

    def one_row(i, bands):
        def one_tile(j, pieces):
            piece = tile(row_starts[i], row_ends[i], column_starts[j], column_ends[j])
            # TensorArray.concat joins along the first axis: store the tiles transposed.
            return j + 1, pieces.write(j, tf.transpose(piece, [1, 0, 2]))

        pieces = tf.TensorArray(dtype, size=tf.size(column_starts), infer_shape=False,
                                element_shape=tf.TensorShape([None, None, channels]))
        _, pieces = tf.while_loop(lambda j, _: j < tf.size(column_starts), one_tile,
                                  [0, pieces], parallel_iterations=1)
        return i + 1, bands.write(i, tf.transpose(pieces.concat(), [1, 0, 2]))

    bands = tf.TensorArray(dtype, size=tf.size(row_starts), infer_shape=False,
                           element_shape=tf.TensorShape([None, None, channels]))
    _, bands = tf.while_loop(lambda i, _: i < tf.size(row_starts), one_row, [0, bands],
                             parallel_iterations=1)
    return bands.concat()
