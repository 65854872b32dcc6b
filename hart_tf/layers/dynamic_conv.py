"""Dynamic filter convolution: a per-example kernel predicted from a conditioning vector."""

from __future__ import annotations

import math

import keras
from keras import ops


def _unit_scaling(factor: float) -> keras.initializers.Initializer:
    # Uniform(+-factor * sqrt(3 / fan_in)): TF1's uniform_unit_scaling_initializer on a matrix.
    return keras.initializers.VarianceScaling(
        scale=factor**2, mode="fan_in", distribution="uniform"
    )


def _unit_scaling_vector(factor: float) -> keras.initializers.Initializer:
    # The same TF1 initialiser on a vector takes fan_in = 1.
    limit = factor * math.sqrt(3.0)
    return keras.initializers.RandomUniform(-limit, limit)


@keras.saving.register_keras_serializable(package="hart_tf")
class DynamicConv(keras.layers.Layer):
    """SAME convolution with a kernel and bias predicted per example from a conditioning vector.

    Two linear Dense heads map the conditioning vector to a kernel (k, k, Cin, filters) and an
    adaptive bias (filters); a static learned bias is added too, then the activation. As in
    the original, the heads are initialised Uniform(+-f * sqrt(3 / D)) for the matrix and
    Uniform(+-f * sqrt(3)) for the bias vector, with f = `weight_factor` for the kernel head and
    `bias_factor` for the bias head; the static bias is Uniform(+-sqrt(6 / (1 + filters))) (TF1's
    default Glorot on a (1, 1, 1, filters) variable). Any hidden "parameter layer" that maps
    the conditioning first belongs to the caller. The convolution is batched: one einsum over
    the k*k shifted views of the padded input, no loop over examples.

    Args:
        kernel_size: odd side k of the square kernel.
        filters: output channels.
        activation: activation applied to the output (a Keras activation name or None).
        weight_factor: initialisation scale of the kernel head.
        bias_factor: initialisation scale of the adaptive-bias head.

    Call arguments:
        inputs: (B, h, w, Cin) feature maps.
        conditioning: (B, D) vectors the kernels are predicted from.

    Returns:
        A tuple `(outputs, l2)`: outputs (B, h, w, filters); l2 (B,) the per-example weight
        decay of the predicted kernel and adaptive bias, sum of squares / 2.

    Reference:
        Kosiorek et al., NIPS 2017, section "Appearance Attention" (dorsal stream);
        De Brabandere et al., "Dynamic Filter Networks", NIPS 2016.
    """

    def __init__(
        self,
        kernel_size: int,
        filters: int,
        activation: str | None = "elu",
        weight_factor: float = 0.1,
        bias_factor: float = 2.0**0.5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
        if int(filters) < 1:
            raise ValueError(f"filters must be positive, got {filters}")
        self.kernel_size = int(kernel_size)
        self.filters = int(filters)
        self.activation = keras.activations.get(activation)
        self.weight_factor = float(weight_factor)
        self.bias_factor = float(bias_factor)

    def build(self, inputs_shape, conditioning_shape):
        if len(inputs_shape) != 4 or inputs_shape[-1] is None:
            raise ValueError(f"DynamicConv inputs must be (B, h, w, Cin), got {inputs_shape}")
        if len(conditioning_shape) != 2 or conditioning_shape[-1] is None:
            raise ValueError(f"DynamicConv conditioning must be (B, D), got {conditioning_shape}")
        self.in_channels = int(inputs_shape[-1])
        k = self.kernel_size
        self.kernel_head = keras.layers.Dense(
            k * k * self.in_channels * self.filters,
            kernel_initializer=_unit_scaling(self.weight_factor),
            bias_initializer=_unit_scaling_vector(self.weight_factor),
            name="kernel_head",
            dtype=self.dtype_policy,
        )
        self.bias_head = keras.layers.Dense(
            self.filters,
            kernel_initializer=_unit_scaling(self.bias_factor),
            bias_initializer=_unit_scaling_vector(self.bias_factor),
            name="bias_head",
            dtype=self.dtype_policy,
        )
        self.kernel_head.build(conditioning_shape)
        self.bias_head.build(conditioning_shape)
        limit = math.sqrt(6.0 / (1.0 + self.filters))
        self.static_bias = self.add_weight(
            name="static_bias",
            shape=(self.filters,),
            initializer=keras.initializers.RandomUniform(-limit, limit),
        )

    def call(self, inputs, conditioning):
        k, cin = self.kernel_size, self.in_channels
        kernel = self.kernel_head(conditioning)  # (B, k*k*Cin*F), laid out as (k, k, Cin, F)
        bias = self.bias_head(conditioning)  # (B, F)
        kernel = ops.reshape(kernel, (-1, k * k * cin, self.filters))  # (B, k*k*Cin, F)
        if k == 1:
            patches = inputs  # (B, h, w, Cin)
        else:
            p = k // 2
            h, w = ops.shape(inputs)[1], ops.shape(inputs)[2]
            padded = ops.pad(inputs, [(0, 0), (p, p), (p, p), (0, 0)])  # (B, h+2p, w+2p, Cin)
            views = [padded[:, dy : dy + h, dx : dx + w, :] for dy in range(k) for dx in range(k)]
            # (dy, dx, c) order along channels matches the kernel's (k, k, Cin) layout.
            patches = ops.concatenate(views, axis=-1)  # (B, h, w, k*k*Cin)
        outputs = ops.einsum("bhwp,bpf->bhwf", patches, kernel)  # (B, h, w, F)
        outputs = self.activation(outputs + bias[:, None, None, :] + self.static_bias)
        l2 = 0.5 * (ops.sum(ops.square(kernel), axis=(1, 2)) + ops.sum(ops.square(bias), axis=1))
        return outputs, l2

    def compute_output_shape(self, inputs_shape, conditioning_shape):
        return (*inputs_shape[:3], self.filters), (inputs_shape[0],)

    def get_config(self):
        config = super().get_config()
        config.update(
            kernel_size=self.kernel_size,
            filters=self.filters,
            activation=keras.activations.serialize(self.activation),
            weight_factor=self.weight_factor,
            bias_factor=self.bias_factor,
        )
        return config
