"""Tests for the baseline trackers and `run_tracker`."""

import sys

import numpy as np
import pytest

from hart_tf.data import clips
from hart_tf.track import baselines

try:
    import cv2
except ImportError:
    cv2 = None

needs_cv2 = pytest.mark.skipif(cv2 is None, reason="OpenCV absent: pip install -e '.[bench]'")


def _opencv_tracker(kind):
    """An OpenCVTracker, or a skip where this OpenCV build lacks `kind` (CSRT/KCF are contrib)."""
    try:
        return baselines.OpenCVTracker(kind)
    except ImportError as e:
        pytest.skip(str(e))


def _iou_xywh(a, b):
    """IoU of (x, y, w, h) boxes [N, 4] -> [N]; a NumPy reference kept apart from the code."""
    x1, y1 = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return inter / (a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter)


def _moving_square(n=12, size=64, side=16, step=2):
    """A bright textured square moving right on a dark background, and its true boxes."""
    rng = np.random.default_rng(0)
    patch = rng.integers(128, 256, (side, side, 3), dtype=np.uint8)
    frames = np.zeros((n, size, size, 3), np.uint8)
    boxes = np.zeros((n, 4), np.float32)
    for t in range(n):
        x, y = 8 + step * t, 20
        frames[t, y : y + side, x : x + side] = patch
        boxes[t] = (x, y, side, side)
    return frames, boxes


def test_iou_reference():
    a = np.array([[0, 0, 2, 2], [0, 0, 2, 2]], np.float32)
    b = np.array([[1, 0, 2, 2], [0, 0, 2, 2]], np.float32)
    np.testing.assert_allclose(_iou_xywh(a, b), [1 / 3, 1.0])


def test_static_tracker_repeats_first_box():
    frames, truth = _moving_square()
    boxes, fps = baselines.run_tracker(baselines.StaticTracker(), frames, truth[0])
    assert boxes.shape == (len(frames), 4) and boxes.dtype == np.float32
    np.testing.assert_array_equal(boxes, np.broadcast_to(truth[0], boxes.shape))
    assert fps > 0


def test_run_tracker_takes_lazy_frames_and_checks_input():
    frames, truth = _moving_square(n=4)
    boxes, _ = baselines.run_tracker(baselines.StaticTracker(), iter(list(frames)), truth[0])
    assert boxes.shape == (4, 4)
    with pytest.raises(ValueError, match="at least 2 frames"):
        baselines.run_tracker(baselines.StaticTracker(), frames[:1], truth[0])
    with pytest.raises(ValueError, match="got no frames"):
        baselines.run_tracker(baselines.StaticTracker(), [], truth[0])
    with pytest.raises(ValueError, match="box0: box must be finite"):
        baselines.run_tracker(baselines.StaticTracker(), frames, [1, 2, 0, 4])


def test_opencv_tracker_without_cv2_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # makes `import cv2` raise ImportError
    with pytest.raises(ImportError, match=r"pip install -e '\.\[bench\]'"):
        baselines.OpenCVTracker("csrt")


def test_opencv_factory_falls_back_to_legacy_and_explains_missing_contrib():
    class Legacy:
        @staticmethod
        def TrackerKCF_create():
            return "legacy-kcf"

    class OldCv2:
        __version__ = "4.5.0"
        legacy = Legacy

    assert baselines._opencv_factory(OldCv2, "kcf")() == "legacy-kcf"
    with pytest.raises(ImportError, match="no CSRT tracker .*opencv-contrib-python-headless"):
        baselines._opencv_factory(OldCv2, "csrt")


def test_opencv_tracker_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind must be one of"):
        baselines.OpenCVTracker("boosting")


@needs_cv2
@pytest.mark.parametrize("kind", ["csrt", "kcf"])  # MIL drifts on this flat background
def test_opencv_tracker_follows_moving_square(kind):
    frames, truth = _moving_square()
    boxes, fps = baselines.run_tracker(_opencv_tracker(kind), frames, truth[0])
    assert boxes.shape == truth.shape and fps > 0
    assert _iou_xywh(boxes[1:], truth[1:]).mean() > 0.6  # the static box scores 0.24


@needs_cv2
@pytest.mark.parametrize("kind", baselines.OPENCV_KINDS)
def test_opencv_tracker_beats_static_on_real_clip(shared_data, kind):
    seq = clips.load_sequence(shared_data / "real_clips" / "David", max_frames=30)
    truth = seq["boxes_xywh"]
    static, _ = baselines.run_tracker(baselines.StaticTracker(), seq["frames"], truth[0])
    boxes, fps = baselines.run_tracker(_opencv_tracker(kind), seq["frames"], truth[0])
    static_iou = float(_iou_xywh(static[1:], truth[1:]).mean())
    tracker_iou = float(_iou_xywh(boxes[1:], truth[1:]).mean())
    print(
        f"David[:30] mean IoU: static {static_iou:.3f}, {kind} {tracker_iou:.3f} at {fps:.0f} fps"
    )
    # Measured with OpenCV 5.0: static 0.181, CSRT 0.866, KCF 0.670, MIL 0.857.
    assert static_iou < 0.3
    assert tracker_iou > static_iou + 0.3
