"""Training entry point, curriculum and evaluation scores.

The training run is tiny and eager (`--run_eagerly`): building the train graph takes
longer on two cores than the few eager steps do.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hart_tf.cli import train as train_cli
from hart_tf.eval.sequences import evaluate_model, score
from hart_tf.train.curriculum import Curriculum
from hart_tf.train.options import OptimizerOptions, TrainOptions


def _events(logdir: Path):
    """(step, tag, value) of every summary in the event files under `logdir`."""
    import tensorflow as tf

    for path in sorted(logdir.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                yield event.step, value.tag, tf.make_ndarray(value.tensor)


def _scalars(logdir: Path) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for step, tag, value in _events(logdir):
        if value.ndim == 0:
            out.setdefault(tag, {})[step] = float(value)
    return out


def test_train_cli_writes_checkpoints_and_events_then_resumes(tmp_path, run_cli):
    run, logdir = tmp_path / "ckpt" / "tiny", tmp_path / "tb"
    args = ["--image_size=64,64", "--glimpse_size=8,8", "--rnn_units=12", "--batch_size=2",
            "--steps_per_epoch=2", "--curriculum_lengths=2,3", "--curriculum_threshold=0",
            "--checkpoint_every=1", f"--checkpoint_dir={tmp_path / 'ckpt'}", "--run_name=tiny",
            f"--logdir={logdir}", "--eval_sequences=2", "--eval_steps=2", "--image_every=2",
            "--run_eagerly", "--max_minutes=0"]
    first = run_cli(train_cli.main, [*args, "--epochs=1"], "train", code=0)
    assert "Resumed" not in first.out
    assert sorted(p.name for p in run.iterdir()) == [
        "best.json", "best.keras", "ckpt-1.json", "ckpt-1.keras", "ckpt-2.json", "ckpt-2.keras",
        "summary.json"]
    state = json.loads((run / "ckpt-2.json").read_text())
    assert (state["step"], state["epoch"], state["epoch_step"]) == (2, 1, 0)
    assert state["curriculum"]["index"] == 1  # threshold 0: grows after one epoch
    assert state["data"] == {  # what it trained on, by flag name
        "dataset": "synthetic", "num_distractors_max": 3,
        "distractor_jitter": 0.15, "distractor_front_prob": 0.5, "distractor_cross_speed": 0.0,
        "occlusion_prob": 0.5}
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 1

    # Resumed on other data flags: it goes on, and says so in one line.
    resumed = run_cli(train_cli.main, [*args, "--epochs=2", "--distractor_cross_speed=2"],
                      "train", code=0)
    out = resumed.out
    assert f"Resumed {run} at step 2 (epoch 1, T=3) from ckpt-2.keras" in out
    assert ("warning: ckpt-2.keras was trained on other synthetic data: "
            "--distractor_cross_speed=0.0 (here 2.0); training goes on with this run's "
            "flags") in resumed.err
    # A short summary ends the run, no JSON; the whole record is in summary.json.
    result, where, tensorboard, _ = out.strip().splitlines()[-4:]
    assert result.startswith("Test mean IoU over 2 steps: ") and "{" not in out
    assert where.startswith(f"Checkpoint: {run / 'best.keras'}")
    assert tensorboard == f"TensorBoard: tensorboard --logdir {logdir}"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["checkpoint"] == str(run / "best.keras")
    assert summary["test"]["steps"] == 2 and summary["test"]["sequences"] == 2
    assert (summary["step"], summary["epoch"], summary["length"]) == (4, 2, 3)
    assert summary["data"]["distractor_cross_speed"] == 2.0
    assert [h["length"] for h in summary["history"]] == [2, 3]
    assert json.loads((run / "best.json").read_text())["step"] == 4  # first epoch at T=3

    scalars = _scalars(logdir)  # both processes' event files
    assert scalars["curriculum/length"] == {1: 2.0, 2: 2.0, 3: 3.0, 4: 3.0}
    assert set(scalars["loss/total"]) == {1, 2, 3, 4}
    assert set(scalars["optim/skipped_updates"]) == {1, 2, 3, 4}
    assert set(scalars["val/iou_current_length"]) == set(scalars["val/iou_final_length"]) == {
        2, 4}
    assert {"loss/tracking", "loss/attention", "loss/appearance", "metrics/iou",
            "optim/grad_norm", "optim/learning_rate", "lambda/tracking"} <= set(scalars)
    images = [(step, value.shape) for step, tag, value in _events(logdir)
              if tag == "val/tracking"]
    assert [step for step, _ in images] == [2, 4]

    # --noresume starts afresh: the earlier run's checkpoints (ckpt-2..4 and best) go, so
    # neither a later resume nor this run's evaluation (it never reaches T=3, so writes no
    # best of its own during training) can pick them up.
    afresh = run_cli(train_cli.main, [*args, "--epochs=1", "--steps_per_epoch=1",
                                      "--curriculum_threshold=2", "--noresume"], "train",
                     code=0)
    out = afresh.out
    assert f"--noresume: removed 4 checkpoint(s) of an earlier run from {run}" in out
    assert "Resumed" not in out
    assert sorted(p.name for p in run.iterdir()) == [
        "best.json", "best.keras", "ckpt-1.json", "ckpt-1.keras", "summary.json"]
    assert json.loads((run / "best.json").read_text())["step"] == 1


# ---- curriculum --------------------------------------------------------------------------


def test_curriculum_follows_a_fake_history():
    c = Curriculum((5, 10, 20), threshold=0.7, threshold_decrease=0.1, min_epochs=2)
    assert c.current_threshold() == 0.7
    history = [0.9, 0.5, 0.71, 0.67, 0.668, 0.99]
    lengths, grew = [], []
    for iou in history:
        grew.append(c.end_epoch(iou))
        lengths.append(c.length)
    # 0.9: first epoch at 5 (min 2); 0.5 < 0.7; 0.71 >= 0.7 -> 10; 0.67: first at 10;
    # 0.668 >= 0.7 - 0.1 * 5/15 -> 20; at the longest length it stays.
    assert lengths == [5, 5, 10, 10, 20, 20]
    assert grew == [False, False, True, False, True, False]
    assert c.current_threshold() == pytest.approx(0.6)
    state = c.state()
    assert state == {"index": 2, "epochs_at_length": 1, "lengths": [5, 10, 20]}
    again = Curriculum((5, 10, 20))
    again.restore(json.loads(json.dumps(state)))
    assert (again.length, again.epochs_at_length, again.at_max) == (20, 1, True)
    with pytest.raises(ValueError) as info:
        Curriculum((5, 10)).restore(state)
    assert str(info.value) == ("checkpoint curriculum lengths [5, 10, 20] differ from "
                               "--curriculum_* flags [5, 10]")


def test_collapse_warning_is_said_once_per_collapse_on_a_fake_history():
    from hart_tf.train.curriculum import collapse_warning

    def said(ious, lengths=None):
        lengths = lengths or [30] * len(ious)
        history = [dict(iou=v, length=t, epoch=i + 1)
                   for i, (v, t) in enumerate(zip(ious, lengths, strict=True))]
        return [i + 1 for i in range(len(history)) if collapse_warning(history[: i + 1])]

    # Falls under a third of the best (0.5, epoch 2) at epoch 4: said then, not again while
    # it stays down; said again when it falls once more after recovering (epoch 7).
    assert said([0.3, 0.5, 0.45, 0.1, 0.05, 0.3, 0.1]) == [4, 7]
    # Never good at this length (best < 0.2): a low IoU is no collapse.
    assert said([0.15, 0.19, 0.01]) == []
    # The best counts per length: a new length starts afresh.
    assert said([0.6, 0.6, 0.15, 0.1], lengths=[10, 10, 20, 20]) == []
    history = [dict(iou=0.52, length=30, epoch=51), dict(iou=0.03, length=30, epoch=52)]
    assert collapse_warning(history) == (
        "warning: train IoU fell to 0.030 at T=30, under 33% of its best at this length "
        "(0.520, epoch 51): the boxes may have lost their objects")
    assert collapse_warning([]) is None
    assert collapse_warning([dict(length=30, epoch=1)]) is None  # no train IoU logged


def test_training_prints_the_collapse_warning(tmp_path, monkeypatch, capsys):
    from hart_tf.train import trainer as training

    seen = []

    def fake(history):
        seen.append([(h["epoch"], h["length"], "iou" in h) for h in history])
        return f"warning: collapse at epoch {history[-1]['epoch']}"

    monkeypatch.setattr(training, "collapse_warning", fake)
    training.train(_tiny_options(tmp_path, epochs=2))
    # Called after every epoch with the whole history, the new epoch last.
    assert seen == [[(1, 2, True)], [(1, 2, True), (2, 3, True)]]
    err = capsys.readouterr().err
    assert "warning: collapse at epoch 1\n" in err and "warning: collapse at epoch 2\n" in err


def test_curriculum_lengths():
    assert Curriculum.from_range(5, 20, step=4).lengths == (5, 9, 13, 17, 20)
    assert Curriculum.from_range(3, 5).lengths == (3, 4, 5)
    with pytest.raises(ValueError, match=r"^curriculum lengths must increase, got \(5, 5\)$"):
        Curriculum((5, 5))
    with pytest.raises(ValueError, match=r"^curriculum lengths must be >= 2, got \(1, 5\)$"):
        Curriculum((1, 5))


def test_learning_rate_decays_with_the_sequence_length():

    options = OptimizerOptions(learning_rate=1e-3, lr_decay={10: 0.5, 20: 0.3})
    assert [options.rate_at(t) for t in (5, 10, 19, 20, 30)] == pytest.approx(
        [1e-3, 5e-4, 5e-4, 1.5e-4, 1.5e-4])


def _fit_calls(monkeypatch) -> list[tuple[int, int, int]]:
    """Records (initial_epoch, epochs, steps_per_epoch) of every `fit` of a HART."""
    from hart_tf.model.hart import HART

    calls, real = [], HART.fit

    def fit(self, *args, **kwargs):
        calls.append((kwargs["initial_epoch"], kwargs["epochs"], kwargs["steps_per_epoch"]))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(HART, "fit", fit)
    return calls


def _tiny_options(tmp_path: Path, **changes) -> TrainOptions:
    from hart_tf.model.config import HARTConfig

    tiny = HARTConfig.from_preset("small", image_size=(64, 64), glimpse_size=(8, 8),
                                  v1_channels=8, rnn_units=12, dorsal_units=10)
    base = dict(config=tiny, batch_size=2, steps_per_epoch=2, epochs=3,
                curriculum_lengths=(2, 3), curriculum_threshold=0.0,
                checkpoint_dir=str(tmp_path / "ckpt"), logdir=str(tmp_path / "tb"),
                eval_sequences=1, eval_steps=2, image_every=0, run_eagerly=True, progress=0)
    base.update(changes)
    return TrainOptions.from_flat(**base)


def test_one_fit_per_curriculum_length(tmp_path, monkeypatch):
    from hart_tf.train.trainer import train

    calls = _fit_calls(monkeypatch)
    summary = train(_tiny_options(tmp_path))
    # T=2 for one epoch (threshold 0: it grows at once), then one fit for the two epochs
    # left at T=3; each epoch still validates and checkpoints.
    assert calls == [(0, 3, 2), (1, 3, 2)]
    assert [(h["length"], h["epoch"], h["step"]) for h in summary["history"]] == [
        (2, 1, 2), (3, 2, 4), (3, 3, 6)]
    assert (summary["step"], summary["epoch"], summary["length"]) == (6, 3, 3)
    run = tmp_path / "ckpt" / "hart"
    assert sorted(json.loads(p.read_text())["step"] for p in run.glob("ckpt-*.json")) == [
        2, 4, 6]


def test_init_from_starts_a_new_run_from_another_runs_weights(tmp_path, capsys):
    import keras

    from hart_tf.model.saving import CheckpointError
    from hart_tf.train import trainer as training

    first = training.train(_tiny_options(tmp_path / "a", epochs=1))
    source = keras.saving.load_model(first["checkpoint"], compile=False)
    trainer = training._Trainer(_tiny_options(tmp_path / "b", init_from=str(
        tmp_path / "a" / "ckpt" / "hart")))  # a run folder: its best checkpoint
    assert f"Initialised from {first['checkpoint']}" in capsys.readouterr().out
    theirs = [v for v in source.weights if not v.path.endswith("seed_generator_state")]
    mine = [v for v in trainer.model.weights if not v.path.endswith("seed_generator_state")]
    assert len(mine) == len(theirs) > 10
    for v, w in zip(mine, theirs, strict=True):
        assert v.path.split("/", 1)[1] == w.path.split("/", 1)[1]  # the same weight
        np.testing.assert_array_equal(v.numpy(), w.numpy(), err_msg=v.path)
    # A new run: no step, epoch or curriculum progress, an optimizer that has not stepped.
    assert (trainer.step, trainer.epoch, trainer.curriculum.index, trainer.history) == (
        0, 0, 0, [])
    assert int(trainer.model.optimizer.iterations.numpy()) == 0
    # Once the new run has its own checkpoint, rerunning it resumes that and says so.
    opts_b = _tiny_options(tmp_path / "b", epochs=1, init_from=first["checkpoint"])
    training.train(opts_b)
    capsys.readouterr()
    again = training._Trainer(opts_b.replace(epochs=2))
    assert again.step == 2
    assert "--init_from ignored: the run resumed from its own checkpoint" in (
        capsys.readouterr().out)
    # Another architecture is refused in one line naming the field.
    other = _tiny_options(tmp_path / "c", init_from=first["checkpoint"])
    other = other.replace(config=other.config.replace(rnn_units=10))
    with pytest.raises(CheckpointError, match=r"^--init_from: .*best.keras holds a different "
                       r"model: --rnn_units is 10 here but 12 in the checkpoint$"):
        training._Trainer(other)


def test_init_from_a_missing_checkpoint_is_a_one_line_error(tmp_path, run_cli):
    run = run_cli(train_cli.main, [f"--init_from={tmp_path / 'nothing'}",
                                   f"--checkpoint_dir={tmp_path}", f"--logdir={tmp_path / 'tb'}",
                                   "--epochs=1", "--steps_per_epoch=1"], "train", code=2)
    assert run.err[-1] == f"error: --init_from: {tmp_path / 'nothing'} does not exist"
    assert not (tmp_path / "hart").exists()  # nothing written


def test_time_budget_stops_inside_a_fit(tmp_path, monkeypatch):
    from hart_tf.train.trainer import train

    calls = _fit_calls(monkeypatch)
    # IoU never reaches 2
    summary = train(_tiny_options(tmp_path, curriculum_threshold=2.0, max_minutes=1e-6))
    assert calls == [(0, 3, 2)]
    assert (summary["step"], summary["epoch"], summary["length"]) == (2, 1, 2)


# ---- evaluation scores ----------------------------------------------------------------------

# (y, x, h, w) ground truth of three 3-frame sequences (the objects do not move).
GT = np.array([[[10, 10, 10, 10]] * 3, [[20, 30, 30, 30]] * 3, [[0, 0, 8, 8]] * 3],
              np.float32)
PRESENCE = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 0]], np.float32)


class _FixedModel:
    """Stands in for HART in `evaluate_model`: predicts the given boxes."""

    predict_function = None

    def __init__(self, boxes):
        self.boxes = boxes
        self.done = 0  # sequences predicted so far (evaluate_model goes through in order)

    def make_predict_function(self):
        self.predict_function = object()

    def predict_on_batch(self, x):
        n = len(x["box0"])
        self.done += n
        return {"boxes": self.boxes[self.done - n : self.done]}


def _data(n: int = 3) -> dict:
    return {"frames": np.zeros((n, 3, 4, 4, 3), np.uint8), "boxes": GT[:n],
            "presence": PRESENCE[:n]}


def test_a_perfect_tracker_scores_one():
    result = evaluate_model(_FixedModel(GT), _data(), batch_size=8)
    assert result["mean_iou"] == 1.0 and result["iou_per_step"] == [1.0, 1.0]
    assert result["success_auc"] == 1.0 and result["precision_20"] == 1.0
    assert (result["steps"], result["sequences"]) == (2, 3)
    # The objects stand still, so the static baseline is perfect as well.
    assert result["static_mean_iou"] == 1.0 and result["static_success_auc"] == 1.0


def test_known_offsets_give_the_hand_computed_scores():
    pred = GT.copy()
    pred[1, 1:, 1] += 25  # 30x30 box moved 25 px: IoU 150 / 1650 = 1/11, 25 px off
    pred[2, 1, 1] += 2  # 8x8 box moved 2 px: IoU 48 / 80 = 0.6, 2 px off
    pred[2, 2] = [100, 100, 1, 1]  # absent object at t=2: not scored
    got = score(pred, GT, PRESENCE)
    ious = [1, 1, 1 / 11, 1 / 11, 0.6]  # the five present (sequence, t >= 1) frames
    assert got["mean_iou"] == pytest.approx(np.mean(ious), abs=1e-6)
    assert got["iou_per_step"] == pytest.approx([(1 + 1 / 11 + 0.6) / 3, (1 + 1 / 11) / 2])
    # AUC thresholds .025, .075, ..., .975: IoU 1 passes 20 of 20, 1/11 passes 2, .6 passes 12.
    assert got["success_auc"] == pytest.approx((20 + 20 + 2 + 2 + 12) / 100)
    assert got["precision_20"] == pytest.approx(3 / 5)  # centres 0, 0, 25, 25, 2 px off
    result = evaluate_model(_FixedModel(pred), _data(), batch_size=2)
    assert result["mean_iou"] == pytest.approx(got["mean_iou"])


def test_closing_lines_show_paths_relative_to_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train_cli._shown(tmp_path / "checkpoints" / "hart" / "best.keras") == (
        "checkpoints/hart/best.keras")
    assert train_cli._shown("checkpoints/hart/summary.json") == "checkpoints/hart/summary.json"
    assert train_cli._shown("/elsewhere/best.keras") == "/elsewhere/best.keras"


def test_progress_bars_only_on_a_terminal(monkeypatch):
    import io

    from hart_tf.train import trainer

    monkeypatch.setattr("sys.stdout", io.StringIO())  # a file or a pipe
    assert (trainer._fit_verbosity(0), trainer._fit_verbosity(1)) == (0, 2)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdout", Terminal())
    assert trainer._fit_verbosity(1) == 1
