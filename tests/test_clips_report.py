"""`evaluate --dataset=clips` reports: IoU per frame (JSON and plot) and per-source pools."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_clip_windows import _write_clip

from hart_tf.eval import clips as clips_eval


def test_iou_per_frame_skips_absent_frames():
    present = np.array([1, 1, 0, 1], bool)
    assert clips_eval.iou_per_frame(np.array([0.5, 0.25]), present) == [0.5, None, 0.25]


def test_per_source_pools_and_iou_curve(untrained_checkpoint, tmp_path):
    root = tmp_path / "clips"
    for name in ("davis_a", "davis_b", "uav_c"):
        _write_clip(root, name, 5)
    out = tmp_path / "out"
    record = clips_eval.evaluate_clips(untrained_checkpoint, root, out, with_csrt=False,
                                       strips=False)
    assert set(record["groups"]) == {"davis", "uav"}
    static = record["groups"]["davis"]["static box"]
    per_seq = [record["sequences"][n]["scores"]["static box"]["mean_iou"]
               for n in ("davis_a", "davis_b")]
    assert static["frames"] == 8 and static["mean_iou"] == pytest.approx(np.mean(per_seq))
    for name, seq in record["sequences"].items():
        curve = seq["iou_per_frame"]["HART"]
        assert len(curve) == 4 and all(0 <= v <= 1 for v in curve), name
        assert np.mean(curve) == pytest.approx(seq["scores"]["HART"]["mean_iou"])
    assert (out / clips_eval.IOU_PLOT).stat().st_size > 1000
    table = (out / clips_eval.RESULTS_MD).read_text()
    assert "| all davis_* (2) | 10 | 8 | 0 |" in table and "| all uav_* (1) | 5 | 4 | 0 |" in table
    saved = json.loads((out / clips_eval.RESULTS_JSON).read_text())
    assert saved["groups"]["uav"]["HART"]["frames"] == 4
