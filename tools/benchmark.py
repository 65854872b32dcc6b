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
            --max_side=480. kitti_files / kitti_store: KITTI training windows at 187x621
            decoded from the PNG files or cut from the frame store (`hart_tf.data.frame_store`,
            decoded once at load), over a root built from the sequence folders of
            --kitti_frames_dir, each repeated by symbolic links to --kitti_frames frames.
            Medians of --repeats passes of --windows_count windows.
Peak device memory is read where the backend reports it (JAX `memory_stats`, TF GPU memory
info). Each record is printed as one JSON line (and appended to --out); `--markdown` appends
one table row per record to --markdown_file with the command, machine, backend, library
versions and date. Train specs are CONFIG:BATCH:T:PRECISION:LOOP, e.g. kitti:256:10:bf16:scan
(PRECISION fp32|bf16, LOOP scan|unroll).
"""
from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/ modules when imported
import flops  # noqa: E402
from bench_env import backend, device, versions  # noqa: E402
from bench_report import append_markdown, summary  # noqa: E402
from bench_track import bench_track  # noqa: E402
from bench_train import bench_profile, bench_train, parse_train_spec  # noqa: E402
from bench_windows import WINDOW_CASES, bench_windows  # noqa: E402

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
flags.DEFINE_list("windows", [], f"Training-window cases to time: {', '.join(WINDOW_CASES)} "
                  "(clips_* need --clips_dir); empty to skip.")
flags.DEFINE_integer("windows_T", 30, "Frames per timed training window.")
flags.DEFINE_integer("windows_count", 20, "Windows timed per case (after one untimed).")
flags.DEFINE_integer("windows_threads", 1, "Threads cutting the timed windows at once (as "
                     "--data_workers does in training).")
flags.DEFINE_string("kitti_frames_dir", None, "--windows=kitti_*: a folder of KITTI sequence "
                    "folders of PNG frames (e.g. training/image_02 of a KITTI root).")
flags.DEFINE_integer("kitti_frames", 200, "--windows=kitti_*: frames per sequence, its PNGs "
                     "repeated by symbolic links.")

FLAGS = flags.FLAGS


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
        if case.startswith("kitti") and not (FLAGS.kitti_frames_dir
                                             and Path(FLAGS.kitti_frames_dir).is_dir()):
            raise ValueError(f"--windows={case} needs --kitti_frames_dir, a folder of sequence "
                             f"folders (got {FLAGS.kitti_frames_dir})")
    if (FLAGS.windows_T < 2 or FLAGS.windows_count < 1 or FLAGS.windows_threads < 1
            or FLAGS.kitti_frames < 2):
        raise ValueError("--windows_T and --kitti_frames must be >= 2, --windows_count and "
                         "--windows_threads >= 1")


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
    keras_backend = os.environ.get("KERAS_BACKEND")
    env = {
        "bench": "env", "backend": backend(), "machine": FLAGS.machine or device(),
        "versions": versions(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": (f"KERAS_BACKEND={keras_backend} " if keras_backend else "")
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
        print(summary(rec), file=sys.stderr)


if __name__ == "__main__":
    app.run(main)
