"""Benchmark HART on the current Keras backend: training, online tracking, many objects.

Usage (from the repo root):
  python tools/benchmark.py --quick                      # smoke run, tiny shapes
  python tools/benchmark.py --train=small:32:20:fp32:scan --track=kitti --opencv=csrt,kcf
  KERAS_BACKEND=jax python tools/benchmark.py --train=kitti:256:10:bf16:scan \\
      --track=kitti --objects=1,10,100 --out=bench.jsonl --markdown

Measures, after warm-up (compilation) and as medians of repeated timings:
  train     trained frames/s = B * T * steps/s through the model's real compiled Keras train
            step (JAX: `model.train_function` with the batches staged on the device, as `fit`
            calls it; TensorFlow: `model.train_on_batch`), FLOPs per trained frame
            (tools/flops.py) and MFU against --peak_tflops.
  pipeline  NumPy generation and host-to-device time per batch, and the step fed from host.
  profile   (JAX, --profile) forward, forward+backward, V1 and spatial attention alone.
  track     online tracking at batch 1 through a compiled `init_state` / `step`: per-frame
            latency with the frame sent from and the box read back to the host, frames/s,
            and the rate with frames queued on the device (`track_baked`: JAX with the
            weights as compile-time constants).
  objects   N objects of one frame stream in one batched step: object-frames/s.
  tracker_api  the same through `hart_tf.track.tracker.Tracker` (the public online API).
  opencv    OpenCV trackers on the same frames at batch 1, and the ratio HART / tracker.
  windows   (--windows) real-clip training windows (`hart_tf.data.clip_windows`) of --windows_T
            frames at the small config's 96x128, rendered one after another in this process
            (--windows_threads threads): clips_eager / clips_lazy are every clip of
            --clips_dir held decoded or decoded per window; hd_lazy / hd_lazy_nodraft a
            generated clip of 1920x1080 JPEG frames decoded per window with and without the
            DCT reduction (Image.draft); hd_shrunk that clip after tools/shrink_clips.py
            --max_side=480.
Peak device memory is read where the backend reports it (JAX `memory_stats`, TF GPU memory
info). Each record is printed as one JSON line (and appended to --out); `--markdown` appends
one table row per record to --markdown_file with the command, machine, backend, library
versions and date. Train specs are CONFIG:BATCH:T:PRECISION:LOOP, e.g. kitti:256:10:bf16:scan
(PRECISION fp32|bf16, LOOP scan|unroll).
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/flops.py when imported
import flops  # noqa: E402

flags.DEFINE_list("train", ["small:32:20:fp32:scan", "kitti:32:10:fp32:scan"],
                  "Training specs CONFIG:BATCH:T:PRECISION:LOOP; empty to skip.")
flags.DEFINE_integer("warmup", 2, "Untimed steps before timing (the first compiles).")
flags.DEFINE_integer("repeats", 5, "Timed repeats; the median is reported.")
flags.DEFINE_integer("steps", 5, "Train steps per timed repeat (synchronised at its end).")
flags.DEFINE_integer("data_batches", 2, "Distinct training batches generated and cycled.")
flags.DEFINE_bool("pipeline", True, "Also time data generation, transfer and a host-fed step.")
flags.DEFINE_list("track", ["kitti"], "Configs for online tracking at batch 1; empty to skip.")
flags.DEFINE_integer("track_frames", 100, "Frames tracked per timing.")
flags.DEFINE_list("objects", ["1", "10", "100"], "Object counts for the batched-objects test.")
flags.DEFINE_list("opencv", ["csrt", "kcf"], "OpenCV trackers timed on the same frames.")
flags.DEFINE_bool("tracker_api", True, "Also time hart_tf.track.tracker.Tracker end to end (host "
                  "resize, tiling and float32 frames included), where that module exists.")
flags.DEFINE_string("clips_dir", None,
                    "Track real clips (OTB layout, resized to the config's frame size) from "
                    "this folder instead of a synthetic sequence.")
flags.DEFINE_string("clip", None, "Clip folder name under --clips_dir (default: the first).")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                  "XLA for the train step; auto: on for JAX, off for TF (as training).")
flags.DEFINE_enum("track_jit", "auto", ["auto", "true", "false"],
                  "XLA for the tracking step under TF (JAX always compiles); auto: on.")
flags.DEFINE_float("peak_tflops", flops.H100_BF16_TFLOPS, "Peak for MFU, TFLOP/s.")
flags.DEFINE_string("machine", None, "Machine label for the records (default: detected).")
flags.DEFINE_string("out", None, "Append the JSON lines to this file.")
flags.DEFINE_bool("markdown", False, "Append one row per record to --markdown_file.")
flags.DEFINE_string("markdown_file", "experiments/benchmarks/runs.md",
                    "Markdown file for --markdown.")
flags.DEFINE_bool("quick", False, "Tiny shapes and few steps: a smoke test of every path.")
flags.DEFINE_list("profile", [], "JAX only: train specs to break down into forward, "
                  "forward+backward, V1 and spatial attention timings.")
flags.DEFINE_integer("seed", 0, "Seed of weights and data.")
WINDOW_CASES = ("clips_eager", "clips_lazy", "hd_lazy", "hd_lazy_nodraft", "hd_shrunk")
flags.DEFINE_list("windows", [], f"Training-window cases to time: {', '.join(WINDOW_CASES)} "
                  "(clips_* need --clips_dir); empty to skip.")
flags.DEFINE_integer("windows_T", 30, "Frames per timed training window.")
flags.DEFINE_integer("windows_count", 20, "Windows timed per case (after one untimed).")
flags.DEFINE_integer("windows_threads", 1, "Threads cutting the timed windows at once (as "
                     "--data_workers does in training).")

FLAGS = flags.FLAGS

QUICK_SHAPES = {"image_size": (48, 64), "glimpse_size": (16, 16)}
MD_HEADER = "| date | machine | backend | versions | command | bench | result |"
MD_TITLE = "## Log of benchmark runs (appended by `tools/benchmark.py --markdown`)"


# ---------------------------------------------------------------------------- environment


def _backend() -> str:
    import keras

    return keras.backend.backend()


def _versions() -> dict[str, str]:
    import keras

    v = {"python": platform.python_version(), "keras": keras.__version__,
         "numpy": np.__version__}
    if _backend() == "jax":
        import jax
        import jaxlib

        v.update(jax=jax.__version__, jaxlib=jaxlib.__version__)
    elif _backend() == "tensorflow":
        import tensorflow as tf

        v["tensorflow"] = tf.__version__
    try:
        import cv2

        v["opencv"] = cv2.__version__
    except ImportError:
        pass
    return v


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def _device() -> str:
    cpus = f"{len(os.sched_getaffinity(0))}-core CPU ({_cpu_name()})"
    if _backend() == "jax":
        import jax

        d = jax.devices()[0]
        if d.platform != "cpu":
            return f"{d.device_kind} ({d.platform}) + {cpus}"
    elif _backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
            return f"{name} + {cpus}"
    return cpus


def peak_memory_bytes() -> int | None:
    """Peak device memory of this process where the backend reports it, else None."""
    if _backend() == "jax":
        import jax

        stats = jax.devices()[0].memory_stats()
        return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None
    if _backend() == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
    return None


def _host_peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB


# ---------------------------------------------------------------------------- helpers


def _config(name: str):
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


def _timed(fn: Callable[[], Any], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _block(tree) -> None:
    """Waits for every array in `tree` (device work is asynchronous)."""
    if _backend() == "jax":
        import jax

        jax.block_until_ready(tree)


def _to_device(tree):
    if _backend() == "jax":
        import jax

        return jax.device_put(tree)
    return tree


def build_model(config, precision: str = "fp32", loop: str = "scan", seed: int = 0):
    """A compiled HART as `hart_tf.train.trainer.build_model` makes it, with the loop and precision
    switches (RMSprop + clipping with the bad-step guard)."""
    from hart_tf.model.hart import HART
    from hart_tf.train.optimizers import GuardedRMSprop

    model = HART(config, seed=seed, unroll=loop == "unroll", mixed_precision=precision == "bf16")
    model.build()
    jit = FLAGS.jit_compile == "true" or (FLAGS.jit_compile == "auto" and _backend() == "jax")
    optimizer = GuardedRMSprop(learning_rate=1e-4, momentum=0.9, global_clipnorm=1.0)
    model.compile(optimizer=optimizer, jit_compile=jit)
    return model


# ---------------------------------------------------------------------------- training


def _synthetic_cfg(config):
    from hart_tf.data import synthetic

    h, w = config.image_size
    scale = min(1.0, min(h, w) / 96.0)  # the default object sizes fit frames >= 96 pixels
    return synthetic.SyntheticConfig(image_size=(h, w), target_size=(12 * scale, 30 * scale))


def _batches(config, batch: int, steps: int, n: int) -> list[tuple[dict, dict]]:
    from concurrent.futures import ThreadPoolExecutor

    from hart_tf.data import synthetic
    from hart_tf.train import sources as datasets

    cfg = _synthetic_cfg(config)
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
        self.jax = _backend() == "jax"
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
        _block(self.state if self.jax else None)

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
    config = _config(s["config"])
    b, t = s["batch"], s["T"]
    frames_per_batch = b * t
    host = _batches(config, b, t, max(1, FLAGS.data_batches))
    staged = [_to_device(xy) for xy in host]
    _block(staged)
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
        return [x / FLAGS.steps for x in _timed(repeat, FLAGS.repeats)]

    step_s = statistics.median(run(staged))
    loss = loop.loss()
    f = flops.flops_per_frame(config, t)
    fps = frames_per_batch / step_s
    rec = {
        "bench": "train", "spec": spec, **s,
        "frames_per_s": fps, "step_ms": 1e3 * step_s, "first_step_s": first_step_s,
        "flops_per_frame": f["train"], "tflops": f["train"] * fps / 1e12,
        "mfu": flops.mfu(f["train"], fps, FLAGS.peak_tflops),
        "peak_memory_bytes": peak_memory_bytes(), "host_peak_rss_bytes": _host_peak_rss_bytes(),
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

    cfg = _synthetic_cfg(config)
    gen = _timed(lambda: datasets.to_xy(synthetic.train_batch(99, b, t, FLAGS.seed, cfg)),
                 max(1, min(3, FLAGS.repeats)))
    h2d = _timed(lambda: _block(_to_device(host[0])), max(1, min(3, FLAGS.repeats)))
    # JAX copies host arrays into each step; TF on CPU reads them in place (nothing staged).
    host_fed = statistics.median(run(host)) if _backend() == "jax" else None
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
    return statistics.median(_timed(fn, max(3, FLAGS.repeats)))


def bench_profile(spec: str) -> dict[str, Any]:
    """Where a train step's time goes (JAX): the whole step, its forward pass, forward +
    backward without the optimizer, and V1 / the spatial attention alone at the batch one
    recurrent step sees (B) and at all of a batch's glimpses at once (B * (T + 1))."""
    import jax
    import jax.numpy as jnp

    if _backend() != "jax":
        raise ValueError("--profile needs KERAS_BACKEND=jax")
    s = parse_train_spec(spec)
    config = _config(s["config"])
    b, t = s["batch"], s["T"]
    x, y = _to_device(_batches(config, b, t, 1)[0])
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


# ---------------------------------------------------------------------------- tracking


def _track_frames(config, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """n uint8 frames (n, H, W, 3) at the config's size and the first box (y, x, h, w)."""
    h, w = config.image_size
    if FLAGS.clips_dir:
        from hart_tf.data import clips
        from hart_tf.data.images import read_image

        root = Path(FLAGS.clips_dir)
        name = FLAGS.clip or clips.list_sequences(root)[0]
        paths = clips.frame_paths(root / name)[:n]
        boxes = clips.read_groundtruth(root / name / clips.GROUNDTRUTH)
        frames = np.stack([read_image(str(p), size=(h, w)) for p in paths])
        src_h, src_w = read_image(str(paths[0])).shape[:2]
        box0 = clips.xywh_to_yxhw(boxes[0]) * np.array([h / src_h, w / src_w] * 2, np.float32)
        return frames, box0.astype(np.float32), f"clip {name} resized to {h}x{w}"
    from hart_tf.data import synthetic

    seq = synthetic.make_sequence(synthetic.sequence_rng("test", FLAGS.seed, 0), n,
                                  _synthetic_cfg(config))
    return seq["frames"], seq["boxes"][0], f"synthetic {h}x{w}"


class CompiledTracker:
    """`init_state` / `step` of a HART compiled once for a fixed object count.

    JAX: `jax.jit` over the weights as arguments (a stateless scope, as Keras' own trainer),
    or with `bake_weights` as compile-time constants (fewer arguments per call);
    TF: `tf.function` (XLA per --track_jit). One frame (1, H, W, 3) is shared by all N
    objects (the broadcast happens inside the compiled function).
    """

    def __init__(self, model, n_objects: int = 1, bake_weights: bool = False):
        self.model, self.n = model, n_objects
        if _backend() == "jax" and bake_weights:
            import jax

            self.values = None
            self._init = jax.jit(lambda _, *a: self._init_fn(*a), static_argnums=0)
            self._step = jax.jit(lambda _, *a: self._step_fn(*a), static_argnums=0)
        elif _backend() == "jax":
            import jax
            import keras

            variables = model.trainable_variables + model.non_trainable_variables
            self.values = [v.value for v in variables]

            def stateless(fn):
                def wrapped(values, *args):
                    mapping = list(zip(variables, values, strict=True))
                    with keras.StatelessScope(state_mapping=mapping):
                        return fn(*args)
                return jax.jit(wrapped)

            self._init = stateless(self._init_fn)
            self._step = stateless(self._step_fn)
        else:
            import tensorflow as tf

            jit = FLAGS.track_jit != "false"
            self.values = None
            self._init = tf.function(lambda _, *a: self._init_fn(*a), jit_compile=jit)
            self._step = tf.function(lambda _, *a: self._step_fn(*a), jit_compile=jit)

    def _frames(self, frame):
        from keras import ops

        return ops.broadcast_to(frame, (self.n, *frame.shape[1:]))  # (N, H, W, C)

    def _init_fn(self, frame, boxes):
        return self.model.init_state(self._frames(frame), boxes)

    def _step_fn(self, frame, state):
        out, state = self.model.step(self._frames(frame), state)
        return out["box"], state

    def init(self, frame: np.ndarray, boxes: np.ndarray):
        return self._init(self.values, frame, boxes)

    def step(self, frame, state):
        return self._step(self.values, frame, state)


def _latencies(tracker: CompiledTracker, frames: np.ndarray, boxes0: np.ndarray) -> list[float]:
    """Per-frame seconds of host frame -> device step -> host boxes, for frames 1..n-1."""
    state = tracker.init(frames[:1], boxes0)
    out = []
    for frame in frames[1:]:
        start = time.perf_counter()
        box, state = tracker.step(frame[None], state)
        np.asarray(box)  # the online caller needs the box now: this waits for the step
        out.append(time.perf_counter() - start)
    return out


def _pipelined_fps(tracker: CompiledTracker, frames: np.ndarray, boxes0: np.ndarray) -> float:
    """Steps/s with the frames already on the device and no wait between steps: the rate
    the device sustains when host round trips overlap (e.g. a video decoded ahead)."""
    staged = [_to_device(f[None]) for f in frames]
    state = tracker.init(staged[0], boxes0)
    _block(state)
    start = time.perf_counter()
    for frame in staged[1:]:
        box, state = tracker.step(frame, state)
    _block(box)
    return (len(staged) - 1) / (time.perf_counter() - start)


def _object_boxes(box0: np.ndarray, n: int, config) -> np.ndarray:
    """n boxes around box0 (different objects of one stream), kept inside the frame."""
    rng = np.random.default_rng(FLAGS.seed)
    h, w = config.image_size
    boxes = np.repeat(box0[None], n, 0).astype(np.float32)
    boxes[1:, :2] += rng.uniform(-0.5, 0.5, (n - 1, 2)) * np.array([h, w]) * 0.5
    boxes[:, 0] = np.clip(boxes[:, 0], 0, h - boxes[:, 2])
    boxes[:, 1] = np.clip(boxes[:, 1], 0, w - boxes[:, 3])
    return boxes


def _bench_tracker_api(model, name, frames, box0, source, config) -> list[dict[str, Any]]:
    """`hart_tf.track.tracker.Tracker` (the public online API) at batch 1 and N objects."""
    try:
        from hart_tf.track.tracker import Tracker
    except ImportError as e:
        return [{"bench": "tracker_api", "config": name, "error": str(e).splitlines()[0]}]
    records = []
    for n in sorted({1, *[int(v) for v in FLAGS.objects]}):
        boxes = _object_boxes(box0, n, config)[:, [1, 0, 3, 2]]  # (N, 4) xywh
        boxes = boxes if n > 1 else boxes[0]
        tracker = Tracker.from_model(model)

        def run(frames, tracker=tracker, boxes=boxes):
            tracker.init(frames[0], boxes)
            out = []
            for frame in frames[1:]:
                start = time.perf_counter()
                tracker.update(frame)  # returns NumPy boxes: waits for the step
                out.append(time.perf_counter() - start)
            return out

        def run_track(frames, tracker=tracker, boxes=boxes):
            # Tracker.track: the whole video, one step in flight (frames decoded ahead).
            start = time.perf_counter()
            count = sum(1 for _ in tracker.track(frames, boxes))
            return count / (time.perf_counter() - start)

        run(frames[:3])  # compiles
        run(frames)  # untimed pass: the GPU clocks up from idle
        repeats = max(1, FLAGS.repeats // 2)
        runs = [run(frames) for _ in range(repeats)]
        steps_per_s = statistics.median(len(r) / sum(r) for r in runs)
        track_rate = statistics.median(run_track(frames) for _ in range(repeats))
        records.append({
            "bench": "tracker_api", "config": name, "objects": n, "source": source,
            "steps_per_s": steps_per_s, "object_frames_per_s": n * steps_per_s,
            "latency_ms_p50": 1e3 * statistics.median(x for r in runs for x in r),
            "track_steps_per_s": track_rate, "track_object_frames_per_s": n * track_rate,
        })
    return records


def bench_track(name: str) -> Iterator[dict[str, Any]]:
    """Tracking records, yielded as each is measured (a timeout keeps the earlier ones)."""
    config = _config(name)
    model = build_model(config, seed=FLAGS.seed)
    n_frames = max(3, FLAGS.track_frames)
    frames, box0, source = _track_frames(config, n_frames)

    tracker = CompiledTracker(model, 1)
    start = time.perf_counter()
    _latencies(tracker, frames[:3], box0[None])  # compiles init and step
    compile_s = time.perf_counter() - start
    _latencies(tracker, frames, box0[None])  # untimed pass: the GPU clocks up from idle
    runs = [_latencies(tracker, frames, box0[None]) for _ in range(max(1, FLAGS.repeats // 2))]
    per_frame = [x for r in runs for x in r]
    fps_runs = [len(r) / sum(r) for r in runs]
    hart_fps = statistics.median(fps_runs)
    yield {
        "bench": "track", "config": name, "batch": 1, "frames": len(per_frame),
        "source": source, "fps": hart_fps,
        "latency_ms_p50": 1e3 * statistics.median(per_frame),
        "latency_ms_p90": 1e3 * float(np.percentile(per_frame, 90)),
        "pipelined_fps": statistics.median(
            _pipelined_fps(tracker, frames, box0[None]) for _ in range(3)),
        "first_call_s": compile_s, "peak_memory_bytes": peak_memory_bytes(),
    }
    if _backend() == "jax":
        baked = CompiledTracker(model, 1, bake_weights=True)
        _latencies(baked, frames[:3], box0[None])
        _latencies(baked, frames, box0[None])
        runs = [_latencies(baked, frames, box0[None]) for _ in range(max(1, FLAGS.repeats // 2))]
        yield {
            "bench": "track_baked", "config": name, "batch": 1, "source": source,
            "fps": statistics.median(len(r) / sum(r) for r in runs),
            "latency_ms_p50": 1e3 * statistics.median(x for r in runs for x in r),
            "pipelined_fps": statistics.median(
                _pipelined_fps(baked, frames, box0[None]) for _ in range(3)),
        }

    for n in [int(v) for v in FLAGS.objects]:
        tr = CompiledTracker(model, n)
        boxes = _object_boxes(box0, n, config)
        _latencies(tr, frames[:3], boxes)
        _latencies(tr, frames, boxes)
        runs = [_latencies(tr, frames, boxes) for _ in range(max(1, FLAGS.repeats // 2))]
        steps_per_s = statistics.median(len(r) / sum(r) for r in runs)
        yield {
            "bench": "objects", "config": name, "objects": n, "source": source,
            "steps_per_s": steps_per_s, "object_frames_per_s": n * steps_per_s,
            "latency_ms_p50": 1e3 * statistics.median(x for r in runs for x in r),
            "peak_memory_bytes": peak_memory_bytes(),
        }

    if FLAGS.tracker_api:
        yield from _bench_tracker_api(model, name, frames, box0, source, config)

    xywh = box0[[1, 0, 3, 2]]
    for kind in FLAGS.opencv:
        rec = {"bench": "opencv", "config": name, "tracker": kind, "source": source,
               "frames": len(frames) - 1}
        try:
            from hart_tf.track.baselines import OpenCVTracker, run_tracker

            fps_runs = [run_tracker(OpenCVTracker(kind), frames, xywh)[1]
                        for _ in range(max(1, FLAGS.repeats // 2))]
            rec.update(fps=statistics.median(fps_runs), hart_fps=hart_fps,
                       hart_over_tracker=hart_fps / statistics.median(fps_runs))
            import cv2

            rec["opencv_threads"] = cv2.getNumThreads()
        except (ImportError, ValueError, RuntimeError) as e:
            rec["error"] = str(e).splitlines()[0]
        yield rec


# ---------------------------------------------------------------------------- windows


def _hd_clip(folder: Path, n: int = 64, hw: tuple[int, int] = (1080, 1920)) -> None:
    """`n` JPEG frames of a smooth random background (upsampled 8x, as camera footage is
    smoother than pixel noise) with a box moving across, and their groundtruth.txt."""
    from PIL import Image

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (hw[0] // 8, hw[1] // 8, 3)).astype(np.uint8)
    base = np.asarray(Image.fromarray(small).resize(hw[::-1], Image.Resampling.BILINEAR))
    lines = []
    for i in range(n):
        img = base.copy()
        x, y, w, h = 200 + 12 * i, 400, 240, 180
        img[y:y + h, x:x + w] = (230, 20, 20)
        Image.fromarray(img).save(folder / f"{i + 1:08d}.jpg", quality=90)
        lines.append(f"{x},{y},{w},{h}")
    (folder / "groundtruth.txt").write_text("\n".join(lines) + "\n")


def bench_windows(case: str) -> dict[str, Any]:
    import tempfile

    from hart_tf.data import clip_windows

    size = (96, 128)  # the small config's frames
    with tempfile.TemporaryDirectory() as tmp:
        if case == "hd_shrunk":  # the same clip after tools/shrink_clips.py --max_side=480
            import shrink_clips

            root = Path(tmp) / "small"
            (Path(tmp) / "hd").mkdir()
            _hd_clip(Path(tmp) / "hd")
            shrink_clips.shrink_sequence(Path(tmp) / "hd", root / "hd", 480)
        elif case.startswith("hd"):
            root = Path(tmp)
            (root / "hd").mkdir()
            _hd_clip(root / "hd")
        else:
            root = Path(FLAGS.clips_dir)
        # A whole shrunk dataset is still far over the cache: decoded per window too.
        kwargs = {"cache_mb": 0 if "lazy" in case or case == "hd_shrunk" else 2048,
                  "draft": not case.endswith("nodraft")}
        start = time.perf_counter()
        windows = clip_windows.ClipWindows(root, ["all"], size, **kwargs)
        load_s = time.perf_counter() - start
        def one(i: int) -> None:  # window i, a pure function of (seed, i)
            windows.sample(np.random.default_rng([FLAGS.seed, i]), FLAGS.windows_T)

        one(FLAGS.windows_count)  # untimed (a window not timed below): first-touch costs
        with concurrent.futures.ThreadPoolExecutor(FLAGS.windows_threads) as pool:
            start = time.perf_counter()
            list(pool.map(one, range(FLAGS.windows_count)))
            took = time.perf_counter() - start
    return {"bench": "windows", "case": case, "T": FLAGS.windows_T, "lazy": bool(windows.lazy),
            "threads": FLAGS.windows_threads,
            "clips": windows.num_clips, "frames": windows.num_frames, "load_s": load_s,
            "windows_per_s": FLAGS.windows_count / took,
            "ms_per_window": 1e3 * took / FLAGS.windows_count,
            "host_peak_rss_bytes": _host_peak_rss_bytes()}


# ---------------------------------------------------------------------------- output


def _summary(r: dict[str, Any]) -> str:
    b = r["bench"]
    if b == "train":
        mem = r["peak_memory_bytes"]
        mem = f", peak {mem / 2**30:.1f} GiB" if mem else ""
        return (f"train {r['spec']}: {r['frames_per_s']:,.0f} trained frames/s, step "
                f"{r['step_ms']:.1f} ms, {r['tflops']:.1f} TFLOP/s, MFU {r['mfu']:.1%}{mem}")
    if b == "pipeline":
        fed = r["host_fed_step_ms"]
        fed = f" / host-fed {fed:.1f} ms" if fed else " (NumPy in place)"
        return (f"pipeline {r['spec']}: gen {r['gen_ms_per_batch_1core']:.0f} ms/batch on "
                f"1 core ({r['gen_cores_to_keep_up']:.1f} cores to keep up), H2D "
                f"{r['h2d_ms_per_batch']:.1f} ms, step staged {r['staged_step_ms']:.1f}{fed}")
    if b in ("track", "track_baked"):
        how = "weights as constants" if b == "track_baked" else "weights as arguments"
        queued = r.get("pipelined_fps")  # absent in records of the first version
        queued = f", pipelined {queued:,.0f} fps" if queued else ""
        return (f"track {r['config']} batch 1 ({how}): {r['fps']:,.0f} fps, latency p50 "
                f"{r['latency_ms_p50']:.2f} ms{queued} ({r['source']})")
    if b == "objects":
        return (f"{r['objects']} objects {r['config']}: {r['object_frames_per_s']:,.0f} "
                f"object-frames/s ({r['latency_ms_p50']:.2f} ms/step)")
    if b == "profile":
        return (f"profile {r['spec']}: forward {r['forward_ms']:.1f} ms, forward+backward "
                f"{r['forward_backward_ms']:.1f} ms; V1 fwd+bwd at batch B x(T+1) "
                f"{r['v1_in_loop_ms']:.1f} ms, all glimpses at once "
                f"{r['v1_fwd_bwd_all_glimpses_ms']:.1f} ms; attention x(T+1) "
                f"{r['attention_in_loop_ms']:.1f} ms")
    if b == "tracker_api":
        if "error" in r:
            return f"tracker_api: unavailable ({r['error']})"
        return (f"Tracker API {r['config']}, {r['objects']} object(s): "
                f"{r['object_frames_per_s']:,.0f} object-frames/s "
                f"({r['latency_ms_p50']:.2f} ms/update); Tracker.track (one step in "
                f"flight) {r['track_object_frames_per_s']:,.0f} object-frames/s")
    if b == "windows":
        how = "decoded per window" if r["lazy"] else "held decoded"
        return (f"windows {r['case']} ({r['clips']} clips, {r['frames']} frames, {how}; load "
                f"{r['load_s']:.1f} s): {r['windows_per_s']:.2f} windows/s of T={r['T']} with "
                f"{r.get('threads', 1)} thread(s) ({r['ms_per_window']:.0f} ms of wall time each)")
    if b == "opencv":
        if "error" in r:
            return f"opencv {r['tracker']}: unavailable ({r['error']})"
        return (f"opencv {r['tracker'].upper()} ({r['source']}): {r['fps']:,.0f} fps; "
                f"HART/{r['tracker'].upper()} = {r['hart_over_tracker']:.2f}x")
    return json.dumps(r)


def append_markdown(path: Path, env: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Appends one row per record under the run-log heading (created if missing)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if MD_TITLE not in text:
        text = text.rstrip("\n") + f"\n\n{MD_TITLE}\n\n{MD_HEADER}\n|---|---|---|---|---|---|---|\n"
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if k != "python")
    rows = [f"| {env['date']} | {env['machine']} | {env['backend']} | {versions} | "
            f"`{env['command']}` | {r['bench']} | {_summary(r)} |" for r in records]
    path.write_text(text.rstrip("\n") + "\n" + "\n".join(rows) + "\n")


def check_flags() -> None:
    """Every flag value checked before anything is built: one-line ValueErrors."""
    from hart_tf.model.config import PRESETS

    specs = [parse_train_spec(s) for s in FLAGS.train + FLAGS.profile]
    for name in [s["config"] for s in specs] + list(FLAGS.track):
        if name not in PRESETS:
            raise ValueError(f"unknown config {name!r} in --train/--profile/--track; "
                             f"choose one of {sorted(PRESETS)}")
    if not all(v.isdigit() and int(v) >= 1 for v in FLAGS.objects):
        raise ValueError(f"--objects must be positive integers, got {','.join(FLAGS.objects)}")
    for name in ("warmup", "repeats", "steps", "data_batches", "track_frames"):
        if getattr(FLAGS, name) < (0 if name == "warmup" else 1):
            raise ValueError(f"--{name} must be >= {0 if name == 'warmup' else 1}")
    if FLAGS.clips_dir and not Path(FLAGS.clips_dir).is_dir():
        raise ValueError(f"--clips_dir {FLAGS.clips_dir}: no such folder")
    for case in FLAGS.windows:
        if case not in WINDOW_CASES:
            raise ValueError(f"--windows: unknown case {case!r}; choose from "
                             f"{', '.join(WINDOW_CASES)}")
        if case.startswith("clips") and not FLAGS.clips_dir:
            raise ValueError(f"--windows={case} needs --clips_dir")
    if FLAGS.windows_T < 2 or FLAGS.windows_count < 1 or FLAGS.windows_threads < 1:
        raise ValueError("--windows_T must be >= 2, --windows_count and --windows_threads >= 1")


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        sys.exit(2)
    if FLAGS.quick:  # tiny defaults; flags given on the command line still win
        quick = {"train": ["small:2:3:fp32:scan"], "track": ["small"], "objects": ["2"],
                 "warmup": 1, "repeats": 2, "steps": 1, "data_batches": 1, "track_frames": 4}
        for name, value in quick.items():
            if not FLAGS[name].present:
                setattr(FLAGS, name, value)
    try:
        check_flags()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    backend = os.environ.get("KERAS_BACKEND")
    env = {
        "bench": "env", "backend": _backend(), "machine": FLAGS.machine or _device(),
        "versions": _versions(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": (f"KERAS_BACKEND={backend} " if backend else "")
        + "python " + " ".join([sys.argv[0].replace(os.getcwd() + "/", ""), *sys.argv[1:]]),
        "quick": FLAGS.quick,
    }
    records: list[dict[str, Any]] = []

    def emit(rec):
        line = json.dumps(rec, default=float)
        print(line, flush=True)
        if FLAGS.out:
            with open(FLAGS.out, "a") as f:
                f.write(line + "\n")
        if rec["bench"] != "env":
            records.append(rec)

    emit(env)
    for spec in FLAGS.train:
        for rec in bench_train(spec):
            emit(rec)
    for spec in FLAGS.profile:
        emit(bench_profile(spec))
    for name in FLAGS.track:
        for rec in bench_track(name):
            emit(rec)
    for case in FLAGS.windows:
        emit(bench_windows(case))
    if FLAGS.markdown:
        append_markdown(Path(FLAGS.markdown_file), env, records)
    for rec in records:
        print(_summary(rec), file=sys.stderr)


if __name__ == "__main__":
    app.run(main)
