"""Reliability: resume after a kill, atomic and verified checkpoints, the NaN guard, and
tracking that never produces NaN on awkward input.

Training runs here are tiny and run eagerly (`run_eagerly`): building the train graph of
even the smallest HART takes longer on two cores than a dozen eager steps. The two SIGKILL
tests start real training processes and are marked slow (about 2 minutes together).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from hart_tf.cli import train as train_cli
from hart_tf.model.config import HARTConfig
from hart_tf.model.hart import HART
from hart_tf.model.saving import load_model
from hart_tf.train import sources as datasets
from hart_tf.train.checkpoints import CheckpointManager
from hart_tf.train.options import TrainOptions
from hart_tf.train.state import seed_variables as _seed_variables
from hart_tf.train.trainer import _StepLogger, _Trainer, train

REPO = Path(__file__).resolve().parents[1]
# The smallest model the synthetic data allows (its objects need frames of 64 pixels).
TINY = HARTConfig.from_preset("small", image_size=(64, 64), glimpse_size=(8, 8), v1_channels=8,
                              rnn_units=12, dorsal_units=10)


def _options(tmp_path: Path, **changes) -> TrainOptions:
    base = dict(config=TINY, batch_size=2, learning_rate=1e-2, steps_per_epoch=4, epochs=1,
                curriculum_lengths=(2, 3), curriculum_threshold=0.0,
                checkpoint_dir=str(tmp_path / "ckpt"), logdir=str(tmp_path / "tb"),
                checkpoint_every=2, eval_sequences=1, eval_steps=1, image_every=0,
                run_eagerly=True, progress=0)
    base.update(changes)
    return TrainOptions.from_flat(**base)


def _state_of(path: Path) -> dict:
    return json.loads(path.with_suffix(".json").read_text())


def _assert_same_checkpoint(a: Path, b: Path) -> None:
    """Weights, batch-norm statistics and optimizer slots equal bit for bit, and the same
    training state (RNG streams included) beside them."""
    ma, mb = load_model(a, compile=True), load_model(b, compile=True)
    seeds = {id(v) for v in _seed_variables(ma) + _seed_variables(mb)}  # kept in the JSON
    pairs = list(zip(ma.variables, mb.variables, strict=True))
    pairs += list(zip(ma.optimizer.variables, mb.optimizer.variables, strict=True))
    assert len(ma.optimizer.variables) > 2 * len(ma.trainable_variables)  # slots were saved
    for va, vb in pairs:
        if id(va) not in seeds:
            np.testing.assert_array_equal(np.asarray(va), np.asarray(vb), err_msg=va.path)
    sa, sb = _state_of(a), _state_of(b)
    for state in (sa, sb):
        state.pop("sha256")
        for epoch in state["history"]:
            epoch.pop("minutes"), epoch.pop("unix_time")  # wall-clock times differ
    assert sa == sb


# ---- checkpoints: verified, broken ones skipped -------------------------------------------


def test_broken_checkpoints_are_reported_and_skipped_for_the_previous_good_one(tmp_path, capsys):
    options = _options(tmp_path, keep_checkpoints=5)
    trainer = _Trainer(options)
    model = trainer.model
    model.optimizer.build(model.trainable_variables)
    slot = model.optimizer.variables[-5]  # the last slot before the guard's variables
    for step in (2, 4, 6, 8, 10):
        # Each checkpoint is told apart by its weights, slots, RNG and curriculum state.
        model.cell.att_gate.assign(np.full(model.cell.att_gate.shape, step, "float32"))
        slot.assign(np.full(slot.shape, step, "float32"))
        model.noise_seed.state.assign(np.array([0, 3 * step]))
        trainer.step, trainer.epoch, trainer.epoch_step = step, 1, 2
        trainer.curriculum.index, trainer.curriculum.epochs_at_length = 1, step
        trainer.save()
    run = options.run_dir
    assert sorted(p.name for p in run.iterdir()) == sorted(
        f"ckpt-{s}.{ext}" for s in (2, 4, 6, 8, 10) for ext in ("json", "keras"))
    # ckpt-10: its .keras truncated (a copy cut short); ckpt-8: its state cut short;
    # ckpt-6: a file that hashes right but is no Keras archive; ckpt-4: another program's
    # state file.
    data = (run / "ckpt-10.keras").read_bytes()
    (run / "ckpt-10.keras").write_bytes(data[: len(data) // 3])
    (run / "ckpt-8.json").write_text((run / "ckpt-8.json").read_text()[:50])
    (run / "ckpt-6.keras").write_bytes(b"PK\x03\x04 not really a zip archive")
    state = _state_of(run / "ckpt-6.keras")
    state["sha256"] = hashlib.sha256((run / "ckpt-6.keras").read_bytes()).hexdigest()
    (run / "ckpt-6.json").write_text(json.dumps(state))
    (run / "ckpt-4.json").write_text(json.dumps({"step": 4, "weights": "model.h5"}))
    capsys.readouterr()

    resumed = _Trainer(_options(tmp_path, keep_checkpoints=5))
    out = capsys.readouterr()
    err = out.err.splitlines()
    assert err[:2] == [
        f"warning: skipping checkpoint: {run}/ckpt-10.keras: truncated or modified "
        "(checksum mismatch)",
        f"warning: skipping checkpoint: {run}/ckpt-8.json: unreadable checkpoint state "
        "(not valid JSON)",
    ]
    assert err[2].startswith(f"warning: skipping checkpoint: {run}/ckpt-6.keras: cannot load (")
    assert err[3:] == [f"warning: skipping checkpoint: {run}/ckpt-4.json: not a hart_tf "
                       "checkpoint"]
    assert out.out.splitlines() == [f"Resumed {run} at step 2 (epoch 1, T=3) from ckpt-2.keras"]
    m = resumed.model
    np.testing.assert_array_equal(np.asarray(m.cell.att_gate), 2.0)
    np.testing.assert_array_equal(np.asarray(m.optimizer.variables[-5]), 2.0)
    np.testing.assert_array_equal(np.asarray(m.noise_seed.state), [0, 6])
    assert (resumed.step, resumed.epoch, resumed.epoch_step) == (2, 1, 2)
    assert (resumed.curriculum.length, resumed.curriculum.epochs_at_length) == (3, 2)
    assert resumed.resume_metrics is not None
    assert len(resumed.resume_metrics) == len(m.metrics_variables) - 1  # not the step values


# ---- resume mid-epoch, in process -----------------------------------------------------------


def _interrupt_after(monkeypatch, step: int) -> None:
    """Ctrl-C right after training step `step` (no checkpoint is written on the way out)."""
    real = _StepLogger.on_train_batch_end

    def on_train_batch_end(self, batch, logs=None):
        real(self, batch, logs)
        if self.trainer.step == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(_StepLogger, "on_train_batch_end", on_train_batch_end)


def test_interrupted_run_resumes_mid_epoch_to_the_same_weights(tmp_path, monkeypatch, capsys):
    """An epoch of 3 steps with a checkpoint after each; stopped after step 2, the rerun
    resumes mid-epoch from ckpt-2 (running metrics too) and ends where the straight run did."""
    kwargs = dict(steps_per_epoch=3, epochs=1, checkpoint_every=1, keep_checkpoints=5)
    straight = train(_options(tmp_path / "straight", **kwargs))
    assert straight["step"] == 3

    options = _options(tmp_path / "killed", **kwargs)
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            train(options)
    run = options.run_dir
    assert sorted(p.name for p in run.glob("*.json")) == ["ckpt-1.json", "ckpt-2.json"]
    capsys.readouterr()
    resumed = train(_options(tmp_path / "killed", **kwargs))
    assert f"Resumed {run} at step 2 (epoch 0, T=2) from ckpt-2.keras" in capsys.readouterr().out
    assert resumed["step"] == 3
    _assert_same_checkpoint(run / "ckpt-3.keras",
                            Path(straight["checkpoint"]).parent / "ckpt-3.keras")
    assert resumed["test"] == straight["test"]


# ---- the NaN guard ----------------------------------------------------------------------------


def _poison(monkeypatch, bad: dict[int, str]) -> None:
    """Makes training batch `step` non-finite: "box0" (a NaN first box: the whole forward
    pass is NaN) or "boxes" (NaN targets after the first frame: the losses are NaN)."""
    real = datasets.TrainSource.batches

    def batches(self, length, start=None):
        step = start or 0
        for x, y in real(self, length, start):
            step += 1
            if bad.get(step) == "box0":
                x = dict(x, box0=np.full(x["box0"].shape, np.nan, np.float32))
            elif bad.get(step) == "boxes":
                boxes = y["boxes"].astype(np.float32)
                boxes[:, 1:] = np.nan
                y = dict(y, boxes=boxes)
            yield x, y

    monkeypatch.setattr(datasets.TrainSource, "batches", batches)


def _scalars(logdir: Path, tag: str) -> dict[int, float]:
    import tensorflow as tf

    out = {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag == tag:
                    out[event.step] = float(tf.make_ndarray(value.tensor))
    return out


def test_nan_guard_skips_counts_logs_and_stops_with_the_last_good_checkpoint(
        tmp_path, monkeypatch, run_cli):
    # Step 3: a NaN first box (a transient fault: skipped, training goes on); steps 5-7: NaN
    # target boxes, three in a row = max_bad_steps, so training stops after step 7.
    _poison(monkeypatch, {3: "box0", 5: "boxes", 6: "boxes", 7: "boxes"})
    from_flags = train_cli.options_from_flags
    monkeypatch.setattr(train_cli, "options_from_flags",
                        lambda: from_flags().replace(max_bad_steps=3))
    run, logdir = tmp_path / "ckpt" / "nan", tmp_path / "tb"
    code, _, err, _ = run_cli(train_cli.main, [
        "--image_size=64,64", "--glimpse_size=8,8", "--rnn_units=12", "--batch_size=2",
        "--steps_per_epoch=10", "--epochs=1", "--curriculum_lengths=2,3",
        "--checkpoint_every=2", f"--checkpoint_dir={tmp_path / 'ckpt'}", "--run_name=nan",
        f"--logdir={logdir}", "--eval_sequences=1", "--eval_steps=1", "--image_every=0",
        "--run_eagerly", "--max_minutes=0"], "train")
    assert code == 1
    # NaN targets make the attention and appearance losses NaN; the tracking loss stays
    # finite (its IoU clips with maximum/minimum, which drop a NaN operand on TensorFlow).
    assert err == [
        "error: training stopped at step 7: 3 updates in a row had a non-finite loss or "
        "gradient, from step 5 on (non-finite: appearance, attention); the last "
        f"good checkpoint {run}/ckpt-4.keras is kept and rerunning resumes from it"]
    assert sorted(p.name for p in run.glob("*.json")) == ["ckpt-2.json", "ckpt-4.json",
                                                          "summary.json"]
    assert json.loads((run / "summary.json").read_text())["checkpoint"] == str(
        run / "ckpt-4.keras")
    # Skipped updates, counted and logged for TensorBoard.
    assert _scalars(logdir, "optim/skipped_updates") == {1: 0, 2: 0, 3: 1, 4: 1, 5: 2, 6: 3,
                                                         7: 4}
    # The checkpoint after the NaN first box holds only finite values: the optimizer kept the
    # weights and the batch-norm statistics of that step were rolled back.
    manager = CheckpointManager(run)
    path, state = manager.latest()
    assert state["step"] == 4
    model = load_model(path, compile=True)
    for v in model.variables + model.optimizer.variables:
        assert np.all(np.isfinite(np.asarray(v, np.float64))), v.path
    assert float(np.asarray(model.optimizer.bad_steps)) == 1.0


# ---- tracking on awkward input never gives NaN ------------------------------------------------

SMALL_FRAME = HARTConfig.from_preset("small", image_size=(24, 32), glimpse_size=(8, 8),
                                     v1_channels=8, rnn_units=12, dorsal_units=10)


def _awkward_cases(h: int, w: int, steps: int = 5):
    """(name, frames (T, H, W, 3) float, box0 (y, x, h, w)) of every awkward case."""
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 255, (steps, h, w, 3)).astype(np.float32)
    leaving = noise.copy()
    for t in range(steps):  # a bright 6x6 square that walks out through the right edge
        x = w - 8 + 4 * t
        leaving[t, 9:15, max(x, 0):min(x + 6, w)] = 255.0
    return [
        ("leaving the frame", leaving, [9, w - 8, 6, 6]),
        ("on the top-left border", noise, [0, 0, 8, 8]),
        ("on the bottom-right border", noise, [h - 8, w - 8, 8, 8]),
        ("half outside", noise, [-4, -4, 8, 8]),
        ("2x2 pixels", noise, [10, 10, 2, 2]),
        ("the whole frame", noise, [0, 0, h, w]),
        ("black frames", np.zeros_like(noise), [6, 8, 10, 12]),
        ("constant frames", np.full_like(noise, 128.0), [6, 8, 10, 12]),
        ("white frames", np.full_like(noise, 255.0), [0, 0, h, w]),
    ]


@pytest.mark.parametrize("v1", ["small", "alexnet"])
def test_tracking_awkward_input_never_gives_nan(v1):
    """Also AlexNet's V1, which subtracts each glimpse's mean: on a constant frame the
    glimpse is all zeros after contrast normalisation and mean subtraction."""
    keras.utils.set_random_seed(0)
    config = SMALL_FRAME.replace(v1=v1, v1_channels=384 if v1 == "alexnet" else 8)
    model = HART(config, seed=0)
    model.build()
    h, w = config.image_size
    cases = _awkward_cases(h, w)
    frames = np.stack([c[1] for c in cases])  # (B, T, H, W, 3)
    boxes = np.array([c[2] for c in cases], np.float32)  # (B, 4)
    state = model.init_state(frames[:, 0], boxes)
    for t in range(1, frames.shape[1]):
        out, state = model.step(frames[:, t], state)
        for key, value in out.items():
            value = np.asarray(value)
            bad = ~np.isfinite(value).reshape(len(cases), -1).all(-1)
            assert not bad.any(), (key, t, [c[0] for c, b in zip(cases, bad, strict=True) if b])
        presence = np.asarray(out["presence"])
        assert np.all((presence >= 0) & (presence <= 1))
        assert np.all(np.asarray(out["box"])[:, 2:] > 0)
    for s in state:
        assert np.all(np.isfinite(np.asarray(s)))
    # The sequence call (what training and evaluation run) agrees and is finite too.
    seq = model({"frames": frames, "box0": boxes})
    assert all(np.all(np.isfinite(np.asarray(v))) for v in seq.values())


def test_tracker_takes_frames_smaller_than_the_glimpse_and_constant_frames():
    from hart_tf.track.tracker import Tracker

    keras.utils.set_random_seed(0)
    model = HART(SMALL_FRAME, seed=0)
    model.build()
    tracker = Tracker(model.init_state, model.step, SMALL_FRAME.image_size)  # eager
    tiny = np.random.default_rng(0).integers(0, 256, (5, 6, 3)).astype(np.uint8)  # < 8x8
    tracker.init(tiny, (1, 1, 3, 2))
    for frame in (tiny, np.zeros_like(tiny), np.full((5, 6, 3), 77, np.uint8)):
        box = tracker.update(frame)
        assert box.shape == (4,) and np.all(np.isfinite(box)) and np.all(box[2:] > 0)
        assert 0.0 <= float(tracker.last["presence"]) <= 1.0


# ---- SIGKILL and resume (slow: real training processes) --------------------------------------

# Runs `python -m hart_tf.train` with two test hooks: Python's random module is seeded
# before hart_cell is imported (its module-level RandomUniform initializer draws a seed at
# import, so two processes would start from different weights), and with a first argument
# "<step>:<marker>" the save of checkpoint <step> touches <marker> and hangs between
# writing the temporary .keras file and renaming it, so a kill lands mid-checkpoint.
DRIVER = """
import random, sys, time
random.seed(0)
from hart_tf.train import checkpoints
from hart_tf.cli import train
pause = sys.argv.pop(1)
if pause != "none":
    step, marker = pause.split(":", 1)
    fsync = checkpoints._fsync_file
    def hang(path):
        fsync(path)
        if path.name == f".tmp-ckpt-{step}.keras":
            open(marker, "w").close()
            time.sleep(600)
    checkpoints._fsync_file = hang
cli.run(train.main)
"""
# 3 epochs of 4 steps (T=2, then 3); checkpoints at steps 3, 6, 9 (mid-epoch) and 4, 8, 12
# (epoch ends). A high learning rate makes any restore error show in the weights.
RUN_FLAGS = [
    "--image_size=64,64", "--glimpse_size=8,8", "--rnn_units=12", "--batch_size=2",
    "--steps_per_epoch=4", "--epochs=3", "--curriculum_lengths=2,3",
    "--curriculum_threshold=0", "--checkpoint_every=3",
    "--eval_sequences=1", "--eval_steps=1", "--max_minutes=0", "--image_every=0",
    "--learning_rate=0.01", "--run_name=r", "--run_eagerly",
]
FINAL_STEP = 12


def _start(root: Path, pause: str = "none") -> subprocess.Popen:
    root.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-c", DRIVER, pause, *RUN_FLAGS, f"--checkpoint_dir={root}",
           f"--logdir={root / 'tb'}"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(root / "stdout", "ab") as out, open(root / "stderr", "ab") as err:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=err)


def _finish(proc: subprocess.Popen, root: Path) -> None:
    assert proc.wait(timeout=600) == 0, (root / "stderr").read_text()[-3000:]


def _wait_for(predicate, proc: subprocess.Popen, root: Path, what: str) -> None:
    deadline = time.time() + 600
    while not predicate():
        assert proc.poll() is None, f"exited before {what}: " + (root / "stderr").read_text()[
            -3000:]
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """The same run, never interrupted: started once, awaited by whoever needs it first."""
    root = tmp_path_factory.mktemp("straight")
    proc = _start(root)
    done = []

    def final_checkpoint() -> Path:
        if not done:
            _finish(proc, root)
            done.append(True)
        return root / "r" / f"ckpt-{FINAL_STEP}.keras"

    yield final_checkpoint
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _resume_and_compare(root: Path, straight: Path) -> None:
    run = root / "r"
    found = CheckpointManager(run).latest()
    assert found is not None
    path, state = found
    start = len((root / "stdout").read_bytes())
    _finish(_start(root), root)
    stdout = (root / "stdout").read_bytes()[start:].decode()
    assert (f"Resumed {run} at step {state['step']} (epoch {state['epoch']}, "
            f"T={state['curriculum']['lengths'][state['curriculum']['index']]}) "
            f"from {path.name}") in stdout
    assert not list(run.glob(".tmp-*"))
    assert _state_of(run / f"ckpt-{FINAL_STEP}.keras")["step"] == FINAL_STEP
    _assert_same_checkpoint(run / f"ckpt-{FINAL_STEP}.keras", straight)


@pytest.mark.slow
def test_sigkill_at_a_random_moment_then_rerun_continues_from_the_last_checkpoint(
        tmp_path, straight_run):
    delay = random.Random().uniform(0.0, 3.0)
    root = tmp_path / "killed"
    proc = _start(root)
    run = root / "r"
    _wait_for(lambda: list(run.glob("ckpt-*.json")), proc, root, "the first checkpoint")
    time.sleep(delay)
    assert proc.poll() is None, f"the run ended before the kill ({delay:.2f} s after ckpt-3)"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _resume_and_compare(root, straight_run())


@pytest.mark.slow
def test_sigkill_while_a_checkpoint_is_written_keeps_the_previous_one(tmp_path, straight_run):
    root = tmp_path / "killed"
    marker = tmp_path / "saving"
    proc = _start(root, pause=f"8:{marker}")
    _wait_for(marker.exists, proc, root, "the save of ckpt-8")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run = root / "r"
    # The killed save left only its temporary file; ckpt-6 (mid-epoch 2) is the newest.
    assert (run / ".tmp-ckpt-8.keras").is_file()
    assert not (run / "ckpt-8.keras").exists() and not (run / "ckpt-8.json").exists()
    path, state = CheckpointManager(run).latest()
    assert path.name == "ckpt-6.keras" and state["epoch_step"] == 2
    _resume_and_compare(root, straight_run())
