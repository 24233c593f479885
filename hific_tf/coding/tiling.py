"""Tiled E and G: any image size in bounded memory, with the untiled networks' numbers.

E runs over tiles of the padded image and G over tiles of y_hat, each tile widened by a halo
of at least the network's receptive field, so that the interior of every tile is computed
from exactly the pixels (or latents) the untiled network uses. ChannelNorm is per pixel, so
only the convolutions couple neighbours, and tile origins sit on multiples of the latent
stride, so every strided or transposed convolution sees the same phase as in the whole
image. (Batch normalization at inference is per pixel too; InstanceNorm, an ablation, is
not, and a model with it runs E and G in one tile: `whole_image`.) The range coder codes y
in h_s's strips of whole rows, top to bottom, which writes the whole latent's string:
tiling changes neither the file format nor the file.

E and G are each tiled on two levels, because their cost is split unevenly: the part at
full or near-full resolution (E's first layers, up to stride 4; G's upsampling tail) holds
wide activations per latent but reaches only a few latents, so it runs over small tiles; the
rest (most of E's halo; G's head and residual blocks, most of its arithmetic) holds little
per latent and runs over large tiles, inside which the small ones are cut. A tile's shape
is chosen from the budget to compute the fewest halo positions: full-width strips (halos on
horizontal seams only) where a strip of a useful height fits, squarer tiles where not.

Tile sides follow from a memory budget for the whole process (weights and TensorFlow
included), read at run time from a variable, so a SavedModel honours the budget it is given
after loading. When the whole image fits, there is one tile and no halo: the untiled network.
"""

from __future__ import annotations

import math

import tensorflow as tf

from hific_tf.nn.layers import ResidualBlock

DEFAULT_MEMORY_BUDGET = 2 * 2**30
# What the process holds besides the weights and the image: Python, TensorFlow,
# tensorflow-compression, the traced functions and oneDNN's caches. Measured with the
# full-size model (benchmarks/results/tiled_coding.json, 2026-12-02): 1.58 GiB resident
# after loading and tracing, of which 0.76 GiB are weights (float32, and h_s's float64
# integer kernels), so about 840 MiB; 900 leaves a margin.
RUNTIME_BYTES = 900 * 2**20
_FLOAT_BYTES = 4
# Live copies of a network's widest activation at its peak, measured with the full-size
# model (benchmarks/results/codec_speed.json: 500 bytes per pixel above the weights for E,
# 920 for G, both widest at 60 channels of full resolution); the residual blocks keep the
# head, the running sum and one temporary.
_ENCODER_COPIES = 2.5
# E's layers up to this stride form its head, run over small tiles inside the large ones;
# the head's output (4 x 4 positions of 240 channels per latent in the full-size model) is
# then a quarter of the memory per pixel of its widest activation.
_ENCODER_HEAD_STRIDE = 4
_BODY_COPIES = 3.0
_TAIL_COPIES = 4.0
# Share of the working memory that the large tiles (E after its head; G's head and residual
# blocks) may take; the small tiles inside them get the rest.
_LARGE_SHARE = 0.75
# h_s in integer mode (float64): TensorFlow's CPU transposed convolution fills a column buffer
# of k x k x filters values per input position. With its accumulators and the other layers,
# and the two networks one after the other, measured with the small preset: 116 KB per
# position of z at 96 channels (1.5 buffers of the widest layer; 217 KB with both networks
# at once).
_HYPER_COPIES = 2.0
_DOUBLE_BYTES = 8
# A strip's coding, per element of y on its rows: its means and table indexes (8 bytes), the
# index rule's float64 accumulator, crop and transpose (24), and the range coder's symbols
# with their rounding and offset temporaries (up to 4 int32 or float32 copies, 16). An
# estimate from the operations, not measured.
_STRIP_CODING_BYTES = 48


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


def _head_length(layers: list[tf.keras.layers.Layer], stride_limit: int) -> int:
    """How many of a chain's first layers run at strides up to `stride_limit` (E's head)."""
    stride = 1
    for index, layer in enumerate(layers):
        if isinstance(layer, tf.keras.layers.Conv2D):
            stride *= layer.strides[0]
            if stride > stride_limit:
                return index
    return len(layers)


def _halo(layers: list[tf.keras.layers.Layer], stride: int) -> tuple[int, int]:
    """(before, after): how many positions of a chain's output beyond a tile's own its
    inputs reach, one output position spanning `stride` input positions."""
    low, high = _interval(layers, 0, 0)
    return -(low // stride), -(-(high - stride + 1) // stride)


class Tiler(tf.Module):
    """Runs a model's E and G tile by tile, and sizes h_s's strips; built from the model's
    networks once.

    It keeps only numbers (halos, bytes per position) and the settings, never the networks,
    which the model passes to each call.
    """

    def __init__(self, encoder: tf.keras.Sequential, generator: tf.keras.Model,
                 weight_bytes: int, hyper_synthesis: tf.keras.Sequential | None = None,
                 hyper_halo: tuple[int, int] = (0, 0), whole_image: bool = False) -> None:
        """`hyper_synthesis` is one of h_s's networks where h_s runs in strips of z rows
        with `hyper_halo` rows of z beyond each strip (integer mode); None: whole.
        `whole_image`: E and G normalise over the whole image (instance normalization), so
        they run in one tile and one strip whatever the budget; h_s still runs in strips."""
        super().__init__(name="tiler")
        self.settings = TileSettings()
        self.whole_image = whole_image
        self.encoder_split = _head_length(encoder.layers, _ENCODER_HEAD_STRIDE)
        head = _convolutions(encoder.layers[:self.encoder_split])
        rest = _convolutions(encoder.layers[self.encoder_split:])
        self.head_stride = math.prod(layer.strides[0] for layer in head)
        self.stride = self.head_stride * math.prod(layer.strides[0] for layer in rest)
        # Latent p reads pixels stride*p + low ... stride*p + high; head position q reads
        # head_stride*q + low' ... head_stride*q + high'.
        self.encoder_halo = _halo(head + rest, self.stride)
        self.head_halo = _halo(head, self.head_stride)
        body = _convolutions(generator.head.layers + list(generator.residual_blocks))
        tail = _convolutions(generator.tail.layers)
        # Pixels stride*p ... stride*(p + 1) - 1 read latents p + low ... p + high.
        low, high = _interval(tail, 0, self.stride - 1)
        self.tail_halo = (-low, high)
        reach_low, reach_high = _interval(body, 0, 0)
        self.body_halo = (-reach_low, reach_high)
        self.latent_channels = (head + rest)[-1].filters
        self.head_channels = head[-1].filters
        self.feature_channels = body[-1].filters
        # E's small tiles (strips): its widest activation, per position of the head's
        # output. Its large tiles: the head's output, then either its strips and the joined
        # output, or the joined output and the rest's widest activation.
        self.head_bytes_per_position = (_ENCODER_COPIES * _FLOAT_BYTES * _widest(head, 1)
                                        * self.head_stride**2)
        self.head_output_bytes_per_latent = (_FLOAT_BYTES * self.head_channels
                                             * (self.stride // self.head_stride)**2)
        self.encoder_bytes_per_latent = self.head_output_bytes_per_latent + max(
            self.head_output_bytes_per_latent,
            _ENCODER_COPIES * _FLOAT_BYTES * _widest(rest, self.head_stride) * self.stride**2)
        self.body_bytes_per_latent = _BODY_COPIES * _FLOAT_BYTES * self.feature_channels
        self.feature_bytes_per_latent = _FLOAT_BYTES * self.feature_channels
        self.tail_bytes_per_latent = (_TAIL_COPIES * _FLOAT_BYTES * _widest(tail, self.stride)
                                      * self.stride**2)
        self.hyper_halo = hyper_halo
        self.hyper_stride, columns = (1, 0.0) if hyper_synthesis is None else _columns(
            hyper_synthesis.layers)
        self.hyper_bytes_per_position = _HYPER_COPIES * _DOUBLE_BYTES * columns
        self.fixed_bytes = weight_bytes + RUNTIME_BYTES

    def _capped(self, side: tf.Tensor) -> tf.Tensor:
        cap = self.settings.max_tile
        return tf.where(cap > 0, tf.minimum(side, cap), side)

    def _strip_rows(self, available: tf.Tensor, bytes_per_row: tf.Tensor, halo: int,
                    rows: tf.Tensor) -> tf.Tensor:
        """Interior rows of strips over `rows` rows, a haloed strip costing `bytes_per_row`
        a row within `available` bytes: all rows (no halo) when they fit; at least 1."""
        rows = tf.cast(rows, tf.float64)
        height = _fitting_rows(available, tf.cast(bytes_per_row, tf.float64), halo, rows)
        return self._capped(tf.cast(tf.clip_by_value(height, 1.0, rows), tf.int32))

    def _tile_shape(self, available: tf.Tensor, bytes_per_position: float, halo: int,
                    rows: tf.Tensor, columns: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Interior (rows, columns) of the tiles over a rows x columns grid, a haloed tile
        costing `bytes_per_position` a position within `available` bytes.

        Of the column counts 1 ... columns, the one whose tiles fit and compute the fewest
        positions in all: one column (full-width strips, halos on horizontal seams only)
        when a strip of a useful height fits, more when its halo would cost more than a
        vertical seam's. The whole grid (no halo) when it fits, or with `whole_image`;
        never smaller than twice the halo a side (or the grid), whatever the budget.
        """
        if self.whole_image:
            return rows, columns
        rows, columns = tf.cast(rows, tf.float64), tf.cast(columns, tf.float64)
        # Below tiles twice their halo a side, recomputation would dominate: those run
        # whatever the budget.
        available = tf.maximum(available, bytes_per_position * (3.0 * halo) ** 2)
        counts = tf.range(1.0, columns + 1.0, dtype=tf.float64)
        widths = tf.math.ceil(columns / counts)
        heights = _fitting_rows(available,
                                bytes_per_position * tf.minimum(widths + halo, columns),
                                halo, rows)
        fits = heights >= 1.0
        row_counts = tf.math.ceil(rows / tf.maximum(heights, 1.0))
        computed = (rows + (row_counts - 1.0) * halo) * (columns + (counts - 1.0) * halo)
        best = tf.argmin(tf.where(fits, computed, math.inf), output_type=tf.int32)
        # Nothing fits: the smallest tiles.
        best = tf.where(tf.reduce_any(fits), best, tf.size(counts) - 1)
        height = tf.clip_by_value(heights[best], 1.0, rows)
        return (self._capped(tf.cast(height, tf.int32)),
                self._capped(tf.cast(widths[best], tf.int32)))

    def _working_memory(self, rows: tf.Tensor, columns: tf.Tensor) -> tf.Tensor:
        """Bytes of the budget left for tiles and strips of a rows x columns latent grid while
        the uint8 image and one float latent are held whole (E: the caller's image, its
        strips padded as they are gathered, and y's finished tiles; h_s: the image and y, or
        y_hat's finished strips; G: y_hat and the image's finished uint8 tiles)."""
        held = (tf.cast(rows * columns, tf.float64)
                * (3.0 * self.stride**2 + _FLOAT_BYTES * self.latent_channels))
        budget = tf.cast(self.settings.memory_budget, tf.float64)
        return tf.maximum(budget - self.fixed_bytes - held, 0.0)

    def encoder_tile(self, rows: tf.Tensor, columns: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Interior (rows, columns), in latents, of E's large tiles for a rows x columns
        latent grid."""
        available = _large_share(
            tf.cast(rows * columns, tf.float64) * self.encoder_bytes_per_latent,
            self._working_memory(rows, columns))
        return self._tile_shape(available, self.encoder_bytes_per_latent,
                                sum(self.encoder_halo), rows, columns)

    def head_rows(self, rows: tf.Tensor, columns: tf.Tensor, tile_rows: tf.Tensor,
                  tile_columns: tf.Tensor) -> tf.Tensor:
        """Interior rows, in positions of the head's output, of the full-width strips that
        E's head runs over inside a large tile of tile_rows x tile_columns latents (haloed)
        of a rows x columns grid."""
        scale = self.stride // self.head_stride
        if self.whole_image:
            return scale * tile_rows
        # The finished strips live meanwhile; the rest of E not yet.
        pieces = (tf.cast(tile_rows * tile_columns, tf.float64)
                  * self.head_output_bytes_per_latent)
        available = self._working_memory(rows, columns) - pieces
        width = tf.cast(scale * tile_columns + sum(self.head_halo), tf.float64)
        return self._strip_rows(available, self.head_bytes_per_position * width,
                                sum(self.head_halo), scale * tile_rows)

    def generator_tile(self, rows: tf.Tensor, columns: tf.Tensor
                       ) -> tuple[tf.Tensor, tf.Tensor]:
        """Interior (rows, columns), in latents, of G's large tiles (head and residual
        blocks) for a rows x columns grid of y_hat."""
        body_bytes = self.body_bytes_per_latent + self.feature_bytes_per_latent
        available = _large_share(tf.cast(rows * columns, tf.float64) * body_bytes,
                                 self._working_memory(rows, columns))
        halo = sum(self.tail_halo) + sum(self.body_halo)
        return self._tile_shape(available, body_bytes, halo, rows, columns)

    def tail_tile(self, rows: tf.Tensor, columns: tf.Tensor, tile_rows: tf.Tensor,
                  tile_columns: tf.Tensor, feature_bytes: tf.Tensor
                  ) -> tuple[tf.Tensor, tf.Tensor]:
        """Interior (rows, columns), in latents, of the upsampling tail's tiles inside one
        of G's large tiles (tile_rows x tile_columns latents of a rows x columns grid, whose
        features hold `feature_bytes`)."""
        available = self._working_memory(rows, columns) - feature_bytes
        return self._tile_shape(available, self.tail_bytes_per_latent, sum(self.tail_halo),
                                tile_rows, tile_columns)

    def hyper_rows(self, rows: tf.Tensor, columns: tf.Tensor) -> tf.Tensor:
        """Rows of z per strip of h_s (both networks, one after the other) for a rows x
        columns latent grid; y is range coded strip by strip as they come. Held whole
        meanwhile: the image and y (compress) or y_hat's finished strips (decompress)."""
        z_rows = -(-rows // self.hyper_stride)
        z_columns = -(-columns // self.hyper_stride)
        per_position = (self.hyper_bytes_per_position
                        + _STRIP_CODING_BYTES * self.hyper_stride**2 * self.latent_channels)
        bytes_per_row = per_position * tf.cast(z_columns, tf.float64)
        return self._strip_rows(self._working_memory(rows, columns), bytes_per_row,
                                sum(self.hyper_halo), z_rows)

    def encode(self, encoder: tf.keras.Sequential, image: tf.Tensor) -> tf.Tensor:
        """E of a uint8 [H, W, 3] image reflect-padded to H', W', multiples of the latent
        stride s (as `reflect_indices` pads) → y [1, H'/s, W'/s, C].

        Each large tile runs E's head over full-width strips of its (haloed) area, each strip
        reaching the pixels that make all of its values exact, then the rest of E. A strip
        gathers its pixels, padding included, from the image and casts them to float: no
        padded or float copy of the whole image is made.
        """
        stride, head_stride = self.stride, self.head_stride
        scale = stride // head_stride
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        rows, columns = (height + stride - 1) // stride, (width + stride - 1) // stride
        pixel_rows = reflect_indices(height, stride * rows)
        pixel_columns = reflect_indices(width, stride * columns)
        before, after = self.encoder_halo
        head_before, head_after = self.head_halo
        head_layers = encoder.layers[:self.encoder_split]
        rest_layers = encoder.layers[self.encoder_split:]
        tile_rows, tile_columns = self.encoder_tile(rows, columns)

        def tile(top, bottom, left, right):
            y0, y1 = tf.maximum(top - before, 0), tf.minimum(bottom + after, rows)
            x0, x1 = tf.maximum(left - before, 0), tf.minimum(right + after, columns)
            c0 = tf.maximum(scale * x0 - head_before, 0)
            c1 = tf.minimum(scale * x1 + head_after, scale * columns)

            def strip(top_, bottom_):
                top_, bottom_ = scale * y0 + top_, scale * y0 + bottom_
                r0 = tf.maximum(top_ - head_before, 0)
                r1 = tf.minimum(bottom_ + head_after, scale * rows)
                pixels = tf.gather(
                    tf.gather(image, pixel_rows[head_stride * r0:head_stride * r1]),
                    pixel_columns[head_stride * c0:head_stride * c1], axis=1)
                hidden = tf.cast(pixels, tf.float32)[tf.newaxis] / 255.0
                for layer in head_layers:
                    hidden = layer(hidden)
                return hidden[0, top_ - r0:bottom_ - r0, scale * x0 - c0:scale * x1 - c0]

            strip_rows = self.head_rows(rows, columns, y1 - y0, x1 - x0)
            y = join_rows(strip, spans(scale * (y1 - y0), strip_rows), self.head_channels,
                          tf.float32)[tf.newaxis]
            for layer in rest_layers:
                y = layer(y)
            return y[0, top - y0:bottom - y0, left - x0:right - x0]

        return _grid(tile, spans(rows, tile_rows), spans(columns, tile_columns),
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
        body_rows, body_columns = self.generator_tile(latent_rows, latent_columns)

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
            tail_rows, tail_columns = self.tail_tile(latent_rows, latent_columns,
                                                     bottom - top, right - left, feature_bytes)

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

            return _grid(tail_tile, spans(bottom - top, tail_rows),
                         spans(right - left, tail_columns), 3, tf.uint8)

        return _grid(body_tile, spans(rows, body_rows), spans(columns, body_columns), 3,
                     tf.uint8)


def _fitting_rows(available: tf.Tensor, bytes_per_row: tf.Tensor, halo: int,
                  rows: tf.Tensor) -> tf.Tensor:
    """Interior rows of a strip whose rows cost `bytes_per_row` each (elementwise): all
    `rows` when they fit `available` bytes, else what fits less the halo (below 1: none)."""
    fitting = tf.floor(tf.maximum(available, 0.0) / tf.maximum(bytes_per_row, 1.0))
    return tf.where(fitting >= rows, rows, fitting - halo)


def _large_share(whole: tf.Tensor, available: tf.Tensor) -> tf.Tensor:
    """What large tiles may take of `available` bytes: all they need (`whole`) if that
    leaves the small tiles inside them half, else _LARGE_SHARE."""
    return tf.where(whole <= 0.5 * available, whole, _LARGE_SHARE * available)


def _columns(layers: list[tf.keras.layers.Layer]) -> tuple[int, float]:
    """A chain's upsampling factor, and the most values per position of its input that
    one of its transposed convolutions' column buffers holds (k x k x filters per position
    of that layer's input): TensorFlow's CPU kernel for float64 fills one for its whole
    input."""
    scale, widest = 1, 0.0
    for layer in layers:
        if isinstance(layer, tf.keras.layers.Conv2DTranspose):
            widest = max(widest, scale**2 * math.prod(layer.kernel_size) * layer.filters)
            scale *= layer.strides[0]
        else:
            scale //= layer.strides[0]
    return scale, widest


def reflect_indices(size: tf.Tensor, padded: tf.Tensor) -> tf.Tensor:
    """Positions 0 ... padded - 1 of an axis of `size` positions reflect-padded at its end:
    the source position of each. The mirror repeats as often as needed, so sizes smaller
    than the padding (down to 1) are handled too."""
    period = tf.maximum(2 * size - 2, 1)
    position = tf.range(padded) % period
    return tf.where(position < size, position, period - position)


def to_uint8(image: tf.Tensor) -> tf.Tensor:
    """Rounds and clips an image on the [0, 1] scale to uint8."""
    return tf.saturate_cast(tf.round(image * 255.0), tf.uint8)


def spans(length: tf.Tensor, side: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Starts and ends of ceil(length / side) near-equal spans covering 0 ... length."""
    count = tf.maximum((length + side - 1) // side, 1)
    size = (length + count - 1) // count
    starts = tf.range(count) * size
    return starts, tf.minimum(starts + size, length)


def join_rows(strip, rows: tuple[tf.Tensor, tf.Tensor], channels: int,
              dtype: tf.DType) -> tf.Tensor:
    """Calls strip(top, bottom) → [bottom - top, W, channels] for every span of `rows`, one
    after another, and joins the results along the first axis."""
    starts, ends = rows

    def one_strip(i, pieces):
        return i + 1, pieces.write(i, strip(starts[i], ends[i]))

    pieces = tf.TensorArray(dtype, size=tf.size(starts), infer_shape=False,
                            element_shape=tf.TensorShape([None, None, channels]))
    _, pieces = tf.while_loop(lambda i, _: i < tf.size(starts), one_strip, [0, pieces],
                              parallel_iterations=1)
    return pieces.concat()


def _grid(tile, rows: tuple[tf.Tensor, tf.Tensor], columns: tuple[tf.Tensor, tf.Tensor],
          channels: int, dtype: tf.DType) -> tf.Tensor:
    """Calls tile(top, bottom, left, right) → [bottom - top, right - left, channels] for
    every cell of a grid, one after another, and joins the results into one image."""
    def band(top, bottom):
        def one_tile(left, right):
            # join_rows joins along the first axis: join the tiles transposed.
            return tf.transpose(tile(top, bottom, left, right), [1, 0, 2])

        return tf.transpose(join_rows(one_tile, columns, channels, dtype), [1, 0, 2])

    return join_rows(band, rows, channels, dtype)
