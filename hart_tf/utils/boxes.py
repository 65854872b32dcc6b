"""Box conventions, in NumPy. hart_tf's own boxes are (y, x, h, w) with the top-left corner,
in pixels of the (resized) frame; files, OpenCV and the `Tracker` API use (x, y, w, h).
The model's normalised attention (y/H, x/W, h/(H-1), w/(W-1)) lives with the layer that
reads it (`hart_tf.layers.spatial_attention`), and IoU with the metrics
(`hart_tf.model.metrics`, in `keras.ops`, which also take NumPy arrays)."""

from __future__ import annotations

import numpy as np


def _swap_axes_order(boxes, name: str) -> np.ndarray:
    boxes = np.asarray(boxes, np.float32)
    if boxes.shape[-1:] != (4,):
        raise ValueError(f"{name}: boxes must be [..., 4], got shape {boxes.shape}")
    return boxes[..., [1, 0, 3, 2]]  # the swap is its own inverse


def xywh_to_yxhw(boxes) -> np.ndarray:
    """(x, y, w, h) -> (y, x, h, w) in the last axis, float32."""
    return _swap_axes_order(boxes, "xywh_to_yxhw")


def yxhw_to_xywh(boxes) -> np.ndarray:
    """(y, x, h, w) -> (x, y, w, h) in the last axis, float32."""
    return _swap_axes_order(boxes, "yxhw_to_xywh")
