"""Online tracking benchmarks: HART at batch 1 through a compiled `init_state` / `step`,
N objects in one batched step, the public `Tracker` API and OpenCV trackers on the same
frames. Reads the flags tools/benchmark.py defines."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from absl import flags
from bench_env import backend, block, peak_memory_bytes, to_device
from bench_train import build_model, config_for, synthetic_cfg

FLAGS = flags.FLAGS


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
        from hart_tf.utils.boxes import xywh_to_yxhw

        box0 = xywh_to_yxhw(boxes[0]) * np.array([h / src_h, w / src_w] * 2, np.float32)
        return frames, box0.astype(np.float32), f"clip {name} resized to {h}x{w}"
    from hart_tf.data import synthetic

    seq = synthetic.make_sequence(synthetic.sequence_rng("test", FLAGS.seed, 0), n,
                                  synthetic_cfg(config))
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
        if backend() == "jax" and bake_weights:
            import jax

            self.values = None
            self._init = jax.jit(lambda _, *a: self._init_fn(*a), static_argnums=0)
            self._step = jax.jit(lambda _, *a: self._step_fn(*a), static_argnums=0)
        elif backend() == "jax":
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
    staged = [to_device(f[None]) for f in frames]
    state = tracker.init(staged[0], boxes0)
    block(state)
    start = time.perf_counter()
    for frame in staged[1:]:
        box, state = tracker.step(frame, state)
    block(box)
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
    config = config_for(name)
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
    if backend() == "jax":
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
