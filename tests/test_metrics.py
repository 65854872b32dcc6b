"""Box-overlap and tracking metrics against hand-computed values."""

import numpy as np
import pytest
from keras import ops

from hart_tf.model import metrics


def np_(x):
    return ops.convert_to_numpy(x)


def test_intersection_and_iou_by_hand():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [2, 3, 4, 5]], np.float32)
    b = np.array([[5, 5, 10, 10], [0, 5, 10, 10], [20, 20, 5, 5], [2, 3, 4, 5]], np.float32)
    # overlaps: 5x5, 10x5, none, identical 4x5
    np.testing.assert_allclose(np_(metrics.intersection(a, b)), [25, 50, 0, 20])
    np.testing.assert_allclose(np_(metrics.iou(a, b)), [25 / 175, 50 / 150, 0, 1], rtol=1e-6)
    # symmetric
    np.testing.assert_allclose(np_(metrics.iou(b, a)), np_(metrics.iou(a, b)))


def test_iou_zero_area_is_zero_not_nan():
    a = np.array([[3, 3, 0, 0], [3, 3, 0, 5]], np.float32)
    out = np_(metrics.iou(a, a))
    np.testing.assert_array_equal(out, [0, 0])


def test_perfect_tracker():
    rng = np.random.default_rng(0)
    gt = np.concatenate([rng.uniform(0, 50, (3, 6, 2)), rng.uniform(5, 20, (3, 6, 2))], -1)
    gt = gt.astype(np.float32)
    presence = np.ones((3, 6), np.float32)
    np.testing.assert_allclose(np_(metrics.iou_per_step(gt, gt, presence)), np.ones(6), rtol=1e-6)
    np.testing.assert_allclose(np_(metrics.mean_iou(gt, gt, presence)), 1.0, rtol=1e-6)
    ious = np_(metrics.iou(gt, gt))
    assert metrics.success_auc(ious) == pytest.approx(1.0)
    # OTB's own thresholds count IoU > threshold, so the threshold 1 never succeeds.
    assert metrics.success_auc(ious, metrics.OTB_THRESHOLDS) == pytest.approx(20 / 21)
    assert metrics.precision_at(gt, gt) == 1.0


def test_known_offset():
    gt = np.array([[[0, 0, 10, 10]] * 4], np.float32)  # (1, 4, 4)
    pred = gt + np.array([0, 5, 0, 0], np.float32)  # IoU 50 / 150 = 1/3
    presence = np.ones((1, 4), np.float32)
    np.testing.assert_allclose(np_(metrics.iou_per_step(pred, gt, presence)), [1 / 3] * 4, 1e-6)
    # 1/3 exceeds the thresholds 0, 0.05, ..., 0.30: 7 of 21.
    thresholds, curve = metrics.success_curve(np_(metrics.iou(pred, gt)))
    assert thresholds.shape == curve.shape == (21,)
    np.testing.assert_array_equal(curve, [1.0] * 7 + [0.0] * 14)
    ious = np_(metrics.iou(pred, gt))
    assert metrics.success_auc(ious, metrics.OTB_THRESHOLDS) == pytest.approx(7 / 21)
    # 1/3 exceeds the bin midpoints 0.025, ..., 0.325: 7 of 20.
    assert metrics.success_auc(ious) == pytest.approx(7 / 20)
    # Half the frames perfect, half offset.
    assert metrics.success_auc([1.0, 1 / 3]) == pytest.approx((20 + 7) / 40)


def test_precision_at_centre_distance():
    gt = np.array([[10, 10, 8, 8], [10, 10, 8, 8]], np.float32)
    pred = gt + np.array([[3, 4, 0, 0], [30, 0, 0, 0]], np.float32)  # distances 5 and 30
    assert metrics.precision_at(pred, gt, px=20) == 0.5
    assert metrics.precision_at(pred, gt, px=5) == 0.5
    assert metrics.precision_at(pred, gt, px=4.9) == 0.0
    assert metrics.precision_at(pred, gt, px=20, presence=[1, 0]) == 1.0
    # Box size changes around the same centre do not count.
    grown = np.array([[8, 8, 12, 12]], np.float32)
    assert metrics.precision_at(grown, gt[:1], px=0.0) == 1.0
    with pytest.raises(ValueError, match="must match"):
        metrics.precision_at(pred[:1], gt)


def test_iou_per_step_masks_absent_objects():
    gt = np.array([[[0, 0, 10, 10]] * 2, [[0, 0, 10, 10]] * 2], np.float32)
    pred = np.array([[[0, 0, 10, 10]] * 2, [[50, 50, 1, 1]] * 2], np.float32)
    presence = np.array([[1, 1], [0, 1]], np.float32)
    # t=0: only object 0 (IoU 1); t=1: objects 0 and 1 (IoU 1 and 0).
    np.testing.assert_allclose(np_(metrics.iou_per_step(pred, gt, presence)), [1.0, 0.5])
    # mean over present pairs with t >= 1: (1 + 0) / 2
    np.testing.assert_allclose(np_(metrics.mean_iou(pred, gt, presence)), 0.5)
    # nothing present: 0, not NaN
    np.testing.assert_array_equal(np_(metrics.iou_per_step(pred, gt, 0 * presence)), [0, 0])


def test_static_baseline():
    boxes0 = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32)
    out = metrics.static_baseline(boxes0, 3)
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out[:, 2], boxes0)
    np.testing.assert_array_equal(out[1, 0], boxes0[1])
    with pytest.raises(ValueError, match=r"\[B, 4\]"):
        metrics.static_baseline(boxes0[0], 3)


def test_success_curve_rejects_empty():
    with pytest.raises(ValueError, match="no IoUs"):
        metrics.success_auc([])
