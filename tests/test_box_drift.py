"""tools/box_drift.py: centre error and size drift per step, by hand and on a checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
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


def test_box_drift_cli_on_a_checkpoint(tmp_path):
    from hart_tf.config import HARTConfig
    from hart_tf.curriculum import Curriculum
    from hart_tf.training import TrainOptions, train

    tiny = HARTConfig.from_preset("small", image_size=(64, 64), glimpse_size=(8, 8),
                                  v1_channels=8, rnn_units=12, dorsal_units=10)
    summary = train(TrainOptions(
        config=tiny, batch_size=2, steps_per_epoch=1, epochs=1,
        curriculum=Curriculum((2, 3)), checkpoint_dir=str(tmp_path / "ckpt"),
        logdir=str(tmp_path / "tb"), eval_sequences=1, eval_steps=2, image_every=0,
        run_eagerly=True, verbose=0))
    out = tmp_path / "drift.json"
    r = subprocess.run([sys.executable, str(REPO / "tools" / "box_drift.py"),
                        f"--checkpoint={summary['checkpoint']}", "--eval_sequences=2",
                        "--eval_steps=3", f"--out={out}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "t | box: centre err px" in r.stdout
    result = json.loads(out.read_text())
    assert (result["sequences"], result["steps"]) == (2, 3)
    for kind in ("box", "attention"):
        assert len(result[kind]["log_h_ratio"]) == 4  # t = 0..3
        assert result[kind]["centre_error_px"][0] >= 0


def test_box_drift_needs_a_checkpoint():
    r = subprocess.run([sys.executable, str(REPO / "tools" / "box_drift.py")],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1] == (
        "error: --checkpoint is required (a run folder or a .keras file)")
