"""Box overlap and tracking-quality metrics.

Boxes are (y, x, h, w) in pixels, top-left corner, in the last axis. `intersection`, `iou`,
`iou_per_step` and `mean_iou` are written in `keras.ops` so they run inside a train step on
any backend (they accept NumPy arrays too; `keras.ops.convert_to_numpy` brings results back).
`success_curve`, `success_auc`, `precision_at` and `static_baseline` are NumPy-only
evaluation helpers.
"""

from __future__ import annotations

import numpy as np
from keras import ops

# OTB success plot: overlap thresholds 0, 0.05, ..., 1 (the OTB toolkit's 0:0.05:1).
OTB_THRESHOLDS = np.linspace(0.0, 1.0, 21)
# Thresholds of the success AUC: the midpoints of 20 equal bins of [0, 1], so the AUC is the
# midpoint-rule integral of P(IoU > t) over t in [0, 1]: 1 for a perfect tracker, 0 for one
# that never overlaps. OTB's 21 thresholds with a strict '>' cap a perfect tracker at 20/21.
AUC_THRESHOLDS = np.linspace(0.025, 0.975, 20)


def _safe_divide(num, den):
    """num / den where den > 0, else 0; the masked branch never sees a zero divisor."""
    positive = den > 0
    return ops.where(positive, num / ops.where(positive, den, 1.0), 0.0)


def intersection(a, b):
    """Area of the overlap of boxes `a` and `b`, elementwise over `[..., 4]` -> `[...]`."""
    a = ops.cast(a, "float32")
    b = ops.cast(b, "float32")
    y1 = ops.maximum(a[..., 0], b[..., 0])
    x1 = ops.maximum(a[..., 1], b[..., 1])
    y2 = ops.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2])
    x2 = ops.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3])
    return ops.relu(y2 - y1) * ops.relu(x2 - x1)


def iou(a, b):
    """Intersection over union of boxes `a` and `b`, `[..., 4]` -> `[...]`.

    Two zero-area boxes have IoU 0 (not NaN); rounding above 1 is clipped.
    """
    a = ops.cast(a, "float32")
    b = ops.cast(b, "float32")
    inter = intersection(a, b)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return ops.minimum(_safe_divide(inter, union), 1.0)


def iou_per_step(pred, gt, presence):
    """Mean IoU over the present objects at each time step (the original's per-timestep IoU).

    Args:
        pred: predicted boxes, `[B, T, 4]`.
        gt: ground-truth boxes, `[B, T, 4]`.
        presence: `[B, T]`, 1 where the object is visible.

    Returns:
        `[T]`; 0 at steps where no object is present. Step 0 is the given first box:
        drop it (`[1:]`) when reporting tracking quality.
    """
    presence = ops.cast(presence, "float32")
    overlap = ops.where(presence > 0, iou(pred, gt), 0.0)  # (B, T)
    return _safe_divide(ops.sum(overlap, axis=0), ops.sum(presence, axis=0))


def mean_iou(pred, gt, presence):
    """Mean IoU over all present (object, step) pairs with t >= 1 -> scalar."""
    presence = ops.cast(presence[:, 1:], "float32")
    overlap = ops.where(presence > 0, iou(pred[:, 1:], gt[:, 1:]), 0.0)  # (B, T-1)
    return _safe_divide(ops.sum(overlap), ops.sum(presence))


def notebook_mean_iou(pred, gt, presence, steps: int | None = None) -> float:
    """The authors' evaluation notebook's score: the mean over t = 0 .. steps - 1 of the IoU
    curve (mean IoU of the present objects at each step), t = 0 included, where the tracker
    holds the given box (IoU 1). Steps without a present object are left out (the notebook
    would divide by zero there). `mean_iou` instead pools every present (object, step) pair
    with t >= 1, so long sequences weigh more and the free t = 0 is not counted.

    Args:
        pred: predicted boxes, `[B, T, 4]`.
        gt: ground-truth boxes, `[B, T, 4]`.
        presence: `[B, T]`, 1 where the object is visible.
        steps: length of the curve (the notebook: 60 on windows of 60 frames); default T.

    Returns:
        The curve's mean, a float.
    """
    steps = steps or np.shape(gt)[1]
    present = np.asarray(presence)[:, :steps] > 0
    curve = np.asarray(iou_per_step(pred[:, :steps], gt[:, :steps], presence[:, :steps]))
    if not present.any():
        raise ValueError("notebook_mean_iou: no present object to score")
    return float(curve[present.any(axis=0)].mean())


def success_curve(ious, thresholds=OTB_THRESHOLDS) -> tuple[np.ndarray, np.ndarray]:
    """OTB success plot: fraction of frames with IoU strictly above each threshold.

    Args:
        ious: per-frame IoUs of the frames to score (any shape, flattened).
        thresholds: overlap thresholds; defaults to OTB's 21 steps 0, 0.05, ..., 1.

    Returns:
        `(thresholds, success)`, both `[n_thresholds]`.
    """
    ious = np.asarray(ious, dtype=np.float64).reshape(-1)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if ious.size == 0:
        raise ValueError("success_curve: got no IoUs to score")
    return thresholds, (ious[:, None] > thresholds[None, :]).mean(axis=0)


def success_auc(ious, thresholds=AUC_THRESHOLDS) -> float:
    """Area under the success plot: the mean of `success_curve` over `AUC_THRESHOLDS`.

    A perfect tracker scores 1. (With OTB's 21 thresholds 0, 0.05, ..., 1 and its strict
    `IoU > threshold`, the threshold 1 never counts and a perfect tracker scores 20/21, as in
    the OTB, GOT-10k and pytracking toolkits; pass `thresholds=OTB_THRESHOLDS` for that.)
    """
    return float(success_curve(ious, thresholds)[1].mean())


def precision_at(pred, gt, px: float = 20.0, presence=None) -> float:
    """OTB precision: fraction of frames whose box-centre distance is at most `px` pixels.

    Args:
        pred: predicted boxes, `[..., 4]`.
        gt: ground-truth boxes, `[..., 4]`.
        px: distance threshold in pixels (20 in OTB).
        presence: optional `[...]` mask; only frames with presence > 0 are scored.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.shape[-1:] != (4,):
        raise ValueError(f"precision_at: pred {pred.shape} and gt {gt.shape} must match, [..., 4]")
    centre_pred = pred[..., :2] + 0.5 * pred[..., 2:]
    centre_gt = gt[..., :2] + 0.5 * gt[..., 2:]
    dist = np.linalg.norm(centre_pred - centre_gt, axis=-1)
    if presence is not None:
        dist = dist[np.asarray(presence) > 0]
    if dist.size == 0:
        raise ValueError("precision_at: got no frames to score")
    return float((dist <= px).mean())


def static_baseline(boxes0, num_steps: int) -> np.ndarray:
    """A tracker that never moves: the first box repeated, `[B, 4]` -> `[B, num_steps, 4]`."""
    boxes0 = np.asarray(boxes0, dtype=np.float32)
    if boxes0.ndim != 2 or boxes0.shape[-1] != 4:
        raise ValueError(f"static_baseline: boxes0 must be [B, 4], got {boxes0.shape}")
    return np.repeat(boxes0[:, None, :], num_steps, axis=1)
