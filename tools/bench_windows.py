"""Real-clip training windows (`hart_tf.data.clip_windows`) cut one after another: held
decoded, decoded per window, and a generated HD clip before and after shrinking. Reads the
flags tools/benchmark.py defines."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path
from typing import Any

import numpy as np
from absl import flags
from bench_env import host_peak_rss_bytes

FLAGS = flags.FLAGS
WINDOW_CASES = ("clips_eager", "clips_lazy", "hd_lazy", "hd_lazy_nodraft", "hd_shrunk")


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
            "host_peak_rss_bytes": host_peak_rss_bytes()}
