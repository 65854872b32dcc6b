"""Training windows cut from real clips (`hart_tf.data.clip_windows`) and their mixing into
the synthetic training stream (`--train_clips`)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from PIL import Image

from hart_tf.data import clip_windows, synthetic
from hart_tf.data.errors import DataError
from hart_tf.eval import sets
from hart_tf.model.config import HARTConfig
from hart_tf.train import sources as datasets
from hart_tf.train.options import TrainOptions

RED = (230, 20, 20)
SIZE = (96, 128)  # the windows' (H, W): the small model's input


def _write_clip(root, name, n, frame_hw=(120, 200), step=2.0):
    """A clip whose red box (x, y, w, h) moves right by `step` px a frame on grey noise."""
    seq = root / name
    (seq / "frames").mkdir(parents=True)
    rng = np.random.default_rng(len(name))
    lines = []
    for i in range(n):
        img = rng.integers(90, 140, (*frame_hw, 3)).astype(np.uint8)
        x, y, w, h = 20 + step * i, 40 + 0.5 * i, 30, 24
        img[int(y):int(y) + h, int(x):int(x) + w] = RED
        Image.fromarray(img).save(seq / "frames" / f"{i:05d}.png")
        lines.append(f"{int(x)} {int(y)} {w} {h}")
    (seq / "groundtruth.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def clip_root(tmp_path):
    root = tmp_path / "clips"
    _write_clip(root, "walk", 40)
    _write_clip(root, "short", 12, frame_hw=(90, 160), step=-1.0)
    _write_clip(root, "kept_out", 12)
    return root


def _redness(frames):
    f = frames.astype(np.float32)
    return f[..., 0] - 0.5 * (f[..., 1] + f[..., 2])  # high on the box, ~0 on grey noise


def test_windows_follow_the_drawn_box(clip_root):
    windows = clip_windows.ClipWindows(clip_root, ["walk", "short"], SIZE)
    assert windows.num_frames == 52
    assert windows.held_out() == ["kept_out"]
    heights = []
    for seed in range(24):
        w = windows.sample(np.random.default_rng(seed), 10)
        frames, boxes = w["frames"], w["boxes"]
        assert frames.shape == (10, *SIZE, 3) and frames.dtype == np.uint8
        assert boxes.shape == (10, 4) and boxes.dtype == np.float32
        np.testing.assert_array_equal(w["presence"], np.ones(10, np.float32))
        # Every box lies inside the window, with the margin the crop keeps.
        assert np.all(boxes[:, :2] >= -0.5)
        assert np.all(boxes[:, :2] + boxes[:, 2:] <= np.array(SIZE) + 0.5)
        red = _redness(frames)
        for t in range(10):
            y, x, h, w_ = boxes[t]
            inner = red[t, int(np.ceil(y + 2)):int(y + h - 2), int(np.ceil(x + 2)):int(x + w_ - 2)]
            assert inner.size and inner.min() > 100, (seed, t)  # the box is on the object
            outside = np.ones(SIZE, bool)
            outside[max(int(y - 3), 0):int(y + h + 3), max(int(x - 3), 0):int(x + w_ + 3)] = False
            assert red[t][outside].max() < 60, (seed, t)  # and nothing red is left out of it
        heights.append(boxes[0, 2])
    assert max(heights) / min(heights) > 1.3  # the crop's zoom varies the apparent size
    # "walk" moves right: mirrored or played backwards it moves left, both seen.
    walk = clip_windows.ClipWindows(clip_root, ["walk"], SIZE)
    moves = [walk.sample(np.random.default_rng(s), 10)["boxes"] for s in range(16)]
    assert {int(np.sign(b[-1, 1] - b[0, 1])) for b in moves} == {-1, 1}


def test_windows_are_a_function_of_the_generator(clip_root):
    windows = clip_windows.ClipWindows(clip_root, ["walk"], SIZE)
    a = clip_windows.window_batch(windows, np.random.default_rng(7), 3, 8)
    b = clip_windows.window_batch(windows, np.random.default_rng(7), 3, 8)
    for key in ("frames", "boxes", "presence"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["frames"].shape == (3, 8, *SIZE, 3)


def test_crop_holds_every_box_with_its_margin():
    # NumPy reference: the crop is inside the frame, of its aspect, and holds the extent of
    # the boxes times MIN_CONTEXT (or is the whole frame where that does not fit).
    rng = np.random.default_rng(0)
    for _ in range(200):
        fh, fw = rng.integers(60, 400, 2)
        y, x = rng.uniform(0, fh - 10), rng.uniform(0, fw - 10)
        boxes = np.array([[y, x, rng.uniform(4, fh - y), rng.uniform(4, fw - x)]], np.float32)
        y0, x0, h, w = clip_windows._crop_window(rng, boxes, (fh, fw))
        assert h / fh == pytest.approx(w / fw)
        assert y0 >= -1e-6 and x0 >= -1e-6 and y0 + h <= fh + 1e-4 and x0 + w <= fw + 1e-4
        assert y0 <= y + 1e-4 and x0 <= x + 1e-4
        assert y0 + h >= y + boxes[0, 2] - 1e-4 and x0 + w >= x + boxes[0, 3] - 1e-4
        whole = h == pytest.approx(fh)
        assert whole or (h >= clip_windows.MIN_CONTEXT * boxes[0, 2] - 1e-3
                         and w >= clip_windows.MIN_CONTEXT * boxes[0, 3] - 1e-3)


def test_bad_clip_names_and_lengths(clip_root):
    with pytest.raises(DataError, match=r"no clip nope \(found kept_out, short, walk\)"):
        clip_windows.ClipWindows(clip_root, ["walk", "nope"], SIZE)
    with pytest.raises(DataError, match="no clip named"):
        clip_windows.ClipWindows(clip_root, [], SIZE)
    windows = clip_windows.ClipWindows(clip_root, ["short"], SIZE)
    with pytest.raises(DataError, match="at most 12 frames, fewer than sequences of 13"):
        windows.sample(np.random.default_rng(0), 13)


def _options(clip_root, **kwargs):
    config = HARTConfig.from_preset("small")
    kwargs = dict(config=config, batch_size=4, train_clips_dir=str(clip_root),
                  train_clips=("walk",), train_clips_fraction=0.5, num_distractors_max=1) | kwargs
    return TrainOptions.from_flat(**kwargs)


def test_train_source_mixes_real_windows_into_the_synthetic_batches(clip_root, capsys):
    options = _options(clip_root)
    source = datasets.train_source(options)
    assert "Training on real clips walk (40 frames, 2 of every 4 sequences); held out: " \
           "kept_out, short" in capsys.readouterr().out
    x, y = next(source.batches(6, start=5))
    assert x["frames"].shape == (4, 6, *SIZE, 3) and y["boxes"].shape == (4, 6, 4)
    # The first two are batch 5's real windows, the other two its synthetic sequences.
    real = clip_windows.window_batch(source.clips, np.random.default_rng([4, 0, 5]), 2, 6)
    synth = synthetic.train_batch(5, 2, 6, 0, sets.synthetic_config(options))
    np.testing.assert_array_equal(x["frames"][:2], real["frames"])
    np.testing.assert_array_equal(x["frames"][2:], synth["frames"])
    np.testing.assert_array_equal(y["boxes"][:2], real["boxes"])
    np.testing.assert_array_equal(x["box0"], y["boxes"][:, 0])
    # All real: no synthetic sequence is rendered.
    only = datasets.train_source(_options(clip_root, train_clips_fraction=1.0))
    x, _ = next(only.batches(6, start=5))
    np.testing.assert_array_equal(
        x["frames"], clip_windows.window_batch(only.clips, np.random.default_rng([4, 0, 5]),
                                               4, 6)["frames"])


def test_batches_do_not_depend_on_the_number_of_data_workers(clip_root):
    """--data_workers only sets how many batches render at once, never what they hold."""
    one = datasets.train_source(_options(clip_root, data_workers=1))
    three = datasets.train_source(_options(clip_root, data_workers=3))
    assert (one.workers, three.workers) == (1, 3)
    for (x1, y1), (x3, y3) in zip(itertools.islice(one.batches(5, start=2), 4),
                                  itertools.islice(three.batches(5, start=2), 4), strict=True):
        np.testing.assert_array_equal(x1["frames"], x3["frames"])
        np.testing.assert_array_equal(y1["boxes"], y3["boxes"])


def test_train_clips_need_synthetic_data_and_long_enough_clips(clip_root):
    with pytest.raises(ValueError, match="use it with --dataset=synthetic, got --dataset=kth"):
        datasets.train_source(_options(clip_root, dataset="kth"))
    source = datasets.train_source(_options(clip_root, train_clips=("short",)))
    with pytest.raises(DataError, match="fewer than sequences of 20"):
        next(source.batches(20))


def test_train_cli_records_the_clips_it_trained_on(clip_root, tmp_path, train_tiny_on_clips):
    out = train_tiny_on_clips(clip_root, "--train_clips=walk,short").out
    assert ("Training on real clips walk, short (52 frames, 1 of every 2 sequences); held "
            "out: kept_out") in out
    summary = json.loads((tmp_path / "ck" / "r" / "summary.json").read_text())
    assert summary["train_clips"] == {"dir": str(clip_root), "trained_on": ["walk", "short"],
                                      "held_out": ["kept_out"]}
    assert summary["step"] == 1 and summary["test"]["mean_iou"] >= 0
