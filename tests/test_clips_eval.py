"""HART, the static box and CSRT on real clips: `evaluate_clips` and the evaluate CLI."""

import importlib.util
import json

import numpy as np
import pytest

from hart_tf.data import clips
from hart_tf.data.errors import DataError
from hart_tf.eval import clips as clips_eval
from hart_tf.model import metrics
from hart_tf.utils.boxes import xywh_to_yxhw

HAS_CSRT = False
if importlib.util.find_spec("cv2") is not None:
    import cv2

    HAS_CSRT = hasattr(cv2, "TrackerCSRT") or hasattr(getattr(cv2, "legacy", None),
                                                      "TrackerCSRT_create")

TWO = ["Car1", "David"]  # a greyscale and a colour clip
FRAMES = 6


def _static_iou(gt_xywh: np.ndarray) -> float:
    gt = xywh_to_yxhw(gt_xywh)
    return float(np.mean(metrics.iou(np.repeat(gt[:1], len(gt) - 1, 0), gt[1:])))


def test_two_real_clips(shared_data, untrained_checkpoint, tmp_path):
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


def test_bad_inputs(shared_data, untrained_checkpoint, tmp_path):
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


def test_evaluate_cli(shared_data, untrained_checkpoint, tmp_path, run_cli):
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
    run = _evaluate_cli(run_cli, tmp_path / "data", "Jogging1", untrained_checkpoint, out)
    record = json.loads((out / clips_eval.RESULTS_JSON).read_text())
    assert list(record["sequences"]) == ["Jogging1"]
    assert record["sequences"]["Jogging1"]["frames"] == 4
    assert "| Jogging1 | 4 |" in run.out


def test_clips_a_run_trained_on_are_flagged(shared_data, untrained_checkpoint, tmp_path,
                                            capsys):
    from hart_tf.eval import sets
    from hart_tf.model.saving import load_model
    from hart_tf.train.checkpoints import CheckpointManager
    from hart_tf.train.options import TrainOptions

    model = load_model(untrained_checkpoint)
    options = TrainOptions.from_flat(config=model.config, train_clips=("Car1", "Dog1"),
                           train_clips_dir=str(shared_data / "real_clips"))
    trained = sets.data_record(options)
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
    options = TrainOptions.from_flat(config=model.config, train_clips=("all",),
                           train_clips_dir=str(shared_data / "real_clips"))
    for folder, marked in ((shared_data / "real_clips", TWO), (tmp_path, [])):
        data = sets.data_record(options) | {"train_clips_dir": str(folder)}
        assert data["train_clips"] == "all"
        CheckpointManager(tmp_path / "all", keep=1).save(
            model, {"step": 1, "config": model.config.to_dict(), "data": data}, best=True)
        record = clips_eval.evaluate_clips(tmp_path / "all", shared_data / "real_clips",
                                           tmp_path / "out3", max_frames=3, sequences=TWO,
                                           with_csrt=False, strips=False)
        assert sorted(record["trained_on"]) == sorted(marked)


def _iou_xywh(a, b) -> float:
    """IoU of two (x, y, w, h) boxes, by hand."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@pytest.fixture
def nested_root(tmp_path, clip_layouts):
    """LaSOT-like: airplane-1 (8 frames) hides its target on frames 0 (occluded), 3 (out of
    view) and 5 (0,0,0,0 box); bird-2 shows it on frame 0 only; cat-3 shows it throughout."""
    lasot = clip_layouts.lasot
    root = tmp_path / "lasot"
    lasot(root, "airplane/airplane-1", n=8, occluded=(0,), out_of_view=(3,), empty=(5,))
    lasot(root, "bird/bird-2", n=5, occluded=(1, 2, 3, 4), out_of_view=(), empty=())
    lasot(root, "cat/cat-3", n=6, occluded=(), out_of_view=(), empty=())
    return root


def test_nested_clips_with_absent_frames(nested_root, untrained_checkpoint, tmp_path,
                                         capsys):
    record = clips_eval.evaluate_clips(untrained_checkpoint, nested_root, tmp_path / "out",
                                       with_csrt=False)
    assert list(record["sequences"]) == ["airplane/airplane-1", "cat/cat-3"]
    assert record["skipped_sequences"] == ["bird/bird-2"]
    assert ("warning: skipped 1 sequence(s) with fewer than 2 frames where the target is "
            "visible: bird/bird-2") in capsys.readouterr().err.splitlines()

    seq = record["sequences"]["airplane/airplane-1"]
    # 8 = 1 (frame 1, the first visible, gives the box) + 4 scored (2, 4, 6, 7) + 3 absent.
    assert (seq["frames"], seq["first_visible"], seq["scored"], seq["absent"]) == (8, 1, 4, 3)
    gt, present = clips.read_training_boxes(nested_root / "airplane" / "airplane-1")
    scored = [2, 4, 6, 7]
    assert list(np.flatnonzero(present[2:]) + 2) == scored
    hand = {}
    for tracker in ("static box", "HART"):
        boxes = np.array(seq["boxes_xywh"][tracker])
        assert boxes.shape == (7, 4)  # frames 1..7: tracking starts at the first visible one
        np.testing.assert_allclose(boxes[0], gt[1], atol=0.01)
        # Frame t of the clip is row t - 1; the absent frames 3 and 5 are left out.
        hand[tracker] = [_iou_xywh(boxes[t - 1], gt[t]) for t in scored]
        s = seq["scores"][tracker]
        assert s["frames"] == 4
        # HART's boxes come rounded to 0.01 px.
        tol = 1e-5 if tracker == "static box" else 2e-3
        assert s["mean_iou"] == pytest.approx(np.mean(hand[tracker]), abs=tol)
    np.testing.assert_allclose(np.array(seq["boxes_xywh"]["static box"]),
                               np.repeat(gt[1:2], 7, 0), atol=0.01)
    centre = lambda b: np.array([b[0] + b[2] / 2, b[1] + b[3] / 2])  # noqa: E731
    near = [np.linalg.norm(centre(gt[1]) - centre(gt[t])) <= 20 for t in scored]
    assert seq["scores"]["static box"]["precision_20"] == pytest.approx(np.mean(near))

    cat = record["sequences"]["cat/cat-3"]
    assert (cat["frames"], cat["first_visible"], cat["scored"], cat["absent"]) == (6, 0, 5, 0)
    overall = record["overall"]["static box"]
    assert overall["frames"] == 4 + 5
    cat_gt = clips.read_groundtruth(nested_root / "cat" / "cat-3" / "groundtruth.txt")
    pooled = hand["static box"] + [_iou_xywh(cat_gt[0], cat_gt[t]) for t in range(1, 6)]
    assert overall["mean_iou"] == pytest.approx(np.mean(pooled), abs=1e-5)

    md = (tmp_path / "out" / clips_eval.RESULTS_MD).read_text()
    assert "absent frames are not scored" in md.splitlines()[0]
    assert "Skipped (fewer than 2 visible frames): bird/bird-2." in md.splitlines()[0]
    assert "| sequence | frames | scored | absent | HART IoU |" in md
    assert "| airplane/airplane-1 | 8 | 4 | 3 | " in md
    assert "| **all frames** | 14 | 9 | 3 | " in md
    on_disk = json.loads((tmp_path / "out" / clips_eval.RESULTS_JSON).read_text())
    assert on_disk["sequences"]["airplane/airplane-1"]["absent"] == 3
    assert (tmp_path / "out" / "strip_airplane__airplane-1.png").stat().st_size > 1000
    assert (tmp_path / "out" / "strip_cat__cat-3.png").is_file()


def test_nested_clips_errors(nested_root, untrained_checkpoint, tmp_path):
    def run(**kw):
        return clips_eval.evaluate_clips(untrained_checkpoint, nested_root, tmp_path / "out",
                                         with_csrt=False, strips=False, **kw)

    record = run(sequences=["cat/cat-3"], max_frames=3)
    assert list(record["sequences"]) == ["cat/cat-3"] and record["skipped_sequences"] == []
    with pytest.raises(ValueError) as e:
        run(sequences=["airplane-1"])
    assert str(e.value) == (f"--data_dir={nested_root}: no sequence airplane-1 (found "
                            "airplane/airplane-1, bird/bird-2, cat/cat-3)")
    with pytest.raises(ValueError) as e:
        run(sequences=["bird/bird-2"])
    assert str(e.value) == (f"--data_dir={nested_root}: no sequence has 2 frames where the "
                            "target is visible (of bird/bird-2)")
    # Within its first 2 frames airplane-1 shows its target once (frame 1): skipped too.
    with pytest.raises(ValueError, match="visible in their first 2 frames"):
        run(sequences=["airplane/airplane-1", "bird/bird-2"], max_frames=2)
    # Absent boxes are read leniently, malformed lines are not.
    gt = nested_root / "cat" / "cat-3" / "groundtruth.txt"
    lines = gt.read_text().splitlines()
    gt.write_text("\n".join(lines[:2] + ["1,2,x,4"] + lines[3:]) + "\n")
    with pytest.raises(DataError, match=f"^{gt}:3: not a number in '1,2,x,4'$"):
        run(sequences=["cat/cat-3"])


def test_evaluate_cli_nested_names(nested_root, untrained_checkpoint, tmp_path, run_cli):
    out = tmp_path / "out"
    run = _evaluate_cli(run_cli, nested_root, "airplane/airplane-1,bird/bird-2",
                        untrained_checkpoint, out)
    assert ("warning: skipped 1 sequence(s) with fewer than 2 frames where the target is "
            "visible: bird/bird-2") in run.err
    assert "| airplane/airplane-1 | 8 | 4 | 3 |" in run.out
    assert list(json.loads((out / clips_eval.RESULTS_JSON).read_text())["sequences"]) == [
        "airplane/airplane-1"]
    assert (out / "strip_airplane__airplane-1.png").is_file()


def _evaluate_cli(run_cli, data_dir, clips, checkpoint, out):
    """`python -m hart_tf.evaluate --dataset=clips`'s main, in this process; it must succeed."""
    from hart_tf.cli import evaluate as evaluate_cli

    return run_cli(evaluate_cli.main, ["--dataset=clips", f"--data_dir={data_dir}",
                                       f"--clips={clips}", f"--model={checkpoint}",
                                       f"--out={out}"], "evaluate", code=0)


def test_long_clips_are_decoded_as_tracked_with_the_same_results(
        shared_data, untrained_checkpoint, tmp_path, monkeypatch):
    """Over HOLD_BYTES a clip's frames are decoded per tracker pass, never held whole: the
    boxes, scores and strip are those of the held clip."""
    root = shared_data / "real_clips"
    runs = {}
    for hold in (clips_eval.HOLD_BYTES, 0):
        monkeypatch.setattr(clips_eval, "HOLD_BYTES", hold)
        frames = clips_eval.ClipFrames(clips.frame_paths(root / "David")[:FRAMES])
        assert frames.held == bool(hold) and len(frames) == FRAMES
        np.testing.assert_array_equal(frames[3], list(frames)[3])
        out = tmp_path / f"hold{hold}"
        runs[hold] = (clips_eval.evaluate_clips(untrained_checkpoint, root, out,
                                                max_frames=FRAMES, sequences=TWO,
                                                with_csrt=False), out)
    (held, held_out), (streamed, streamed_out) = runs.values()
    for name in TWO:
        a, b = held["sequences"][name], streamed["sequences"][name]
        assert a["boxes_xywh"] == b["boxes_xywh"]
        for tracker in a["scores"]:
            for key in ("mean_iou", "success_auc", "precision_20", "frames"):
                assert a["scores"][tracker][key] == b["scores"][tracker][key], (name, key)
        strip = clips_eval.strip_name(name)
        assert (held_out / strip).read_bytes() == (streamed_out / strip).read_bytes()
