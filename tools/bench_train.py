"""Training benchmarks: the compiled train step, the input pipeline feeding it and (JAX) a
profile of where a step's time goes. Reads the flags tools/benchmark.py defines."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import flops
import numpy as np
from absl import flags
from bench_env import backend, block, host_peak_rss_bytes, peak_memory_bytes, timed, to_device

FLAGS = flags.FLAGS
QUICK_SHAPES = {"image_size": (48, 64), "glimpse_size": (16, 16)}


def config_for(name: str):
    """The preset `name`, at tiny shapes under --quick."""
    from hart_tf.model.config import HARTConfig

    return HARTConfig.from_preset(name, **(QUICK_SHAPES if FLAGS.quick else {}))


def parse_train_spec(spec: str) -> dict[str, Any]:
    """CONFIG:BATCH:T:PRECISION:LOOP -> dict; a clear one-line ValueError otherwise."""
    parts = spec.split(":")
    if len(parts) != 5:
        raise ValueError(f"--train spec {spec!r} must be CONFIG:BATCH:T:PRECISION:LOOP, "
                         f"e.g. kitti:256:10:bf16:scan")
    name, batch, steps, precision, loop = parts
    if precision not in ("fp32", "bf16") or loop not in ("scan", "unroll"):
        raise ValueError(f"--train spec {spec!r}: PRECISION is fp32|bf16, LOOP is scan|unroll")
    try:
        batch_i, steps_i = int(batch), int(steps)
    except ValueError:
        raise ValueError(f"--train spec {spec!r}: BATCH and T must be integers") from None
    if batch_i < 1 or steps_i < 1:
        raise ValueError(f"--train spec {spec!r}: BATCH and T must be >= 1")
    return {"config": name, "batch": batch_i, "T": steps_i, "precision": precision,
            "loop": loop}



def build_model(config, precision: str = "fp32", loop: str = "scan", seed: int = 0):
    """A compiled HART as `hart_tf.train.trainer.build_model` makes it, with the loop and precision
    switches (RMSprop + clipping with the bad-step guard)."""
    from hart_tf.model.hart import HART
    from hart_tf.train.optimizers import GuardedRMSprop

    model = HART(config, seed=seed, unroll=loop == "unroll", mixed_precision=precision == "bf16")
    model.build()
    jit = FLAGS.jit_compile == "true" or (FLAGS.jit_compile == "auto" and backend() == "jax")
    optimizer = GuardedRMSprop(learning_rate=1e-4, momentum=0.9, global_clipnorm=1.0)
    model.compile(optimizer=optimizer, jit_compile=jit)
    return model


def synthetic_cfg(config):
    """Synthetic clips at the config's frame size."""
    from hart_tf.data import synthetic

    h, w = config.image_size
    scale = min(1.0, min(h, w) / 96.0)  # the default object sizes fit frames >= 96 pixels
    return synthetic.SyntheticConfig(image_size=(h, w), target_size=(12 * scale, 30 * scale))


def _batches(config, batch: int, steps: int, n: int) -> list[tuple[dict, dict]]:
    from concurrent.futures import ThreadPoolExecutor

    from hart_tf.data import synthetic
    from hart_tf.train import sources as datasets

    cfg = synthetic_cfg(config)
    with ThreadPoolExecutor(min(n, os.cpu_count() or 1)) as pool:
        raw = list(pool.map(
            lambda i: synthetic.train_batch(i, batch, steps, FLAGS.seed, cfg), range(n)))
    return [datasets.to_xy(b) for b in raw]


class _TrainLoop:
    """Runs the model's compiled train step on given batches; JAX keeps the state on device.

    The first step is `train_on_batch`, which builds the optimizer and metrics and compiles
    `model.train_function`; JAX then calls that same function with the state `fit` hands it.
    """

    def __init__(self, model, x, y):
        self.model = model
        self.jax = backend() == "jax"
        self.logs = model.train_on_batch(x, y, return_dict=True)
        if self.jax:
            self.state = model._get_jax_state(
                trainable_variables=True, non_trainable_variables=True,
                optimizer_variables=True, metrics_variables=True)

    def step(self, x, y) -> None:
        if self.jax:
            self.logs, self.state = self.model.train_function(self.state, iter([(x, y)]))
        else:
            self.logs = self.model.train_on_batch(x, y, return_dict=True)

    def sync(self) -> None:
        block(self.state if self.jax else None)

    def loss(self) -> float:
        return float(np.asarray(self.logs["loss"]))

    def finish(self) -> None:
        if self.jax:  # write the trained values back into the Keras variables
            t, nt, o, m = self.state
            self.model._jax_state = {"trainable_variables": t, "non_trainable_variables": nt,
                                     "optimizer_variables": o, "metrics_variables": m}
            self.model.jax_state_sync()


def bench_train(spec: str) -> list[dict[str, Any]]:
    s = parse_train_spec(spec)
    config = config_for(s["config"])
    b, t = s["batch"], s["T"]
    frames_per_batch = b * t
    host = _batches(config, b, t, max(1, FLAGS.data_batches))
    staged = [to_device(xy) for xy in host]
    block(staged)
    model = build_model(config, s["precision"], s["loop"], FLAGS.seed)
    start = time.perf_counter()
    loop = _TrainLoop(model, *staged[0])  # compiles
    first_step_s = time.perf_counter() - start
    for i in range(FLAGS.warmup):
        loop.step(*staged[i % len(staged)])
    loop.sync()

    def run(batches):
        def repeat():
            for i in range(FLAGS.steps):
                loop.step(*batches[i % len(batches)])
            loop.sync()
        return [x / FLAGS.steps for x in timed(repeat, FLAGS.repeats)]

    step_s = statistics.median(run(staged))
    loss = loop.loss()
    f = flops.flops_per_frame(config, t)
    fps = frames_per_batch / step_s
    rec = {
        "bench": "train", "spec": spec, **s,
        "frames_per_s": fps, "step_ms": 1e3 * step_s, "first_step_s": first_step_s,
        "flops_per_frame": f["train"], "tflops": f["train"] * fps / 1e12,
        "mfu": flops.mfu(f["train"], fps, FLAGS.peak_tflops),
        "peak_memory_bytes": peak_memory_bytes(), "host_peak_rss_bytes": host_peak_rss_bytes(),
        "loss": loss, "loss_finite": bool(np.isfinite(loss)),
    }
    records = [rec]
    if FLAGS.pipeline:
        records.append(_bench_pipeline(spec, config, b, t, host, run, step_s))
    loop.finish()
    return records


def _bench_pipeline(spec, config, b, t, host, run, step_s) -> dict[str, Any]:
    """Where a step's input comes from: generation, transfer, and a step fed from host RAM."""
    from hart_tf.data import synthetic
    from hart_tf.train import sources as datasets

    cfg = synthetic_cfg(config)
    gen = timed(lambda: datasets.to_xy(synthetic.train_batch(99, b, t, FLAGS.seed, cfg)),
                 max(1, min(3, FLAGS.repeats)))
    h2d = timed(lambda: block(to_device(host[0])), max(1, min(3, FLAGS.repeats)))
    # JAX copies host arrays into each step; TF on CPU reads them in place (nothing staged).
    host_fed = statistics.median(run(host)) if backend() == "jax" else None
    gen_s, h2d_s = statistics.median(gen), statistics.median(h2d)
    fed = host_fed or step_s
    return {
        "bench": "pipeline", "spec": spec, "config": config.name, "batch": b, "T": t,
        "gen_ms_per_batch_1core": 1e3 * gen_s,
        "gen_frames_per_s_1core": b * t / gen_s,
        "h2d_ms_per_batch": 1e3 * h2d_s,
        "batch_mbytes": sum(v.nbytes for d in host[0] for v in d.values()) / 1e6,
        "staged_step_ms": 1e3 * step_s,
        "host_fed_step_ms": 1e3 * host_fed if host_fed else None,
        "transfer_share_of_step": max(0.0, 1.0 - step_s / host_fed) if host_fed else None,
        # Serial generation in the training thread would take this share of each step.
        "gen_share_if_serial": gen_s / (gen_s + fed),
        # Generator cores needed to feed the GPU at its device-staged rate.
        "gen_cores_to_keep_up": gen_s / step_s,
    }


def _median_time(fn: Callable[[], Any], warmup: int = 1) -> float:
    """Median seconds of fn() (which must block) after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn, max(3, FLAGS.repeats)))


def bench_profile(spec: str) -> dict[str, Any]:
    """Where a train step's time goes (JAX): the whole step, its forward pass, forward +
    backward without the optimizer, and V1 / the spatial attention alone at the batch one
    recurrent step sees (B) and at all of a batch's glimpses at once (B * (T + 1))."""
    import jax
    import jax.numpy as jnp

    if backend() != "jax":
        raise ValueError("--profile needs KERAS_BACKEND=jax")
    s = parse_train_spec(spec)
    config = config_for(s["config"])
    b, t = s["batch"], s["T"]
    x, y = to_device(_batches(config, b, t, 1)[0])
    model = build_model(config, s["precision"], s["loop"], FLAGS.seed)
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]

    def forward(tv, x):
        out, _ = model.stateless_call(tv, ntv, x, training=True)
        return out

    def loss(tv, x, y):
        total, _ = model.loss_and_terms(y, forward(tv, x), with_weights=False)
        return total

    fwd = jax.jit(forward)
    grad = jax.jit(jax.grad(loss))
    rec = {"bench": "profile", "spec": spec, **s}
    rec["forward_ms"] = 1e3 * _median_time(lambda: jax.block_until_ready(fwd(tv, x)))
    rec["forward_backward_ms"] = 1e3 * _median_time(
        lambda: jax.block_until_ready(grad(tv, x, y)))

    v1 = model.cell.v1
    w1 = [v.value for v in v1.trainable_variables]
    gh, gw = config.glimpse_size

    def v1_loss(w, g):
        out, _ = v1.stateless_call(w, [], g)
        return jnp.sum(out.astype("float32"))

    v1_grad = jax.jit(jax.grad(v1_loss))
    for name, n in (("v1_fwd_bwd_batch_B_ms", b), ("v1_fwd_bwd_all_glimpses_ms", b * (t + 1))):
        g = jax.random.uniform(jax.random.key(0), (n, gh, gw, config.channels))
        rec[name] = 1e3 * _median_time(lambda g=g: jax.block_until_ready(v1_grad(w1, g)))
    rec["v1_in_loop_ms"] = rec["v1_fwd_bwd_batch_B_ms"] * (t + 1)

    sa = model.cell.spatial_attention
    h, w = config.image_size
    frames = jax.random.uniform(jax.random.key(1), (b, h, w, config.channels)) * 255.0
    att = jnp.tile(jnp.array([[0.3, 0.3, 0.2, 0.1]], "float32"), (b, 1))
    sa_grad = jax.jit(jax.grad(lambda a: jnp.sum(sa(frames, a))))
    rec["attention_fwd_bwd_batch_B_ms"] = 1e3 * _median_time(
        lambda: jax.block_until_ready(sa_grad(att)))
    rec["attention_in_loop_ms"] = rec["attention_fwd_bwd_batch_B_ms"] * (t + 1)
    f = flops.flops_per_frame(config, t)
    rec["v1_all_glimpses_tflops"] = (
        3 * flops.total(flops.v1_layers(config)) * b * (t + 1)
        / (rec["v1_fwd_bwd_all_glimpses_ms"] / 1e3) / 1e12)
    rec["ideal_frames_per_s_v1_all_glimpses"] = b * t / (rec["v1_fwd_bwd_all_glimpses_ms"] / 1e3)
    rec["flops_per_frame"] = f["train"]
    rec["peak_memory_bytes"] = peak_memory_bytes()
    return rec
