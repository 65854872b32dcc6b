import keras
import numpy as np
import pytest
from keras import ops
from layer_test_case import run_layer_test

from hart_tf.layers import RecurrentBatchNormalization


def to_np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype="float64")


def batch(seed=0, shape=(4, 3, 3, 5)):
    rng = np.random.default_rng(seed)
    return (2.0 + 3.0 * rng.normal(size=shape)).astype("float32")


def test_layer_contract():
    run_layer_test(
        RecurrentBatchNormalization,
        {"momentum": 0.9, "epsilon": 1e-2},
        [batch()],
        call_kwargs={"training": True},
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=2,
        expected_output_shape=[(4, 3, 3, 5), (5,), (5,)],
    )


def test_training_uses_and_returns_batch_statistics():
    x = batch()
    layer = RecurrentBatchNormalization(epsilon=1e-3)
    layer.build(x.shape)
    layer.gamma.assign(np.linspace(0.5, 2.0, 5))
    layer.beta.assign(np.linspace(-1.0, 1.0, 5))
    y, mean, var = layer(x, training=True)
    xd = x.astype("float64")
    np.testing.assert_allclose(to_np(mean), xd.mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(to_np(var), xd.var(axis=(0, 1, 2)), rtol=1e-4)
    expected = (xd - xd.mean((0, 1, 2))) / np.sqrt(xd.var((0, 1, 2)) + 1e-3)
    expected = expected * np.linspace(0.5, 2.0, 5) + np.linspace(-1.0, 1.0, 5)
    np.testing.assert_allclose(to_np(y), expected, atol=1e-4)
    # Nothing was assigned.
    np.testing.assert_array_equal(to_np(layer.moving_mean), np.zeros(5))
    np.testing.assert_array_equal(to_np(layer.moving_variance), np.ones(5))


def test_matches_keras_batch_normalization():
    x = batch(seed=3)
    ours = RecurrentBatchNormalization(momentum=0.95, epsilon=1e-3)
    ref = keras.layers.BatchNormalization(momentum=0.95, epsilon=1e-3)
    y, mean, var = ours(x, training=True)
    np.testing.assert_allclose(to_np(y), to_np(ref(x, training=True)), atol=1e-4)
    ours.update_moving_stats(mean, var)
    np.testing.assert_allclose(to_np(ours.moving_mean), to_np(ref.moving_mean), rtol=1e-5)
    np.testing.assert_allclose(to_np(ours.moving_variance), to_np(ref.moving_variance), rtol=1e-5)
    np.testing.assert_allclose(to_np(ours(x)[0]), to_np(ref(x, training=False)), atol=1e-4)


def test_update_and_inference_use_moving_statistics():
    x = batch()
    layer = RecurrentBatchNormalization(momentum=0.9)
    layer(x)
    layer.update_moving_stats(np.full(5, 2.0), np.full(5, 3.0))
    np.testing.assert_allclose(to_np(layer.moving_mean), np.full(5, 0.2), rtol=1e-6)
    np.testing.assert_allclose(to_np(layer.moving_variance), np.full(5, 1.2), rtol=1e-6)
    y, mean, var = layer(x, training=False)
    np.testing.assert_allclose(to_np(mean), np.full(5, 0.2), rtol=1e-6)
    np.testing.assert_allclose(to_np(y), (x - 0.2) / np.sqrt(1.2 + 1e-3), atol=1e-4)


def test_runs_inside_scan():
    xs = np.stack([batch(seed=s, shape=(4, 5)) for s in range(3)])  # (T, B, C)
    layer = RecurrentBatchNormalization()
    layer.build(xs.shape[1:])

    def step(carry, x):
        _, mean, var = layer(x, training=True)
        stats = ops.stack([mean, var])  # (2, C)
        # Keras' TF scan wants ys shaped like the carry.
        return carry + stats, stats

    _, stats = ops.scan(step, ops.zeros((2, 5)), xs)  # (T, 2, C)
    means, variances = stats[:, 0], stats[:, 1]
    np.testing.assert_allclose(to_np(means), xs.mean(axis=1), rtol=1e-4, atol=1e-5)
    layer.update_moving_stats(ops.mean(means, axis=0), ops.mean(variances, axis=0))
    np.testing.assert_allclose(to_np(layer.moving_mean), 0.05 * xs.mean(axis=(0, 1)), rtol=1e-4)


def test_validation():
    with pytest.raises(ValueError, match="momentum"):
        RecurrentBatchNormalization(momentum=1.0)
