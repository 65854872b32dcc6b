"""The authors' released KITTI checkpoint: the kitti preset holds exactly its variables, and
tools/convert_original_checkpoint.py loads a TF1 checkpoint of them into a working model.

The released `.data` file is not needed: a checkpoint with the released names, shapes and
dtypes and random values is written here with tf.compat.v1 (a Graph, a Session and a Saver,
as the original saved it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hart_tf.model import original_checkpoint as oc
from hart_tf.model.config import HARTConfig

tf = pytest.importorskip("tensorflow")

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "convert_original_checkpoint.py"
_C = "HierarchicalAttentiveRecurrentTracker/AttentionCell"


def _random_values(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = {}
    for name, shape, dtype in oc.ORIGINAL_VARIABLES:
        if dtype == "bool":
            values[name] = np.ones(shape, bool)
        elif name.endswith("moving_variance"):
            values[name] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        else:
            values[name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    return values


def _write_tf1_checkpoint(folder: Path, values: dict[str, np.ndarray]) -> str:
    """Saves `values` under their names with tf.compat.v1's Saver; returns the prefix."""
    folder.mkdir(parents=True, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        variables = {
            name: tf.compat.v1.Variable(value, name=f"v{i}")
            for i, (name, value) in enumerate(values.items())
        }
        saver = tf.compat.v1.train.Saver(var_list=variables)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            return saver.save(sess, str(folder / oc.CHECKPOINT_NAME), write_meta_graph=False)


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    values = _random_values()
    prefix = _write_tf1_checkpoint(tmp_path_factory.mktemp("original"), values)
    return prefix, values


@pytest.fixture(scope="module")
def converted(original):
    prefix, values = original
    return oc.load_original_checkpoint(prefix), values


def _np(x):
    return np.asarray(x)


# ---- the variables ----------------------------------------------------------------------


def test_the_released_index_has_52_variables_and_1701712_trainable_values():
    assert len(oc.ORIGINAL_VARIABLES) == 52
    assert len({n for n, _, _ in oc.ORIGINAL_VARIABLES}) == 52
    trainable = [(n, s) for n, s, _ in oc.ORIGINAL_VARIABLES if n not in oc.NON_TRAINABLE]
    assert len(trainable) == 49
    assert sum(int(np.prod(s)) for _, s in trainable) == 1_701_712


def test_every_variable_maps_to_exactly_one_weight_of_its_shape():
    from hart_tf.model.hart import HART

    model = HART(HARTConfig.from_preset("kitti"))
    model.build()
    weights = oc.hart_weights(model)
    mapped = {}
    for name, shape, _ in oc.ORIGINAL_VARIABLES:
        if name in oc.SKIPPED:
            assert name not in oc.VARIABLE_MAP
            continue
        path, _ = oc.VARIABLE_MAP[name]
        assert path in weights, f"{name} -> {path}: no such weight"
        assert path not in mapped, f"{path} is the weight of {mapped.get(path)} and {name}"
        mapped[path] = name
        weight = weights[path]
        # The same shape, but for axes of size 1 (a TF1 (1, 1, 1, 4) bias is a (4,) vector).
        assert [d for d in shape if d != 1] == [d for d in weight.shape if d != 1], name
        assert weight.trainable == (name not in oc.NON_TRAINABLE), name
    assert len(mapped) == 51
    # Nothing unattributed: every trainable weight is an original variable or one of the
    # three adaptive loss weights, which the released checkpoint leaves out.
    ours = {v.path: int(np.prod(v.shape)) for v in model.trainable_weights}
    loss_weights = {p: n for p, n in ours.items() if p.startswith("loss_weights/")}
    assert len(loss_weights) == 3 and sum(loss_weights.values()) == 3
    attributed = {p for p in ours if p.split("hart_cell/", 1)[-1] in mapped}
    assert set(ours) - attributed == set(loss_weights)
    assert sum(ours[p] for p in attributed) == 1_701_712
    # The non-trainable ones: the batch norm's moving statistics, mapped too.
    assert {v.path.split("hart_cell/", 1)[1] for v in model.non_trainable_weights} <= set(mapped)


def test_check_variables_names_what_is_wrong():
    good = {n: (s, d) for n, s, d in oc.ORIGINAL_VARIABLES}
    oc.check_variables(good)
    lstm = f"{_C}/IdentityLSTMCell/bias"
    bad = dict(good, extra_var=((3,), "float32"))
    del bad[lstm]
    bad[f"{_C}/fc_after_conv/W_fc_after_conv"] = ((984, 100), "float32")
    with pytest.raises(ValueError) as e:
        oc.check_variables(bad, "ckpt")
    message = str(e.value)
    assert "\n" not in message and message.startswith("ckpt: not the authors' KITTI checkpoint")
    assert f"missing {lstm}" in message and "extra extra_var" in message
    assert "W_fc_after_conv is [984, 100] float32, expected [986, 100] float32" in message


# ---- the conversion ---------------------------------------------------------------------


def test_every_weight_equals_its_source_after_the_layout_change(converted):
    model, values = converted
    weights = oc.hart_weights(model)
    for name, (path, _) in oc.VARIABLE_MAP.items():
        weight = _np(weights[path])
        np.testing.assert_array_equal(weight, oc.to_hart(name, values[name], weight.shape),
                                      err_msg=name)
    # The LSTM's gate blocks by hand: TF1 (i, j, f, o) -> Keras (i, f, c, o).
    u = 100
    for tf1, ours in (("W_xh", "kernel"), ("W_hh", "recurrent_kernel"), ("bias", "bias")):
        src, dst = values[f"{_C}/IdentityLSTMCell/{tf1}"], _np(weights[f"lstm/{ours}"])
        for k, j in enumerate((0, 2, 1, 3)):
            np.testing.assert_array_equal(dst[..., k * u:(k + 1) * u],
                                          src[..., j * u:(j + 1) * u])
    np.testing.assert_array_equal(
        _np(model.cell.att_bias_raw),
        values["HierarchicalAttentiveRecurrentTracker/att_bias"].reshape(4))
    # The adaptive loss weights are not in the checkpoint: lambda = s^2 + eps starts at 1.
    for lam in model.loss_weights().values():
        assert lam == pytest.approx(1.0, abs=1e-6)


# ---- the same outputs as TF's own ops with the source weights -----------------------------


def test_lstm_matches_tf1_lstm_block_cell(converted):
    # LSTMBlockCell is TF's fused kernel of the TF1 LSTM: gates (i, j, f, o) of
    # [x, h] @ W + b, as the original's IdentityLSTMCell; forget_bias 0 as there.
    model, values = converted
    rng = np.random.default_rng(1)
    x, h, c = (rng.standard_normal((3, 100)).astype(np.float32) for _ in range(3))
    w = np.concatenate([values[f"{_C}/IdentityLSTMCell/W_xh"],
                        values[f"{_C}/IdentityLSTMCell/W_hh"]], axis=0)
    zeros = np.zeros(100, np.float32)
    ref = tf.raw_ops.LSTMBlockCell(
        x=x, cs_prev=c, h_prev=h, w=w, wci=zeros, wcf=zeros, wco=zeros,
        b=values[f"{_C}/IdentityLSTMCell/bias"], forget_bias=0.0, cell_clip=-1.0,
        use_peephole=False)
    out, (new_h, new_c) = model.cell.lstm(x, [h, c])
    np.testing.assert_allclose(_np(new_h), ref.h.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(new_c), ref.cs.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(out), ref.h.numpy(), rtol=1e-5, atol=1e-5)


def test_alexnet_convolutions_match_tf_conv2d_with_the_original_groups(converted):
    model, values = converted
    v1 = f"{_C}/AlexNetModel"
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 56, 56, 3)).astype(np.float32)

    def conv(inputs, layer, groups=1, stride=1):
        # The original's grouped convolution: input channels and output filters split in
        # `groups` halves, half g convolved with half g, results concatenated.
        w, b = values[f"{v1}/{layer}_W"], values[f"{v1}/{layer}_b"]
        parts = [tf.nn.conv2d(i, k, stride, "SAME")
                 for i, k in zip(tf.split(inputs, groups, axis=3), tf.split(w, groups, axis=3),
                                 strict=True)]
        return tf.nn.relu(tf.nn.bias_add(tf.concat(parts, axis=3), b)).numpy()

    ours = model.cell.v1
    np.testing.assert_allclose(_np(ours.conv1(x)), conv(x, "conv1", stride=4), rtol=1e-4,
                               atol=1e-4)
    y = rng.standard_normal((2, 14, 14, 96)).astype(np.float32)
    np.testing.assert_allclose(_np(ours.conv2(y)), conv(y, "conv2", groups=2), rtol=1e-4,
                               atol=1e-4)
    z = rng.standard_normal((2, 14, 14, 256)).astype(np.float32)
    np.testing.assert_allclose(_np(ours.conv3(z)), conv(z, "conv3"), rtol=1e-4, atol=1e-4)


def test_dynamic_filters_match_a_tf_conv2d_per_example(converted):
    # The original reshapes each example's predicted vector to a (k, k, cin, cout) kernel
    # and runs conv2d with it, then adds the adaptive and the static bias and applies ELU.
    model, values = converted
    app = model.cell.appearance
    rng = np.random.default_rng(3)
    hidden = rng.standard_normal((2, 100)).astype(np.float32)

    def reference(scope, inputs, k):
        def dense(layer, x, act=None):
            y = tf.compat.v1.nn.xw_plus_b(x, values[f"{_C}/{scope}/{layer}/W_{layer}"],
                                          values[f"{_C}/{scope}/{layer}/b_{layer}"])
            return act(y) if act else y
        params = dense("param_layer_1", hidden, tf.nn.elu)
        kernels = tf.reshape(dense("dynamic_weights", params), (-1, k, k, inputs.shape[-1], 5))
        bias = dense("dynamic_bias", params)
        out = tf.stack([tf.nn.conv2d(inputs[b:b + 1], kernels[b], 1, "SAME")[0]
                        for b in range(len(inputs))])
        out = out + bias[:, None, None, :] + values[f"{_C}/{scope}/dfn_bias"]
        return tf.nn.elu(out).numpy()

    v1 = rng.standard_normal((2, 14, 14, 384)).astype(np.float32)
    d1, _ = app.dfn1(v1, app.dfn1_params(hidden))
    np.testing.assert_allclose(_np(d1), reference("pre_DFN", v1, 1), rtol=1e-4, atol=1e-4)
    maps = rng.standard_normal((2, 14, 14, 5)).astype(np.float32)
    d2, _ = app.dfn2(maps, app.dfn2_params(hidden))
    np.testing.assert_allclose(_np(d2), reference("DynamicFilterModel", maps, 3), rtol=1e-4,
                               atol=1e-4)


def test_dense_conv_and_batch_norm_match_tf_ops(converted):
    model, values = converted
    cell, app = model.cell, model.cell.appearance
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 986)).astype(np.float32)
    ref = tf.nn.elu(tf.compat.v1.nn.xw_plus_b(x, values[f"{_C}/fc_after_conv/W_fc_after_conv"],
                                              values[f"{_C}/fc_after_conv/b_fc_after_conv"]))
    np.testing.assert_allclose(_np(cell.fc_features(x)), ref.numpy(), rtol=1e-5, atol=1e-5)
    # Ventral 1x1 readout and the batch norm at inference (moving statistics, eps 1e-3).
    v1 = f"{_C}/AlexNetModel"
    bn = f"{v1}/bn_batch_norm/BatchNorm"
    feats = rng.standard_normal((2, 14, 14, 384)).astype(np.float32)
    readout = tf.nn.conv2d(feats, values[f"{v1}/readout/W_readout"], 1, "SAME") + values[
        f"{v1}/readout/b_readout"]
    np.testing.assert_allclose(_np(app.ventral_conv(feats)), readout.numpy(), rtol=1e-4,
                               atol=1e-4)
    normed = tf.compat.v1.nn.batch_normalization(
        readout, values[f"{bn}/moving_mean"], values[f"{bn}/moving_variance"],
        values[f"{bn}/beta"], values[f"{bn}/gamma"], 1e-3)
    ours, _, _ = app.ventral_bn(readout.numpy(), training=False)
    np.testing.assert_allclose(_np(ours), normed.numpy(), rtol=1e-4, atol=1e-4)
    # The location-map logit.
    maps = rng.standard_normal((2, 14, 14, 5)).astype(np.float32)
    logit = tf.nn.conv2d(maps, values[f"{_C}/obj_mask/W_obj_mask"], 1, "SAME") + values[
        f"{_C}/obj_mask/b_obj_mask"]
    np.testing.assert_allclose(_np(app.location_conv(maps)), logit.numpy(), rtol=1e-5,
                               atol=1e-5)


def test_lstm_input_reads_the_six_glimpse_parameters_in_pixels(converted):
    # fc_after_conv's last six inputs: the first Gaussian's centre (y, x) (box corner plus
    # the fitted offset), sigma (y, x) and stride (y, x) = box size / (glimpse - 1), pixels.
    from hart_tf.layers.spatial_attention import (
        ATTENTION_OFFSET_BIAS,
        box_to_attention,
        stride_to_sigma,
    )

    model, _ = converted
    box = np.array([[40.0, 300.0, 55.0, 110.0]], np.float32)
    att = box_to_attention(box, (187, 621))
    params = _np(model.cell.spatial_attention.glimpse_parameters(att))
    stride = box[:, 2:] / 55.0
    expected = np.concatenate([box[:, :2] + ATTENTION_OFFSET_BIAS, _np(stride_to_sigma(stride)),
                               stride], axis=-1)
    np.testing.assert_allclose(params, expected, rtol=1e-5)
    assert model.cell.fc_features.kernel.shape == (14 * 14 * 5 + 6, 100)


# ---- the tool ---------------------------------------------------------------------------


def _run_tool(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=600)


def _stderr_lines(result) -> list[str]:
    # TensorFlow's start-up log lines are not ours.
    return [line for line in result.stderr.splitlines()
            if line.strip() and not line.startswith(("I0000", "W0000", "WARNING: All log"))]


@pytest.mark.slow
def test_tool_converts_and_the_model_tracks_six_kitti_frames(original, tmp_path, six_frames):
    from hart_tf.data.images import read_image
    from hart_tf.model.saving import load_model
    from hart_tf.track.tracker import Tracker

    prefix, values = original
    out = tmp_path / "hart_kitti.keras"
    result = _run_tool(f"--checkpoint={prefix}", f"--out={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    model = load_model(out)
    assert model.config == HARTConfig.from_preset("kitti")
    weights = oc.hart_weights(model)
    for name, (path, _) in oc.VARIABLE_MAP.items():
        np.testing.assert_array_equal(
            _np(weights[path]), oc.to_hart(name, values[name], tuple(weights[path].shape)))

    folder = six_frames / "training" / "image_02" / "0000"
    frames = [read_image(str(p)) for p in sorted(folder.glob("*.png"))]
    label = next(line.split() for line in
                 (six_frames / "training" / "label_02" / "0000.txt").read_text().splitlines()
                 if line.split()[0] == "0" and line.split()[2] != "DontCare")
    left, top, right, bottom = (float(v) for v in label[6:10])
    tracker = Tracker.from_checkpoint(out)
    boxes = np.array(list(tracker.track(frames, [left, top, right - left, bottom - top])))
    assert boxes.shape == (len(frames) - 1, 4)
    assert np.all(np.isfinite(boxes))


def test_tool_refuses_a_checkpoint_missing_a_variable_in_one_line(tmp_path):
    values = _random_values()
    missing = f"{_C}/IdentityLSTMCell/W_hh"
    del values[missing]
    prefix = _write_tf1_checkpoint(tmp_path / "bad", values)
    result = _run_tool(f"--checkpoint={prefix}", f"--out={tmp_path / 'x.keras'}")
    lines = _stderr_lines(result)
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) <= 3, lines
    assert lines[-1].startswith("error: ") and f"missing {missing}" in lines[-1]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.keras").exists()


@pytest.mark.slow
def test_tool_refuses_an_unreadable_checkpoint_in_one_line(tmp_path):
    result = _run_tool(f"--checkpoint={tmp_path / 'nothing' / 'model.ckpt-1'}",
                       f"--out={tmp_path / 'x.keras'}")
    lines = _stderr_lines(result)
    assert result.returncode == 2 and len(lines) <= 3, result.stderr[-2000:]
    assert "cannot read the checkpoint" in lines[-1]
