"""HART, the static box and CSRT on real clips: `evaluate_clips` and the evaluate CLI."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from fixtures_tracking import untrained_checkpoint  # noqa: F401

from hart_tf import clips_eval, metrics
from hart_tf.data import clips

HAS_CSRT = False
if importlib.util.find_spec("cv2") is not None:
    import cv2

    HAS_CSRT = hasattr(cv2, "TrackerCSRT") or hasattr(getattr(cv2, "legacy", None),
                                                      "TrackerCSRT_create")

TWO = ["Car1", "David"]  # a greyscale and a colour clip
FRAMES = 6


def _static_iou(gt_xywh: np.ndarray) -> float:
    gt = clips.xywh_to_yxhw(gt_xywh)
    return float(np.mean(metrics.iou(np.repeat(gt[:1], len(gt) - 1, 0), gt[1:])))


def test_two_real_clips(shared_data, untrained_checkpoint, tmp_path):  # noqa: F811
    root = shared_data / "real_clips"
    record = clips_eval.evaluate_clips(untrained_checkpoint, root, tmp_path,
                                       max_frames=FRAMES, sequences=TWO)
    expected = ["HART", "static box"] + (["CSRT"] if HAS_CSRT else [])
    assert record["trackers"] == expected
    assert list(record["sequences"]) == TWO
    for name in TWO:
        seq = record["sequences"][name]
        assert seq["frames"] == FRAMES
        gt = clips.read_groundtruth(root / name / "groundtruth.txt")[:FRAMES]
        static = seq["scores"]["static box"]
        # The static box is scored against the real ground truth, frames 1..N-1.
        assert static["mean_iou"] == pytest.approx(_static_iou(gt), abs=1e-6)
        assert static["frames"] == FRAMES - 1
        for tracker in expected:
            s = seq["scores"][tracker]
            assert 0.0 <= s["mean_iou"] <= 1.0 and 0.0 <= s["precision_20"] <= 1.0
            assert s["fps"] > 0
            boxes = np.array(seq["boxes_xywh"][tracker])
            assert boxes.shape == (FRAMES, 4)
            np.testing.assert_allclose(boxes[0], gt[0], atol=0.01)
    if HAS_CSRT:
        # CSRT follows these first frames closely: a broken frame conversion would not.
        assert record["overall"]["CSRT"]["mean_iou"] > 0.6
    overall = record["overall"]["static box"]
    assert overall["frames"] == 2 * (FRAMES - 1)
    per_seq = [record["sequences"][n]["scores"]["static box"]["mean_iou"] for n in TWO]
    assert overall["mean_iou"] == pytest.approx(np.mean(per_seq), abs=1e-6)  # equal lengths

    on_disk = json.loads((tmp_path / clips_eval.RESULTS_JSON).read_text())
    assert on_disk["overall"]["HART"]["mean_iou"] == pytest.approx(
        record["overall"]["HART"]["mean_iou"])
    table = (tmp_path / clips_eval.RESULTS_MD).read_text()
    for row in TWO + ["**all frames**"]:
        assert f"| {row} | " in table
    assert "HART IoU" in table and "static box IoU" in table
    # fps is a cost per frame: shown for the trackers, a dash for the static box.
    columns = next(line for line in table.splitlines()
                   if line.startswith("| sequence |")).split(" | ")
    car1 = next(line for line in table.splitlines() if line.startswith("| Car1 |")).split(" | ")
    assert car1[columns.index("static box fps")] == "–"
    assert float(car1[columns.index("HART fps")]) > 0
    assert (tmp_path / "strip_Car1.png").stat().st_size > 1000


def test_bad_inputs(shared_data, untrained_checkpoint, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match="--data_dir"):
        clips_eval.evaluate_clips(untrained_checkpoint, None)
    with pytest.raises(ValueError, match="no sequence folder"):
        clips_eval.evaluate_clips(untrained_checkpoint, tmp_path)
    with pytest.raises(ValueError, match="no sequence Nope"):
        clips_eval.evaluate_clips(untrained_checkpoint, shared_data / "real_clips",
                                  sequences=["Nope"])
    with pytest.raises(ValueError, match="max_frames"):
        clips_eval.evaluate_clips(untrained_checkpoint, shared_data / "real_clips",
                                  max_frames=1)


def test_evaluate_cli(shared_data, untrained_checkpoint, tmp_path):  # noqa: F811
    # 4-frame copies of two real clips (in tmp only), so that the CLI tracks whole clips
    # fast; --clips scores one of them.
    for clip in ("Jogging1", "David"):
        src = shared_data / "real_clips" / clip
        seq = tmp_path / "data" / clip
        (seq / "frames").mkdir(parents=True)
        for i in range(4):
            name = f"{i:05d}.jpg"
            (seq / "frames" / name).write_bytes((src / "frames" / name).read_bytes())
        lines = (src / "groundtruth.txt").read_text().splitlines()[:4]
        (seq / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run(
        [sys.executable, "-m", "hart_tf.evaluate", "--dataset=clips",
         f"--data_dir={tmp_path / 'data'}", "--clips=Jogging1",
         f"--checkpoint={untrained_checkpoint}", f"--out_dir={out}"],
        capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    record = json.loads((out / clips_eval.RESULTS_JSON).read_text())
    assert list(record["sequences"]) == ["Jogging1"]
    assert record["sequences"]["Jogging1"]["frames"] == 4
    assert "| Jogging1 | 4 |" in run.stdout


def test_clips_a_run_trained_on_are_flagged(shared_data, untrained_checkpoint, tmp_path,  # noqa: F811
                                            capsys):
    from hart_tf import datasets
    from hart_tf.checkpoints import CheckpointManager
    from hart_tf.saving import load_model
    from hart_tf.training import TrainOptions

    model = load_model(untrained_checkpoint)
    options = TrainOptions(config=model.config, train_clips=("Car1", "Dog1"),
                           train_clips_dir=str(shared_data / "real_clips"))
    trained = datasets.data_record(options)
    assert trained["train_clips"] == ["Car1", "Dog1"]
    CheckpointManager(tmp_path / "run", keep=1).save(
        model, {"step": 1, "config": model.config.to_dict(), "data": trained}, best=True)
    record = clips_eval.evaluate_clips(tmp_path / "run", shared_data / "real_clips",
                                       tmp_path / "out", max_frames=3, sequences=TWO,
                                       with_csrt=False, strips=False)
    assert record["trained_on"] == ["Car1"]  # David was not trained on
    err = capsys.readouterr().err
    assert (f"warning: {tmp_path / 'run' / 'best.keras'} was trained on Car1: their scores are "
            "not held-out results (--clips chooses the clips to score)") in err.splitlines()
    table = (tmp_path / "out" / clips_eval.RESULTS_MD).read_text()
    assert "Trained on Car1: not held out." in table
    # A checkpoint without a record (or not trained on these clips) says nothing.
    record = clips_eval.evaluate_clips(untrained_checkpoint, shared_data / "real_clips",
                                       tmp_path / "out2", max_frames=3, sequences=TWO,
                                       with_csrt=False, strips=False)
    assert record["trained_on"] == [] and "warning" not in capsys.readouterr().err
    # --train_clips=all records its folder: every clip of the same folder is marked, those of
    # another folder are not.
    options = TrainOptions(config=model.config, train_clips=("all",),
                           train_clips_dir=str(shared_data / "real_clips"))
    for folder, marked in ((shared_data / "real_clips", TWO), (tmp_path, [])):
        data = datasets.data_record(options) | {"train_clips_dir": str(folder)}
        assert data["train_clips"] == "all"
        CheckpointManager(tmp_path / "all", keep=1).save(
            model, {"step": 1, "config": model.config.to_dict(), "data": data}, best=True)
        record = clips_eval.evaluate_clips(tmp_path / "all", shared_data / "real_clips",
                                           tmp_path / "out3", max_frames=3, sequences=TWO,
                                           with_csrt=False, strips=False)
        assert sorted(record["trained_on"]) == sorted(marked)
