"""Baseline single-object trackers to compare HART with on real clips.

A tracker follows the OpenCV / GOT-10k protocol: `init(frame, box_xywh)` with the first frame
and its box, then `update(frame) -> box_xywh` for each later frame. Frames are uint8 RGB
[H, W, 3]; boxes are (x, y, w, h) pixels, top-left corner. OpenCV is an optional extra
(`pip install -e '.[bench]'`), imported only when an `OpenCVTracker` is made.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Protocol

import numpy as np

BENCH_HINT = "pip install -e '.[bench]'"
# CSRT and KCF live in OpenCV's contrib modules; the plain opencv-python wheels lack them.
CONTRIB_HINT = (
    "pip uninstall -y opencv-python-headless opencv-python && "
    "pip install opencv-contrib-python-headless"
)
OPENCV_KINDS = ("csrt", "kcf", "mil")


class Tracker(Protocol):
    """What `run_tracker` needs: the OpenCV / GOT-10k `init` and `update` pair."""

    def init(self, frame: np.ndarray, box_xywh: np.ndarray) -> None: ...

    def update(self, frame: np.ndarray) -> np.ndarray: ...


def _check_box(box_xywh, name: str) -> np.ndarray:
    box = np.asarray(box_xywh, np.float32)
    if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"{name}: box must be finite (x, y, w, h) with w, h > 0, got {box_xywh}")
    return box


class StaticTracker:
    """Never moves: reports the first box on every frame (the 'no tracker' floor)."""

    def init(self, frame: np.ndarray, box_xywh: np.ndarray) -> None:
        self._box = _check_box(box_xywh, "StaticTracker.init")

    def update(self, frame: np.ndarray) -> np.ndarray:
        return self._box.copy()


def _import_cv2():
    try:
        import cv2
    except ImportError as e:
        raise ImportError(f"OpenCVTracker needs OpenCV: {BENCH_HINT}") from e
    return cv2


def _opencv_factory(cv2, kind: str):
    """The tracker constructor of this OpenCV build: 4.5+ names first, then `cv2.legacy`."""
    name = f"Tracker{kind.upper()}"
    candidates = [
        getattr(cv2, f"{name}_create", None),
        getattr(getattr(cv2, name, None), "create", None),
        getattr(getattr(cv2, "legacy", None), f"{name}_create", None),
    ]
    for factory in candidates:
        if factory is not None:
            return factory
    raise ImportError(
        f"OpenCV {cv2.__version__} has no {kind.upper()} tracker (it is in the contrib "
        f"modules): {BENCH_HINT}, or {CONTRIB_HINT}"
    )


class OpenCVTracker:
    """An OpenCV tracker (CSRT, KCF or MIL) behind the `Tracker` protocol.

    Takes RGB frames (converted to OpenCV's BGR here). Where OpenCV reports a failure the
    previous box is repeated, as the OTB toolkit expects a box on every frame; `lost` counts
    those frames.

    Args:
        kind: "csrt", "kcf" or "mil".
    """

    def __init__(self, kind: str = "csrt"):
        if kind not in OPENCV_KINDS:
            raise ValueError(f"OpenCVTracker: kind must be one of {OPENCV_KINDS}, got {kind!r}")
        self.kind = kind
        self._cv2 = _import_cv2()
        self._factory = _opencv_factory(self._cv2, kind)
        self._tracker = None
        self.lost = 0

    @staticmethod
    def _bgr(frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame, np.uint8)
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise ValueError(f"OpenCVTracker: frame must be uint8 [H, W, 3], got {frame.shape}")
        return np.ascontiguousarray(frame[..., ::-1])  # OpenCV wants contiguous BGR

    def init(self, frame: np.ndarray, box_xywh: np.ndarray) -> None:
        box = _check_box(box_xywh, f"OpenCVTracker({self.kind}).init")
        self._tracker = self._factory()  # a fresh tracker, so init can restart a sequence
        self._box = box
        self.lost = 0
        # 4.5+ trackers take an integer Rect; keep at least one pixel each way.
        x, y = int(round(float(box[0]))), int(round(float(box[1])))
        rect = (x, y, max(1, int(round(float(box[2])))), max(1, int(round(float(box[3])))))
        ok = self._tracker.init(self._bgr(frame), rect)
        if ok is False:  # only the legacy API returns a status here; 4.5+ returns None
            raise RuntimeError(f"OpenCVTracker({self.kind}): init failed on box {rect}")

    def update(self, frame: np.ndarray) -> np.ndarray:
        if self._tracker is None:
            raise RuntimeError(f"OpenCVTracker({self.kind}): call init before update")
        ok, rect = self._tracker.update(self._bgr(frame))
        if ok and rect[2] > 0 and rect[3] > 0:
            self._box = np.asarray(rect, np.float32)
        else:
            self.lost += 1
        return self._box.copy()


def run_tracker(
    tracker: Tracker, frames: Iterable[np.ndarray], box0: np.ndarray
) -> tuple[np.ndarray, float]:
    """Runs `tracker` over `frames` from the first box.

    Only the `init` and `update` calls are timed, so `frames` may be a lazy iterable that
    decodes files without the decoding counting against the tracker.

    Args:
        tracker: anything with `init(frame, box_xywh)` and `update(frame) -> box_xywh`.
        frames: at least two uint8 RGB [H, W, 3] frames, or an array [T, H, W, 3].
        box0: the target's (x, y, w, h) on the first frame.

    Returns:
        `(boxes, fps)`: float32 [T, 4] (x, y, w, h) with `boxes[0] = box0`, and frames per
        second of the `update` calls alone.
    """
    box0 = _check_box(box0, "run_tracker: box0")
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError("run_tracker: got no frames")
    tracker.init(first, box0)
    boxes = [box0]
    update_s = 0.0
    for frame in it:
        start = time.perf_counter()
        box = tracker.update(frame)
        update_s += time.perf_counter() - start
        boxes.append(np.asarray(box, np.float32))
    if len(boxes) < 2:
        raise ValueError("run_tracker: need at least 2 frames (the first only gives the box)")
    return np.stack(boxes), (len(boxes) - 1) / max(update_s, 1e-12)
