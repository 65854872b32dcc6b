"""The two mean IoUs that `python -m hart_tf.evaluate` reports: ours (t >= 1 pooled) and the
authors' notebook's (the per-step curve's mean from t = 0)."""

from __future__ import annotations

import numpy as np
import pytest

from hart_tf.eval.sequences import score
from hart_tf.model import metrics


def _notebook_reference(ious, presence, steps):
    """eval_kitti.ipynb: per-step sums of IoU and of presence, divided, then the curve's mean."""
    ious, presence = ious[:, :steps], presence[:, :steps]
    curve = (ious * presence).sum(0) / presence.sum(0)
    return float(np.nanmean(curve))


def _boxes(rng, n, t):
    yx = rng.uniform(0, 50, size=(n, t, 2))
    hw = rng.uniform(5, 20, size=(n, t, 2))
    return np.concatenate([yx, hw], -1).astype(np.float32)


def test_both_protocols_on_random_tracks():
    rng = np.random.default_rng(0)
    gt = _boxes(rng, 6, 8)
    pred = gt + rng.normal(0, 3, size=gt.shape).astype(np.float32)
    pred[:, 0] = gt[:, 0]  # the tracker is given the first box
    presence = np.ones((6, 8), np.float32)
    presence[0, 4:] = presence[1, 6:] = 0  # shorter sequences, zero-padded
    ious = np.asarray(metrics.iou(pred, gt))
    s = score(pred, gt, presence)
    # Ours: every present (object, step) pair with t >= 1.
    assert s["mean_iou"] == pytest.approx((ious * presence)[:, 1:].sum() / presence[:, 1:].sum())
    # The notebook's: the curve over t = 0 .. T - 2 (the evaluated steps), t = 0 included.
    assert s["mean_iou_notebook"] == pytest.approx(_notebook_reference(ious, presence, 7))
    assert s["mean_iou_notebook"] > s["mean_iou"]  # t = 0 scores 1, short tracks weigh more


def test_notebook_counts_each_step_once_whatever_its_tracks():
    # One long perfect track and many short bad ones: pooling is dominated by the short
    # ones at t = 1, the curve weighs each step once.
    gt = np.tile(np.array([10, 10, 10, 10], np.float32), (5, 4, 1))
    pred = gt.copy()
    pred[1:, 1] += np.array([0, 5, 0, 0], np.float32)  # IoU 1/3 at t = 1 for tracks 1..4
    presence = np.zeros((5, 4), np.float32)
    presence[0] = 1
    presence[1:, :2] = 1
    curve_t1 = (1 + 4 / 3) / 5
    assert metrics.notebook_mean_iou(pred, gt, presence, 4) == pytest.approx(
        (1 + curve_t1 + 1 + 1) / 4)
    assert float(np.asarray(metrics.mean_iou(pred, gt, presence))) == pytest.approx(
        (1 + 4 / 3 + 1 + 1) / 7)


def test_steps_without_objects_are_left_out_and_all_empty_is_an_error():
    gt = np.tile(np.array([0, 0, 10, 10], np.float32), (1, 3, 1))
    presence = np.array([[1, 0, 1]], np.float32)
    assert metrics.notebook_mean_iou(gt, gt, presence) == 1.0
    with pytest.raises(ValueError, match="no present object"):
        metrics.notebook_mean_iou(gt, gt, np.zeros((1, 3), np.float32))
