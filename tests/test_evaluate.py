"""`python -m hart_tf.evaluate` on synthetic data, with OpenCV trackers scored beside HART."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from hart_tf.cli import evaluate as evaluate_cli
from hart_tf.eval.sequences import evaluate_opencv, score
from hart_tf.model.config import HARTConfig
from hart_tf.model.hart import HART


def _needs_opencv():
    pytest.importorskip("cv2", reason="OpenCV (the bench or dev extra) is not installed")


def _moving_square(n=2, t=8, size=(64, 64)):
    """A checkered 14-px square drifting 1 px a frame over a flat grey background."""
    frames = np.full((n, t, *size, 3), 90, np.uint8)
    boxes = np.zeros((n, t, 4), np.float32)
    yy, xx = np.mgrid[:14, :14]
    square = np.where(((yy // 3 + xx // 3) % 2)[..., None] > 0, 240, 20).astype(np.uint8)
    for i in range(n):
        for k in range(t):
            y, x = 20 + i, 15 + k
            frames[i, k, y:y + 14, x:x + 14] = square
            boxes[i, k] = (y, x, 14, 14)
    return {"frames": frames, "boxes": boxes, "presence": np.ones((n, t), np.float32)}


def test_evaluate_opencv_follows_an_easy_target():
    _needs_opencv()
    data = _moving_square()
    result = evaluate_opencv("csrt", data)
    assert result["boxes"].shape == data["boxes"].shape
    np.testing.assert_allclose(result["boxes"][:, 0], data["boxes"][:, 0])
    assert result["mean_iou"] > 0.8  # CSRT follows a lone, high-contrast square
    assert result["mean_iou"] == score(result["boxes"], data["boxes"],
                                       data["presence"])["mean_iou"]
    assert result["fps"] > 0
    assert len(result["iou_per_step"]) == 7  # steps 1..7


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = HART(HARTConfig.from_preset("small", image_size=(64, 64), glimpse_size=(8, 8),
                                        v1_channels=8, rnn_units=12, dorsal_units=10), seed=0)
    model.build()
    path = tmp_path_factory.mktemp("eval") / "tiny.keras"
    model.save(path)
    return path


def _run(run_cli, argv):
    """`python -m hart_tf.evaluate` in process; it must succeed."""
    return run_cli(evaluate_cli.main, argv, "evaluate", code=0)


def test_evaluate_cli_scores_opencv_beside_hart(tiny_checkpoint, tmp_path, run_cli):
    _needs_opencv()
    out = tmp_path / "out"
    run = _run(run_cli, [f"--model={tiny_checkpoint}", "--eval_sequences=2", "--eval_steps=3",
                         "--num_distractors_max=0", "--opencv_baselines=csrt,kcf",
                         f"--out={out}"])
    last, notebook = run.out.strip().splitlines()[-3:-1]
    assert last.startswith("mean IoU over 3 steps (ours, t >= 1 pooled): ")
    assert notebook.startswith("mean IoU of the 3-step curve from t = 0 (the authors' notebook)")
    assert "; OpenCV CSRT " in last and "; OpenCV KCF " in last
    record = json.loads((out / "results.json").read_text())
    assert set(record["opencv"]) == {"csrt", "kcf"}
    for scores in record["opencv"].values():
        assert 0.0 <= scores["mean_iou"] <= 1.0 and len(scores["iou_per_step"]) == 3
    assert (out / "iou_per_step.png").exists()


def _error(run_cli, argv) -> str:
    run = run_cli(evaluate_cli.main, argv, "evaluate", code=2)
    assert len(run.err) == 1, run.err
    return run.err[0]


def test_evaluate_cli_rejects_an_unknown_opencv_tracker(tiny_checkpoint, run_cli):
    assert _error(run_cli, [f"--model={tiny_checkpoint}", "--opencv_baselines=boosting"]) == (
        "error: --opencv_baselines: unknown tracker 'boosting'; choose from csrt,kcf,mil")


def test_evaluate_cli_without_opencv_says_what_to_install(tiny_checkpoint, run_cli,
                                                          monkeypatch):
    from hart_tf.track import baselines

    def missing():
        raise ImportError("No module named 'cv2'")

    monkeypatch.setattr(baselines, "_import_cv2", missing)
    assert _error(run_cli, [f"--model={tiny_checkpoint}", "--opencv_baselines=csrt"]) == (
        "error: --opencv_baselines needs OpenCV: pip install -e '.[bench]'")


def test_evaluate_warns_when_the_test_data_is_not_what_the_run_trained_on(
        tiny_checkpoint, tmp_path, run_cli):
    from hart_tf.model.saving import load_model
    from hart_tf.train.checkpoints import CheckpointManager

    model = load_model(tiny_checkpoint)
    trained = {"dataset": "synthetic", "texture_source": "procedural",
               "num_distractors_max": 0, "distractor_jitter": 0.15,
               "distractor_front_prob": 0.5, "distractor_cross_speed": 6.0,
               "occlusion_prob": 0.5}
    CheckpointManager(tmp_path / "run", keep=1).save(
        model, {"step": 1, "config": model.config.to_dict(), "data": trained}, best=True)
    common = [f"--model={tmp_path / 'run'}", "--eval_sequences=1", "--eval_steps=2",
              "--num_distractors_max=0", f"--out={tmp_path / 'out'}"]
    err = _run(run_cli, common).err
    assert (f"warning: {tmp_path / 'run' / 'best.keras'} was trained on other synthetic data: "
            "--distractor_cross_speed=6.0 (here 0.0); pass its flags to score it on its own "
            "test set") in err
    assert not any("warning" in line for line in _run(run_cli, [*common,
                                                               "--distractor_cross_speed=6"]).err)
    # A bare .keras file (no record beside it) is scored without a word.
    bare = _run(run_cli, [f"--model={tiny_checkpoint}", *common[1:]])
    assert not any("warning" in line for line in bare.err)
