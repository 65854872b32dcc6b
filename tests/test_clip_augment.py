"""Each augmentation of the real-clip training windows on its own (`ClipWindows.plan` draws a
`WindowPlan`, `ClipWindows.render` applies it), and the fixed validation windows."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from test_clip_windows import SIZE, _redness, _write_clip

from hart_tf.data import clip_windows


@pytest.fixture
def walk(tmp_path):
    root = tmp_path / "clips"
    _write_clip(root, "davis_walk", 40)
    _write_clip(root, "uav_short", 12, frame_hw=(90, 160), step=-1.0)
    return root


def _box_on_object(frames, boxes):
    """The red object fills each box (inside, 2 px in) and nothing red lies outside it."""
    red = _redness(frames)
    for t, (y, x, h, w) in enumerate(boxes):
        inner = red[t, int(np.ceil(y + 2)):int(y + h - 2), int(np.ceil(x + 2)):int(x + w - 2)]
        assert inner.size and inner.min() > 100, t
        outside = np.ones(red.shape[1:], bool)
        outside[max(int(y - 3), 0):int(y + h + 3), max(int(x - 3), 0):int(x + w + 3)] = False
        assert red[t][outside].max() < 60, t


def test_stride_takes_every_kth_frame_and_reversal_reverses(walk):
    windows = clip_windows.ClipWindows(walk, ["davis_walk"], SIZE)
    steps = set()
    for seed in range(40):
        index = windows.plan(np.random.default_rng(seed), 10).index
        d = np.diff(index)
        assert np.all(d == d[0]) and abs(int(d[0])) in (1, 2, 3)
        assert index.min() >= 0 and index.max() < 40
        steps.add(int(d[0]))
    assert steps == {-3, -2, -1, 1, 2, 3}  # every stride, forwards and backwards
    # A clip too short for stride 3 at this length never takes it.
    short = clip_windows.ClipWindows(walk, ["uav_short"], SIZE)
    assert {abs(int(np.diff(short.plan(np.random.default_rng(s), 6).index)[0]))
            for s in range(30)} == {1, 2}
    # Played backwards: the same frames and boxes in reverse order.
    plan = windows.plan(np.random.default_rng(0), 10)
    fwd = windows.render(plan)
    back = windows.render(dataclasses.replace(plan, index=plan.index[::-1]))
    np.testing.assert_array_equal(back["frames"], fwd["frames"][::-1])
    np.testing.assert_array_equal(back["boxes"], fwd["boxes"][::-1])


def test_crop_and_scale_keep_the_box_on_the_object(walk):
    windows = clip_windows.ClipWindows(walk, ["davis_walk"], SIZE)
    plan = windows.plan(np.random.default_rng(1), 8)
    heights = []
    for crop in ([0, 0, 120, 200], [20, 10, 72, 120], [30, 15, 60, 100]):  # whole, 1.7x, 2x
        w = windows.render(dataclasses.replace(plan, index=np.arange(8), flip=False,
                                               crop=np.array(crop, float)))
        _box_on_object(w["frames"], w["boxes"])
        heights.append(w["boxes"][0, 2])
    # 24 px of a 120 px frame, scaled by the crop's zoom into 96 rows.
    np.testing.assert_allclose(heights, [24 * 96 / 120, 24 * 96 / 72, 24 * 96 / 60], rtol=1e-5)


def test_mirror_flips_pixels_and_box_together(walk):
    windows = clip_windows.ClipWindows(walk, ["davis_walk"], SIZE)
    plan = dataclasses.replace(windows.plan(np.random.default_rng(2), 6), flip=False)
    plain = windows.render(plan)
    mirrored = windows.render(dataclasses.replace(plan, flip=True))
    np.testing.assert_array_equal(mirrored["frames"], plain["frames"][:, :, ::-1])
    b, m = plain["boxes"], mirrored["boxes"]
    np.testing.assert_allclose(m[:, 1], SIZE[1] - b[:, 1] - b[:, 3], atol=1e-4)
    np.testing.assert_array_equal(m[:, [0, 2, 3]], b[:, [0, 2, 3]])
    _box_on_object(mirrored["frames"], m)


def test_colour_jitter_changes_colours_not_boxes(walk):
    jittered = clip_windows.ClipWindows(walk, ["davis_walk"], SIZE, colour_jitter=0.3)
    plain = clip_windows.ClipWindows(walk, ["davis_walk"], SIZE)
    colours = []
    for seed in range(6):
        plan = jittered.plan(np.random.default_rng(seed), 8)
        assert np.all(np.abs(plan.colour - 1) <= 0.3)
        colours.append(plan.colour)
        a = jittered.render(plan)
        b = plain.render(dataclasses.replace(plan, colour=np.ones(3)))
        np.testing.assert_array_equal(a["boxes"], b["boxes"])
        np.testing.assert_array_equal(a["presence"], b["presence"])
        assert not np.array_equal(a["frames"], b["frames"])
    assert np.ptp(np.stack(colours), axis=0).min() > 0.1  # each factor varies
    # Brightness alone scales every pixel; factors of 1 leave the frames as they are.
    frames = np.full((2, 4, 4, 3), 100, np.uint8)
    np.testing.assert_array_equal(clip_windows.jitter_colours(frames, np.array([1.2, 1, 1])),
                                  np.full_like(frames, 120))
    assert clip_windows.jitter_colours(frames, np.ones(3)) is frames
    # Saturation 0 greys every pixel; the jitter is one for the whole window (no flicker).
    rng = np.random.default_rng(0)
    colourful = rng.integers(0, 255, (3, 5, 5, 3)).astype(np.uint8)
    grey = clip_windows.jitter_colours(colourful, np.array([1.0, 1.0, 0.0]))
    assert np.abs(grey.astype(int) - grey[..., :1]).max() <= 1
    with pytest.raises(ValueError, match="colour_jitter must be in"):
        clip_windows.ClipWindows(walk, ["davis_walk"], SIZE, colour_jitter=1.5)


def test_plans_are_a_function_of_the_generator(walk):
    windows = clip_windows.ClipWindows(walk, ["davis_walk", "uav_short"], SIZE,
                                       colour_jitter=0.2)
    for seed in range(5):
        a, b = (windows.plan(np.random.default_rng(seed), 6) for _ in range(2))
        for field in dataclasses.fields(a):
            np.testing.assert_array_equal(getattr(a, field.name), getattr(b, field.name))


def test_validation_windows_are_whole_unaugmented_frames(walk):
    data, names = clip_windows.validation_windows(walk, ["davis_walk", "uav_short"], SIZE,
                                                  seq_len=10, n=6)
    assert names == ["davis_walk"] * 3 + ["uav_short"] * 3
    assert data["frames"].shape == (6, 10, *SIZE, 3)
    np.testing.assert_array_equal(data["presence"], np.ones((6, 10), np.float32))
    # Whole 200x120 frames: boxes scaled by 128/200 and 96/120, moving forwards (right).
    first = data["boxes"][0]
    np.testing.assert_allclose(first[0], [40 * 0.8, 20 * 0.64, 24 * 0.8, 30 * 0.64], rtol=1e-5)
    assert np.all(np.diff(data["boxes"][:3, :, 1], axis=1) > 0)
    assert data["boxes"][2, 0, 1] > data["boxes"][1, 0, 1] > first[0, 1]  # spread starts
    for i in range(6):
        _box_on_object(data["frames"][i], data["boxes"][i])
    assert [clip_windows.clip_group(n) for n in ("davis_walk", "uav_a_b", "Car1")] == \
        ["davis", "uav", ""]
    with pytest.raises(clip_windows.DataError, match="no validation clip"):
        clip_windows.validation_windows(walk, ["uav_short"], SIZE, seq_len=20, n=2)


def test_training_validates_on_val_clips_per_source(walk, tmp_path, train_tiny_on_clips):
    _write_clip(walk, "davis_jump", 20, step=1.0)
    out = train_tiny_on_clips(walk, "--train_clips=all", "--val_clips=davis_jump,uav_short",
                              "--eval_sequences=4").out
    assert "Training on all 1 real clips" in out and "held out: davis_jump, uav_short" in out
    assert ("Validating on real clips davis_jump, uav_short (4 windows of 3 frames, whole "
            "frames; per source: davis, uav): they choose the best checkpoint") in out
    summary = json.loads((tmp_path / "ck" / "r" / "summary.json").read_text())
    assert summary["data"]["val_clips"] == ["davis_jump", "uav_short"]
    assert set(summary["val_clips"]) == {"val_iou", "val_iou_davis", "val_iou_uav"}
    assert set(summary["history"][-1]) >= {"val_iou", "val_iou_davis", "val_iou_uav"}
    assert summary["history"][-1]["val_iou"] == pytest.approx(summary["val_clips"]["val_iou"],
                                                              abs=1e-4)


def test_val_clips_may_not_be_trained_on(walk, train_tiny_on_clips):
    run = train_tiny_on_clips(walk, "--train_clips=davis_walk,uav_short",
                              "--val_clips=uav_short", code=2)
    assert run.err == ["error: --val_clips uav_short are in --train_clips too: "
                       "a clip validates or trains, not both"]
