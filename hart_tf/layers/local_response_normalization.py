"""Cross-channel local response normalisation (AlexNet's LRN) in keras.ops."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="hart_tf")
class LocalResponseNormalization(keras.layers.Layer):
    """Divides each activation by a power of the summed squares of its channel neighbours.

    `y[..., d] = x[..., d] / (bias + alpha * sum(x[..., d - r : d + r + 1] ** 2)) ** beta`,
    the window clipped at the first and last channel; the same semantics as
    `tf.nn.local_response_normalization` (alpha multiplies the plain sum, unlike Caffe where it
    is divided by the window size: Caffe's alpha=1e-4 over 5 channels is 2e-5 here). The
    defaults are the values the HART AlexNet used after conv1 and conv2.

    Args:
        depth_radius: half-width r of the channel window.
        alpha: scale of the sum of squares.
        beta: exponent.
        bias: additive constant.

    Call arguments:
        inputs: (..., C) activations, channels last.

    Returns:
        Tensor of the input's shape.

    Reference:
        Krizhevsky et al., "ImageNet Classification with Deep Convolutional Neural Networks",
        NIPS 2012, section 3.3.
    """

    def __init__(
        self,
        depth_radius: int = 2,
        alpha: float = 2e-5,
        beta: float = 0.75,
        bias: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(depth_radius) != depth_radius or depth_radius < 0:
            raise ValueError(f"depth_radius must be a non-negative integer, got {depth_radius}")
        self.depth_radius = int(depth_radius)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.bias = float(bias)

    def call(self, inputs):
        r = self.depth_radius
        channels = inputs.shape[-1]
        squares = ops.square(inputs)
        pad = [(0, 0)] * (len(inputs.shape) - 1) + [(r, r)]
        padded = ops.pad(squares, pad)  # (..., C + 2r)
        # 2r + 1 static slices: cheaper and exact compared to a cumulative sum.
        window = padded[..., 0:channels]
        for offset in range(1, 2 * r + 1):
            window = window + padded[..., offset : offset + channels]
        return inputs / ops.power(self.bias + self.alpha * window, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            depth_radius=self.depth_radius, alpha=self.alpha, beta=self.beta, bias=self.bias
        )
        return config
