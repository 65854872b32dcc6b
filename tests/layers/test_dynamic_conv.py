import math

import keras
import numpy as np
import pytest
from layer_test_case import run_layer_test

from hart_tf.layers import DynamicConv


def to_np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype="float64")


def elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def dynamic_conv_reference(layer, inputs, conditioning):
    """Predicts each example's kernel and convolves it alone, pixel by pixel."""
    k, filters = layer.kernel_size, layer.filters
    batch, height, width, cin = inputs.shape
    kernels = conditioning @ to_np(layer.kernel_head.kernel) + to_np(layer.kernel_head.bias)
    biases = conditioning @ to_np(layer.bias_head.kernel) + to_np(layer.bias_head.bias)
    kernels = kernels.reshape(batch, k, k, cin, filters)
    p = k // 2
    padded = np.pad(inputs, ((0, 0), (p, p), (p, p), (0, 0)))
    out = np.zeros((batch, height, width, filters))
    for b in range(batch):
        for i in range(height):
            for j in range(width):
                patch = padded[b, i : i + k, j : j + k]  # (k, k, Cin)
                out[b, i, j] = np.tensordot(patch, kernels[b], axes=3) + biases[b]
    out = elu(out + to_np(layer.static_bias))
    l2 = 0.5 * (np.sum(kernels**2, axis=(1, 2, 3, 4)) + np.sum(biases**2, axis=1))
    return out, l2


def data(batch=3, size=(5, 6), cin=4, dim=7, seed=0):
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(batch, *size, cin)).astype("float32")
    conditioning = rng.normal(size=(batch, dim)).astype("float32")
    return inputs, conditioning


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_layer_contract(kernel_size):
    inputs, conditioning = data()
    run_layer_test(
        DynamicConv,
        {"kernel_size": kernel_size, "filters": 2},
        [inputs, conditioning],
        expected_num_trainable_weights=5,  # two Dense heads (kernel, bias) and the static bias
        expected_output_shape=[(3, 5, 6, 2), (3,)],
    )


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_matches_per_example_convolution(kernel_size):
    inputs, conditioning = data()
    layer = DynamicConv(kernel_size, filters=2)
    outputs, l2 = layer(inputs, conditioning)
    expected, expected_l2 = dynamic_conv_reference(layer, inputs, conditioning)
    np.testing.assert_allclose(to_np(outputs), expected, atol=1e-5)
    np.testing.assert_allclose(to_np(l2), expected_l2, rtol=1e-5)
    # Different conditioning gives different kernels, hence different outputs per example.
    assert not np.allclose(to_np(outputs)[0], to_np(layer(inputs[:1], conditioning[1:2])[0])[0])


def test_initialisers_follow_the_original():
    dim, cin, filters = 50, 4, 5
    layer = DynamicConv(3, filters)
    layer(*data(cin=cin, dim=dim))
    checks = [
        (layer.kernel_head.kernel, 0.1 * math.sqrt(3 / dim)),
        (layer.kernel_head.bias, 0.1 * math.sqrt(3)),
        (layer.bias_head.kernel, math.sqrt(2) * math.sqrt(3 / dim)),
        (layer.bias_head.bias, math.sqrt(2) * math.sqrt(3)),
        (layer.static_bias, math.sqrt(6 / (1 + filters))),
    ]
    for variable, limit in checks:
        values = np.abs(to_np(variable)).astype("float64")
        # The limit rounded to float32 may sit one ulp above the float64 value.
        assert values.max() <= float(np.float32(limit)) * (1 + 1e-6), variable.path
    # The large kernel head fills its range.
    assert np.abs(to_np(layer.kernel_head.kernel)).max() > 0.95 * checks[0][1]


def test_validation():
    with pytest.raises(ValueError, match="odd"):
        DynamicConv(2, 4)
    with pytest.raises(ValueError, match="conditioning must be"):
        DynamicConv(1, 4)(np.zeros((1, 3, 3, 2), "float32"), np.zeros((1, 2, 2), "float32"))
