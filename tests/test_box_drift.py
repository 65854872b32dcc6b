"""experiments/box_drift.py: centre error and size drift per step, by hand and on a checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))
import box_drift  # noqa: E402


def test_drift_by_hand():
    # Two objects, three steps, (y, x, h, w); object 1 is absent at step 2.
    gt = np.array([[[0, 0, 10, 10]] * 3, [[20, 20, 4, 8]] * 3], np.float32)
    pred = np.array([[[0, 0, 10, 10], [1, 0, 20, 10], [-5, -5, 20, 20]],
                     [[20, 20, 4, 8], [20, 23, 4, 2], [0, 0, 1, 1]]], np.float32)
    presence = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
    d = box_drift.drift(pred, gt, presence)
    # Step 1: centres (11, 5) vs (5, 5) -> 6 px; (22, 24) vs (22, 24) -> 0; median 3.
    assert d["centre_error_px"] == pytest.approx([0.0, 3.0, 0.0])
    assert d["log_h_ratio"] == pytest.approx([0.0, np.log(2) / 2, np.log(2)])
    assert d["log_w_ratio"] == pytest.approx([0.0, np.log(0.25) / 2, np.log(2)])


def test_follows_by_hand():
    # One sequence, three steps; the target stands still, a look-alike sits to its right.
    gt = np.array([[[0, 0, 10, 10]] * 3], np.float32)
    looks = np.array([[[[0, 20, 10, 10]], [[0, 20, 10, 10]], [[0, 20, 10, 10]]]], np.float32)
    # Step 0 on the target, step 1 straddling both but more on the look-alike, step 2 lost.
    pred = np.array([[[0, 0, 10, 10], [0, 7, 10, 20], [50, 50, 5, 5]]], np.float32)
    f = box_drift.follows(pred, gt, looks, np.ones((1, 3), np.float32))
    # Centres: step 1 at x = 17 (target's 5, look-alike's 25: nearer the look-alike); step 2
    # at (52.5, 52.5), nearer the look-alike (5, 25) than the target (5, 5).
    assert f == {"target": [1.0, 0.0, 0.0], "look_alike": [0.0, 1.0, 0.0],
                 "lost": [0.0, 0.0, 1.0], "centre_nearer_look_alike": [0.0, 1.0, 1.0]}
    # A box grown over both but centred on the target: the larger IoU is the look-alike's
    # (it is as big), the centre is the target's.
    grown = np.array([[[0, 0, 10, 10], [-5, -9, 20, 28], [0, 0, 10, 10]]], np.float32)
    big = looks.copy()
    big[0, 1, 0] = (-5, 10, 20, 20)  # the look-alike at step 1, twice the size, to the right
    f = box_drift.follows(grown, gt, big, np.ones((1, 3), np.float32))
    assert f["look_alike"][1] == 1.0 and f["centre_nearer_look_alike"][1] == 0.0
    # Absent steps are left out of the fractions; no look-alikes at all is allowed.
    f = box_drift.follows(pred, gt, np.zeros((1, 3, 0, 4), np.float32),
                          np.array([[1, 1, 0]], np.float32))
    assert f["target"] == [1.0, 1.0, 0.0] and f["lost"] == [0.0, 0.0, 0.0]
    assert f["centre_nearer_look_alike"] == [0.0, 0.0, 0.0]


def test_true_size_iou_by_hand():
    gt = np.array([[[0, 0, 10, 10]] * 2], np.float32)
    # Step 1: centred on the target, twice its size: IoU 1/4; with the true size, 1.
    pred = np.array([[[0, 0, 10, 10], [-5, -5, 20, 20]]], np.float32)
    r = box_drift.true_size_iou(pred, gt, np.ones((1, 2), np.float32))
    assert r["own_size"] == pytest.approx(0.25) and r["true_size"] == pytest.approx(1.0)
    # Off by 5 px in x at the true size: IoU 50/150 either way.
    pred = np.array([[[0, 0, 10, 10], [0, 5, 10, 10]]], np.float32)
    r = box_drift.true_size_iou(pred, gt, np.ones((1, 2), np.float32))
    assert r["own_size"] == pytest.approx(1 / 3) and r["true_size"] == pytest.approx(1 / 3)


def test_map_on_objects_by_hand():
    # A 4x4 map over a 40x40 glimpse at the origin: the target fills the top-left 2x2
    # cells, a look-alike the bottom-right 2x2; two steps (step 0 is never counted).
    att = np.zeros((1, 2, 4), np.float32) + np.array([0, 0, 40, 40], np.float32)
    gt = np.zeros((1, 2, 4), np.float32) + np.array([0, 0, 20, 20], np.float32)
    looks = np.zeros((1, 2, 2, 4), np.float32)  # the second look-alike is padding
    looks[:, :, 0] = (20, 20, 20, 20)
    maps = np.full((1, 2, 4, 4), 0.1, np.float32)
    maps[:, :, :2, :2] = 0.9  # marks the target
    maps[:, :, 2:, 2:] = 0.3  # and, less, the look-alike
    r = box_drift.map_on_objects(maps, att, gt, looks, np.ones((1, 2), np.float32))
    assert r["steps"] == 1
    assert r["map_on_target"] == pytest.approx(0.9)
    assert r["map_on_look_alike"] == pytest.approx(0.3)
    assert r["map_on_background"] == pytest.approx(0.1)
    assert r["target_above_look_alike"] == 1.0
    # A map that marks the look-alike more: the fraction drops to 0.
    maps[:, :, 2:, 2:] = 0.95
    assert box_drift.map_on_objects(maps, att, gt, looks,
                                    np.ones((1, 2), np.float32))["target_above_look_alike"] == 0


def test_fixed_set_with_the_look_alikes_boxes_is_the_same_set():
    from hart_tf.data import synthetic

    cfg = synthetic.SyntheticConfig()
    data = synthetic.fixed_set("test", 4, 5, cfg, with_extras=True)
    plain = synthetic.fixed_set("test", 4, 5, cfg)
    for key in ("frames", "boxes", "presence"):
        np.testing.assert_array_equal(data[key], plain[key])
    target, looks = data["boxes"], data["distractor_boxes"]
    assert looks.shape[:2] == (4, 5) and looks.shape[2] in (1, 2, 3) and looks.shape[3] == 4
    for i in range(4):  # each sequence's own look-alikes, then zero-box padding
        own = synthetic.make_sequence(synthetic.sequence_rng("test", 0, i), 5, cfg,
                                      with_extras=True)["distractor_boxes"]
        np.testing.assert_array_equal(looks[i, :, : own.shape[1]], own)
        assert np.all(looks[i, :, own.shape[1]:] == 0)
    # Each look-alike comes within reach of the target at some step (they cross its path).
    gap = np.abs((looks[..., :2] + looks[..., 2:] / 2) - (target[:, :, None, :2]
                                                          + target[:, :, None, 2:] / 2))
    real = looks[..., 2] > 0
    assert np.all(np.where(real, gap.max(-1), np.inf).min(1)[real.any(1)] < 30)


# An experiment script end to end (about 10 s of CPU); its measures are tested above.
@pytest.mark.slow
def test_box_drift_cli_on_a_checkpoint(tmp_path):
    from hart_tf.model.config import HARTConfig
    from hart_tf.train.options import TrainOptions
    from hart_tf.train.trainer import train

    tiny = HARTConfig.from_preset("small", image_size=(64, 64), glimpse_size=(8, 8),
                                  v1_channels=8, rnn_units=12, dorsal_units=10)
    summary = train(TrainOptions.from_flat(
        config=tiny, batch_size=2, steps_per_epoch=1, epochs=1,
        curriculum_lengths=(2, 3), checkpoint_dir=str(tmp_path / "ckpt"),
        logdir=str(tmp_path / "tb"), eval_sequences=1, eval_steps=2, image_every=0,
        run_eagerly=True, progress=0))
    out = tmp_path / "drift.json"
    r = subprocess.run([sys.executable, str(REPO / "experiments" / "box_drift.py"),
                        f"--model={summary['checkpoint']}", "--eval_sequences=2",
                        "--eval_steps=3", f"--out={out}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "t | box: centre err px" in r.stdout
    assert "t | box on the target, on a look-alike, lost (by IoU) | centre nearer" in r.stdout
    assert "the same centres with the target's true size" in r.stdout
    assert "location map, over the" in r.stdout
    result = json.loads(out.read_text())
    assert (result["sequences"], result["steps"]) == (2, 3)
    for kind in ("box", "attention"):
        assert len(result[kind]["log_h_ratio"]) == 4  # t = 0..3
        assert result[kind]["centre_error_px"][0] >= 0
    f = result["follows"]
    assert f["target"][0] == 1.0  # step 0 reports the given box
    for t in range(4):
        assert f["target"][t] + f["look_alike"][t] + f["lost"][t] == pytest.approx(1.0)
    assert 0 <= result["mean_iou"]["own_size"] <= 1 and 0 <= result["mean_iou"]["true_size"] <= 1
    assert len(f["centre_nearer_look_alike"]) == 4
    assert set(result["location_map"]) == {"map_on_target", "map_on_look_alike",
                                          "map_on_background", "target_above_look_alike",
                                          "steps"}


def test_box_drift_needs_a_checkpoint():
    r = subprocess.run([sys.executable, str(REPO / "experiments" / "box_drift.py")],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1] == (
        "error: --checkpoint is required (a run folder or a .keras file)")
