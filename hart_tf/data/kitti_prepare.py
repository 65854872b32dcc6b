"""KITTI tracking, once per machine: frames resized to 187x621 ahead of training
(`prepare_frames`, used by tools/prepare_kitti.py) and counts of tracks and windows per split
and class (`python -m hart_tf.data.kitti_prepare --label_dir=<label_02> --stats`)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence

from absl import flags

from hart_tf.data.errors import DataError
from hart_tf.data.images import image_size, print_progress, read_image, write_png_atomic
from hart_tf.data.kitti import (
    FRAME_SIZE,
    PREPARED_MARKER,
    SPLITS,
    KittiSequence,
    kitti_samples,
    load_kitti,
    make_windows,
    split_segment,
)
from hart_tf.utils.files import write_json_atomic


def kitti_stats(
    sequences: Sequence[KittiSequence], seq_len: int, train_fraction: float = 0.8
) -> dict[str, dict[str, dict[str, int]]]:
    """{split: {class: {"tracks": n, "windows": n}}}, before augmentation.

    A track counts once for each split it has frames in (a track crossing the 80/20 boundary
    counts in both).
    """
    out: dict[str, dict[str, dict[str, int]]] = {}
    for split in SPLITS:
        per_cls: dict[str, dict[str, int]] = {}
        for seq in sequences:
            parts = [split_segment(*g, train_fraction)[split] for g in seq.segments]
            for t in seq.tracks:
                if any(p and t.start < p[1] and t.stop > p[0] for p in parts):
                    per_cls.setdefault(t.cls, {"tracks": 0, "windows": 0})["tracks"] += 1
        for w in make_windows(sequences, split, seq_len, train_fraction):
            per_cls.setdefault(w.track.cls, {"tracks": 0, "windows": 0})["windows"] += 1
        out[split] = dict(sorted(per_cls.items()))
    return out


def format_stats(stats: dict[str, dict[str, dict[str, int]]]) -> str:
    """A table of `kitti_stats`, one row per split and class, with per-split totals."""
    lines = [f"{'split':<6} {'class':<15} {'tracks':>7} {'windows':>8}"]
    for split, per_cls in stats.items():
        for cls, c in per_cls.items():
            lines.append(f"{split:<6} {cls:<15} {c['tracks']:>7} {c['windows']:>8}")
        tracks = sum(c["tracks"] for c in per_cls.values())
        windows = sum(c["windows"] for c in per_cls.values())
        lines.append(f"{split:<6} {'all':<15} {tracks:>7} {windows:>8}")
    return "\n".join(lines)


def _resize_one(job: tuple[str, str, tuple[int, int], tuple[int, int]]) -> None:
    src, dst, size, native = job
    write_png_atomic(read_image(src, size, expected_size=native), dst)


def prepare_frames(
    src_dir: str,
    out_dir: str,
    size: tuple[int, int] = FRAME_SIZE,
    num_workers: int = 1,
    progress: bool = True,
) -> int:
    """Resizes every `<seq>/*.png` of `src_dir` into `out_dir/<seq>/`; returns how many it wrote.

    Resumable: each frame is written to a temporary name and renamed, and frames already in
    `out_dir` are skipped. `native_sizes.json` (each sequence's (H, W), for scaling boxes) is
    written last, so the loader never takes a half-done folder for a prepared one.
    """
    if not os.path.isdir(src_dir):
        raise DataError(f"{src_dir}: directory not found")
    seqs = sorted(d for d in os.listdir(src_dir) if os.path.isdir(os.path.join(src_dir, d)))
    if not seqs:
        raise DataError(f"{src_dir}: no sequence folders")
    jobs, native_sizes = [], {}
    for seq in seqs:
        files = sorted(f for f in os.listdir(os.path.join(src_dir, seq)) if f.endswith(".png"))
        if not files:
            raise DataError(f"{os.path.join(src_dir, seq)}: no PNG frames")
        native = image_size(os.path.join(src_dir, seq, files[0]))
        native_sizes[seq] = list(native)
        os.makedirs(os.path.join(out_dir, seq), exist_ok=True)
        for f in files:
            dst = os.path.join(out_dir, seq, f)
            if not os.path.exists(dst):
                jobs.append((os.path.join(src_dir, seq, f), dst, tuple(size), native))
    start = time.time()
    with contextlib.ExitStack() as stack:
        if num_workers > 1 and len(jobs) > 1:
            pool = stack.enter_context(multiprocessing.Pool(num_workers))
            results = pool.imap_unordered(_resize_one, jobs, chunksize=4)
        else:  # in-process: no fork, e.g. inside a test process that runs TensorFlow
            results = map(_resize_one, jobs)
        for done, _ in enumerate(results, 1):
            if progress and (done % 20 == 0 or done == len(jobs)):
                print_progress(done, len(jobs), start)
    marker = os.path.join(out_dir, PREPARED_MARKER)
    write_json_atomic(marker, {"frame_size": list(size), "native_sizes": native_sizes}, indent=1)
    return len(jobs)


def main(argv: Sequence[str]) -> int:
    """`python -m hart_tf.data.kitti_prepare --label_dir=... --stats`.

    Parses its own `flags.FlagValues()` instead of the global FLAGS, so that running this
    module never collides with (or needs) the flags of hart_tf/cli/flags.py.
    """
    fv = flags.FlagValues()
    flags.DEFINE_string("data_dir", None, "KITTI root holding training/.", flag_values=fv)
    flags.DEFINE_string("img_dir", None, "Image folder (image_02 or prepared).", flag_values=fv)
    flags.DEFINE_string("label_dir", None, "Label folder (label_02).", flag_values=fv)
    flags.DEFINE_integer(
        "seq_len", 30, "Window length T (the original tests on 30).", flag_values=fv
    )
    flags.DEFINE_float(
        "train_fraction", 0.8, "Fraction of each segment for training.", flag_values=fv
    )
    flags.DEFINE_bool(
        "stats",
        False,
        "Print tracks and windows per split and class; without it, decode one sample per split.",
        flag_values=fv,
    )
    try:
        rest = fv(list(argv))
        if len(rest) > 1:
            raise DataError(f"unexpected arguments: {' '.join(rest[1:])}")
        sequences = load_kitti(fv.data_dir, fv.img_dir, fv.label_dir)
        if fv.stats:
            print(format_stats(kitti_stats(sequences, fv.seq_len, fv.train_fraction)))
            return 0
        for split in SPLITS:
            sample = next(
                kitti_samples(
                    sequences, split, fv.seq_len, num_epochs=1, train_fraction=fv.train_fraction
                )
            )
            print(split, {k: (v.shape, v.dtype.name) for k, v in sample.items()})
    except (DataError, flags.Error) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
