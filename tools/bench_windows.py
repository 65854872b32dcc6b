"""Training windows cut one after another: real clips (`hart_tf.data.clip_windows`) held
decoded, decoded per window, and a generated HD clip before and after shrinking; KITTI
windows decoded from the PNG files or cut from the frame store (`hart_tf.data.frame_store`).
Each rate is the median of --repeats passes. Reads the flags tools/benchmark.py defines."""

from __future__ import annotations

import concurrent.futures
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from absl import flags
from bench_env import host_peak_rss_bytes

FLAGS = flags.FLAGS
WINDOW_CASES = ("clips_eager", "clips_lazy", "hd_lazy", "hd_lazy_nodraft", "hd_shrunk",
                "kitti_files", "kitti_store")


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


def _timed(one) -> float:
    """Seconds per window: the median of --repeats passes of --windows_count windows cut by
    `one(i)` in --windows_threads threads."""
    one(FLAGS.windows_count * FLAGS.repeats)  # untimed (a window not timed below): first-touch
    took = []
    with concurrent.futures.ThreadPoolExecutor(FLAGS.windows_threads) as pool:
        for r in range(FLAGS.repeats):
            start = time.perf_counter()
            list(pool.map(one, range(r * FLAGS.windows_count, (r + 1) * FLAGS.windows_count)))
            took.append((time.perf_counter() - start) / FLAGS.windows_count)
    return float(np.median(took))


def _rates(case: str, took: float, load_s: float, lazy: bool) -> dict[str, Any]:
    return {"bench": "windows", "case": case, "T": FLAGS.windows_T, "lazy": lazy,
            "threads": FLAGS.windows_threads, "repeats": FLAGS.repeats, "load_s": load_s,
            "windows_per_s": 1 / took, "ms_per_window": 1e3 * took,
            "host_peak_rss_bytes": host_peak_rss_bytes()}


def _kitti_root(src: Path, dst: Path, frames: int) -> None:
    """A KITTI root in `dst` with a sequence for each folder of PNGs in `src`, its frames
    repeated by symbolic links to `frames` frames, and three cars on every frame."""
    from PIL import Image

    from hart_tf.data.images import frame_file

    for seq in sorted(p for p in src.iterdir() if p.is_dir() and any(p.glob("*.png"))):
        pngs = sorted(seq.glob("*.png"))
        out = dst / "training" / "image_02" / seq.name
        out.mkdir(parents=True)
        for f in range(frames):
            (out / frame_file(f)).symlink_to(pngs[f % len(pngs)].resolve())
        w, h = Image.open(pngs[0]).size
        rows = [f"{f} {t} Car 0 0 -1.5 {x} {h // 3} {x + w // 8} {2 * h // 3} 1.5 1.6 3.9 "
                "1.0 1.7 20.0 -1.5" for f in range(frames)
                for t, x in enumerate((w // 8, w // 2, 3 * w // 4))]
        (dst / "training" / "label_02").mkdir(parents=True, exist_ok=True)
        (dst / "training" / "label_02" / f"{seq.name}.txt").write_text("\n".join(rows) + "\n")


def bench_kitti_windows(case: str) -> dict[str, Any]:
    from hart_tf.data import frame_store, kitti

    with tempfile.TemporaryDirectory() as tmp:
        _kitti_root(Path(FLAGS.kitti_frames_dir), Path(tmp), FLAGS.kitti_frames)
        start = time.perf_counter()
        seqs = kitti.load_kitti(data_dir=tmp)
        paths, sizes = kitti.split_frames(seqs, "train")
        store = None
        if case == "kitti_store":  # decoded in a thread per core, as training does
            store = frame_store.FrameStore(paths, kitti.FRAME_SIZE, sizes, os.cpu_count() or 1)
        load_s = time.perf_counter() - start
        windows = kitti.make_windows(seqs, "train", FLAGS.windows_T, augment=True)
        order = np.random.default_rng(FLAGS.seed).permutation(len(windows))

        def one(i: int) -> None:  # the same windows from the files and from the store
            kitti.load_sample(windows[order[i % len(order)]], FLAGS.windows_T, store=store)

        took = _timed(one)
    return {**_rates(case, took, load_s, store is None), "sequences": len(seqs),
            "frames": len(paths), "windows": len(windows),
            "store_bytes": store.nbytes if store is not None else 0}


def bench_windows(case: str) -> dict[str, Any]:
    from hart_tf.data import clip_windows

    if case.startswith("kitti"):
        return bench_kitti_windows(case)
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

        took = _timed(one)
    return {**_rates(case, took, load_s, bool(windows.lazy)), "clips": windows.num_clips,
            "frames": windows.num_frames}
