"""The trainer's wiring of the original's curriculum: epochs of all augmented training windows
and promotion on a test-mode IoU over a quarter epoch of training batches."""

from __future__ import annotations

from pathlib import Path

import pytest

from hart_tf.model.config import HARTConfig
from hart_tf.train import sources as datasets
from hart_tf.train.options import TrainOptions


def _options(tmp_path: Path, **changes) -> TrainOptions:
    tiny = HARTConfig.from_preset("small", image_size=(64, 64), glimpse_size=(8, 8),
                                  v1_channels=8, rnn_units=12, dorsal_units=10)
    base = dict(config=tiny, batch_size=2, steps_per_epoch=2, epochs=2,
                curriculum_lengths=(2, 3), curriculum_threshold=0.0,
                checkpoint_dir=str(tmp_path / "ckpt"), logdir=str(tmp_path / "tb"),
                eval_sequences=1, eval_steps=2, image_every=0, run_eagerly=True, progress=0)
    base.update(changes)
    return TrainOptions.from_flat(**base)


@pytest.mark.slow
def test_test_mode_score_decides_promotion(tmp_path, monkeypatch):
    from hart_tf.train import trainer as training

    calls = []

    def promotion_iou(model, source, length, n_batches, step):
        calls.append((length, n_batches, step))
        return 0.5

    monkeypatch.setattr(datasets, "promotion_iou", promotion_iou)
    # Threshold 0.4: the (faked) test-mode score 0.5 promotes, whatever the train IoU.
    options = _options(tmp_path, curriculum_score="test_mode",
                       curriculum_lengths=(2, 3), curriculum_threshold=0.4)
    summary = training.train(options)
    assert calls == [(2, 1, 2)]  # a quarter of the 2-step epoch, at least one batch
    assert [(h["length"], h.get("promotion_iou")) for h in summary["history"]] == [
        (2, 0.5), (3, None)]  # at the longest length nothing is checked


def test_promotion_iou_scores_training_batches_in_test_mode(tmp_path):
    import keras

    from hart_tf.train.trainer import build_model

    options = _options(tmp_path)
    keras.utils.set_random_seed(0)
    model = build_model(options)
    source = datasets.train_source(options)
    score = datasets.promotion_iou(model, source, 3, 2, step=7)
    assert 0.0 <= score <= 1.0
    assert score == datasets.promotion_iou(model, source, 3, 2, step=7)  # test mode: no noise
    x, _ = next(source.score_batches(3, 7))
    y, _ = next(source.score_batches(3, 8))
    t, _ = next(source.batches(3, start=7))
    assert (x["frames"] != y["frames"]).any() and (x["frames"] != t["frames"]).any()


def test_an_epoch_is_every_augmented_kitti_window(six_frames):
    from hart_tf.data import kitti

    options = _options(six_frames, config=HARTConfig.from_preset("kitti"), dataset="kitti",
                       data_dir=str(six_frames), batch_size=1, epoch_from_windows=True)
    source = datasets.train_source(options)
    plain = kitti.make_windows(source._kitti, "train", 2)
    assert len(plain) > 0
    assert source.epoch_steps(2) == 4 * len(plain)  # reversed, mirrored and both


def test_epoch_from_windows_needs_windows(tmp_path):
    source = datasets.train_source(_options(tmp_path, epoch_from_windows=True))
    with pytest.raises(ValueError, match="kitti, kth"):
        source.epoch_steps(2)


@pytest.mark.slow
def test_the_trainer_runs_epochs_of_all_windows(tmp_path, monkeypatch):
    from hart_tf.train import trainer as training

    monkeypatch.setattr(datasets.TrainSource, "epoch_steps", lambda self, length: length + 1)
    summary = training.train(_options(tmp_path, epoch_from_windows=True, steps_per_epoch=99))
    # 3 steps at T=2 (it grows at once, threshold 0), then 4 at T=3.
    assert [(h["length"], h["step"]) for h in summary["history"]] == [(2, 3), (3, 7)]
