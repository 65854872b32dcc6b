import keras
import numpy as np
import pytest
from layer_test_case import run_layer_test

from hart_tf.layers import ALEXNET_SHAPES, AlexNetV1, SmallV1, load_alexnet_weights


def glimpses(batch, size, seed=0):
    return np.random.default_rng(seed).uniform(size=(batch, *size, 3)).astype("float32")


def fake_alexnet(seed=0, **overrides):
    """A dict shaped like bvlc_alexnet.npy: conv1-conv5 and fc6-fc8 -> [W, b]."""
    rng = np.random.default_rng(seed)
    weights = {
        name: [rng.normal(scale=0.01, size=w).astype("float32"), rng.normal(size=b)]
        for name, (w, b) in ALEXNET_SHAPES.items()
    }
    weights["conv4"] = [np.zeros((3, 3, 192, 384), "float32"), np.zeros(384, "float32")]
    weights["fc8"] = [np.zeros((4, 10), "float32"), np.zeros(10, "float32")]
    weights.update(overrides)
    return weights


def save_npy(path, weights):
    np.save(path, np.array(weights, dtype=object), allow_pickle=True)
    return path


def test_alexnet_contract():
    layer = run_layer_test(
        AlexNetV1,
        {},
        [glimpses(1, (56, 56))],
        expected_num_trainable_weights=6,
        expected_output_shape=(1, 14, 14, 384),
        atol=1e-4,
    )
    assert layer.count_params() == 1_227_520


def test_small_v1_contract():
    layer = run_layer_test(
        SmallV1,
        {"channels": 32},
        [glimpses(2, (28, 28))],
        expected_num_trainable_weights=6,
        expected_output_shape=(2, 7, 7, 32),
    )
    assert layer.count_params() == 15_104


def test_small_v1_stride_2_keeps_conv2_resolution():
    layer = run_layer_test(
        SmallV1,
        {"channels": 8, "stride": 2},
        [glimpses(2, (28, 28))],
        expected_num_trainable_weights=6,
        expected_output_shape=(2, 14, 14, 8),
    )
    # Same kernels as stride 4 (only conv2's stride changes).
    four = SmallV1(channels=8)
    four.build((None, 28, 28, 3))
    assert layer.count_params() == four.count_params()
    with pytest.raises(ValueError, match="stride must be 2 or 4"):
        SmallV1(stride=3)


def test_output_shapes():
    assert AlexNetV1()(glimpses(1, (28, 28))).shape == (1, 7, 7, 384)
    assert SmallV1(channels=8)(glimpses(3, (28, 36))).shape == (3, 7, 9, 8)


@pytest.mark.parametrize("cls", [AlexNetV1, SmallV1])
def test_subtract_mean_ignores_per_channel_offsets(cls):
    x = glimpses(1, (28, 28))
    shifted = x + np.array([0.3, -0.2, 0.5], "float32")
    layer = cls()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(shifted)), keras.ops.convert_to_numpy(layer(x)), atol=1e-5
    )
    raw = cls(subtract_mean=False)
    raw(x)
    raw.set_weights(layer.get_weights())
    assert not np.allclose(keras.ops.convert_to_numpy(raw(shifted)), raw(x), atol=1e-5)


def test_load_alexnet_weights(tmp_path):
    weights = fake_alexnet()
    path = save_npy(tmp_path / "bvlc_alexnet.npy", weights)
    layer = AlexNetV1()
    load_alexnet_weights(layer, path)  # builds the layer itself
    for name in ("conv1", "conv2", "conv3"):
        conv = getattr(layer, name)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(conv.kernel), weights[name][0])
        np.testing.assert_allclose(keras.ops.convert_to_numpy(conv.bias), weights[name][1])
    # conv2 keeps Caffe's grouping: output half g sees only input half g.
    x = glimpses(1, (28, 28))
    conv1_out = layer.lrn1(layer.conv1(x - np.mean(x, axis=(1, 2), keepdims=True)))
    first_half_zeroed = keras.ops.concatenate(
        [keras.ops.zeros_like(conv1_out[..., :48]), conv1_out[..., 48:]], axis=-1
    )
    a = keras.ops.convert_to_numpy(layer.conv2(conv1_out))
    b = keras.ops.convert_to_numpy(layer.conv2(first_half_zeroed))
    np.testing.assert_allclose(a[..., 128:], b[..., 128:], atol=1e-6)
    assert not np.allclose(a[..., :128], b[..., :128], atol=1e-6)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"conv2": [np.zeros((5, 5, 96, 256)), np.zeros(256)]}, r"'conv2' W has shape"),
        ({"conv3": [np.zeros((3, 3, 256, 384)), np.zeros(10)]}, r"'conv3' b has shape"),
        ({"conv1": [np.zeros((11, 11, 3, 96))]}, r"'conv1' must hold \[W, b\]"),
    ],
)
def test_load_alexnet_weights_rejects_bad_files(tmp_path, overrides, message):
    path = save_npy(tmp_path / "bad.npy", fake_alexnet(**overrides))
    with pytest.raises(ValueError, match=message) as info:
        load_alexnet_weights(AlexNetV1(), path)
    assert "bad.npy" in str(info.value) and "\n" not in str(info.value)


def test_load_alexnet_weights_missing_layer_and_file(tmp_path):
    weights = fake_alexnet()
    del weights["conv3"]
    path = save_npy(tmp_path / "partial.npy", weights)
    with pytest.raises(ValueError, match=r"partial.npy: layer 'conv3' missing"):
        load_alexnet_weights(AlexNetV1(), path)
    with pytest.raises(ValueError, match="cannot read AlexNet weights"):
        load_alexnet_weights(AlexNetV1(), tmp_path / "absent.npy")
    with pytest.raises(ValueError, match="needs an AlexNetV1"):
        load_alexnet_weights(SmallV1(), path)
