"""Every mistake a user can make gets one line, `error: <what to fix>`, and leaves no output.

Each case runs the real entry point in process (`run_cli`: `cli.parse_flags`, then `main`, as
`python -m hart_tf.train` does) and asserts the exact message. Cases owned by the tracker,
track and export tests are asserted there: `--init` malformed or outside the frame, an
unreadable or missing video, missing/empty/corrupt `--frames`, grey frames given to the
Tracker, and SavedModel signatures called with the wrong rank, shape or dtype.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hart_tf.cli import evaluate as evaluate_cli
from hart_tf.cli import train as train_cli
from hart_tf.data import kitti
from hart_tf.layers.v1 import ALEXNET_SHAPES

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def out(tmp_path):
    """Output folders of a run; a failing command must leave both absent."""
    ckpt, tb = tmp_path / "out" / "ckpt", tmp_path / "out" / "tb"
    yield ckpt, tb
    assert not ckpt.exists() and not tb.exists()


def _args(out, *extra) -> list[str]:
    ckpt, tb = out
    return ["--image_size=64,64", "--glimpse_size=8,8", "--rnn_units=12", "--batch_size=2",
            "--steps_per_epoch=1", "--epochs=1", "--curriculum_lengths=2",
            "--eval_sequences=1", "--eval_steps=1", "--image_every=0", "--run_eagerly",
            "--max_minutes=0", "--run_name=r", f"--checkpoint_dir={ckpt}", f"--logdir={tb}",
            *extra]


def _error(run_cli, argv, main=train_cli.main) -> str:
    """Runs `main` on `argv` as its module would; returns the one line it printed."""
    run = run_cli(main, argv, code=2)
    assert len(run.err) == 1, run.err
    assert "Traceback" not in run.out + "\n".join(run.err)
    return run.err[0]


# ---- flags ------------------------------------------------------------------------------


def test_unknown_dataset(run_cli, out):
    assert _error(run_cli, _args(out, "--dataset=coco")) == (
        "error: flag --dataset=coco: value should be one of <synthetic|kitti|kth|clips>")


def test_batch_size_zero(run_cli, out):
    assert _error(run_cli, _args(out, "--batch_size=0")) == (
        "error: flag --batch_size=0: --batch_size must be positive")


def test_negative_learning_rate(run_cli, out):
    assert _error(run_cli, _args(out, "--learning_rate=-0.001")) == (
        "error: flag --learning_rate=-0.001: --learning_rate must be positive")


@pytest.mark.parametrize("flag,message", [
    ("--num_distractors_max=-1", "--num_distractors_max must be >= 0"),
    ("--distractor_jitter=-0.1", "--distractor_jitter must be >= 0"),
    ("--distractor_cross_speed=-0.5", "--distractor_cross_speed must be >= 0"),
    ("--occlusion_prob=1.5", "--occlusion_prob must be in [0, 1]"),
])
def test_bad_synthetic_data_flags(run_cli, out, flag, message):
    assert _error(run_cli, _args(out, flag)) == f"error: flag {flag}: {message}"


def test_train_clips_flags(run_cli, out, tmp_path):
    assert _error(run_cli, _args(out, "--train_clips=walk")) == (
        "error: flags train_clips_dir=None, train_clips=['walk']: --train_clips_dir and "
        "--train_clips go together: the folder and the clips of it to train on")
    empty = tmp_path / "clips"
    empty.mkdir()
    assert _error(run_cli, _args(out, f"--train_clips_dir={empty}", "--train_clips=walk")) == (
        f"error: {empty}: no clip walk (found none)")
    assert _error(run_cli, _args(out, f"--train_clips_dir={empty}", "--train_clips=all")) == (
        f"error: {empty}: no sequence folder with a groundtruth.txt, nor one level further down")
    assert _error(run_cli, _args(out, "--data_workers=0")) == (
        "error: flag --data_workers=0: --data_workers must be >= 1")


def test_glimpse_larger_than_the_frame(run_cli, out):
    assert _error(run_cli, _args(out, "--image_size=32,48", "--glimpse_size=40,40")) == (
        "error: --glimpse_size (40, 40) is larger than image_size (32, 48)")


def test_malformed_image_size(run_cli, out):
    assert _error(run_cli, _args(out, "--image_size=64,x")) == (
        "error: --image_size must be two integers H,W, got 64,x")


def test_malformed_lr_decay(run_cli, out):
    assert _error(run_cli, _args(out, "--lr_decay=20-0.3")) == (
        "error: --lr_decay entries are LENGTH:FACTOR, got '20-0.3'")


def test_unknown_flag_in_a_flagfile_names_file_and_line(run_cli, out, tmp_path):
    flagfile = tmp_path / "exp.cfg"
    flagfile.write_text("# my experiment\n--batch_size=4\n--bach_size=8\n")
    assert _error(run_cli, _args(out, f"--flagfile={flagfile}")) == (
        f"error: {flagfile}:3: unknown flag --bach_size (did you mean --batch_size?)")


def test_missing_flagfile(run_cli, out, tmp_path):
    assert _error(run_cli, _args(out, f"--flagfile={tmp_path}/nope.cfg")) == (
        f"error: --flagfile: {tmp_path}/nope.cfg: no such file")


def test_stray_argument(run_cli, out):
    assert _error(run_cli, [*_args(out), "kitti.cfg"]) == (
        "error: unexpected arguments: kitti.cfg (flags start with --)")


def test_bad_flag_from_the_command_line_is_one_line(tmp_path):
    """The real process: nothing but TensorFlow's own start-up lines and ours."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "hart_tf.train", "--batch_size=0"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    ours = [line for line in proc.stderr.splitlines()
            if not line.startswith(("WARNING: All log messages before absl", "I0000 ", "W0000 "))]
    assert proc.returncode == 2
    assert ours == ["error: flag --batch_size=0: --batch_size must be positive"]
    assert proc.stdout == "" and list(tmp_path.iterdir()) == []


# ---- output folders ---------------------------------------------------------------------


def test_unwritable_checkpoint_dir(run_cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    args = _args((blocker / "ckpt", tmp_path / "tb"))
    assert _error(run_cli, args) == (
        f"error: --checkpoint_dir: cannot create {blocker}/ckpt/r: {blocker} is not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_unwritable_log_dir(run_cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    args = _args((tmp_path / "ckpt", blocker / "tb"))
    assert _error(run_cli, args) == (
        f"error: --logdir: cannot create {blocker}/tb: {blocker} is not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# ---- checkpoints and weights ------------------------------------------------------------


@pytest.fixture
def saved_run(tmp_path, run_cli):
    """A run folder holding one checkpoint of the `_args` model (rnn_units 12, T 2)."""
    from hart_tf.cli.train import options_from_flags
    from hart_tf.train.trainer import _Trainer

    ckpt, tb = tmp_path / "ckpt", tmp_path / "tb"
    trainer = run_cli(lambda _: _Trainer(options_from_flags()), _args((ckpt, tb)), code=0).value
    trainer.step = 1
    trainer.model.optimizer.build(trainer.model.trainable_variables)
    trainer.save()
    run = ckpt / "r"
    files = {p.name: p.read_bytes() for p in run.iterdir()}
    yield (ckpt, tb), run
    assert {p.name: p.read_bytes() for p in run.iterdir()} == files  # left as it was
    assert not tb.exists()


def test_checkpoint_from_a_different_config_names_the_flag(run_cli, saved_run):
    dirs, run = saved_run
    assert _error(run_cli, _args(dirs, "--rnn_units=16")) == (
        f"error: {run}/ckpt-1.keras: checkpoint from a different config: --rnn_units is 16 "
        "here but 12 in the checkpoint")
    assert _error(run_cli, _args(dirs, "--image_size=64,72")) == (
        f"error: {run}/ckpt-1.keras: checkpoint from a different config: --image_size is "
        "64,72 here but 64,64 in the checkpoint")


def test_a_config_field_newer_than_the_checkpoint_takes_its_default():
    from hart_tf.model.config import HARTConfig
    from hart_tf.train.checkpoints import config_difference

    current = HARTConfig().to_dict()
    older = {k: v for k, v in current.items() if k != "attention_input"}
    assert config_difference(older, current) is None
    pixels = HARTConfig(attention_input="pixels").to_dict()
    assert config_difference(older, pixels) == (
        "--attention_input is 'pixels' here but 'normalized' in the checkpoint")
    # A field removed since holds its one supported value in an older checkpoint.
    assert config_difference(dict(current, v1_stride=4), current) is None
    assert config_difference(dict(current, v1_stride=2), current) == (
        "--v1_stride is 4 here but 2 in the checkpoint")


def test_checkpoint_with_another_curriculum(run_cli, saved_run):
    dirs, run = saved_run
    assert _error(run_cli, _args(dirs, "--curriculum_lengths=2,4")) == (
        "error: checkpoint curriculum lengths [2] differ from --curriculum_* flags [2, 4]")


def _alexnet_file(folder: Path, wrong: str | None = None) -> Path:
    weights = {}
    for name, (w, b) in ALEXNET_SHAPES.items():
        if name == wrong:
            w = (*w[:-1], w[-1] // 2)
        weights[name] = [np.zeros(w, np.float32), np.zeros(b, np.float32)]
    folder.mkdir(exist_ok=True)
    np.save(folder / "bvlc_alexnet.npy", np.array(weights, dtype=object), allow_pickle=True)
    return folder / "bvlc_alexnet.npy"


def test_alexnet_weights_with_wrong_shapes(run_cli, out, tmp_path):
    path = _alexnet_file(tmp_path / "alexnet", wrong="conv2")
    assert _error(run_cli, _args(out, "--config=kth", f"--alexnet_dir={path.parent}")) == (
        f"error: {path}: layer 'conv2' W has shape (5, 5, 48, 128), expected (5, 5, 48, 256)")


def test_alexnet_weights_missing(run_cli, out, tmp_path):
    path = tmp_path / "bvlc_alexnet.npy"
    assert _error(run_cli, _args(out, "--config=kth", f"--alexnet_dir={tmp_path}")) == (
        f"error: cannot read AlexNet weights from {path}: [Errno 2] No such file or "
        f"directory: '{path}'")


def test_clips_flag_outside_the_clips_dataset(run_cli, tmp_path):
    assert _error(run_cli, [f"--model={tmp_path}/run", "--clips=Car1"],
                  evaluate_cli.main) == (
        "error: --clips chooses the clips to score with --dataset=clips, got "
        "--dataset=synthetic")


def test_evaluate_without_a_checkpoint(run_cli, tmp_path):
    assert _error(run_cli, [f"--model={tmp_path}/run"], evaluate_cli.main) == (
        f"error: --model: {tmp_path}/run does not exist")
    (tmp_path / "run").mkdir()
    assert _error(run_cli, [f"--model={tmp_path}/run"], evaluate_cli.main) == (
        f"error: --model: no checkpoint found in {tmp_path}/run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert list((tmp_path / "run").iterdir()) == []


# ---- datasets -----------------------------------------------------------------------------


def _row(frame, track, cls="Car", box=(2.0, 3.0, 10.0, 12.0), occluded="0"):
    left, top, right, bottom = box
    return (f"{frame} {track} {cls} 0 {occluded} -1.5 {left:.2f} {top:.2f} {right:.2f} "
            f"{bottom:.2f} 1.5 1.6 3.9 1.0 1.7 20.0 -1.5")


@pytest.fixture
def kitti_root(tmp_path):
    """KITTI layout: sequence 0000, 10 frames of 30x20 with one car (train 0-7, test 8-9)."""
    root = tmp_path / "kitti"
    frames = root / "training" / "image_02" / "0000"
    frames.mkdir(parents=True)
    for f in range(10):
        Image.new("RGB", (30, 20), (10 * f, 0, 0)).save(frames / f"{f:06d}.png")
    labels = root / "training" / "label_02"
    labels.mkdir()
    (labels / "0000.txt").write_text("\n".join(_row(f, 1) for f in range(10)) + "\n")
    return root


def _kitti_args(out, root) -> list[str]:
    return _args(out, "--dataset=kitti", f"--data_dir={root}", "--config=small",
                 "--image_size=187,621")


def _set_label(root: Path, line: int, row: str) -> Path:
    path = root / "training" / "label_02" / "0000.txt"
    rows = path.read_text().splitlines()
    rows[line - 1] = row
    path.write_text("\n".join(rows) + "\n")
    return path


def test_kitti_without_data_dir(run_cli, out):
    assert _error(run_cli, _args(out, "--dataset=kitti")) == (
        "error: --dataset=kitti needs --data_dir (the folder holding training/)")


def test_kitti_missing_data_dir(run_cli, out, tmp_path):
    assert _error(run_cli, _kitti_args(out, tmp_path / "nope")) == (
        f"error: {tmp_path}/nope/training: directory not found (data_dir must hold training/)")


def test_kitti_malformed_row(run_cli, out, kitti_root):
    path = _set_label(kitti_root, 2, _row(1, 1, occluded="x"))
    assert _error(run_cli, _kitti_args(out, kitti_root)) == (
        f"error: {path}:2: field 'occluded' is 'x', not int")


def test_kitti_row_with_missing_fields(run_cli, out, kitti_root):
    path = _set_label(kitti_root, 4, "3 1 Car 0 0 -1.5 2 3 10")
    assert _error(run_cli, _kitti_args(out, kitti_root)) == (
        f"error: {path}:4: 9 fields, expected 17")


def test_kitti_unknown_class(run_cli, out, kitti_root):
    path = _set_label(kitti_root, 3, _row(2, 1, cls="Bus"))
    assert _error(run_cli, _kitti_args(out, kitti_root)) == (
        f"error: {path}:3: unknown class 'Bus' (known: {', '.join(kitti.CLASSES)})")


def test_kitti_zero_size_box(run_cli, out, kitti_root):
    path = _set_label(kitti_root, 5, _row(4, 1, box=(5.0, 3.0, 5.0, 12.0)))
    assert _error(run_cli, _kitti_args(out, kitti_root)) == (
        f"error: {path}:5: zero or negative box size (left 5.0, top 3.0, right 5.0, "
        "bottom 12.0)")


def test_kitti_box_outside_the_image(run_cli, out, kitti_root):
    path = _set_label(kitti_root, 6, _row(5, 1, box=(2.0, 3.0, 31.5, 12.0)))
    assert _error(run_cli, _kitti_args(out, kitti_root)) == (
        f"error: {path}:6: box (left 2.0, top 3.0, right 31.5, bottom 12.0) is outside the "
        "30x20 image")


def test_kitti_missing_frame_file(run_cli, out, kitti_root):
    frames = kitti_root / "training" / "image_02" / "0000"
    (frames / "000004.png").unlink()
    assert _error(run_cli, _kitti_args(out, kitti_root)) == (
        f"error: {kitti_root}/training/label_02/0000.txt: frame 4 (track 1) has no image "
        f"{frames}/000004.png")


def test_kitti_empty_frames_folder(run_cli, out, kitti_root):
    frames = kitti_root / "training" / "image_02" / "0000"
    for png in frames.iterdir():
        png.unlink()
    assert _error(run_cli, _kitti_args(out, kitti_root)) == f"error: {frames}: no PNG frames"


def test_kitti_corrupt_png(run_cli, out, kitti_root):
    png = kitti_root / "training" / "image_02" / "0000" / "000009.png"
    png.write_bytes(png.read_bytes()[:60])  # a copy cut short
    assert _error(run_cli, _kitti_args(out, kitti_root)) == (
        f"error: {png}: unreadable or corrupt image (image file is truncated)")


def test_kitti_frame_sizes_differ_in_a_sequence(run_cli, out, kitti_root):
    png = kitti_root / "training" / "image_02" / "0000" / "000009.png"
    Image.new("RGB", (31, 20)).save(png)
    assert _error(run_cli, _kitti_args(out, kitti_root)) == (
        f"error: {png}: image is 31x20 but the sequence's first frame is 30x20")


def test_kitti_corrupt_training_frames(run_cli, out, kitti_root):
    """Met when the training frames are decoded into the frame store, before the model is
    built."""
    frames = kitti_root / "training" / "image_02" / "0000"
    for f in range(1, 8):  # every training window holds one of these
        png = frames / f"{f:06d}.png"
        png.write_bytes(png.read_bytes()[:60])
    message = _error(run_cli, _kitti_args(out, kitti_root))
    assert message in {f"error: {frames}/{f:06d}.png: unreadable or corrupt image (image file "
                       "is truncated)" for f in range(1, 8)}


def test_data_error_in_the_middle_of_training(run_cli, tmp_path, monkeypatch):
    """A frame that fails to decode once training has started (Keras then runs the batch
    producer inside tf.data) still comes out as its own line; the checkpoint written before
    stays whole."""
    from hart_tf.data.images import read_image
    from hart_tf.train import sources as datasets
    from hart_tf.train.checkpoints import CheckpointManager

    png = tmp_path / "000004.png"
    noise = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(noise).save(png)
    png.write_bytes(png.read_bytes()[:200])  # a copy cut short
    real = datasets.TrainSource.batches

    def batches(self, length, start=None):
        for i, item in enumerate(real(self, length, start)):
            if i == 3:
                read_image(str(png))
            yield item

    monkeypatch.setattr(datasets.TrainSource, "batches", batches)
    dirs = (tmp_path / "ckpt", tmp_path / "tb")
    assert _error(run_cli, _args(dirs, "--steps_per_epoch=5", "--checkpoint_every=2")) == (
        f"error: {png}: unreadable or corrupt image (image file is truncated)")
    run = tmp_path / "ckpt" / "r"
    assert sorted(p.name for p in run.iterdir()) == ["ckpt-2.json", "ckpt-2.keras"]
    assert CheckpointManager(run).latest()[1]["step"] == 2


def test_kitti_too_few_sequences_to_evaluate(run_cli, out, kitti_root):
    assert _error(run_cli, _kitti_args(out, kitti_root) + ["--eval_sequences=3"]) == (
        "error: --eval_sequences=3: the kitti val split has fewer sequences of 2 frames; "
        "lower --eval_sequences")


def test_kth_without_box_files(run_cli, out, tmp_path):
    assert _error(run_cli, _args(out, "--dataset=kth", f"--data_dir={tmp_path}")) == (
        f"error: {tmp_path}/KTHBoundingBoxInfoTrain.txt: box file not found")


def test_grey_and_rgba_frames_are_converted_to_rgb(kitti_root):
    frames = kitti_root / "training" / "image_02" / "0000"
    rgb = np.asarray(Image.open(frames / "000008.png").convert("RGB"))
    Image.open(frames / "000008.png").convert("L").save(frames / "000008.png")
    Image.open(frames / "000009.png").convert("RGBA").save(frames / "000009.png")
    seqs = kitti.load_kitti(data_dir=str(kitti_root))
    window = kitti.make_windows(seqs, "test", 2)[0]
    sample = kitti.load_sample(window, 2, frame_size=(20, 30))
    assert sample["frames"].shape == (2, 20, 30, 3) and sample["frames"].dtype == np.uint8
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    np.testing.assert_array_equal(sample["frames"][0], np.repeat(grey[..., None], 3, -1))


def test_tracker_refuses_rgba_frames():
    from hart_tf.track.tracker import Tracker

    tracker = Tracker(lambda f, b: None, lambda f, s: None, (24, 32))
    with pytest.raises(ValueError) as info:
        tracker.init(np.zeros((30, 40, 4), np.uint8), (1, 2, 3, 4))
    assert str(info.value) == (
        "Tracker.init: frame must be an RGB image (H, W, 3), got shape (30, 40, 4)")
