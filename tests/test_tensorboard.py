"""TensorBoard: per-step loss parts that add up to the loss, validation at two lengths, the
hparams view, and a tiny run's event files read back with TensorBoard's own reader."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from hart_tf.viz import draw as viz

GROUPS = {"loss", "lambda", "metrics", "optim", "curriculum", "val", "test", "run"}
PARTS = ("loss/weighted/", "loss/neg_log_lambda/", "loss/l2")


def _tiny_config(**changes):
    from hart_tf.model.config import HARTConfig

    return HARTConfig.from_preset("small", image_size=(64, 64), glimpse_size=(8, 8),
                                  v1_channels=8, rnn_units=12, dorsal_units=10, **changes)


def _tiny_options(tmp_path: Path, **changes):
    from hart_tf.train.options import TrainOptions

    base = dict(config=_tiny_config(), batch_size=2, steps_per_epoch=2, epochs=3,
                curriculum_lengths=(2, 3), curriculum_threshold=0.0,
                checkpoint_dir=str(tmp_path / "ckpt"), logdir=str(tmp_path / "tb"),
                eval_sequences=2, eval_steps=3, image_every=5, histogram_every=2,
                run_eagerly=True, progress=0)
    base.update(changes)
    return TrainOptions.from_flat(**base)


def _parts_sum(values: dict[str, float]) -> float:
    return sum(v for k, v in values.items() if k.startswith(PARTS))


@pytest.mark.parametrize("adaptive,l2", [(True, 1e-4), (False, 1e-4), (True, 0.0)])
def test_loss_parts_add_up_to_the_total(adaptive, l2):
    from keras import ops

    from hart_tf.data import synthetic
    from hart_tf.model.hart import HART
    from hart_tf.model.step_values import loss_part_names, loss_parts

    config = _tiny_config(adaptive_loss=adaptive, l2_weight=l2)
    model = HART(config, seed=0)
    model.build()
    if adaptive:  # lambdas away from 1, so that weighting and -log lambda matter
        for i, s in enumerate(model.loss_weights_layer.scales.values()):
            s.assign(0.5 + 0.4 * i)
    data = synthetic.fixed_set("val", 2, 3, synthetic.SyntheticConfig(image_size=(64, 64)))
    out = model({"frames": data["frames"], "box0": data["boxes"][:, 0]}, training=False)
    total, terms = model.loss_and_terms({"boxes": data["boxes"], "presence": data["presence"]},
                                        out)
    names = loss_part_names(model.loss_terms, adaptive, l2 > 0)
    values = dict(zip(names, (float(ops.convert_to_numpy(v)) for v in loss_parts(
        total, terms, names)), strict=True))
    assert values["loss/total"] == pytest.approx(float(ops.convert_to_numpy(total)))
    assert _parts_sum(values) == pytest.approx(values["loss/total"], abs=1e-5)
    assert ("loss/l2" in values) == (l2 > 0)
    assert any(k.startswith("lambda/") for k in values) == adaptive
    if adaptive:
        lam = model.loss_weights()["attention"]
        assert lam == pytest.approx(0.9 ** 2, rel=1e-5)
        assert values["loss/weighted/attention"] == pytest.approx(
            lam * values["loss/attention"], rel=1e-5)
        assert values["loss/neg_log_lambda/attention"] == pytest.approx(-np.log(lam), rel=1e-5)


def test_step_values_keep_the_last_step_not_a_mean():
    from hart_tf.model.step_values import StepValues

    m = StepValues(("a", "b"), name="step_values")
    m.update_state([1.0, 2.0])
    m.update_state([3.0, -1.0])
    assert m.values() == {"a": 3.0, "b": -1.0}
    m.reset_state()
    assert m.values() == {"a": 0.0, "b": 0.0}


def test_validation_at_the_training_length_is_the_prefix_of_the_final_length():
    from hart_tf.data import synthetic
    from hart_tf.eval import sets
    from hart_tf.model.hart import HART

    model = HART(_tiny_config(), seed=0)
    model.build()
    data = synthetic.fixed_set("val", 3, 5, synthetic.SyntheticConfig(image_size=(64, 64)))
    scores: dict = {}
    logs = sets.validate(model, data, 3, 2, scores=scores)
    assert (scores["current_length"], scores["final_length"]) == (3, 5)
    assert len(scores["current"]["iou_per_step"]) == 2
    assert len(scores["final"]["iou_per_step"]) == 4
    assert {"success_auc", "precision_20"} <= set(scores["final"])
    # The same as predicting 3 and 5 frames apart (the model is causal).
    assert logs["val_iou"] == scores["current"]["mean_iou"]
    cut = {k: v[:, :3] for k, v in data.items()}
    assert scores["current"]["mean_iou"] == pytest.approx(
        sets.validate(model, cut, None, 2)["val_iou"], abs=1e-5)
    assert scores["final"]["mean_iou"] == pytest.approx(
        sets.validate(model, data, None, 2)["val_iou"], abs=1e-5)


def test_dashed_ground_truth_drawn_last_shows_both_boxes_at_t0():
    frame = np.full((30, 30, 3), 128, np.uint8)
    box = np.array([[5.0, 5.0, 15.0, 15.0]])
    strip = viz.sequence_strip(frame[None], {"pred": box, "gt": box}, dashed=("gt",))
    red, green = viz.DEFAULT_COLORS["pred"], viz.DEFAULT_COLORS["gt"]
    body = strip[viz._TITLE_H:]  # below the title bar with its legend
    assert np.all(body == red, axis=-1).sum() > 10
    assert np.all(body == green, axis=-1).sum() > 10


def test_grad_norms_per_variable_are_reported_and_not_saved(tmp_path):
    import keras

    from hart_tf.data import synthetic
    from hart_tf.model.hart import HART
    from hart_tf.train.optimizers import make_optimizer

    model = HART(_tiny_config(), seed=0)
    model.build()
    model.compile(optimizer=make_optimizer("adam", 1e-3, 0.9, 1.0), run_eagerly=True)
    data = synthetic.fixed_set("val", 2, 3, synthetic.SyntheticConfig(image_size=(64, 64)))
    x = {"frames": data["frames"], "box0": data["boxes"][:, 0]}
    y = {"boxes": data["boxes"], "presence": data["presence"]}
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    opt = model.optimizer
    norms = np.asarray(opt.grad_norms)
    assert norms.shape == (len(model.trainable_variables),) and np.all(norms >= 0)
    assert np.sqrt(np.sum(norms ** 2)) == pytest.approx(float(np.asarray(opt.grad_norm)),
                                                        rel=1e-4)
    values = model.step_values()
    assert _parts_sum(values) == pytest.approx(values["loss/total"], abs=1e-4)
    # Checkpoints keep the layout of those written before the per-variable norms existed.
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(opt.variables, loaded.optimizer.variables, strict=True):
        if a is not opt.grad_norms:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)


def test_logging_off_says_once_what_is_missing(monkeypatch, capsys):
    from hart_tf.train.summaries import Summaries

    monkeypatch.setitem(sys.modules, "hart_tf.train.tensorboard", None)  # import fails
    tb = Summaries(options=None, val={})
    tb.on_step(1, None, None)
    tb.on_epoch(1, {}, {})
    tb.finish(1, None, None, 2)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: TensorBoard logging is off (")
    assert "summary.json" in err[0]


def _read_events(logdir: Path):
    """TensorBoard's reader: {tag: {step: value}} of the scalars, {tag: [steps]} of the
    images and histograms, and the hparams plugin's content."""
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.util import tensor_util

    acc = ea.EventAccumulator(str(logdir), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    scalars, images, histograms = {}, {}, {}
    for tag in acc.Tags()["tensors"]:
        plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
        events = acc.Tensors(tag)
        if plugin == "scalars":
            scalars[tag] = {e.step: float(tensor_util.make_ndarray(e.tensor_proto))
                            for e in events}
        elif plugin == "images":
            images[tag] = [e.step for e in events]
        elif plugin == "histograms":
            histograms[tag] = [e.step for e in events]
    hparams = {}
    for tag, content in acc.PluginTagToContent("hparams").items():
        hparams[tag] = plugin_data_pb2.HParamsPluginData.FromString(content)
    return scalars, images, histograms, hparams


def test_a_tiny_run_explains_itself_in_tensorboard(tmp_path):
    from hart_tf.train.trainer import train

    summary = train(_tiny_options(tmp_path))
    scalars, images, histograms, hparams = _read_events(tmp_path / "tb")
    steps = set(range(1, summary["step"] + 1))
    assert summary["step"] == 6
    assert {tag.split("/")[0] for tag in scalars} <= GROUPS

    # Every step's own value, in groups; the parts add up to the total at every step.
    per_step = ["loss/total", "loss/tracking", "loss/attention", "loss/appearance",
                "loss/weighted/tracking", "loss/neg_log_lambda/appearance", "loss/l2",
                "lambda/tracking", "metrics/iou", "optim/learning_rate", "optim/grad_norm",
                "optim/log10_grad_norm", "optim/skipped_updates", "curriculum/length",
                "curriculum/threshold", "curriculum/epochs_at_length"]
    for tag in per_step:
        assert set(scalars[tag]) == steps, tag
    for step in steps:
        parts = {t: v[step] for t, v in scalars.items() if t.startswith(PARTS)}
        assert len(parts) == 7  # 3 weighted terms, 3 -log lambda, L2
        assert sum(parts.values()) == pytest.approx(scalars["loss/total"][step], abs=1e-4)
    assert scalars["curriculum/length"] == {1: 2, 2: 2, 3: 3, 4: 3, 5: 3, 6: 3}

    # Validation at each epoch end, at the training length and at the final one.
    epochs = {h["step"] for h in summary["history"]}
    assert epochs == {2, 4, 6}
    for key in ("current", "final"):
        for score in ("iou", "success_auc", "precision_20"):
            assert set(scalars[f"val/{score}_{key}_length"]) == epochs
    assert scalars["val/current_length"] == {2: 2, 4: 3, 6: 3}
    assert [scalars["val/iou_final_length"][h["step"]] for h in summary["history"]] == (
        pytest.approx([h["val_iou_final_length"] for h in summary["history"]]))
    assert images["val/iou_per_step"] == [2, 4, 6]  # the Fig. 5 plot at each validation
    assert images["val/tracking"] == [5, 6]  # every image_every steps and the last step

    # The test scores, and the hparams view: the configuration and the final metrics.
    assert scalars["test/iou"] == {6: pytest.approx(summary["test"]["mean_iou"])}
    assert images["test/iou_per_step"] == [6]
    start = hparams["_hparams_/session_start_info"].session_start_info
    assert start.hparams["model/name"].string_value == "small"
    assert start.hparams["optimizer/learning_rate"].number_value == pytest.approx(1e-3)
    assert start.hparams["schedule/curriculum_lengths"].string_value == "2,3"
    assert start.hparams["data/dataset"].string_value == "synthetic"
    experiment = hparams["_hparams_/experiment"].experiment
    assert "test/iou" in [m.name.tag for m in experiment.metric_infos]

    for tag in ("lambda/all", "optim/grad_norm_per_variable"):
        assert histograms[tag] == [2, 4, 6]
    assert any(tag.startswith("weights/") for tag in histograms)
