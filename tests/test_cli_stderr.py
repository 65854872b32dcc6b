"""Every command answers bad input in at most 3 stderr lines, with no traceback and without
TensorFlow's start-up log: 24 cases over train, evaluate, track and export, each a real
subprocess as a user would run it."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CASES = [
    ("train", ["--batch_size=0"], "--batch_size must be positive"),
    ("train", ["--learning_rate=-1"], "--learning_rate must be positive"),
    ("train", ["--dataset=coco"], "value should be one of"),
    ("train", ["--bach_size=4"], "unknown flag --bach_size"),
    ("train", ["--flagfile=missing.cfg"], "--flagfile: missing.cfg: no such file"),
    ("train", ["--occlusion_prob=2"], "--occlusion_prob must be in [0, 1]"),
    ("train", ["--train_clips=walk"], "--train_clips_dir and --train_clips go together"),
    ("train", ["--curriculum_lengths=5,x"], "--curriculum_lengths must be integers"),
    ("train", ["--lr_decay=20"], "--lr_decay entries are LENGTH:FACTOR"),
    ("train", ["--glimpse_size=1"], "--glimpse_size must be two"),
    ("train", ["--dataset=kitti"], "--dataset=kitti needs --data_dir"),
    ("train", ["stray"], "unexpected arguments: stray"),
    ("evaluate", [], "--model is required"),
    ("evaluate", ["--model=/nonexistent/run"], "/nonexistent/run does not exist"),
    ("evaluate", ["--clips=Car1", "--model=x.keras"], "--clips chooses the clips"),
    ("evaluate", ["--eval_steps=0", "--model=x.keras"], "--eval_steps must be positive"),
    ("track", [], "--model is required"),
    ("track", ["--model=pretrained", "--init=1,2,3", "--out=o.txt", "--frames=."],
     "--init must be four numbers"),
    ("track", ["--model=/nonexistent", "--init=1,2,3,4", "--out=o.txt", "--frames=."],
     "--frames: .: no .jpg/.jpeg/.png frames found"),
    ("track", ["--model=pretrained", "--init=1,2,3,4", "--out=o.txt",
               "--frames=/nonexistent"], "--frames"),
    ("export", [], "--model is required"),
    ("export", ["--model=x.keras"], "--out is required"),
    ("export", ["--model=/nonexistent.keras", "--out=m/1"], "/nonexistent.keras does not exist"),
    ("export", ["--unknown=1"], "unknown flag --unknown"),
]


def _run(case, cwd: Path):
    command, argv, _ = case
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", f"hart_tf.{command}", *argv], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_bad_input_is_at_most_three_stderr_lines(tmp_path):
    assert len(CASES) >= 20
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: _run(c, tmp_path), CASES))
    for (command, argv, expected), r in zip(CASES, results, strict=True):
        lines = r.stderr.strip().splitlines()
        where = f"{command} {' '.join(argv)}: {r.stderr}"
        assert r.returncode != 0, where
        assert 1 <= len(lines) <= 3, where
        assert "Traceback" not in r.stderr, where
        assert expected in lines[-1], where
