"""Data-parallel scaling of HART training: trained frames/s on 1, 2, 4, 8 devices of one host.

Usage (from the repo root, on a host with 8 GPUs):
  KERAS_BACKEND=jax python experiments/benchmark_distribute.py --config=kitti \\
      --per_device_batch=32 --seq_len=10 --devices=1,2,4,8 --out=scaling.jsonl
  KERAS_BACKEND=tensorflow python experiments/benchmark_distribute.py --config=kitti ...
  KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=4 \\
      python experiments/benchmark_distribute.py --quick      # smoke run on 4 virtual CPUs

Weak scaling: each device keeps --per_device_batch sequences, so N devices train a global
batch N times larger through `fit` with `--distribute=data_parallel` (1 device: the plain
single-device path). A few synthetic batches are rendered once, kept in host memory and
cycled, so host-to-device transfer is timed but data generation is not. Reported per device
count, as medians of --repeats timings after --warmup steps: trained frames/s (global batch
x T x steps/s), step time, and the scaling efficiency
    efficiency(N) = frames/s on N devices / (N x frames/s on 1 device).
One JSON line per device count (appended to --out) and a Markdown table at the end.
"""

from __future__ import annotations

import itertools
import json
import statistics
import sys
import time
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

flags.DEFINE_string("config", "kitti", "Model preset (hart_tf.model.config.PRESETS).")
flags.DEFINE_integer("per_device_batch", 32, "Sequences per device and step.")
flags.DEFINE_integer("seq_len", 10, "Frames per training sequence (T).")
flags.DEFINE_list("devices", ["1", "2", "4", "8"], "Device counts; counts above what the "
                  "host has are reported as skipped.")
flags.DEFINE_integer("warmup", 3, "Untimed steps per device count (the first compiles).")
flags.DEFINE_integer("steps", 20, "Steps per timed repeat.")
flags.DEFINE_integer("repeats", 3, "Timed repeats; the median is reported.")
flags.DEFINE_integer("data_batches", 2, "Distinct global batches rendered and cycled.")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                  "XLA for the train step; auto: on for JAX, off for TF (as training).")
flags.DEFINE_string("out", None, "Append the JSON lines to this file.")
flags.DEFINE_bool("quick", False, "Tiny model and steps: a smoke test of the code path.")

FLAGS = flags.FLAGS


def _options(config, batch: int, devices: int):
    from hart_tf.train.options import TrainOptions

    return TrainOptions.from_flat(config=config, batch_size=batch, seed=0, progress=0,
                        jit_compile=FLAGS.jit_compile,
                        distribute="none" if devices == 1 else "data_parallel")


def measure(config, devices: int, per_device_batch: int, seq_len: int) -> dict:
    """Trained frames/s of `devices` devices, each with `per_device_batch` sequences."""
    import keras

    from hart_tf.data import synthetic
    from hart_tf.train import distribute
    from hart_tf.train import sources as datasets
    from hart_tf.train.trainer import build_model, use_function_for_length

    batch = devices * per_device_batch
    options = _options(config, batch, devices)
    distribute.reset()
    distribute.setup(options, devices=None if devices == 1 else devices)
    keras.utils.set_random_seed(0)
    model = build_model(options)
    use_function_for_length(model, "train", seq_len)
    cfg = synthetic.SyntheticConfig(image_size=tuple(config.image_size))
    data = [datasets.to_xy(synthetic.train_batch(i, batch, seq_len, 0, cfg))
            for i in range(FLAGS.data_batches)]

    def run(steps: int) -> float:
        start = time.perf_counter()
        # fit returns once the last step's logs are read back: the steps have finished.
        model.fit(distribute.feed(lambda: (b for b in itertools.cycle(data))),
                  steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
        return time.perf_counter() - start

    run(FLAGS.warmup)
    seconds = statistics.median(run(FLAGS.steps) for _ in range(FLAGS.repeats))
    distribute.reset()
    return {"devices": devices, "global_batch": batch, "seq_len": seq_len,
            "step_ms": 1000 * seconds / FLAGS.steps,
            "frames_per_s": batch * seq_len * FLAGS.steps / seconds}


def _table(records: list[dict]) -> str:
    rows = ["| devices | global batch | step ms | trained frames/s | efficiency |",
            "|---:|---:|---:|---:|---:|"]
    for r in records:
        if "skipped" in r:
            rows.append(f"| {r['devices']} | - | - | - | skipped: {r['skipped']} |")
        else:
            eff = r.get("efficiency")
            rows.append(f"| {r['devices']} | {r['global_batch']} | {r['step_ms']:.1f} | "
                        f"{r['frames_per_s']:.0f} | "
                        f"{'-' if eff is None else f'{100 * eff:.1f} %'} |")
    return "\n".join(rows)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    import keras

    from hart_tf.model.config import HARTConfig

    if FLAGS.quick:
        config = HARTConfig.from_preset("small", image_size=(64, 64), glimpse_size=(8, 8),
                                        v1_channels=8, rnn_units=12, dorsal_units=10)
        FLAGS.per_device_batch, FLAGS.seq_len = 2, 3
        FLAGS.warmup, FLAGS.steps, FLAGS.repeats = 1, 2, 1
    else:
        config = HARTConfig.from_preset(FLAGS.config)
    try:
        counts = sorted({int(d) for d in FLAGS.devices})
    except ValueError:
        raise app.UsageError(f"--devices must be integers, got {FLAGS.devices}") from None
    available = len(keras.distribution.list_devices()) if keras.backend.backend() == "jax" \
        else _tf_device_count()
    records, base = [], None
    for n in counts:
        if n > available:
            record = {"devices": n, "skipped": f"the host has {available} devices"}
        else:
            record = measure(config, n, FLAGS.per_device_batch, FLAGS.seq_len)
            if n == 1:
                base = record["frames_per_s"]
            if base:
                record["efficiency"] = record["frames_per_s"] / (n * base)
        record.update(backend=keras.backend.backend(), config=config.name)
        print(json.dumps(record), flush=True)
        if FLAGS.out:
            with open(FLAGS.out, "a") as f:
                f.write(json.dumps(record) + "\n")
        records.append(record)
    print(_table(records))


def _tf_device_count() -> int:
    import tensorflow as tf

    return len(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))


if __name__ == "__main__":
    app.run(main)
