"""`tools/shrink_clips.py`: a real tracking dataset shrunk once for training."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from hart_tf.data import clip_windows, clips

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import shrink_clips  # noqa: E402


def test_shrunk_lasot_keeps_names_boxes_and_absent_frames(lasot_root, tmp_path):
    dst = tmp_path / "small"
    assert shrink_clips.shrink(lasot_root, dst, max_side=40, workers=2) == (2, 0)
    assert clips.find_sequences(dst) == clips.find_sequences(lasot_root)
    for name in clips.find_sequences(lasot_root):
        boxes, present = clips.read_training_boxes(lasot_root / name)
        small, small_present = clips.read_training_boxes(dst / name)
        np.testing.assert_array_equal(small_present, present)  # flags copied, 0,0,0,0 kept
        np.testing.assert_allclose(small[present], boxes[present] * 0.5, atol=0.01)  # 80 -> 40
        paths = clips.frame_paths(dst / name)
        assert [p.parent.name for p in paths[:1]] == ["img"]  # LaSOT's layout kept
        assert len(paths) == len(boxes)
        frame = np.asarray(Image.open(paths[0]).convert("RGB"), np.float32)
        assert frame.shape == (30, 40, 3)
        x, y, w, h = np.round(small[0]).astype(int)  # the red box drawn in frame 0
        inside = frame[y + 1:y + h - 1, x + 1:x + w - 1]
        assert (inside[..., 0] - inside[..., 1:].mean(-1)).mean() > 100
    windows = clip_windows.ClipWindows(dst, ["all"], (24, 32), cache_mb=0)
    assert windows.lazy and windows.num_clips == 2
    assert windows.sample(np.random.default_rng(0), 4)["frames"].shape == (4, 24, 32, 3)
    # Rerun: every sequence is already there.
    assert shrink_clips.shrink(lasot_root, dst, max_side=40) == (0, 2)


def test_frames_already_small_keep_their_size_and_boxes(got_root, tmp_path):
    dst = tmp_path / "same"
    shrink_clips.shrink(got_root, dst, max_side=480)
    name = clips.find_sequences(got_root)[0]
    boxes, present = clips.read_training_boxes(got_root / name)
    small, small_present = clips.read_training_boxes(dst / name)
    np.testing.assert_array_equal(small_present, present)
    np.testing.assert_allclose(small[present], boxes[present], atol=0.01)
    assert Image.open(clips.frame_paths(dst / name)[0]).size == (80, 60)
    assert (dst / name / "absence.txt").read_text() == (got_root / name / "absence.txt").read_text()


def test_cli_reports_in_one_line(lasot_root, tmp_path, capsys):
    assert shrink_clips.main([f"--src={lasot_root}", f"--dst={tmp_path / 'o'}",
                              "--max_side=40", "--workers=1"]) == 0
    assert capsys.readouterr().out == (f"Shrunk 2 sequences into {tmp_path / 'o'} (longest "
                                       "side 40 px)\n")
    missing = tmp_path / "nope"
    assert shrink_clips.main([f"--src={missing}", f"--dst={tmp_path / 'o2'}"]) == 1
    assert capsys.readouterr().err == f"error: {missing}: no such clips folder\n"
    bad = tmp_path / "bad" / "seq"
    bad.mkdir(parents=True)
    (bad / "groundtruth.txt").write_text("1,2,3\n")
    assert shrink_clips.main([f"--src={bad.parent}", f"--dst={tmp_path / 'o3'}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad / 'groundtruth.txt'}:1: expected 4 numbers") and \
        err.count("\n") == 1
