"""experiments/association_bounds.py: oracle trackers that pick among the true boxes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))
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
    with pytest.raises(ValueError, match="decay"):
        association_bounds.associate(gt, looks, presence, "velocity", decay=1.0)


def test_position_noise_is_seeded_and_smoothing_keeps_the_noiseless_case():
    gt, looks, presence = _crossing()
    # Smoothing from a zero start: after t = 1 the velocity estimate is 0.75 * 4 = 3 px, so
    # the guess for t = 2 is x = 4 + 3 = 7, nearer the target's 8 than the look-alike's 4;
    # for t = 3, 8 + (0.25 * 3 + 0.75 * 4) = 11.75 (target 12, look-alike 1).
    _, on = association_bounds.associate(gt, looks, presence, "velocity", decay=0.25)
    assert on.all()
    # With more smoothing the guess for t = 2 is 4 + 1 = 5: the look-alike's 4 is nearer.
    _, on = association_bounds.associate(gt, looks, presence, "velocity", decay=0.75)
    assert on.tolist() == [[True, True, False, False]]
    a = association_bounds.associate(gt, looks, presence, "velocity", noise=2.0, seed=3)
    b = association_bounds.associate(gt, looks, presence, "velocity", noise=2.0, seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    # Picks are true boxes of the candidates whatever the noise: never a noisy box.
    cands = np.concatenate([gt[:, :, None], looks], 2)[0]
    for t in range(4):
        assert any(np.array_equal(a[0][0, t], c) for c in cands[t])
    # Far more noise than the objects' spacing: the choice at t = 2 becomes a coin toss.
    tosses = [association_bounds.associate(gt, looks, presence, "velocity", noise=50.0,
                                           seed=s)[1][0, 2] for s in range(40)]
    assert 0 < sum(tosses) < 40


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
    return subprocess.run([sys.executable, str(REPO / "experiments" / "association_bounds.py"),
                           *flags], capture_output=True, text=True)


# An experiment script end to end (about 12 s of CPU); its parts are tested above.
@pytest.mark.slow
def test_cli_without_look_alikes_is_perfect_and_with_them_nearest_loses(tmp_path):
    out = tmp_path / "bounds.json"
    r = _run("--eval_sequences=6", "--eval_steps=8", "--num_distractors_max=0", f"--out={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "tracker       | mean IoU" in r.stdout
    result = json.loads(out.read_text())
    assert [o["rule"] for o in result["oracles"]] == ["nearest", "velocity"]
    for o in result["oracles"]:
        assert o["mean_iou"] == pytest.approx(1.0)
        assert o["on_target_last"] == 1.0
    assert result["static"]["mean_iou"] < 0.9
    assert not any(result["target_overlaps_look_alike"])
    r = _run("--eval_sequences=16", "--eval_steps=30", "--position_noise=0,3", f"--out={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "velocity ±3px" in r.stdout
    result = json.loads(out.read_text())
    rows = {(o["rule"], o["position_noise"]): o for o in result["oracles"]}
    assert sorted(rows) == [("nearest", 0.0), ("nearest", 3.0), ("velocity", 0.0),
                            ("velocity", 3.0)]
    # The look-alikes cross the target's path: without motion the oracle loses some targets,
    # and motion judged from a 3 px belief helps less than from the exact one.
    assert rows["nearest", 0.0]["mean_iou"] < rows["velocity", 0.0]["mean_iou"]
    assert rows["nearest", 0.0]["on_target_last"] < 1.0
    assert rows["velocity", 3.0]["mean_iou"] < rows["velocity", 0.0]["mean_iou"]
    assert max(result["target_overlaps_look_alike"]) > 0


def test_cli_rejects_other_datasets_and_bad_noise_in_one_line():
    r = _run("--dataset=kth", "--data_dir=/nonexistent")
    assert r.returncode != 0
    assert "only for --dataset=synthetic" in r.stderr.strip().splitlines()[-1]
    r = _run("--eval_sequences=2", "--eval_steps=3", "--position_noise=1,x")
    assert r.returncode != 0
    assert "--position_noise: numbers expected" in r.stderr.strip().splitlines()[-1]
