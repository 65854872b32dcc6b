"""Synthetic training data: NumPy renderer per core vs the device renderer, alone and fused.

Usage (from the repo root):
  python experiments/bench_render.py                       # NumPy per core, JAX render on CPU
  KERAS_BACKEND=jax python experiments/bench_render.py --numpy=false --batches=1024 \\
      --chunks=0,256 --train                              # on a GPU: render alone and fused

Prints one JSON line per measurement (medians of --repeats timings after a compiling call):
  numpy        `synthetic.train_batch` in this thread: frames/s of one core.
  device       `synthetic_device.train_batch` under `jax.jit`, a new batch index each call:
               frames/s (B * T per call), chunk = sequences rendered at a time (0: all).
  train        (--train) the small config's compiled Keras train step (bf16, scan) fed a
               batch staged on the device (the step's own rate) and the same step with the
               batch rendered inside it from the step index (`device_batches`): trained
               frames/s end to end with no host transfer.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

from absl import app, flags

os.environ.setdefault("KERAS_BACKEND", "jax")  # before anything imports Keras
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's hart_tf

flags.DEFINE_list("batches", ["32", "128", "512"], "Batch sizes B for the device renderer.")
flags.DEFINE_integer("T", 20, "Sequence length.")
flags.DEFINE_list("chunks", ["0"], "Sequences rendered at a time on the device (0: all).")
flags.DEFINE_bool("numpy", True, "Time the NumPy renderer on one core.")
flags.DEFINE_integer("numpy_batch", 32, "Batch size of the NumPy timing.")
flags.DEFINE_bool("train", False, "Time the small config's train step, staged and fused.")
flags.DEFINE_integer("train_batch", 1024, "Batch size of --train.")
flags.DEFINE_string("precision", "bf16", "fp32 or bf16 for --train.")
flags.DEFINE_integer("repeats", 5, "Timed repeats; the median is reported.")
flags.DEFINE_integer("calls", 3, "Calls per timed repeat.")
FLAGS = flags.FLAGS


def _median_rate(fn, frames: int) -> float:
    """frames/s of fn() (which blocks until its work is done), after one untimed call."""
    fn()
    times = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        for _ in range(FLAGS.calls):
            fn()
        times.append((time.perf_counter() - start) / FLAGS.calls)
    return frames / statistics.median(times)


def _emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def bench_numpy(t_len: int) -> None:
    from hart_tf.data import synthetic

    b, counter = FLAGS.numpy_batch, iter(range(10**9))
    fps = _median_rate(lambda: synthetic.train_batch(next(counter), b, t_len), b * t_len)
    _emit({"bench": "numpy", "B": b, "T": t_len, "frames_per_s_1core": round(fps)})


def _device_rate(render, bank, frames: int) -> tuple[float, float]:
    """(first call s, frames/s) of a jitted render(index, bank), a new index each call."""
    import jax

    counter = iter(range(10**9))
    start = time.perf_counter()
    jax.block_until_ready(render(next(counter), bank))
    first = time.perf_counter() - start
    return first, _median_rate(lambda: jax.block_until_ready(render(next(counter), bank)),
                               frames)


def _chunks(b: int) -> list[int]:
    return [c for c in map(int, FLAGS.chunks) if c == 0 or (c < b and b % c == 0)]


def bench_device(t_len: int) -> None:
    import jax

    from hart_tf.data import synthetic_device
    from hart_tf.data.synthetic import SyntheticConfig

    cfg = SyntheticConfig()
    bank = synthetic_device.texture_bank(cfg)
    for b in map(int, FLAGS.batches):
        for chunk in _chunks(b):
            render = jax.jit(lambda index, bank, b=b, chunk=chunk: synthetic_device.train_batch(
                0, index, b, t_len, cfg, bank=bank, chunk=chunk or None))
            first, fps = _device_rate(render, bank, b * t_len)
            _emit({"bench": "device", "backend_device": str(jax.devices()[0]), "B": b,
                   "T": t_len, "chunk": chunk, "frames_per_s": round(fps),
                   "first_call_s": round(first, 2)})


def _train_rates(model, cfg, b: int, t_len: int, chunk: int) -> dict[str, float]:
    """Trained frames/s of the step fed a staged batch and of the step rendering its own."""
    import jax
    import numpy as np

    from hart_tf.data import synthetic_device

    render, bank = synthetic_device.device_batches(cfg, b, t_len, seed=0, chunk=chunk or None)
    x, y = jax.jit(render)(bank, 0)
    model.train_on_batch(x, y)  # builds the optimizer and metrics
    box = {"state": model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                         optimizer_variables=True, metrics_variables=True),
           "i": 0}
    staged = jax.jit(lambda state, x, y: model.train_step(state, (x, y)), donate_argnums=0)
    fused = jax.jit(lambda state, index, bank: model.train_step(state, render(bank, index)),
                    donate_argnums=0)

    def run_staged():
        _, box["state"] = staged(box["state"], x, y)
        jax.block_until_ready(box["state"])

    def run_fused():
        box["i"] += 1
        logs, box["state"] = fused(box["state"], np.int32(box["i"]), bank)
        box["loss"] = float(logs["loss"])  # waits for the step

    rates = {name: _median_rate(fn, b * t_len)
             for name, fn in (("staged", run_staged), ("fused", run_fused))}
    return rates | {"loss": box["loss"]}


def bench_train(t_len: int) -> None:
    """Staged-batch train step vs the same step rendering its own batch (JAX only)."""
    import jax

    from hart_tf.data.synthetic import SyntheticConfig
    from hart_tf.model.config import HARTConfig
    from hart_tf.model.hart import HART
    from hart_tf.train.optimizers import GuardedRMSprop

    b = FLAGS.train_batch
    config = HARTConfig.from_preset("small")
    cfg = SyntheticConfig(image_size=tuple(config.image_size))
    model = HART(config, seed=0, unroll=False, mixed_precision=FLAGS.precision == "bf16")
    model.build()
    model.compile(optimizer=GuardedRMSprop(learning_rate=1e-4, momentum=0.9,
                                           global_clipnorm=1.0), jit_compile=True)
    for chunk in _chunks(b):
        rates = _train_rates(model, cfg, b, t_len, chunk)
        for name in ("staged", "fused"):
            _emit({"bench": "train", "step": name, "backend_device": str(jax.devices()[0]),
                   "config": "small", "precision": FLAGS.precision, "B": b, "T": t_len,
                   "chunk": chunk, "trained_frames_per_s": round(rates[name]),
                   **({"loss": rates["loss"]} if name == "fused" else {})})


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.numpy:
        bench_numpy(FLAGS.T)
    if FLAGS.batches:
        bench_device(FLAGS.T)
    if FLAGS.train:
        bench_train(FLAGS.T)


if __name__ == "__main__":
    app.run(main)
