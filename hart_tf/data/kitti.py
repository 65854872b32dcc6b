"""KITTI object-tracking loader, following the original HART data pipeline.

Layout: `<data_dir>/training/image_02/<seq>/<frame:06d>.png` and
`<data_dir>/training/label_02/<seq>.txt`, or explicit `img_dir` + `label_dir`. Label rows are
`frame track_id type truncated occluded alpha left top right bottom h w l x y z rotation_y`.

The rules below are those of the original (hart/data/kitti/parser.py `KittiTrackingLabels`,
`KittiTrackingParser`; hart/data/kitti/tools.py `split_sequence`, `sequences`,
`choose_n_objects`, `KittiStore`, `process_entry`; scripts/train_hart_kitti.py `get_data(...)`):

1. Every class except DontCare is kept (`remove_dontcare=True`); rows with truncation <= 1
   and occlusion <= 1 are kept (`truncated_threshold=1., occluded_threshold=1`, lower bound 0).
2. A track that disappears (or skips frames) is split into separate tracks
   (`_split_on_reappear`; its `.loc[w + 1:]` slices by frame label with a position, so there
   it seems to rename whole tracks instead; the samples are the same either way, since each
   is cut at the first absence). Frames without any kept label split a sequence into
   segments (`_truncate_seqs`, `_split_seqs`).
3. Each segment is split in time, the first 80% of its frames for training and the rest for
   testing (`split_sequence(seq, .8)`: split = int(.8 n + .5); a segment of <= 2 frames, or
   one whose test part would be a single frame, goes wholly to training).
4. Windows of T frames overlapping by int(T / 2) (`overlap_fraction=.5`); a part no longer
   than T is one shorter window; frames after the last full window are dropped
   (neurocity `split_seq`).
5. One object per sample (`max_objects=1`, `sample_objects=-100`): every object present on a
   window's first frame, cut at its first absence; a sample cut to one frame is skipped
   (`trunc_idx == 1`). After the cut the presence is all ones; we pad to T with zero frames,
   zero boxes and zero presence, as the original's `dynamic_pad` batching does.
6. Training augmentation (`reverse=True, mirror=True`): each sample also appears reversed in
   time, and both appear mirrored left-right with x' = W - x - w (`_mirror_reverse`,
   `process_entry`), so the training set is 4x the windows.
7. Frames are resized to 187x621 (scripts/resize_imgs.sh, `img_size = 187, 621`); boxes are
   (y, x, h, w) = (top, left, bottom - top, right - left) (`bbox_with_size`).

Two deliberate differences: the original scales every box by a fixed .5 (`bbox_scale=.5`),
which is off by up to 9 px for the 1224-pixel-wide sequences; we scale each sequence by its
own native size, read from the PNG header of its first frame. And a segment of a single frame
(a one-frame window) gave the original an all-zero-presence sample; we drop it.

`tools/prepare_kitti.py` resizes all frames once into a prepared folder (marked by
`native_sizes.json`); given `data_dir`, the loader uses `training/image_02_187x621` when it
is prepared and `training/image_02` otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from hart_tf.data.errors import DataError
from hart_tf.data.frame_store import FrameStore, padded_rows
from hart_tf.data.images import frame_file, image_size, read_images
from hart_tf.data.pipeline import batch_sequences, epoch_order, padded_window

CLASSES = (
    "Car", "Van", "Truck", "Pedestrian", "Person", "Person_sitting", "Cyclist", "Tram",
    "Misc", "DontCare"
)  # tracking labels say Person; detection labels Person_sitting
FIELDS = (
    "frame", "track_id", "type", "truncated", "occluded", "alpha", "left", "top", "right",
    "bottom", "height", "width", "length", "x", "y", "z", "rotation_y"
)
FRAME_SIZE = (187, 621)
SPLITS = ("train", "test")
PREPARED_SUBDIR = "image_02_187x621"
PREPARED_MARKER = "native_sizes.json"


@dataclasses.dataclass(frozen=True, eq=False)
class Track:
    """One object on consecutive frames `start .. start + len(boxes) - 1`.

    Attributes:
        track_id: KITTI's id; the pieces of a split track share it and differ in `start`.
        cls: KITTI class name.
        start: first frame number.
        boxes: float32 [n, 4] (y, x, h, w) in pixels of the native frame.
    """

    track_id: int
    cls: str
    start: int
    boxes: np.ndarray

    @property
    def stop(self) -> int:
        return self.start + len(self.boxes)


@dataclasses.dataclass(frozen=True, eq=False)
class KittiSequence:
    """One parsed sequence.

    Attributes:
        name: sequence name, e.g. "0001".
        tracks: tracks after the filters and the split at gaps.
        segments: [start, stop) runs of consecutive frames with at least one kept label.
        removed: rows removed by each filter, in the order applied.
        frame_dir: folder of this sequence's frames, or None when only labels were loaded.
        native_size: (H, W) of the original frames, or None without frames.
        stored_size: (H, W) of the files in `frame_dir` (the native or the prepared size).
    """

    name: str
    tracks: tuple[Track, ...]
    segments: tuple[tuple[int, int], ...]
    removed: dict[str, int]
    frame_dir: str | None = None
    native_size: tuple[int, int] | None = None
    stored_size: tuple[int, int] | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Window:
    """One sample before decoding: `track` on frames `start .. start + length - 1`."""

    seq: KittiSequence
    track: Track
    start: int
    length: int
    reverse: bool = False
    mirror: bool = False


def _field(path: str, line: int, name: str, text: str, kind: type) -> int | float:
    try:
        return kind(text)
    except ValueError:
        raise DataError(f"{path}:{line}: field '{name}' is {text!r}, not {kind.__name__}") from None


def read_labels(
    path: str,
    max_truncation: float = 1.0,
    max_occlusion: int = 1,
    image_hw: tuple[int, int] | None = None,
) -> tuple[list[Track], tuple[tuple[int, int], ...], dict[str, int]]:
    """Parses one label file into (tracks, segments, rows removed per filter).

    Every non-DontCare row must have a positive size and lie inside the image: x, y >= 0, and,
    when `image_hw` = (H, W) is given, right <= W and bottom <= H.
    """
    removed = {
        "DontCare": 0,
        f"occluded > {max_occlusion}": 0,
        f"truncated > {max_truncation:g}": 0,
    }
    rows: dict[int, list[tuple]] = {}  # track id -> [(frame, line, box, class)]
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable label file ({e})") from e
    for n, text in enumerate(lines, start=1):
        vals = text.split()
        if not vals:
            continue
        if len(vals) != len(FIELDS):
            raise DataError(f"{path}:{n}: {len(vals)} fields, expected {len(FIELDS)}")
        frame = _field(path, n, "frame", vals[0], int)
        track_id = _field(path, n, "track_id", vals[1], int)
        cls = vals[2]
        if cls not in CLASSES:
            raise DataError(f"{path}:{n}: unknown class {cls!r} (known: {', '.join(CLASSES)})")
        truncated = _field(path, n, "truncated", vals[3], float)
        occluded = _field(path, n, "occluded", vals[4], int)
        num = [_field(path, n, FIELDS[i], vals[i], float) for i in range(5, len(FIELDS))]
        if frame < 0:
            raise DataError(f"{path}:{n}: field 'frame' is {frame}, must be >= 0")
        if cls == "DontCare":
            removed["DontCare"] += 1
            continue
        left, top, right, bottom = num[1:5]
        if right <= left or bottom <= top:
            raise DataError(
                f"{path}:{n}: zero or negative box size "
                f"(left {left}, top {top}, right {right}, bottom {bottom})"
            )
        h, w = image_hw if image_hw is not None else (np.inf, np.inf)
        if left < 0 or top < 0 or right > w or bottom > h:
            size = f"the {w}x{h} image" if image_hw is not None else "the image"
            raise DataError(
                f"{path}:{n}: box (left {left}, top {top}, right {right}, "
                f"bottom {bottom}) is outside {size}"
            )
        if occluded > max_occlusion:
            removed[f"occluded > {max_occlusion}"] += 1
        elif truncated > max_truncation:
            removed[f"truncated > {max_truncation:g}"] += 1
        else:
            box = [top, left, bottom - top, right - left]  # (y, x, h, w)
            rows.setdefault(track_id, []).append((frame, n, box, cls))

    tracks = []
    for track_id, track_rows in rows.items():
        track_rows.sort()
        frames = np.array([r[0] for r in track_rows])
        step = np.diff(frames)
        if (step == 0).any():
            n = track_rows[int(np.argmin(step)) + 1][1]
            raise DataError(f"{path}:{n}: track {track_id} appears twice in one frame")
        # A gap starts a new track, as the original's `_split_on_reappear` intends.
        for piece in np.split(np.arange(len(frames)), np.flatnonzero(step > 1) + 1):
            boxes = np.array([track_rows[i][2] for i in piece], np.float32)  # (n, 4)
            tracks.append(Track(track_id, track_rows[piece[0]][3], int(frames[piece[0]]), boxes))
    tracks.sort(key=lambda t: (t.start, t.track_id))

    labelled = np.unique(np.concatenate([np.arange(t.start, t.stop) for t in tracks] or [[]]))
    runs = np.split(labelled, np.flatnonzero(np.diff(labelled) > 1) + 1) if labelled.size else []
    segments = tuple((int(r[0]), int(r[-1]) + 1) for r in runs)
    return tracks, segments, removed


def resolve_dirs(
    data_dir: str | None = None, img_dir: str | None = None, label_dir: str | None = None
) -> tuple[str | None, str]:
    """(img_dir, label_dir): explicit folders win over those under `data_dir/training`.

    Under `data_dir` the prepared folder `image_02_187x621` is preferred when it is complete
    (it holds `native_sizes.json`, which prepare_kitti writes last).
    """
    if data_dir is not None:
        training = os.path.join(data_dir, "training")
        if not os.path.isdir(training):
            raise DataError(f"{training}: directory not found (data_dir must hold training/)")
        label_dir = label_dir or os.path.join(training, "label_02")
        prepared = os.path.join(training, PREPARED_SUBDIR)
        if img_dir is None:
            is_prepared = os.path.isfile(os.path.join(prepared, PREPARED_MARKER))
            img_dir = prepared if is_prepared else os.path.join(training, "image_02")
    if label_dir is None:
        raise DataError("no label folder: give data_dir or label_dir")
    return img_dir, label_dir


def load_kitti(
    data_dir: str | None = None,
    img_dir: str | None = None,
    label_dir: str | None = None,
    max_truncation: float = 1.0,
    max_occlusion: int = 1,
) -> list[KittiSequence]:
    """Parses every label file, matched one-to-one with the image folders when there are any.

    With `label_dir` alone (no `data_dir`/`img_dir`) only labels are read: enough for
    `kitti_stats`, not for samples.
    """
    img_dir, label_dir = resolve_dirs(data_dir, img_dir, label_dir)
    for d in (label_dir, img_dir):
        if d is not None and not os.path.isdir(d):
            raise DataError(f"{d}: directory not found")
    names = sorted(f[:-4] for f in os.listdir(label_dir) if f.endswith(".txt"))
    if not names:
        raise DataError(f"{label_dir}: no label files (*.txt)")

    prepared = None
    if img_dir is not None:
        folders = sorted(d for d in os.listdir(img_dir) if os.path.isdir(os.path.join(img_dir, d)))
        for name in names:
            if name not in folders:
                raise DataError(
                    f"{os.path.join(label_dir, name)}.txt: no image folder "
                    f"{os.path.join(img_dir, name)}"
                )
        for folder in folders:
            if folder not in names:
                raise DataError(
                    f"{os.path.join(img_dir, folder)}: image folder has no label "
                    f"file {os.path.join(label_dir, folder)}.txt"
                )
        marker = os.path.join(img_dir, PREPARED_MARKER)
        if os.path.isfile(marker):
            with open(marker) as f:
                prepared = json.load(f)

    sequences = []
    for name in names:
        label_path = os.path.join(label_dir, f"{name}.txt")
        frame_dir = native = stored = None
        if img_dir is not None:
            frame_dir = os.path.join(img_dir, name)
            files = sorted(f for f in os.listdir(frame_dir) if f.endswith(".png"))
            if not files:
                raise DataError(f"{frame_dir}: no PNG frames")
            if prepared is not None:
                if name not in prepared["native_sizes"]:
                    raise DataError(
                        f"{os.path.join(img_dir, PREPARED_MARKER)}: no native size "
                        f"for sequence {name}; rerun tools/prepare_kitti.py"
                    )
                native = tuple(prepared["native_sizes"][name])
                stored = tuple(prepared["frame_size"])
            else:
                native = stored = image_size(os.path.join(frame_dir, files[0]))
        tracks, segments, removed = read_labels(label_path, max_truncation, max_occlusion, native)
        if frame_dir is not None:
            have = set(files)
            for t in tracks:
                for frame in range(t.start, t.stop):
                    if frame_file(frame) not in have:
                        raise DataError(
                            f"{label_path}: frame {frame} (track {t.track_id}) has "
                            f"no image {frame_dir}/{frame_file(frame)}"
                        )
        sequences.append(
            KittiSequence(name, tuple(tracks), segments, removed, frame_dir, native, stored)
        )

    if not any(s.tracks for s in sequences):
        raise DataError(f"{label_dir}: no objects left after the filters ({_removed(sequences)})")
    return sequences


def _removed(sequences: Sequence[KittiSequence]) -> str:
    total: dict[str, int] = {}
    for s in sequences:
        for k, v in s.removed.items():
            total[k] = total.get(k, 0) + v
    return ", ".join(f"{k} removed {v} rows" for k, v in total.items())


def split_segment(start: int, stop: int, train_fraction: float = 0.8) -> dict[str, tuple]:
    """{split: (start, stop) or ()} of one segment, by the original's `split_sequence`."""
    n = stop - start
    cut = int(train_fraction * n + 0.5)
    if n <= 2 or n - cut == 1:
        return {"train": (start, stop), "test": ()}
    return {"train": (start, start + cut), "test": (start + cut, stop)}


def window_starts(n: int, seq_len: int) -> list[int]:
    """Offsets of windows of `seq_len` frames overlapping by half over `n` frames."""
    if n <= seq_len:
        return [0]
    return list(range(0, n - seq_len + 1, seq_len - seq_len // 2))


def make_windows(
    sequences: Sequence[KittiSequence],
    split: str,
    seq_len: int,
    train_fraction: float = 0.8,
    augment: bool = False,
) -> list[Window]:
    """All samples of a split, in order; with `augment`, each is followed by its reversed,
    mirrored, and reversed-and-mirrored copies."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2, got {seq_len}")
    variants = [(False, False), (True, False), (False, True), (True, True)]
    windows = []
    for seq in sequences:
        starts = np.array([t.start for t in seq.tracks])
        stops = np.array([t.stop for t in seq.tracks])
        for segment in seq.segments:
            part = split_segment(*segment, train_fraction)[split]
            if not part:
                continue
            a, b = part
            for offset in window_starts(b - a, seq_len):
                s = a + offset
                end = min(s + seq_len, b)
                for i in np.flatnonzero((starts <= s) & (stops > s)):
                    length = int(min(stops[i], end) - s)
                    if length < 2:
                        continue
                    for reverse, mirror in variants if augment else variants[:1]:
                        windows.append(Window(seq, seq.tracks[i], s, length, reverse, mirror))
    return windows


def _window_frames(window: Window) -> tuple[list[str], np.ndarray]:
    """The window's frame files, in the order it plays them, and its native-pixel boxes."""
    seq, track = window.seq, window.track
    if seq.frame_dir is None:
        raise DataError(f"sequence {seq.name}: loaded without images; give img_dir or data_dir")
    frames = np.arange(window.start, window.start + window.length)
    first = window.start - track.start
    boxes = track.boxes[first : first + window.length].copy()  # (L, 4)
    if window.reverse:
        frames, boxes = frames[::-1], boxes[::-1]
    return [os.path.join(seq.frame_dir, frame_file(f)) for f in frames], boxes


def _scaled(window: Window, boxes: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    height, width = window.seq.native_size
    return boxes * np.array([frame_size[0] / height, frame_size[1] / width] * 2, np.float32)


def load_sample(
    window: Window,
    seq_len: int,
    frame_size: tuple[int, int] = FRAME_SIZE,
    pool: ThreadPoolExecutor | None = None,
    store: FrameStore | None = None,
) -> dict[str, np.ndarray]:
    """Decodes one window into the per-sequence dict of hart_tf.data, padded to `seq_len`
    (from `store`'s decoded frames when given: the same bytes)."""
    paths, boxes = _window_frames(window)
    if store is not None:
        images = store.take(paths)
    else:
        images = read_images(paths, frame_size, window.seq.stored_size, pool)  # (L, H, W, 3)
    return padded_window(images, _scaled(window, boxes, frame_size), seq_len,
                         mirror=window.mirror)


def sample_rows(window: Window, seq_len: int, store: FrameStore) -> dict[str, np.ndarray]:
    """One window as `store` rows (`frame_store.padded_rows`): `cut_windows` on the store's
    frames turns a batch of them into what `load_sample` gives."""
    paths, boxes = _window_frames(window)
    return padded_rows(store.rows(paths), _scaled(window, boxes, store.size), seq_len,
                       store.size[1], mirror=window.mirror)


def split_frames(
    sequences: Sequence[KittiSequence], split: str, train_fraction: float = 0.8
) -> tuple[list[str], list[tuple[int, int]]]:
    """Every frame file of a split (the frames its windows play) and, for each, the size its
    file must have: what a `FrameStore` of the split holds."""
    paths, sizes = [], []
    for seq in sequences:
        if seq.frame_dir is None:
            raise DataError(f"sequence {seq.name}: loaded without images; give data_dir")
        for segment in seq.segments:
            part = split_segment(*segment, train_fraction)[split]
            if part:
                paths += [os.path.join(seq.frame_dir, frame_file(f)) for f in range(*part)]
                sizes += [seq.stored_size] * (part[1] - part[0])
    return paths, sizes


def kitti_samples(
    sequences: Sequence[KittiSequence],
    split: str,
    seq_len: int,
    *,
    train_fraction: float = 0.8,
    augment: bool | None = None,
    shuffle: bool = True,
    seed: int = 0,
    num_epochs: int | None = 1,
    num_threads: int = 4,
    frame_size: tuple[int, int] = FRAME_SIZE,
    store: FrameStore | None = None,
    rows: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Per-sample dicts of a split, reshuffled every epoch; `num_epochs=None` repeats forever.

    `augment` defaults to True for "train" (the original's reverse + mirror) and False else.
    With `store`, frames come from its memory instead of the files; with `rows` too, each
    sample holds store rows instead of pixels (`sample_rows`).
    """
    if rows and store is None:
        raise ValueError("kitti_samples: rows=True needs a store")
    if store is not None and store.size != tuple(frame_size):
        raise ValueError(f"kitti_samples: the store holds {store.size} frames, not {frame_size}")
    augment = split == "train" if augment is None else augment
    windows = make_windows(sequences, split, seq_len, train_fraction, augment)
    if not windows:
        raise DataError(
            f"no {split} samples of seq_len {seq_len} in {len(sequences)} "
            f"sequences ({_removed(sequences)})"
        )
    with ThreadPoolExecutor(num_threads) as pool:
        for i in epoch_order(len(windows), seed, shuffle, num_epochs):
            if rows:
                yield sample_rows(windows[i], seq_len, store)
            else:
                yield load_sample(windows[i], seq_len, frame_size, pool, store)


def batch_samples(
    samples: Iterable[dict[str, np.ndarray]], batch_size: int
) -> Iterator[dict[str, np.ndarray]]:
    """Stacks consecutive samples into batches with a leading B axis; drops the remainder."""
    return batch_sequences(samples, batch_size)  # (B, T, ...)


def kitti_batches(
    sequences: Sequence[KittiSequence], split: str, seq_len: int, batch_size: int, **kwargs
) -> Iterator[dict[str, np.ndarray]]:
    """Batches of `kitti_samples(sequences, split, seq_len, **kwargs)`."""
    return batch_samples(kitti_samples(sequences, split, seq_len, **kwargs), batch_size)
