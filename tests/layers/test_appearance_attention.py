import keras
import numpy as np
import pytest
from keras import ops
from layer_test_case import run_layer_test

from hart_tf.layers import AppearanceAttention

B, FH, FW, CV1, UNITS, MAPS = 3, 4, 4, 6, 8, 5


def to_np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype="float64")


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    v1 = np.maximum(rng.normal(size=(B, FH, FW, CV1)), 0).astype("float32")  # ReLU-like
    hidden = rng.normal(size=(B, UNITS)).astype("float32")
    return v1, hidden


def make_layer(**kwargs):
    layer = AppearanceAttention(dorsal_units=UNITS, seed=1, **kwargs)
    layer(*inputs())
    return layer


def elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def test_layer_contract():
    run_layer_test(
        AppearanceAttention,
        {"appearance_maps": MAPS, "dorsal_units": UNITS, "keep_prob": 0.75, "seed": 3},
        list(inputs()),
        call_kwargs={"training": True},
        # ventral conv 2 + bn 2 + two (param Dense 2 + DynamicConv 5) + location conv 2
        expected_num_trainable_weights=20,
        expected_num_non_trainable_weights=2,
        expected_output_shape={
            "bn_mean": (MAPS,),
            "bn_var": (MAPS,),
            "dfn_l2": (B,),
            "features": (B, FH, FW, MAPS),
            "location_logit": (B, FH, FW),
            "location_map": (B, FH, FW),
            "ventral": (B, FH, FW, MAPS),
        },
    )


def test_parameter_count_small_config():
    layer = AppearanceAttention()  # 5 maps, 100 dorsal units; V1 32 channels, LSTM 100 units
    layer(np.zeros((2, 7, 7, 32), "float32"), np.zeros((2, 100), "float32"))
    # ventral 165 + bn 20 (with moving stats) + dfn1 (10100 + 16160 + 505 + 5)
    # + dfn2 (10100 + 22725 + 505 + 5) + location 6
    assert layer.count_params() == 60_296


def test_wiring_matches_manual_composition():
    v1, hidden = inputs()
    mask = np.random.default_rng(5).choice([0.0, 4 / 3], size=(B, FH, FW, MAPS))
    layer = make_layer()
    out = layer(v1, hidden, training=True, dropout_mask=mask.astype("float32"))

    ventral = v1 @ to_np(layer.ventral_conv.kernel)[0, 0] + to_np(layer.ventral_conv.bias)
    ventral = ventral * mask
    mean, var = ventral.mean(axis=(0, 1, 2)), ventral.var(axis=(0, 1, 2))
    normed = (ventral - mean) / np.sqrt(var + 1e-3)  # gamma 1, beta 0 at init
    d1, l2_1 = layer.dfn1(v1, layer.dfn1_params(hidden))
    d2, l2_2 = layer.dfn2(d1, layer.dfn2_params(hidden))
    logit = to_np(d2) @ to_np(layer.location_conv.kernel)[0, 0, :, 0]
    logit = logit + to_np(layer.location_conv.bias)[0]
    location = 1 / (1 + np.exp(-logit))

    np.testing.assert_allclose(to_np(out["bn_mean"]), mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(to_np(out["bn_var"]), var, rtol=1e-4)
    np.testing.assert_allclose(to_np(out["location_logit"]), logit, atol=1e-5)
    np.testing.assert_allclose(to_np(out["location_map"]), location, atol=1e-6)
    np.testing.assert_allclose(to_np(out["dfn_l2"]), to_np(l2_1) + to_np(l2_2), rtol=1e-5)
    np.testing.assert_allclose(to_np(out["features"]), elu(normed) * location[..., None], atol=1e-4)


def test_dropout_is_injectable_and_off_at_inference():
    v1, hidden = inputs()
    layer = make_layer()
    rng = np.random.default_rng(2)
    mask_a = (rng.uniform(size=(B, FH, FW, MAPS)) < 0.75).astype("float32") / 0.75
    mask_b = (rng.uniform(size=(B, FH, FW, MAPS)) < 0.75).astype("float32") / 0.75
    a1 = layer(v1, hidden, training=True, dropout_mask=mask_a)
    a2 = layer(v1, hidden, training=True, dropout_mask=mask_a)
    b = layer(v1, hidden, training=True, dropout_mask=mask_b)
    np.testing.assert_array_equal(to_np(a1["features"]), to_np(a2["features"]))
    assert not np.allclose(to_np(a1["features"]), to_np(b["features"]))
    # The dorsal stream never sees dropout.
    np.testing.assert_array_equal(to_np(a1["location_map"]), to_np(b["location_map"]))

    # Without a mask, training samples a fresh one per call; inference is deterministic.
    s1 = to_np(layer(v1, hidden, training=True)["features"])
    s2 = to_np(layer(v1, hidden, training=True)["features"])
    assert not np.allclose(s1, s2)
    i1 = to_np(layer(v1, hidden)["features"])
    np.testing.assert_array_equal(i1, to_np(layer(v1, hidden)["features"]))

    # An all-ones mask equals no dropout at all.
    no_dropout = AppearanceAttention(dorsal_units=UNITS, keep_prob=1.0)
    no_dropout(v1, hidden)
    no_dropout.set_weights(layer.get_weights())
    ones = np.ones((B, FH, FW, MAPS), "float32")
    np.testing.assert_allclose(
        to_np(layer(v1, hidden, training=True, dropout_mask=ones)["features"]),
        to_np(no_dropout(v1, hidden, training=True)["features"]),
        atol=1e-6,
    )


def test_runs_inside_scan_and_updates_moving_stats():
    v1, hidden = inputs()
    layer = make_layer()
    masks = (np.random.default_rng(4).uniform(size=(2, B, FH, FW, MAPS)) < 0.75) / 0.75
    masks = masks.astype("float32")

    def step(carry, mask):
        out = layer(v1, hidden, training=True, dropout_mask=mask)
        # Keras' TF scan wants ys shaped like the carry.
        return carry + out["features"], out["features"]

    _, features = ops.scan(step, ops.zeros((B, FH, FW, MAPS)), masks)
    direct = layer(v1, hidden, training=True, dropout_mask=masks[1])["features"]
    np.testing.assert_allclose(to_np(features[1]), to_np(direct), atol=1e-5)

    out = layer(v1, hidden, training=True, dropout_mask=masks[0])
    layer.update_moving_stats(out["bn_mean"], out["bn_var"])
    expected = 0.05 * to_np(out["bn_mean"])
    np.testing.assert_allclose(to_np(layer.ventral_bn.moving_mean), expected, rtol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="jax.lax.scan itself")
def test_runs_inside_jax_lax_scan():
    import jax

    v1, hidden = inputs()
    layer = make_layer()
    masks = np.ones((3, B, FH, FW, MAPS), "float32")

    def step(carry, mask):
        out = layer(v1, hidden, training=True, dropout_mask=mask)
        return carry + out["dfn_l2"], (out["bn_mean"], out["location_map"])

    total, (means, _) = jax.lax.scan(step, np.zeros(B, "float32"), masks)
    assert means.shape == (3, MAPS) and np.all(np.isfinite(np.asarray(total)))


def test_validation():
    with pytest.raises(ValueError, match="keep_prob"):
        AppearanceAttention(keep_prob=0.0)
    with pytest.raises(ValueError, match="hidden"):
        AppearanceAttention()(np.zeros((1, 2, 2, 3), "float32"), np.zeros((1, 2, 2), "float32"))


def test_without_dorsal_stream_returns_unmasked_ventral_features():
    import keras
    import numpy as np

    from hart_tf.layers import AppearanceAttention

    layer = AppearanceAttention(appearance_maps=5, dorsal_units=8, dorsal=False)
    v1 = np.random.default_rng(0).normal(size=(2, 4, 4, 6)).astype("float32")
    out = layer(v1, np.zeros((2, 8), "float32"))
    assert sorted(out) == ["bn_mean", "bn_var", "features", "ventral"]
    # No dorsal weights exist: only the ventral conv and the batch norm.
    names = sorted(w.path.split("/")[-2] for w in layer.trainable_weights)
    assert all(n in ("ventral_conv", "ventral_bn") for n in names), names
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out["features"]),
                                  keras.ops.convert_to_numpy(out["ventral"]))
    full = AppearanceAttention(appearance_maps=5, dorsal_units=8)
    skipped = full(v1, np.zeros((2, 8), "float32"), use_dorsal=False)
    assert "location_map" not in skipped
