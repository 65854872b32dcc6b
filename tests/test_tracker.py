"""The online Tracker: follows a moving object, batches objects, matches the sequence call."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from hart_tf.data import synthetic
from hart_tf.model import metrics
from hart_tf.model.saving import load_model
from hart_tf.track.baselines import StaticTracker, run_tracker
from hart_tf.track.tracker import Tracker

# Frames are shown to the tracker at another size, scaled unevenly, so that a swapped axis
# or a box left in the model's pixels would show.
SHOWN = (96, 160)


def _enlarge(frames: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(f).resize(SHOWN[::-1], Image.Resampling.BILINEAR))
                     for f in frames])


def _xywh(yxhw: np.ndarray) -> np.ndarray:
    return yxhw[..., [1, 0, 3, 2]]


@pytest.fixture(scope="module")
def clips(easy_clips):
    """Eight easy test clips of 20 frames at the model's size (unseen in training)."""
    return synthetic.fixed_set("test", 8, 20, easy_clips)


# About 40 s of CPU on 2 cores, most of it training `trained_checkpoint`; the other tests
# here check the same Tracker on random weights.
@pytest.mark.slow
def test_follows_a_moving_object_better_than_a_static_box(trained_checkpoint, clips,
                                                          tracking_config):
    tracker = Tracker.from_checkpoint(trained_checkpoint)
    h, w = tracking_config.image_size
    scale_xywh = np.array([SHOWN[1] / w, SHOWN[0] / h] * 2, np.float32)
    ious, static_ious = [], []
    for frames, gt in zip(clips["frames"], clips["boxes"], strict=True):
        gt_xywh = _xywh(gt) * scale_xywh  # (T, 4) in the shown frames' pixels
        frames = _enlarge(frames)
        for tr, out in ((tracker, ious), (StaticTracker(), static_ious)):
            boxes, _ = run_tracker(tr, frames, gt_xywh[0])
            assert boxes.shape == gt.shape
            out.append(float(np.mean(metrics.iou(_xywh(boxes[1:]), _xywh(gt_xywh[1:])))))
    iou, static = float(np.mean(ious)), float(np.mean(static_ious))
    print(f"\nmean IoU over {len(ious)} clips: HART {iou:.3f}, static box {static:.3f}")
    assert iou > 0.5, (ious, static_ious)
    assert iou > static + 0.2, (ious, static_ious)


@pytest.fixture(scope="module")
def tracker(untrained_checkpoint):
    """One random-weights tracker for the plumbing tests (tracing it costs seconds)."""
    return Tracker.from_checkpoint(untrained_checkpoint)


def test_stepping_equals_the_sequence_call(untrained_checkpoint, tracker, clips,
                                           tracking_config):
    """init runs init_state (which steps on frame 0); update steps the rest."""
    model = load_model(untrained_checkpoint)
    frames, box0 = clips["frames"][:2, :6], clips["boxes"][:2, 0]
    want = np.asarray(model({"frames": frames, "box0": box0})["boxes"])  # (2, T, 4)
    for i in range(2):
        tracker.init(frames[i, 0], _xywh(box0[i]))
        got = [tracker.update(f) for f in frames[i, 1:]]
        np.testing.assert_allclose(np.stack(got), _xywh(want[i, 1:]), atol=1e-4)
        assert set(tracker.last) == {"box", "att_box", "presence", "location_map"}
        assert tracker.last["location_map"].shape == tracking_config.feature_shape
        assert 0.0 <= tracker.last["presence"] <= 1.0


def test_many_objects_in_one_batched_step_equal_single_runs(tracker, clips, monkeypatch):
    frames = _enlarge(clips["frames"][0, :6])
    boxes = np.array([[20, 10, 30, 24], [90, 40, 24, 30], [60, 60, 40, 20]], np.float32)
    calls = []
    step = tracker._step_fn
    monkeypatch.setattr(tracker, "_step_fn",
                        lambda frame, state: calls.append(frame) or step(frame, state))
    tracker.init(frames[0], boxes)
    batched = np.stack([tracker.update(f) for f in frames[1:]], 1)  # (N, T-1, 4)
    assert batched.shape == (3, 5, 4)
    assert len(calls) == 5  # one step per frame, whatever the number of objects
    # The frame leaves the host once per step, as uint8, not tiled for the 3 objects.
    h, w = tracker.image_size
    assert all(f.shape == (1, h, w, 3) and f.dtype == np.uint8 for f in calls)
    assert tracker.last["presence"].shape == (3,)
    for box, got in zip(boxes, batched, strict=True):
        tracker.init(frames[0], box)
        single = np.stack([tracker.update(f) for f in frames[1:]])
        np.testing.assert_allclose(got, single, atol=1e-3)


@pytest.mark.parametrize("objects", [1, 2])
def test_track_generator_equals_an_update_loop(tracker, clips, objects, monkeypatch):
    frames = _enlarge(clips["frames"][1, :7])
    boxes = np.array([[20, 10, 30, 24], [90, 40, 24, 30]], np.float32)[:objects]
    box = boxes[0] if objects == 1 else boxes
    tracker.init(frames[0], box)
    want = [tracker.update(f) for f in frames[1:]]
    want_last = {k: np.array(v) for k, v in tracker.last.items()}
    # One step in flight: the step of frame t+1 starts before frame t's box is read back.
    events = []
    step, finish = tracker._step_fn, tracker._finish
    monkeypatch.setattr(tracker, "_step_fn",
                        lambda frame, state: events.append("step") or step(frame, state))
    monkeypatch.setattr(tracker, "_finish",
                        lambda out, scale: events.append("read") or finish(out, scale))
    got = list(tracker.track(iter(frames), box))
    assert events == ["step", "step"] + ["read", "step"] * 4 + ["read", "read"]
    assert len(got) == len(frames) - 1 and got[0].shape == box.shape
    np.testing.assert_allclose(np.stack(got), np.stack(want), atol=1e-5)
    assert set(tracker.last) == set(want_last)
    for key, value in want_last.items():  # `last` is the last frame's, read back on access
        np.testing.assert_allclose(tracker.last[key], value, atol=1e-5, err_msg=key)
    with pytest.raises(ValueError, match=r"^Tracker.track: frames is empty$"):
        next(tracker.track([], box))


class _Counted:
    """A step output that counts how often it is copied to a NumPy array."""

    def __init__(self, value, reads):
        self.value, self.reads = value, reads

    def __array__(self, dtype=None, copy=None):
        self.reads.append(1)
        return np.asarray(self.value, dtype=dtype)


def test_update_reads_back_only_the_box(tracker, clips, monkeypatch):
    frames = clips["frames"][0, :3]
    reads = {"box": [], "att_box": [], "presence": [], "location_map": []}
    step = tracker._step_fn

    def counting_step(frame, state):
        out, state = step(frame, state)
        return {k: _Counted(np.asarray(out[k]), reads[k]) for k in reads}, state

    monkeypatch.setattr(tracker, "_step_fn", counting_step)
    tracker.init(frames[0], (10, 20, 30, 24))
    for frame in frames[1:]:
        tracker.update(frame)
    assert {k: len(v) for k, v in reads.items()} == {
        "box": 2, "att_box": 0, "presence": 0, "location_map": 0}
    tracker.last["location_map"]
    tracker.last["location_map"]  # read back once, then kept
    assert {k: len(v) for k, v in reads.items()} == {
        "box": 2, "att_box": 0, "presence": 0, "location_map": 1}


def test_bad_input_is_reported(tracker, tmp_path, tracking_config):
    frame = np.zeros((30, 40, 3), np.uint8)
    with pytest.raises(RuntimeError, match=r"^Tracker.update: call init\(frame, box\) first$"):
        Tracker(tracker._init_fn, tracker._step_fn, tracking_config.image_size).update(frame)
    with pytest.raises(ValueError, match=r"^Tracker.init: box must be \(x, y, w, h\) or \(N, 4\), "
                                         r"got shape \(3,\)$"):
        tracker.init(frame, [1, 2, 3])
    with pytest.raises(ValueError, match=r"^Tracker.init: boxes must be finite \(x, y, w, h\) "
                                         r"with w, h > 0, got \[\[1.0, 2.0, 0.0, 4.0\]\]$"):
        tracker.init(frame, [[1, 2, 0, 4]])
    with pytest.raises(ValueError, match=r"^Tracker.init: frame must be an RGB image \(H, W, 3\), "
                                         r"got shape \(30, 40\)$"):
        tracker.init(frame[..., 0], [1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"not a SavedModel folder \(no saved_model.pb\)$"):
        Tracker.from_saved_model(tmp_path)


JAX_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from hart_tf.model.saving import load_model
    from hart_tf.track.tracker import Tracker

    model = load_model(sys.argv[1])
    x = np.load(sys.argv[2])
    tracker = Tracker.from_model(model)
    tracker.init(x["frames"][0], x["box"])
    np.save(sys.argv[3], np.stack([tracker.update(f) for f in x["frames"][1:]]))
""")


@pytest.mark.slow
def test_jax_backend_tracker_matches_tensorflow(untrained_checkpoint, clips, tmp_path):
    frames, box = clips["frames"][0, :5], _xywh(clips["boxes"][0, 0])
    np.savez(tmp_path / "in.npz", frames=frames, box=box)
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    proc = subprocess.run([sys.executable, "-c", JAX_SCRIPT, str(untrained_checkpoint),
                           str(tmp_path / "in.npz"), str(tmp_path / "out.npy")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tracker = Tracker.from_checkpoint(untrained_checkpoint)
    tracker.init(frames[0], box)
    want = np.stack([tracker.update(f) for f in frames[1:]])
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), want, atol=1e-3)
