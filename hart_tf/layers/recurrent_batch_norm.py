"""Batch normalisation that returns its batch statistics instead of assigning them."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="hart_tf")
class RecurrentBatchNormalization(keras.layers.Layer):
    """Batch normalisation (scale and centre) usable inside a `jax.lax.scan` recurrence.

    In training it normalises with the batch mean and (biased) variance over all axes but the
    last and returns them; it never assigns variables, because an assignment inside a JAX scan
    leaks tracers. The caller averages the returned statistics over time and calls
    `update_moving_stats(mean, var)` outside the loop:
    `moving = momentum * moving + (1 - momentum) * new`. At inference it normalises with the
    moving statistics and returns those.

    Args:
        momentum: decay of the moving averages (0.95 in the original).
        epsilon: added to the variance.

    Call arguments:
        x: (..., C) activations.
        training: use batch statistics (True) or the moving ones.

    Returns:
        A tuple `(y, mean, var)`: y of x's shape; mean and var (C,), the statistics used.

    Reference:
        Ioffe & Szegedy, "Batch Normalization", ICML 2015, algorithm 1; Kosiorek et al.,
        NIPS 2017, section "Appearance Attention" (ventral stream).
    """

    def __init__(self, momentum: float = 0.95, epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if epsilon <= 0.0:
            raise ValueError(f"epsilon must be positive, got {epsilon}")
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"RecurrentBatchNormalization needs a known last axis: {input_shape}")
        shape = (int(channels),)
        self.gamma = self.add_weight(name="gamma", shape=shape, initializer="ones")
        self.beta = self.add_weight(name="beta", shape=shape, initializer="zeros")
        self.moving_mean = self.add_weight(
            name="moving_mean", shape=shape, initializer="zeros", trainable=False
        )
        self.moving_variance = self.add_weight(
            name="moving_variance", shape=shape, initializer="ones", trainable=False
        )

    def call(self, x, training=False):
        if training:
            mean, var = ops.moments(x, axes=list(range(len(x.shape) - 1)))  # (C,), (C,)
        else:
            mean = ops.cast(self.moving_mean, x.dtype)
            var = ops.cast(self.moving_variance, x.dtype)
        inv = ops.rsqrt(var + self.epsilon) * ops.cast(self.gamma, x.dtype)
        y = (x - mean) * inv + ops.cast(self.beta, x.dtype)
        return y, mean, var

    def update_moving_stats(self, mean, var) -> None:
        """Moves the moving averages towards `mean` and `var` (each (C,)); call outside loops."""
        m = self.momentum
        dtype = self.moving_mean.dtype
        self.moving_mean.assign(m * self.moving_mean + (1.0 - m) * ops.cast(mean, dtype))
        self.moving_variance.assign(m * self.moving_variance + (1.0 - m) * ops.cast(var, dtype))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape), (input_shape[-1],), (input_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(momentum=self.momentum, epsilon=self.epsilon)
        return config
