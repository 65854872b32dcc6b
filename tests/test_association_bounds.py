"""tools/association_bounds.py: oracle trackers that pick among the true boxes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import association_bounds  # noqa: E402


def _crossing():
    # The target moves right by 4 px a step; a look-alike comes left by 3 px a step and
    # passes it: at t = 2 it sits exactly where the target was at t = 1.
    t = np.arange(4, dtype=np.float32)
    gt = np.stack([np.zeros(4), 4 * t, np.full(4, 6), np.full(4, 6)], -1)[None]  # (1, 4, 4)
    look = np.stack([np.zeros(4), 10 - 3 * t, np.full(4, 6), np.full(4, 6)], -1)
    pad = np.zeros((4, 4))  # a zero-size padding look-alike is never picked
    return (gt.astype(np.float32), np.stack([look, pad], 1)[None].astype(np.float32),
            np.ones((1, 4), np.float32))


def test_nearest_switches_to_the_look_alike_and_velocity_stays():
    gt, looks, presence = _crossing()
    picks, on = association_bounds.associate(gt, looks, presence, "nearest")
    # t=1: target at 4 vs look-alike at 7 from 0 -> target; t=2: from 4, look-alike at 4
    # (0 px) vs target at 8 -> look-alike; t=3: from 4, look-alike at 1 vs target at 12.
    assert on.tolist() == [[True, True, False, False]]
    np.testing.assert_array_equal(picks[0, 2:], looks[0, 2:, 0])
    picks, on = association_bounds.associate(gt, looks, presence, "velocity")
    assert on.tolist() == [[True, True, True, True]]  # 4 + 4 = 8: the target
    np.testing.assert_array_equal(picks, gt)


def test_an_absent_target_is_no_candidate_and_no_candidate_keeps_the_last_pick():
    gt, looks, presence = _crossing()
    presence[0, 1] = 0  # the target is gone at t = 1: the look-alike is the only box
    picks, on = association_bounds.associate(gt, looks, presence, "velocity")
    np.testing.assert_array_equal(picks[0, 1], looks[0, 1, 0])
    assert not on[0, 1]
    none = np.zeros_like(looks)
    presence[0, 1:] = 0  # nothing at all after t = 0: the first box is kept
    picks, on = association_bounds.associate(gt, none, presence, "nearest")
    np.testing.assert_array_equal(picks[0], np.repeat(gt[0, :1], 4, 0))
    assert on.tolist() == [[True, False, False, False]]
    with pytest.raises(ValueError, match="rule"):
        association_bounds.associate(gt, looks, presence, "kalman")


def test_overlap_fraction_by_hand():
    gt, looks, presence = _crossing()
    # IoU > 0 at t = 0 (x 0-6 vs 10-16: no), 1 (4-10 vs 7-13: yes), 2 (8-14 vs 4-10), 3 (no).
    frac = association_bounds.overlap_fraction(gt, looks, presence)
    np.testing.assert_allclose(frac, [0, 1, 1, 0])
    presence[0, 1] = 0  # absent steps count for nothing
    np.testing.assert_allclose(association_bounds.overlap_fraction(gt, looks, presence),
                               [0, 0, 1, 0])
    assert not association_bounds.overlap_fraction(gt, looks[:, :, :0], presence).any()


def _run(*flags):
    return subprocess.run([sys.executable, str(REPO / "tools" / "association_bounds.py"),
                           *flags], capture_output=True, text=True)


def test_cli_without_look_alikes_is_perfect_and_with_them_nearest_loses(tmp_path):
    out = tmp_path / "bounds.json"
    r = _run("--eval_sequences=6", "--eval_steps=8", "--num_distractors_max=0", f"--out={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "tracker  | mean IoU" in r.stdout
    result = json.loads(out.read_text())
    for rule in ("nearest", "velocity"):
        assert result[rule]["mean_iou"] == pytest.approx(1.0)
        assert result[rule]["on_target_last"] == 1.0
    assert result["static"]["mean_iou"] < 0.9
    assert not any(result["target_overlaps_look_alike"])
    r = _run("--eval_sequences=16", "--eval_steps=30", f"--out={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(out.read_text())
    # The look-alikes cross the target's path: without motion the oracle loses some targets.
    assert result["nearest"]["mean_iou"] < result["velocity"]["mean_iou"]
    assert result["nearest"]["on_target_last"] < 1.0
    assert max(result["target_overlaps_look_alike"]) > 0


def test_cli_rejects_other_datasets_in_one_line():
    r = _run("--dataset=kth", "--data_dir=/nonexistent")
    assert r.returncode != 0
    assert "only for --dataset=synthetic" in r.stderr.strip().splitlines()[-1]
