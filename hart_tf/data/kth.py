"""KTH pedestrian-tracking loader (the RATM / HART KTH boxes, 160x120 frames).

Boxes: `KTHBoundingBoxInfo{Train,Validation,Test}.txt` in one folder; the split is the file's.
Each file may start with header lines (Train and Validation have four, Test none); then one
clip per row: `person scenario action sequence start_frame end_frame` and `ymin xmin ymax xmax`
for every frame from start to end (1-based frame numbers of the video). Actions 4-6 (jogging,
running, walking) are the tracking subset.

Frames: `tools/prepare_kth.py` extracts every frame of the dataset's AVI files
(`person01_jogging_d1_uncomp.avi`) into

    <frame_dir>/person01_jogging_d1/000001.png   # <video name>/<1-based frame:06d>.png

the numbering of the box files. The original HART code has no KTH loader; samples are made as
for KITTI (hart_tf/data/kitti.py): windows of T frames overlapping by half, boxes
(y, x, h, w) = (ymin, xmin, ymax - ymin, xmax - xmin), padded to T with zero presence, and
optional reverse + mirror augmentation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import multiprocessing
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from hart_tf.data.errors import DataError
from hart_tf.data.frame_store import FrameStore, padded_rows
from hart_tf.data.images import frame_file, print_progress, read_images, write_png_atomic
from hart_tf.data.kitti import batch_samples, window_starts
from hart_tf.data.pipeline import epoch_order, padded_window

ACTIONS = {
    1: "boxing",
    2: "handclapping",
    3: "handwaving",
    4: "jogging",
    5: "running",
    6: "walking",
}
TRACKING_ACTIONS = (4, 5, 6)
BOX_FILES = {
    "train": "KTHBoundingBoxInfoTrain.txt",
    "validation": "KTHBoundingBoxInfoValidation.txt",
    "test": "KTHBoundingBoxInfoTest.txt",
}
FRAME_SIZE = (120, 160)
HEADER = ("person", "scenario", "action", "sequence", "start_frame", "end_frame")
_VIDEO_NAME = re.compile(r"person(\d+)_([a-z]+)_d(\d+)_uncomp\.avi$")


@dataclasses.dataclass(frozen=True, eq=False)
class KthClip:
    """One box-file row: a person on frames `start .. start + len(boxes) - 1` of a video.

    Attributes:
        boxes: float32 [n, 4] (y, x, h, w) in pixels of the 160x120 frame.
        source: "file:line" of the row, for error messages.
    """

    person: int
    scenario: int
    action: int
    sequence: int
    start: int
    boxes: np.ndarray
    source: str = ""

    @property
    def video(self) -> str:
        """Frame-folder name, the AVI's name without `_uncomp.avi`."""
        return f"person{self.person:02d}_{ACTIONS[self.action]}_d{self.scenario}"


@dataclasses.dataclass(frozen=True, eq=False)
class KthWindow:
    """One sample before decoding: `clip` frames `offset .. offset + length - 1` (0-based)."""

    clip: KthClip
    offset: int
    length: int
    reverse: bool = False
    mirror: bool = False


def _int(path: str, line: int, name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataError(f"{path}:{line}: field '{name}' is {text!r}, not an integer") from None


def read_box_file(path: str, actions: Iterable[int] = TRACKING_ACTIONS) -> list[KthClip]:
    """Parses one KTH box file, keeping the clips of `actions`."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: box file not found")
    actions = set(actions)
    clips, in_header = [], True
    with open(path) as f:
        lines = f.read().splitlines()
    h, w = FRAME_SIZE
    for n, text in enumerate(lines, start=1):
        vals = text.split()
        if in_header and (not vals or not vals[0].isdigit()):
            continue  # header lines come before the first row that starts with a number
        in_header = False
        if not vals:
            continue
        if len(vals) < len(HEADER):
            raise DataError(f"{path}:{n}: {len(vals)} fields, expected at least {len(HEADER)}")
        person, scenario, action, sequence, start, end = (
            _int(path, n, name, v) for name, v in zip(HEADER, vals, strict=False)
        )
        if action not in ACTIONS:
            raise DataError(f"{path}:{n}: field 'action' is {action}, not in 1..6")
        if start < 1 or end < start:
            raise DataError(f"{path}:{n}: frames {start}..{end} are not a 1-based range")
        num = end - start + 1
        if len(vals) - len(HEADER) != 4 * num:
            raise DataError(
                f"{path}:{n}: {len(vals) - len(HEADER)} box values for frames "
                f"{start}..{end}, expected {4 * num}"
            )
        if action not in actions:
            continue
        raw = np.array(
            [_int(path, n, f"box value {i + 1}", v) for i, v in enumerate(vals[len(HEADER) :])],
            np.float32,
        )
        ymin, xmin, ymax, xmax = raw.reshape(num, 4).T  # each (n,)
        bad = np.flatnonzero((ymax <= ymin) | (xmax <= xmin))
        if bad.size:
            raise DataError(f"{path}:{n}: zero or negative box size at frame {start + bad[0]}")
        bad = np.flatnonzero((ymin < 0) | (xmin < 0) | (ymax > h) | (xmax > w))
        if bad.size:
            raise DataError(
                f"{path}:{n}: box at frame {start + bad[0]} is outside the {w}x{h} frame"
            )
        boxes = np.stack([ymin, xmin, ymax - ymin, xmax - xmin], axis=1)  # (n, 4)
        clips.append(KthClip(person, scenario, action, sequence, start, boxes, f"{path}:{n}"))
    return clips


def load_kth(box_dir: str, split: str, actions: Iterable[int] = TRACKING_ACTIONS) -> list[KthClip]:
    """Clips of one split ("train", "validation", "test") from the box files in `box_dir`."""
    if split not in BOX_FILES:
        raise ValueError(f"split must be one of {tuple(BOX_FILES)}, got {split!r}")
    if not os.path.isdir(box_dir):
        raise DataError(f"{box_dir}: directory not found")
    clips = read_box_file(os.path.join(box_dir, BOX_FILES[split]), actions)
    if not clips:
        raise DataError(
            f"{os.path.join(box_dir, BOX_FILES[split])}: no clips of actions {sorted(actions)}"
        )
    return clips


def check_frames(clips: Sequence[KthClip], frame_dir: str) -> None:
    """Raises DataError naming the first clip whose frames are not all in `frame_dir`."""
    if not os.path.isdir(frame_dir):
        raise DataError(f"{frame_dir}: directory not found")
    listed: dict[str, set[str]] = {}
    for clip in clips:
        folder = os.path.join(frame_dir, clip.video)
        if clip.video not in listed:
            if not os.path.isdir(folder):
                raise DataError(f"{folder}: no frame folder for the clip at {clip.source}")
            listed[clip.video] = set(os.listdir(folder))
        for frame in range(clip.start, clip.start + len(clip.boxes)):
            if frame_file(frame) not in listed[clip.video]:
                raise DataError(
                    f"{folder}/{frame_file(frame)}: missing, needed by the clip at {clip.source}"
                )


def kth_windows(clips: Sequence[KthClip], seq_len: int, augment: bool = False) -> list[KthWindow]:
    """Windows of `seq_len` frames overlapping by half; with `augment`, each is followed by its
    reversed, mirrored, and reversed-and-mirrored copies."""
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2, got {seq_len}")
    variants = [(False, False), (True, False), (False, True), (True, True)]
    windows = []
    for clip in clips:
        n = len(clip.boxes)
        for offset in window_starts(n, seq_len):
            length = min(seq_len, n - offset)
            if length < 2:
                continue
            for reverse, mirror in variants if augment else variants[:1]:
                windows.append(KthWindow(clip, offset, length, reverse, mirror))
    return windows


def _window_frames(window: KthWindow, frame_dir: str) -> tuple[list[str], np.ndarray]:
    """The window's frame files, in the order it plays them, and its boxes."""
    clip = window.clip
    offsets = np.arange(window.offset, window.offset + window.length)
    if window.reverse:
        offsets = offsets[::-1]
    paths = [os.path.join(frame_dir, clip.video, frame_file(clip.start + o)) for o in offsets]
    return paths, clip.boxes[offsets]  # (L,), (L, 4)


def load_kth_sample(
    window: KthWindow, frame_dir: str, seq_len: int, pool: ThreadPoolExecutor | None = None,
    store: FrameStore | None = None,
) -> dict[str, np.ndarray]:
    """Decodes one window into the per-sequence dict of hart_tf.data, padded to `seq_len`
    (from `store`'s decoded frames when given: the same bytes)."""
    paths, boxes = _window_frames(window, frame_dir)
    if store is not None:
        images = store.take(paths)
    else:
        images = read_images(paths, FRAME_SIZE, FRAME_SIZE, pool)  # (L, 120, 160, 3)
    return padded_window(images, boxes, seq_len, mirror=window.mirror)


def sample_rows(
    window: KthWindow, frame_dir: str, seq_len: int, store: FrameStore
) -> dict[str, np.ndarray]:
    """One window as `store` rows (`frame_store.padded_rows`): `cut_windows` on the store's
    frames turns a batch of them into what `load_kth_sample` gives."""
    paths, boxes = _window_frames(window, frame_dir)
    return padded_rows(store.rows(paths), boxes, seq_len, FRAME_SIZE[1], mirror=window.mirror)


def clip_frames(
    clips: Sequence[KthClip], frame_dir: str
) -> tuple[list[str], list[tuple[int, int]]]:
    """Every frame file of `clips` and the size each must have (FRAME_SIZE): what a
    `FrameStore` of them holds."""
    paths = [os.path.join(frame_dir, c.video, frame_file(c.start + o))
             for c in clips for o in range(len(c.boxes))]
    return paths, [FRAME_SIZE] * len(paths)


def kth_samples(
    clips: Sequence[KthClip],
    frame_dir: str,
    seq_len: int,
    *,
    augment: bool = False,
    shuffle: bool = True,
    seed: int = 0,
    num_epochs: int | None = 1,
    num_threads: int = 4,
    store: FrameStore | None = None,
    rows: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Per-sample dicts, reshuffled every epoch; `num_epochs=None` repeats forever. With
    `store`, frames come from its memory; with `rows` too, samples hold store rows
    (`sample_rows`) instead of pixels."""
    if rows and store is None:
        raise ValueError("kth_samples: rows=True needs a store")
    check_frames(clips, frame_dir)
    windows = kth_windows(clips, seq_len, augment)
    if not windows:
        raise DataError(f"{frame_dir}: no clip has 2 or more frames")
    with ThreadPoolExecutor(num_threads) as pool:
        for i in epoch_order(len(windows), seed, shuffle, num_epochs):
            if rows:
                yield sample_rows(windows[i], frame_dir, seq_len, store)
            else:
                yield load_kth_sample(windows[i], frame_dir, seq_len, pool, store)


def kth_batches(
    clips: Sequence[KthClip], frame_dir: str, seq_len: int, batch_size: int, **kwargs
) -> Iterator[dict[str, np.ndarray]]:
    """Batches of `kth_samples(clips, frame_dir, seq_len, **kwargs)`."""
    return batch_samples(kth_samples(clips, frame_dir, seq_len, **kwargs), batch_size)


def read_video(path: str) -> Iterator[np.ndarray]:
    """Frames of a video as uint8 RGB [H, W, 3], by imageio (+ imageio-ffmpeg) or OpenCV.

    Both are optional and imported only here, with a one-line error when neither is present.
    """
    try:
        import imageio.v3 as iio
        import imageio_ffmpeg  # noqa: F401  (the binary behind imageio's FFMPEG plugin)
    except ImportError:
        iio = None
    if iio is not None:
        yield from iio.imiter(path, plugin="FFMPEG")
        return
    try:
        import cv2
    except ImportError:
        raise ImportError(
            "reading KTH videos needs imageio + imageio-ffmpeg "
            "(pip install -e '.[video]') or OpenCV (opencv-python-headless)"
        ) from None
    capture = cv2.VideoCapture(path)
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame[..., ::-1]  # OpenCV decodes BGR
    finally:
        capture.release()


def _extract_one(job: tuple[str, str, Callable[[str], Iterable[np.ndarray]]]) -> None:
    path, out, reader = job
    tmp = f"{out}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)  # left by a killed run
    os.makedirs(tmp)
    try:
        for i, frame in enumerate(reader(path), start=1):
            frame = np.asarray(frame, np.uint8)
            if frame.ndim == 2:
                frame = np.repeat(frame[..., None], 3, axis=-1)  # (H, W, 3)
            if frame.shape != (*FRAME_SIZE, 3):
                raise DataError(
                    f"{path}: frame {i} is {frame.shape[1]}x{frame.shape[0]}, "
                    f"expected {FRAME_SIZE[1]}x{FRAME_SIZE[0]}"
                )
            write_png_atomic(frame[..., :3], os.path.join(tmp, frame_file(i)))
    except (OSError, RuntimeError, ValueError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: unreadable video ({e})") from e
    os.replace(tmp, out)  # a folder that exists is complete


def extract_videos(
    video_dir: str,
    out_dir: str,
    actions: Iterable[int] = TRACKING_ACTIONS,
    num_workers: int = 1,
    progress: bool = True,
    reader: Callable[[str], Iterable[np.ndarray]] = read_video,
) -> int:
    """Extracts the frames of every `person*_<action>_d*_uncomp.avi` under `video_dir` (any
    depth) into `out_dir/<video>/<frame:06d>.png`; returns how many videos it extracted.

    Resumable: a video's frames go to a temporary folder renamed when complete, and videos
    whose folder exists are skipped.
    """
    if not os.path.isdir(video_dir):
        raise DataError(f"{video_dir}: directory not found")
    names = {ACTIONS[a] for a in actions}
    jobs, found = [], 0
    for path in sorted(glob.glob(os.path.join(video_dir, "**", "*.avi"), recursive=True)):
        match = _VIDEO_NAME.search(os.path.basename(path))
        if match is None or match.group(2) not in names:
            continue
        found += 1
        out = os.path.join(out_dir, os.path.basename(path)[: -len("_uncomp.avi")])
        if not os.path.isdir(out):
            jobs.append((path, out, reader))
    if not found:
        raise DataError(
            f"{video_dir}: no KTH videos (person*_<action>_d*_uncomp.avi) of {sorted(names)}"
        )
    os.makedirs(out_dir, exist_ok=True)
    start = time.time()
    with contextlib.ExitStack() as stack:
        if num_workers > 1 and len(jobs) > 1:
            pool = stack.enter_context(multiprocessing.Pool(num_workers))
            results = pool.imap_unordered(_extract_one, jobs)
        else:  # in-process: no fork, and `reader` need not pickle
            results = map(_extract_one, jobs)
        for done, _ in enumerate(results, 1):
            if progress:
                print_progress(done, len(jobs), start, unit="videos")
    return len(jobs)
