"""End-to-end training throughput: `python -m hart_tf.train` itself, not the bare step.

Usage (from the repo root, on a GPU machine with JAX):
  KERAS_BACKEND=jax python experiments/e2e_throughput.py --name=device -- \\
      --batch_size=1024 --curriculum_lengths=20 --steps_per_epoch=25 --epochs=4 \\
      --render_on=device

Runs the training command with the flags after `--` (plus --max_minutes=0, --image_every=0 and
its own run folder), samples the GPU's utilisation with nvidia-smi every 100 ms, and prints one
JSON line: trained frames/s (updates x B x T) and the mean GPU utilisation between the end of
the first epoch (after compiling) and the end of the last, both from the run's own epoch
records (summary.json's history: step and unix_time of every epoch end, validation included;
the newest checkpoint's record when the run stopped before writing its summary, with the
training command's exit code in "rc").
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from absl import app, flags

from hart_tf.train.checkpoints import CheckpointManager

flags.DEFINE_string("name", "run", "A label for the JSON line.")
flags.DEFINE_string("log", None, "Write the training command's output here (as it runs).")
FLAGS = flags.FLAGS


def _sample_gpu(samples: list, stop: threading.Event) -> None:
    if shutil.which("nvidia-smi") is None:
        return
    cmd = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
    while not stop.is_set():
        out = subprocess.run(cmd, capture_output=True, text=True).stdout.split()
        if out:
            samples.append((time.time(), float(out[0])))
        stop.wait(0.1)


def _flag(args: list[str], name: str, default: str) -> str:
    for a in args:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return default


def _records(run: Path) -> tuple[dict | None, list[dict]]:
    """(summary.json or None, the per-epoch history): from the summary when the run finished,
    else from its newest good checkpoint's state, so a run that stopped after training (killed, or
    failing on its test set) is still timed."""
    if (run / "summary.json").exists():
        summary = json.loads((run / "summary.json").read_text())
        return summary, summary["history"]
    latest = CheckpointManager(run).latest()
    return None, latest[1]["history"] if latest else []


def main(argv):
    train_flags = argv[1:]
    work = Path(tempfile.mkdtemp(prefix="e2e_"))
    cmd = [sys.executable, "-m", "hart_tf.train", *train_flags, "--max_minutes=0",
           "--image_every=0", f"--checkpoint_dir={work}", f"--logdir={work / 'tb'}",
           "--run_name=e2e", "--noresume"]
    samples: list = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_gpu, args=(samples, stop), daemon=True)
    sampler.start()
    start = time.time()
    log = Path(FLAGS.log) if FLAGS.log else work / "train.log"
    with log.open("w") as out:  # written as it runs: a killed run still leaves its log
        returncode = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    env=os.environ.copy()).returncode
    wall = time.time() - start
    stop.set()
    sampler.join()
    summary, history = _records(work / "e2e")
    if len(history) < 2:  # nothing to time between two epoch ends
        print(json.dumps({"name": FLAGS.name, "rc": returncode,
                          "tail": log.read_text()[-2000:]}))
        return
    first, last = history[0], history[-1]
    batch = int(_flag(train_flags, "batch_size", "16"))
    length = int(_flag(train_flags, "curriculum_lengths", "5").split(",")[0])
    seconds = last["unix_time"] - first["unix_time"]
    updates = last["step"] - first["step"]
    util = [u for t, u in samples if first["unix_time"] <= t <= last["unix_time"]]
    print(json.dumps({
        "name": FLAGS.name, "command": "python -m hart_tf.train " + " ".join(train_flags),
        "B": batch, "T": length, "updates_timed": updates, "seconds_timed": round(seconds, 2),
        "trained_frames_per_s": round(updates * batch * length / seconds),
        "updates_per_s": round(updates / seconds, 2),
        "gpu_util_mean_pct": round(statistics.mean(util), 1) if util else None,
        "gpu_samples": len(util), "wall_s": round(wall, 1), "rc": returncode,
        "test_mean_iou": ((summary or {}).get("test") or {}).get("mean_iou"),
    }), flush=True)


if __name__ == "__main__":
    app.run(main)
