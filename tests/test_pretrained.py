"""The model shipped in the package (`hart_tf.pretrained`): loaded through the public API and
through the command lines, as a user gets it right after `pip install`."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hart_tf
from hart_tf import pretrained
from hart_tf.model.saving import resolve_checkpoint

REPO = Path(__file__).resolve().parents[1]


def _frames(n=6, hw=(120, 160)):
    """A bright square moving right by 3 px a frame on dark noise; its first box (x, y, w, h)."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        f = rng.integers(0, 60, (*hw, 3)).astype(np.uint8)
        f[40:70, 30 + 3 * i:60 + 3 * i] = (240, 200, 40)
        out.append(f)
    return out, np.array([30, 40, 30, 30], np.float32)


def test_shipped_model_is_small_and_package_data():
    path = pretrained.path()
    assert path.name == "hart_real.keras" and path.stat().st_size < 10 * 2**20
    assert (path.parent / "MODEL_CARD.md").is_file()
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    shipped = cfg["options.package_data"]["hart_tf.pretrained"]
    assert "*.keras" in shipped and "*.md" in shipped
    assert resolve_checkpoint("pretrained") == path
    with pytest.raises(ValueError, match="no shipped model 'nope' \\(shipped: hart_real\\)"):
        pretrained.path("nope")


def test_public_api_tracks_with_the_shipped_model():
    frames, box = _frames()
    tracker = hart_tf.Tracker.from_pretrained()
    boxes = list(tracker.track(frames, box))
    assert len(boxes) == len(frames) - 1
    boxes = np.stack(boxes)
    assert boxes.shape == (5, 4) and np.all(np.isfinite(boxes)) and np.all(boxes[:, 2:] > 0)


def _run(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_track_cli_with_model_pretrained(tmp_path):
    from PIL import Image

    frames, box = _frames()
    (tmp_path / "clip").mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / "clip" / f"{i}.png")
    out = tmp_path / "boxes.txt"
    proc = _run("hart_tf.track", "--model=pretrained", f"--frames={tmp_path / 'clip'}",
                "--init=" + ",".join(f"{v:g}" for v in box), f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    boxes = np.loadtxt(out, delimiter=",")
    assert boxes.shape == (6, 4) and np.all(np.isfinite(boxes)) and np.all(boxes[:, 2:] > 0)


@pytest.mark.slow
def test_evaluate_cli_with_model_pretrained(tmp_path):
    from test_clip_windows import _write_clip

    _write_clip(tmp_path / "clips", "walk", 5)
    out = tmp_path / "out"
    proc = _run("hart_tf.evaluate", "--dataset=clips", f"--data_dir={tmp_path / 'clips'}",
                "--model=pretrained", f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((out / "clips_results.json").read_text())
    assert record["checkpoint"] == str(pretrained.path())
    assert 0 <= record["overall"]["HART"]["mean_iou"] <= 1
