import keras
import numpy as np
import pytest
from layer_test_case import run_layer_test

from hart_tf.layers import LocalResponseNormalization


def lrn_reference(x, depth_radius, alpha, beta, bias):
    out = np.empty_like(x)
    channels = x.shape[-1]
    for d in range(channels):
        lo, hi = max(0, d - depth_radius), min(channels, d + depth_radius + 1)
        out[..., d] = x[..., d] / (bias + alpha * np.sum(x[..., lo:hi] ** 2, axis=-1)) ** beta
    return out


def test_layer_contract():
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 7)).astype("float32")
    run_layer_test(
        LocalResponseNormalization,
        {"depth_radius": 2, "alpha": 0.3},
        [x],
        expected_num_trainable_weights=0,
        expected_output_shape=(2, 3, 3, 7),
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # AlexNet's numbers: radius 2, alpha 2e-5, beta 0.75, bias 1
        {"depth_radius": 1, "alpha": 0.5, "beta": 0.6, "bias": 2.0},
        {"depth_radius": 4, "alpha": 0.1},  # window wider than the 6 channels
        {"depth_radius": 0, "alpha": 1.0},
    ],
)
def test_matches_numpy_formula(kwargs):
    x = 3.0 * np.random.default_rng(1).normal(size=(2, 4, 5, 6)).astype("float32")
    layer = LocalResponseNormalization(**kwargs)
    expected = lrn_reference(
        x.astype("float64"), layer.depth_radius, layer.alpha, layer.beta, layer.bias
    )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, rtol=1e-5)
    if kwargs.get("alpha", 2e-5) >= 0.1:  # the normalisation visibly changes the input
        assert np.max(np.abs(expected - x)) > 0.1


def test_defaults_are_alexnet():
    layer = LocalResponseNormalization()
    assert (layer.depth_radius, layer.alpha, layer.beta, layer.bias) == (2, 2e-5, 0.75, 1.0)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="compares with tf.nn")
def test_matches_tf_nn_lrn():
    import tensorflow as tf

    x = 5.0 * np.random.default_rng(2).normal(size=(1, 3, 3, 9)).astype("float32")
    expected = tf.nn.local_response_normalization(x, depth_radius=3, alpha=0.2, beta=0.7, bias=1.5)
    actual = LocalResponseNormalization(depth_radius=3, alpha=0.2, beta=0.7, bias=1.5)(x)
    np.testing.assert_allclose(np.asarray(actual), expected.numpy(), rtol=1e-5)


def test_rejects_bad_radius():
    with pytest.raises(ValueError, match="depth_radius"):
        LocalResponseNormalization(depth_radius=-1)
