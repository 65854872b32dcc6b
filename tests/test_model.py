"""HART model and HARTCell: recurrence, serialisation, gradients, parameter count, fit."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

from hart_tf.model.cell import HARTCell
from hart_tf.model.config import HARTConfig
from hart_tf.model.hart import HART

# A tiny config keeps every test cheap on two CPU cores.
TINY = HARTConfig.from_preset(
    "small", image_size=(24, 32), glimpse_size=(8, 8), v1_channels=8, rnn_units=12,
    dorsal_units=10,
)
B, T = 3, 4


def _batch(cfg=TINY, b=B, t=T, seed=0):
    rng = np.random.default_rng(seed)
    h, w = cfg.image_size
    frames = rng.integers(0, 256, (b, t, h, w, 3)).astype("uint8")
    y0 = rng.uniform(2, h / 2, (b, 1))
    x0 = rng.uniform(2, w / 2, (b, 1))
    drift = np.arange(t, dtype="float32")[None, :, None] * 0.5
    boxes = np.concatenate(
        [np.repeat(y0, t, 1)[..., None], np.repeat(x0, t, 1)[..., None],
         np.full((b, t, 1), h / 3), np.full((b, t, 1), w / 3)], -1
    ).astype("float32") + drift * np.array([1, 1, 0, 0], "float32")
    x = {"frames": frames, "box0": boxes[:, 0]}
    y = {"boxes": boxes, "presence": np.ones((b, t), "float32")}
    return x, y


def _np(tree):
    return keras.tree.map_structure(lambda v: np.asarray(ops.convert_to_numpy(v)), tree)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(1)
    m = HART(TINY, seed=3)
    m.build()
    return m


def test_output_shapes_and_first_box(model):
    x, _ = _batch()
    out = _np(model(x, training=False))
    fh, fw = TINY.feature_shape
    assert out["boxes"].shape == (B, T, 4)
    assert out["att_boxes"].shape == (B, T, 4)
    assert out["location_maps"].shape == (B, T, fh, fw)
    assert out["presence"].shape == (B, T)
    np.testing.assert_allclose(out["boxes"][:, 0], x["box0"], rtol=1e-6)
    assert np.all(np.isfinite(out["boxes"]))
    assert np.all((out["location_maps"] >= 0) & (out["location_maps"] <= 1))


def test_first_attention_box_is_box0_plus_learned_bias(model):
    x, _ = _batch()
    out = _np(model(x, training=False))
    bias = _np(model.cell.att_bias)
    from hart_tf.layers.spatial_attention import box_to_attention

    expected = box_to_attention(x["box0"], TINY.image_size) + bias
    np.testing.assert_allclose(out["attention"][:, 0], expected, atol=1e-6)


def test_step_by_step_equals_sequence_call(model):
    x, _ = _batch()
    seq = _np(model(x, training=False))
    state = model.init_state(x["frames"][:, 0], x["box0"])
    for t in range(1, T):
        out, state = model.step(x["frames"][:, t], state)
        out = _np(out)
        np.testing.assert_allclose(out["box"], seq["boxes"][:, t], atol=1e-4, rtol=1e-5)
        np.testing.assert_allclose(out["att_box"], seq["att_boxes"][:, t], atol=1e-4, rtol=1e-5)
        np.testing.assert_allclose(out["location_map"], seq["location_maps"][:, t], atol=1e-5)


def test_cell_stepped_by_hand_equals_keras_rnn(model):
    """The cell's own recurrence through keras.layers.RNN equals a Python loop over call."""
    x, _ = _batch()
    cell = model.cell
    frames = ops.cast(x["frames"], "float32")  # pixels in [0, 255]
    dropout, zoneout = model._noise(B, T, training=False)
    packed = cell.pack_inputs(frames, dropout, zoneout)  # (B, T, D)
    state0, _ = cell.initial_state_from_frame(frames[:, 0], x["box0"])
    rnn = keras.layers.RNN(cell, return_sequences=True)
    seq = _np(rnn(packed, initial_state=state0))
    state = state0
    for t in range(T):
        out, state = cell(packed[:, t], state)
        np.testing.assert_allclose(_np(out), seq[:, t], atol=1e-5, rtol=1e-5)


def test_unrolled_loop_equals_keras_rnn_with_the_same_noise(model):
    """`unroll=True` steps the cell in a Python loop on the uint8 frames; `unroll=False`
    packs them for keras.layers.RNN. Same weights and noise seed: same outputs, training
    noise and batch statistics included."""
    x, _ = _batch()
    results = {}
    for unroll in (True, False):
        model.unroll = unroll
        model.rnn.unroll = unroll
        model.noise_seed.state.assign(np.array([7, 0], model.noise_seed.state.dtype))
        results[unroll] = _np(model(x, training=True))
    model.unroll = model.rnn.unroll = False
    for key in ("boxes", "attention", "location_logits", "dfn_l2"):
        np.testing.assert_allclose(results[True][key], results[False][key], atol=1e-4,
                                   rtol=1e-5, err_msg=key)


def test_inference_is_deterministic_and_training_is_stochastic(model):
    x, _ = _batch()
    a = _np(model(x, training=False))["boxes"]
    b = _np(model(x, training=False))["boxes"]
    np.testing.assert_array_equal(a, b)
    c = _np(model(x, training=True))["boxes"]
    d = _np(model(x, training=True))["boxes"]
    assert not np.allclose(c, d), "dropout/zoneout noise should differ between calls"


def test_zoneout_masks_are_bernoulli_in_training_and_expectation_at_inference(model):
    p = TINY.zoneout
    _, z_inf = model._noise(64, 5, training=False)
    np.testing.assert_allclose(_np(z_inf), 1.0 - p)
    _, z_tr = model._noise(64, 5, training=True)
    z_tr = _np(z_tr)
    assert set(np.unique(z_tr)) <= {0.0, 1.0}
    # Keep rate 1 - p = 0.95 over 64 * 5 * 24 draws: well within 3 sigma of the mean.
    assert abs(z_tr.mean() - (1.0 - p)) < 0.02
    # The zoneout update h = h_prev + z (h_new - h_prev) at z = 1 - p is the expectation
    # of the stochastic update: the mean over many masks matches it.
    h_prev, h_new = np.zeros(24), np.ones(24)
    mean_update = (h_prev + z_tr.reshape(-1, 24) * (h_new - h_prev)).mean(0)
    np.testing.assert_allclose(mean_update, h_prev + (1 - p) * (h_new - h_prev), atol=0.06)


def _relative_box_np(ref, delta):
    # NumPy reference: move the centre by delta * size, scale the size by exp(delta).
    size = ref[..., 2:]
    centre = ref[..., :2] + size / 2 + delta[..., :2] * size
    new_size = size * np.exp(delta[..., 2:])
    return np.concatenate([centre - new_size / 2, new_size], -1)


@pytest.mark.parametrize("box_readout", ["image", "glimpse"])
def test_readouts_match_a_numpy_reference(box_readout):
    from hart_tf.layers.spatial_attention import attention_to_box

    cfg = TINY.replace(box_readout=box_readout)
    keras.utils.set_random_seed(2)
    m = HART(cfg, seed=2)
    m.build()
    # Constant corrections: zero kernels, known biases -> tanh(bias) every step.
    d_box = np.array([0.1, -0.2, 0.3, -0.1], "float32")
    d_att = np.array([-0.3, 0.2, 0.4, -0.5], "float32")
    for layer, d in ((m.cell.box_out, d_box), (m.cell.att_out, d_att)):
        layer.kernel.assign(np.zeros(layer.kernel.shape, "float32"))
        layer.bias.assign(d)
    x, _ = _batch(cfg)
    out = _np(m(x, training=False))
    att = out["attention"]  # (B, T, 4): a_t, the attention that looked at frame t
    bias = _np(m.cell.att_bias)
    gate = 1 / (1 + np.exp(-_np(m.cell.att_gate)))
    step = gate * np.tanh(d_att)
    np.testing.assert_allclose(gate, 1 / (1 + np.exp(2.5)), rtol=1e-6)  # the paper's -2.5
    for t in range(T - 1):
        np.testing.assert_allclose(att[:, t + 1], att[:, t] + step, rtol=1e-5, atol=1e-5)
    reference = attention_to_box(att - bias, cfg.image_size)
    if box_readout == "glimpse":
        expected_boxes = _relative_box_np(reference, np.tanh(d_box))
    else:
        h, w = cfg.image_size
        expected_boxes = reference + np.tanh(d_box) * np.array([h, w, h, w], "float32")
    # Step 0 reports box0; every later step is the readout.
    np.testing.assert_allclose(out["boxes"][:, 1:], expected_boxes[:, 1:], rtol=1e-5, atol=1e-4)
    assert np.all(out["boxes"][:, 1:, 2:] > 0)


def test_readout_frames_are_validated():
    with pytest.raises(ValueError, match="box_readout must be one of"):
        HARTConfig(box_readout="pixels")
    with pytest.raises(ValueError, match="box_readout must be one of"):
        HARTConfig(box_readout="map")
    with pytest.raises(ValueError, match="attention_input must be one of"):
        HARTConfig(attention_input="box")


def test_an_older_config_with_removed_fields_loads():
    current = HARTConfig.from_preset("kitti").to_dict()
    older = {k: v for k, v in current.items() if k not in ("attention_input", "original_init")}
    older.update(v1_stride=4, att_gain=-2.5, attention_update="image",
                 attention_tightness=1.0, distance_loss=0.0)
    loaded = HARTConfig.from_dict(older)
    assert loaded.attention_input == "normalized" and not loaded.original_init
    with pytest.raises(ValueError, match="'v1_stride' was removed; only 4 is supported"):
        HARTConfig.from_dict(dict(older, v1_stride=2))


def test_config_round_trip_and_keras_file(tmp_path, model):
    x, _ = _batch()
    expected = _np(model(x, training=False))
    clone = HART.from_config(model.get_config())
    clone.build()
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(_np(clone(x, training=False))["boxes"], expected["boxes"],
                               atol=1e-6)
    path = tmp_path / "m.keras"
    model.save(path)
    from hart_tf.model.saving import load_model

    loaded = load_model(path)
    out = _np(loaded(x, training=False))
    for k in expected:
        np.testing.assert_allclose(out[k], expected[k], atol=1e-6, err_msg=k)


def test_cell_config_round_trip():
    cell = HARTCell(TINY)
    again = HARTCell.from_config(cell.get_config())
    assert again.config == TINY
    assert again.output_size == cell.output_size


def _gradients(m, x, y):
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = m.compute_loss(y=y, y_pred=m(x, training=True))
        return [g.numpy() if g is not None else None
                for g in tape.gradient(loss, m.trainable_variables)]
    import jax

    trainable = [v.value for v in m.trainable_variables]
    non_trainable = [v.value for v in m.non_trainable_variables]

    def loss_fn(tv):
        y_pred, _ = m.stateless_call(tv, non_trainable, x, training=True)
        metric_values = [v.value for v in m.metrics_variables]
        loss, _ = m.stateless_compute_loss(tv, non_trainable, metric_values,
                                           x=x, y=y, y_pred=y_pred)
        return loss

    return [np.asarray(g) for g in jax.jit(jax.grad(loss_fn))(trainable)]


def test_every_trainable_weight_gets_a_finite_nonzero_gradient():
    keras.utils.set_random_seed(0)
    m = HART(TINY, seed=0)
    m.build()
    x, y = _batch()
    grads = _gradients(m, x, y)
    for v, g in zip(m.trainable_variables, grads, strict=True):
        assert g is not None, f"{v.path}: no gradient"
        assert np.all(np.isfinite(g)), f"{v.path}: non-finite gradient"
        assert np.any(g != 0), f"{v.path}: zero gradient"


def test_kitti_parameter_count():
    """The KITTI config has 1,701,715 trainable parameters: the 1,701,712 of the 47 trainable
    variables in the authors' released checkpoint (tests/test_original_checkpoint.py maps
    each to its weight) and the 3 adaptive loss weights, which that checkpoint leaves out.

    By block: AlexNet conv1-3 1,227,520; ventral 1x1 readout 1,925 and batch norm 10;
    dorsal DFN 1x1 (parameter layer 10,100, kernel head 193,920, bias head 505, static bias
    5) and DFN 3x3 (10,100 + 22,725 + 505 + 5); location 1x1 conv 6; features-to-LSTM
    Dense 98,700 (980 masked features + 6 glimpse parameters in pixels, 100 units); LSTM
    80,400; initial feature/state transforms 30,300; location-map features 1,970; attention
    readout 11,100 + 404 and gate 4; box readout 11,100 + 404; learned init bias 4.
    """
    m = HART(HARTConfig.from_preset("kitti"))
    m.build()
    n = sum(int(np.prod(v.shape)) for v in m.trainable_variables)
    loss_weights = sum(int(np.prod(v.shape)) for v in m.loss_weights_layer.trainable_variables)
    assert loss_weights == 3
    assert n - loss_weights == 1_701_712


def test_small_config_parameter_count():
    m = HART(HARTConfig.from_preset("small"))
    m.build()
    assert sum(int(np.prod(v.shape)) for v in m.trainable_variables) == 234_609


def test_spatial_only_variant_has_no_dorsal_stream_and_trains():
    cfg = TINY.replace(appearance_attention=False, attention_loss=False)
    m = HART(cfg, seed=0)
    m.build()
    assert not any("dfn" in v.path for v in m.trainable_variables)
    assert m.loss_terms == ("tracking",)
    x, y = _batch()
    out = _np(m(x, training=False))
    assert np.all(np.isfinite(out["boxes"]))


def test_fit_overfits_a_fixed_batch():
    keras.utils.set_random_seed(0)
    m = HART(TINY.replace(adaptive_loss=False, l2_weight=0.0, keep_prob=1.0, zoneout=0.0), seed=0)
    m.build()
    from hart_tf.train.optimizers import GuardedRMSprop

    m.compile(optimizer=GuardedRMSprop(5e-4, momentum=0.9, global_clipnorm=1.0),
              jit_compile=keras.backend.backend() == "jax")
    x, y = _batch()
    hist = m.fit(x, y, epochs=30, batch_size=B, verbose=0, shuffle=False).history
    losses = hist["loss"]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:3]), losses


# The paper's RMSProp by default; Adam (about 16 s of CPU on 2 cores) with --runslow.
@pytest.mark.parametrize("name", ["rmsprop", pytest.param("adam", marks=pytest.mark.slow)])
def test_guarded_optimizer_skips_non_finite_updates(name):
    keras.utils.set_random_seed(0)
    m = HART(TINY, seed=0)
    m.build()
    from hart_tf.train.optimizers import GuardedAdam, GuardedRMSprop, make_optimizer

    optimizer = make_optimizer(name, 1e-3, 0.9, 1.0)
    assert type(optimizer) is {"rmsprop": GuardedRMSprop, "adam": GuardedAdam}[name]
    assert optimizer.global_clipnorm == 1.0
    m.compile(optimizer=optimizer, jit_compile=keras.backend.backend() == "jax")
    x, y = _batch()
    m.fit(x, y, epochs=1, batch_size=B, verbose=0)
    # The last step's loss parts leave the compiled step (JAX too) and add up to the loss.
    values = m.step_values()
    parts = [v for k, v in values.items() if k.startswith(("loss/weighted/", "loss/neg_log",
                                                           "loss/l2"))]
    assert sum(parts) == pytest.approx(values["loss/total"], abs=1e-4) and values["loss/l2"] > 0
    counters = ("iteration", "grad_norm", "bad_steps", "consecutive_bad")
    slot_vars = [v for v in m.optimizer.variables if not any(c in v.path for c in counters)]
    assert len(slot_vars) >= len(m.trainable_variables)  # momentum / moments are there
    slots = [np.array(v) for v in slot_vars]
    before = [np.array(v) for v in m.trainable_variables]
    bad_y = dict(y, boxes=np.full_like(y["boxes"], np.nan))
    m.fit(x, bad_y, epochs=1, batch_size=B, verbose=0)
    after = [np.array(v) for v in m.trainable_variables]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    for v, a in zip(slot_vars, slots, strict=True):  # the slots are kept too
        np.testing.assert_array_equal(a, np.array(v), err_msg=v.path)
    assert float(np.asarray(m.optimizer.bad_steps)) == 1.0
    assert float(np.asarray(m.optimizer.consecutive_bad)) == 1.0
    m.fit(x, y, epochs=1, batch_size=B, verbose=0)
    assert float(np.asarray(m.optimizer.consecutive_bad)) == 0.0


def test_model_path_imports_without_tensorflow():
    code = (
        "import sys, os; os.environ['KERAS_BACKEND']='jax'\n"
        "import hart_tf.model.hart, hart_tf.model.losses, hart_tf.layers, hart_tf.train.trainer\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_command_lines_check_flags_before_keras_loads():
    code = (
        "import sys, os; os.environ['KERAS_BACKEND']='tensorflow'\n"
        "import hart_tf, hart_tf.cli.train, hart_tf.cli.evaluate, hart_tf.cli.track\n"
        "import hart_tf.cli.export\n"
        "loaded = {'keras', 'tensorflow'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
