"""Data-parallel training (hart_tf/train/distribute.py) on virtual CPU devices.

Each multi-device check runs in a subprocess whose environment makes 4 devices before the
backend starts (JAX: XLA_FLAGS=--xla_force_host_platform_device_count=4; TF: 4 logical
CPUs), so the other tests keep one device. The subprocess runs `python -m test_distribute
<job> ...` and prints one `RESULT <json>` line.

Tolerances (measured on 2 CPU cores, Keras 3.15, 4 steps, batch 8 = 4 x 2):
  * JAX, dropout and zoneout on: per-step losses equal to 6 digits, weights within 1.1e-7.
    One SPMD program over the global batch computes what one device computes.
  * TF, every replica given the same shard: losses equal to 6 digits, weights within 6e-8;
    this checks loss scaling, the gradient sum, clipping and metric aggregation.
  * TF, distinct shards: step 1 loss within 3e-4 (relative), steps 2-4 within 3.3 %. Each
    replica normalises with its own batch-norm statistics (2 sequences instead of 8), and
    RMSProp's first updates (|step| ~ 3 x lr whatever the gradient's size) carry that small
    difference into the weights; the test allows 1e-3 at step 1 and 10 % after.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
DEVICES = 4
B, T, STEPS = 8, 3, 4


def _tiny(noise: bool = False, image_size=(24, 32)):
    from hart_tf.model.config import HARTConfig

    config = HARTConfig.from_preset("small", image_size=image_size, glimpse_size=(8, 8),
                                    v1_channels=8, rnn_units=12, dorsal_units=10)
    return config if noise else config.replace(keep_prob=1.0, zoneout=0.0)


def _options(distribute: str = "none", **changes):
    from hart_tf.train.options import TrainOptions

    base = dict(config=_tiny(), batch_size=B, learning_rate=1e-3, seed=0, progress=0,
                distribute=distribute)
    base.update(changes)
    return TrainOptions.from_flat(**base)


def _batches(seed: int = 0, copies: int = 1, nan_rows: slice | None = None):
    """Endless (x, y) batches of random frames with drifting boxes, a function of `seed`;
    with `copies` > 1 each batch is that many copies of B / copies sequences; `nan_rows`
    get NaN target boxes from the second batch on."""
    h, w = _tiny().image_size
    n = B // copies
    for i in range(10**6):
        rng = np.random.default_rng([seed, i])
        frames = rng.integers(0, 256, (n, T, h, w, 3), dtype=np.uint8)  # (n, T, H, W, 3)
        start = np.concatenate([rng.uniform(2, h / 2, (n, 1)), rng.uniform(2, w / 2, (n, 1)),
                                np.full((n, 1), h / 3), np.full((n, 1), w / 3)], 1)
        drift = rng.uniform(-1, 1, (n, 1, 4)) * np.array([1, 1, 0, 0])
        boxes = (start[:, None] + drift * np.arange(T)[None, :, None]).astype("float32")
        frames = np.concatenate([frames] * copies)  # (B, T, H, W, 3)
        boxes = np.concatenate([boxes] * copies)  # (B, T, 4)
        x = {"frames": frames, "box0": boxes[:, 0].copy()}
        if nan_rows is not None and i > 0:
            boxes[nan_rows] = np.nan
        y = {"boxes": boxes, "presence": np.ones((B, T), "float32")}
        yield x, y


# ---- jobs run in the subprocess --------------------------------------------------------


def _replica_values(variable) -> list[np.ndarray]:
    """A variable's value on each device (one entry without a distribution)."""
    v = variable.value
    if keras.backend.backend() == "jax":
        return [np.asarray(s.data) for s in v.addressable_shards]
    return [np.asarray(c) for c in getattr(v, "values", [v])]


def _job_curve(distribute: str, noise: bool = False, copies: int = 1) -> dict:
    """Per-step losses and final weights of STEPS steps from the same seed and data."""
    from hart_tf.train import distribute as dist
    from hart_tf.train.trainer import build_model

    keras.utils.set_random_seed(0)
    model = build_model(_options(distribute, config=_tiny(noise)))
    means: dict[str, list] = {}  # running means over the epoch after each step
    log = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: [
        means.setdefault(k, []).append(float(v)) for k, v in logs.items()])
    model.fit(dist.feed(lambda: _batches(copies=copies)), steps_per_epoch=STEPS, epochs=1,
              verbose=0, shuffle=False, callbacks=[log])
    dist.reset()
    k = np.arange(1, STEPS + 1)
    per_step = {name: (k * m - (k - 1) * np.r_[0.0, m[:-1]]).tolist()
                for name, m in ((n, np.array(v)) for n, v in means.items())}
    return {"devices": len(_replica_values(model.trainable_variables[0])), "steps": per_step,
            "weights": [np.asarray(v.numpy()).tolist() for v in model.trainable_variables]}


def _job_curves(args: list[str]) -> dict:
    from hart_tf.train import distribute as dist

    # A batch the devices cannot share is refused, and leaves one device behind.
    with pytest.raises(ValueError, match=f"--batch_size=6 does not split evenly over the "
                                         f"{DEVICES} devices"):
        dist.setup(_options("data_parallel", batch_size=6))
    assert dist.current().mode == "none"
    kw = dict(noise="noise" in args, copies=DEVICES if "copies" in args else 1)
    return {"one": _job_curve("none", **kw), "many": _job_curve("data_parallel", **kw)}


def _trainer_options(distribute: str, folder: str, epochs: int = 1, **changes):
    """2 steps per epoch of the real trainer on synthetic data (its frames need 64 pixels)."""

    return _options(distribute, config=_tiny(image_size=(64, 64)), steps_per_epoch=2,
                    epochs=epochs, curriculum_lengths=(2,),
                    checkpoint_dir=folder, logdir=os.path.join(folder, "tb"),
                    eval_sequences=DEVICES, eval_steps=1, image_every=0,
                    run_eagerly=keras.backend.backend() == "tensorflow", **changes)


def _job_checkpoint(folder: str) -> dict:
    """Trains 2 steps on all devices through the real trainer, then resumes on one."""
    from hart_tf.train import distribute as dist
    from hart_tf.train.trainer import _Trainer

    def options(distribute: str, epochs: int):
        return _trainer_options(distribute, folder, epochs)

    keras.utils.set_random_seed(0)
    many = _Trainer(options("data_parallel", 1))
    devices_before = len(_replica_values(many.model.trainable_variables[0]))
    many.run()
    written = [np.asarray(v.numpy()) for v in many.model.variables]
    dist.reset()
    one = _Trainer(options("none", 2))  # resumes from the 4-device checkpoint
    restored = [np.asarray(v.numpy()) for v in one.model.variables]
    step_restored = one.step
    summary = one.run()
    return {"devices_before": devices_before,
            "devices_after": len(_replica_values(one.model.trainable_variables[0])),
            "step_restored": step_restored, "step_after": summary["step"],
            "max_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(
                written, restored, strict=True)),
            "losses": [h["loss"] for h in summary["history"]],
            "files": sorted(p.name for p in Path(folder, "hart").iterdir())}


def _job_host(folder: str, hosts: int, host: int, port: str) -> dict:
    """One epoch of the real trainer as host `host` of `hosts` (1: one device, no cluster);
    the running mean of the loss after each step, and what was written."""
    from hart_tf.train import distribute as dist
    from hart_tf.train.trainer import _Trainer

    class Recording(_Trainer):
        def log_step(self, logs, model):
            super().log_step(logs, model)
            self.__dict__.setdefault("losses", []).append(float(logs["loss"]))

    if hosts == 1:
        options = _trainer_options("none", folder)
    else:
        options = _trainer_options("data_parallel", folder, num_hosts=hosts, process_id=host,
                                   coordinator_address=f"localhost:{port}")
    keras.utils.set_random_seed(0)
    trainer = Recording(options)
    trainer.run()
    plan = dist.current()
    return {"host": plan.host, "devices": plan.num_devices, "losses": trainer.losses,
            "weights": float(sum(np.sum(v.numpy()) for v in trainer.model.trainable_variables))}


def _job_nan_replica() -> dict:
    """NaN targets in one replica's rows: every replica must skip the same update."""
    from hart_tf.train import distribute as dist
    from hart_tf.train.trainer import build_model

    keras.utils.set_random_seed(0)
    model = build_model(_options("data_parallel", run_eagerly=True))
    rows = slice(2 * B // DEVICES, 3 * B // DEVICES)  # the third replica's shard
    data = _batches(nan_rows=rows)
    good, bad = next(data), next(data)
    model.fit(dist.feed(lambda: iter([good])), steps_per_epoch=1, verbose=0)
    before = [_replica_values(v) for v in model.trainable_variables]
    model.fit(dist.feed(lambda: iter([bad])), steps_per_epoch=1, verbose=0)
    after = [_replica_values(v) for v in model.trainable_variables]
    changed = max(float(np.max(np.abs(a - b))) for va, vb in zip(before, after, strict=True)
                  for a, b in zip(va, vb, strict=True))
    return {"replicas": len(after[0]), "changed": changed,
            "bad_steps": float(np.asarray(model.optimizer.bad_steps.numpy()))}


def _setup_devices() -> None:
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        count = int(os.environ.get("HART_TEST_DEVICES", DEVICES))
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def _main(argv: list[str]) -> None:
    _setup_devices()
    job, *args = argv
    jobs = {"curves": lambda: _job_curves(args), "checkpoint": lambda: _job_checkpoint(args[0]),
            "nan_replica": _job_nan_replica,
            "host": lambda: _job_host(args[0], int(args[1]), int(args[2]), args[3])}
    print("RESULT " + json.dumps(jobs[job]()))


def _start(backend: str, *args: str, devices: int = DEVICES, **env_vars: str
           ) -> subprocess.Popen:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               HART_TEST_DEVICES=str(devices), **env_vars,
               PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
    if backend == "jax":
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return subprocess.Popen([sys.executable, "-m", "test_distribute", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE)


def _result(process: subprocess.Popen, timeout: int = 900) -> dict:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    lines = [s for s in out.splitlines() if s.startswith("RESULT ")]
    assert process.returncode == 0 and lines, out[-3000:] + err[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def _run(backend: str, *args: str) -> dict:
    return _result(_start(backend, *args))


def _compare(result: dict) -> tuple[np.ndarray, float]:
    """(per-step relative loss differences, max weight difference) of 1 vs N devices."""
    one, many = result["one"], result["many"]
    assert (one["devices"], many["devices"]) == (1, DEVICES)
    a, b = np.array(one["steps"]["loss"]), np.array(many["steps"]["loss"])
    assert a.shape == (STEPS,) and np.all(np.isfinite(a)) and len(set(a.round(4))) > 1
    weights = max(float(np.max(np.abs(np.array(u) - np.array(v))))
                  for u, v in zip(one["weights"], many["weights"], strict=True))
    return np.abs(a - b) / np.abs(a), weights


# ---- tests: multi-device, in subprocesses ---------------------------------------------


# About 50 s of CPU on 2 cores (two JAX trainings on 4 virtual devices).
@pytest.mark.slow
def test_jax_data_parallel_trains_as_one_device_noise_included():
    pytest.importorskip("jax")
    result = _run("jax", "curves", "noise")
    loss, weights = _compare(result)
    assert np.all(loss < 1e-5), loss
    assert weights < 1e-5, weights
    for name in ("iou", "tracking", "attention", "appearance"):  # metrics aggregated too
        np.testing.assert_allclose(result["many"]["steps"][name], result["one"]["steps"][name],
                                   rtol=1e-4, err_msg=name)


@pytest.mark.slow
def test_tf_mirrored_trains_as_one_device_when_replicas_see_the_same_shard():
    loss, weights = _compare(_run("tensorflow", "curves", "copies"))
    assert np.all(loss < 1e-5), loss
    assert weights < 1e-5, weights


@pytest.mark.slow
def test_tf_mirrored_loss_curve_within_batch_norm_tolerance():
    loss, _ = _compare(_run("tensorflow", "curves"))
    assert loss[0] < 1e-3, loss  # only the replicas' own batch-norm statistics differ
    assert np.all(loss < 0.10), loss


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_checkpoint_written_on_4_devices_restores_and_trains_on_1(backend, tmp_path):
    if backend == "jax":
        pytest.importorskip("jax")
    r = _run(backend, "checkpoint", str(tmp_path))
    assert (r["devices_before"], r["devices_after"]) == (DEVICES, 1)
    assert r["step_restored"] == 2 and r["step_after"] == 4
    assert r["max_diff"] == 0.0  # every variable, optimizer slots excluded (not in .variables)
    assert len(r["losses"]) == 2 and all(np.isfinite(r["losses"]))
    assert "ckpt-2.keras" in r["files"] and "ckpt-4.keras" in r["files"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_two_hosts_train_as_one_device_and_only_the_chief_writes(backend, tmp_path):
    """Two processes on localhost joined as two hosts (JAX: keras.distribution.initialize,
    2 virtual CPUs each; TF: MultiWorkerMirroredStrategy from TF_CONFIG, one CPU replica
    each): the multi-host path, each host feeding its rows, one checkpoint writer."""
    if backend == "jax":
        pytest.importorskip("jax")
    port, workers = str(_free_port()), [f"localhost:{_free_port()}" for _ in range(2)]
    hosts = []
    for k in (0, 1):
        tf_config = json.dumps({"cluster": {"worker": workers},
                                "task": {"type": "worker", "index": k}})
        hosts.append(_start(backend, "host", str(tmp_path / "two"), "2", str(k), port,
                            devices=2, TF_CONFIG=tf_config))
    one = _result(_start(backend, "host", str(tmp_path / "one"), "1", "0", port, devices=1))
    r0, r1 = (_result(p) for p in hosts)
    replicas = 4 if backend == "jax" else 2
    assert (r0["host"], r1["host"], r0["devices"], r1["devices"]) == (0, 1, replicas, replicas)
    assert r0["losses"] == r1["losses"] and r0["weights"] == r1["weights"]
    if backend == "jax":
        np.testing.assert_allclose(r0["losses"], one["losses"], rtol=1e-5)
        np.testing.assert_allclose(r0["weights"], one["weights"], rtol=1e-5)
    else:  # each replica's own batch-norm statistics (4 sequences of 8); measured 1.9e-4
        np.testing.assert_allclose(r0["losses"], one["losses"], rtol=1e-3)
    assert sorted(p.name for p in (tmp_path / "two" / "hart").iterdir()) == [
        "best.json", "best.keras", "ckpt-2.json", "ckpt-2.keras"]
    assert (tmp_path / "two" / "tb" / "host1").is_dir()  # host 1 logs beside the chief


@pytest.mark.slow
def test_tf_non_finite_gradient_on_one_replica_is_skipped_on_every_replica():
    r = _run("tensorflow", "nan_replica")
    assert r["replicas"] == DEVICES
    assert r["changed"] == 0.0  # no replica moved (Keras alone would move the other three)
    assert r["bad_steps"] == 1.0


@pytest.mark.slow
def test_benchmark_distribute_quick_reports_efficiency(tmp_path):
    pytest.importorskip("jax")
    out = tmp_path / "scaling.jsonl"
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES}")
    script = HERE.parent / "experiments" / "benchmark_distribute.py"
    r = subprocess.run([sys.executable, str(script), "--quick", "--devices=1,2,8", f"--out={out}"],
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [rec["devices"] for rec in records] == [1, 2, 8]
    assert records[0]["efficiency"] == 1.0 and records[1]["frames_per_s"] > 0
    assert 0 < records[1]["efficiency"] and "skipped" in records[2]
    assert "| 2 | 4 |" in r.stdout  # the Markdown table: 2 devices, global batch 4


# ---- tests: one device, in this process ------------------------------------------------


@pytest.mark.parametrize("changes, message", [
    (dict(distribute="model_parallel"), "--distribute must be one of none, data_parallel"),
    (dict(num_hosts=2), "--num_hosts=2 needs --distribute=data_parallel"),
    (dict(distribute="data_parallel", num_hosts=2, process_id=2), r"--process_id must be in"),
    (dict(distribute="data_parallel", num_hosts=2, max_minutes=5.0), "--max_minutes"),
    (dict(distribute="data_parallel", num_hosts=0), "--num_hosts must be at least 1"),
])
def test_setup_rejects_bad_flags_in_one_line(changes, message):
    from hart_tf.train import distribute

    with pytest.raises(ValueError, match=message):
        distribute.setup(_options(**changes))
    assert distribute.current().mode == "none"


def test_several_hosts_need_a_coordinator_or_tf_config(monkeypatch):
    from hart_tf.train import distribute

    options = _options("data_parallel", num_hosts=2, process_id=1)
    with pytest.raises(ValueError, match="needs --coordinator_address=HOST:PORT"):
        distribute._jax_plan(options, None)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG environment variable"):
        distribute._check_tf_config(2, 1)
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"worker": ["a:1", "b:2", "c:3"]}, "task": {"type": "worker", "index": 1}}))
    with pytest.raises(ValueError, match="TF_CONFIG names 3 workers and task index 1, but "
                                         "--num_hosts=2"):
        distribute._check_tf_config(2, 1)
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not JSON"):
        distribute._check_tf_config(2, 1)


def test_one_device_plan_changes_nothing():
    from hart_tf.train import distribute

    plan = distribute.setup(_options())
    assert (plan.mode, plan.num_devices, plan.is_chief) == ("none", 1, True)
    stream = iter([1, 2])
    assert distribute.feed(lambda: stream) is stream
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert distribute.prepare_model(model) is model and "compute_loss" not in model.__dict__


def test_each_jax_host_feeds_its_rows(monkeypatch):
    from hart_tf.train import distribute

    x, y = next(_batches())
    for host in (0, 1):
        monkeypatch.setattr(distribute, "_PLAN",
                            distribute.Plan("data_parallel", "jax", 4, 2, host))
        fed_x, fed_y = next(distribute.feed(lambda: iter([(x, y)])))
        rows = slice(host * B // 2, (host + 1) * B // 2)
        np.testing.assert_array_equal(fed_x["frames"], x["frames"][rows])
        np.testing.assert_array_equal(fed_y["boxes"], y["boxes"][rows])
        assert fed_x["box0"].shape == (B // 2, 4)


def test_only_the_chief_writes_checkpoints(tmp_path, monkeypatch):
    from hart_tf.train import distribute
    from hart_tf.train.checkpoints import CheckpointManager

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    manager = CheckpointManager(tmp_path / "run")
    state = {"step": 3, "config": {}}
    monkeypatch.setattr(distribute, "_PLAN", distribute.Plan("data_parallel", "jax", 8, 2, 0))
    assert distribute.chief_writes(manager) is manager
    manager.save(model, state)
    monkeypatch.setattr(distribute, "_PLAN", distribute.Plan("data_parallel", "jax", 8, 2, 1))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    other = distribute.chief_writes(manager)
    other.save(model, {**state, "step": 4}, best=True)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["ckpt-3.json",
                                                                   "ckpt-3.keras"]
    # Its own saves answer its questions, whatever the chief has written so far.
    assert other.latest()[0].name == "ckpt-4.keras" and other.best() is not None
    assert other.latest()[0].parent.parent == scratch


def test_flags_offer_the_modes_of_the_module():
    from absl import flags as absl_flags

    from hart_tf.cli import flags  # noqa: F401  (defines the flags)
    from hart_tf.train import distribute

    f = absl_flags.FLAGS
    assert tuple(f["distribute"].parser.enum_values) == distribute.MODES
    assert f["distribute"].default == "none" and f["num_hosts"].default == 1
    assert f["coordinator_address"].default is None and f["process_id"].default == 0


if __name__ == "__main__":
    _main(sys.argv[1:])
