"""The training optimizer: Adam at the scheduled learning rate, with h_a's kernels optimised
in the authors' RDFT parameterisation.

Two facts of the authors' step live here (docs/training.md, "The authors' step"):

- Every optimizer applies the scheduled learning rate at every update (1e-4, then 1e-5 from
  the paper's step 500 000). Keras evaluates a plain callable learning rate once, when the
  optimizer is built, so the rate is read from the schedule inside each variable update.
- The authors' h_a (tensorflow-compression 1.x SignalConv2D) trains the real DFT
  coefficients r of each kernel, k = M r with M the orthonormal inverse RDFT matrix of the
  kernel's spatial size. Adam normalises per coordinate, so training r is not training k.
  Here the variable stays the spatial kernel k (every stored form keeps it), and Adam runs on
  r = Mᵀ k: the gradient is taken to r (Mᵀ g), the moments live in r's coordinates, and the
  step is taken back to k (M Δr). In exact arithmetic that is the authors' update.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf


def _packed_rfft(values: np.ndarray, axis: int) -> np.ndarray:
    """The real DFT along `axis` in packed order: y0, Re y1, Im y1, Re y2, ... (n values)."""
    size = values.shape[axis]
    spectrum = np.moveaxis(np.fft.rfft(values, axis=axis), axis, -1)
    parts = [spectrum[..., :1].real]
    for k in range(1, (size - 1) // 2 + 1):
        parts += [spectrum[..., k:k + 1].real, spectrum[..., k:k + 1].imag]
    if size % 2 == 0:
        parts.append(spectrum[..., size // 2:size // 2 + 1].real)
    return np.moveaxis(np.concatenate(parts, axis=-1), -1, axis)


def irdft_matrix(shape: Sequence[int]) -> np.ndarray:
    """The orthonormal inverse real-DFT matrix M [n, n] (n = prod(shape)) of
    tensorflow-compression 1.x's RDFT parameterizer: kernel[pixels, :] = M @ r.

    Each spatial axis gets the packed real DFT; every coefficient but the constant one (and
    the Nyquist one of an even size) is scaled by √2, and the whole by 1/√n, which makes M
    orthonormal (M⁻¹ = Mᵀ).
    """
    size = int(np.prod(shape))
    matrix = np.identity(size).reshape((size, *shape))
    for axis, length in enumerate(shape, start=1):
        matrix = _packed_rfft(matrix, axis)
        scaled = [slice(None)] * matrix.ndim
        scaled[axis] = slice(1, None) if length % 2 else slice(1, -1)
        matrix[tuple(scaled)] *= np.sqrt(2.0)
    return (matrix / np.sqrt(size)).reshape(size, size)


class ScheduledAdam(tf.keras.optimizers.Adam):
    """Adam (TF1 AdamOptimizer's update) whose learning rate is `learning_rate()` at every
    update, and which optimises the kernels in `rdft_kernels` in RDFT coordinates.

    `learning_rate` is a function of no arguments (reading the training step), called in
    every update; the `learning_rate` property returns the rate the next update applies.
    """

    def __init__(self, learning_rate: Callable[[], tf.Tensor],
                 rdft_kernels: Sequence[tf.Variable] = (), **kwargs) -> None:
        # The float stands in for Keras' learning-rate variable (checkpoints keep it); the
        # rate applied is the schedule's.
        super().__init__(learning_rate=float(learning_rate()), **kwargs)
        self._scheduled_learning_rate = learning_rate
        self._rdft_kernels = tuple(rdft_kernels)
        self._rdft_bases: dict[str, np.ndarray] = {}

    @property
    def learning_rate(self) -> tf.Tensor:
        return tf.convert_to_tensor(self._scheduled_learning_rate(), tf.float32)

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        tf.keras.optimizers.Adam.learning_rate.fset(self, value)

    def build(self, var_list: Sequence[tf.Variable]) -> None:
        super().build(var_list)
        for kernel in self._rdft_kernels:
            self._rdft_bases[self._var_key(kernel)] = irdft_matrix(kernel.shape[:2])

    def update_step(self, gradient: tf.Tensor, variable: tf.Variable) -> None:
        basis = self._rdft_bases.get(self._var_key(variable))
        if basis is None:
            super().update_step(gradient, variable)
            return
        dtype = variable.dtype
        basis = tf.constant(basis, dtype)
        taps = basis.shape[0]
        # r = Mᵀ k, so ∂L/∂r = Mᵀ ∂L/∂k; the slots hold r's moments in k's shape.
        gradient = tf.reshape(tf.matmul(basis, tf.reshape(gradient, [taps, -1]),
                                        transpose_a=True), variable.shape)
        local_step = tf.cast(self.iterations + 1, dtype)
        beta_1_power = tf.pow(tf.cast(self.beta_1, dtype), local_step)
        beta_2_power = tf.pow(tf.cast(self.beta_2, dtype), local_step)
        alpha = (tf.cast(self.learning_rate, dtype) * tf.sqrt(1 - beta_2_power) /
                 (1 - beta_1_power))
        index = self._index_dict[self._var_key(variable)]
        m, v = self._momentums[index], self._velocities[index]
        m.assign_add((gradient - m) * (1 - self.beta_1))
        v.assign_add((tf.square(gradient) - v) * (1 - self.beta_2))
        step = tf.reshape((m * alpha) / (tf.sqrt(v) + self.epsilon), [taps, -1])
        variable.assign_sub(tf.reshape(tf.matmul(basis, step), variable.shape))

    def _compute_current_learning_rate(self) -> None:
        """Nothing to precompute: every update reads the schedule."""
