"""Real single-object tracking clips in the OTB / GOT-10k folder layout.

One folder per sequence::

    <root>/<name>/groundtruth.txt    one `x y w h` box per frame, 0-based pixels
    <root>/<name>/frames/*.jpg       (or img/*.jpg as in OTB, or the images beside the file)

Ground-truth fields may be separated by spaces, tabs, commas or semicolons (OTB mixes them).
Large training sets nest one level deeper (LaSOT: `<root>/<category>/<name>/groundtruth.txt`,
frames in `img/`) and mark frames where the target is not visible, which only the training
reader (`read_training_boxes`) accepts: a zero, negative or NaN box, GOT-10k's `absence.txt`
(one 0/1 a frame) and LaSOT's `full_occlusion.txt` / `out_of_view.txt` (0/1 on one line).
Boxes here are (x, y, w, h) as in the files and in OpenCV; `hart_tf.utils.boxes.xywh_to_yxhw`
turns them into the (y, x, h, w) order of the rest of hart_tf. NumPy and PIL only; never
imports the model.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hart_tf.data.errors import DataError
from hart_tf.data.images import read_image

GROUNDTRUTH = "groundtruth.txt"
# Per-frame 0/1 flags of frames without a visible target: GOT-10k, then LaSOT's two.
ABSENCE_FILES = ("absence.txt", "full_occlusion.txt", "out_of_view.txt")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Where frames live inside a sequence folder: our clips, OTB, then GOT-10k (beside the file).
FRAME_DIRS = ("frames", "img", ".")

_SEPARATORS = re.compile(r"[\s,;]+")
_DIGITS = re.compile(r"(\d+)")


def natural_sort_key(name: str | os.PathLike) -> tuple:
    """Sort key that orders embedded numbers by value: frame2 before frame10.

    A Path is keyed by its file name. Case is ignored so that `B.jpg` sorts beside `b.jpg`.
    """
    text = Path(name).name if isinstance(name, os.PathLike) else str(name)
    # re.split with a group alternates text, number, text, ... so equal positions compare alike.
    parts = _DIGITS.split(text.lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def list_sequences(root: str | os.PathLike) -> list[str]:
    """Sorted names of the folders in `root` that hold a groundtruth.txt."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such clips folder")
    return sorted(p.name for p in root.iterdir() if (p / GROUNDTRUTH).is_file())


def find_sequences(root: str | os.PathLike) -> list[str]:
    """Sorted names of the sequence folders one or two levels under `root`.

    A folder with a groundtruth.txt is a sequence (GOT-10k, OTB: `name`); the folders of one
    without are searched once more (LaSOT: `category/name`, a relative POSIX path). Sequence
    folders are not looked into, so the frames of a large dataset are never listed here.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such clips folder")
    names = []
    for p in root.iterdir():
        if (p / GROUNDTRUTH).is_file():
            names.append(p.name)
        elif p.is_dir():
            names += [f"{p.name}/{q.name}" for q in p.iterdir() if (q / GROUNDTRUTH).is_file()]
    return sorted(names)


def _read_rows(path: Path, strict: bool) -> np.ndarray:
    """The ground-truth file's rows as float32 [N, 4]; see the two readers below."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # -sig drops a Windows BOM
    except FileNotFoundError as e:
        raise DataError(f"{path}: no such ground-truth file") from e
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable ground-truth file ({e})") from e
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{path}: ground-truth file has no boxes")
    boxes = np.empty((len(lines), 4), np.float32)  # (N, 4)
    for i, line in enumerate(lines):
        where = f"{path}:{i + 1}"
        fields = [f for f in _SEPARATORS.split(line.strip()) if f]
        if len(fields) != 4:
            raise DataError(f"{where}: expected 4 numbers x y w h, got {len(fields)}: {line!r}")
        try:
            box = [float(f) for f in fields]
        except ValueError as e:
            raise DataError(f"{where}: not a number in {line!r}") from e
        if strict and not np.all(np.isfinite(box)):
            raise DataError(f"{where}: non-finite value in {line!r}")
        if strict and (box[2] <= 0 or box[3] <= 0):
            raise DataError(f"{where}: width and height must be > 0, got w={box[2]} h={box[3]}")
        boxes[i] = box
    return boxes


def read_groundtruth(path: str | os.PathLike) -> np.ndarray:
    """Reads one `x y w h` box per line into float32 [N, 4].

    Trailing blank lines are ignored; a blank line before the last box, a row without exactly
    four numbers, a non-finite value or a width/height <= 0 raises DataError naming file:line.
    """
    return _read_rows(Path(path), strict=True)


def read_training_boxes(seq_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A sequence's boxes for training, where the target may be absent from some frames.

    Rows are read as `read_groundtruth` reads them, except that a NaN, zero or negative box
    marks a frame without a visible target, as a 1 in any of `ABSENCE_FILES` does (each, when
    present, holds one 0/1 flag per box, separated by newlines or commas).

    Returns:
        `boxes_xywh` float32 [N, 4] (absent frames' rows set to 0) and `present` bool [N].
    """
    seq_dir = Path(seq_dir)
    boxes = _read_rows(seq_dir / GROUNDTRUTH, strict=False)  # (N, 4)
    present = np.all(np.isfinite(boxes), axis=1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    for name in ABSENCE_FILES:
        path = seq_dir / name
        if not path.is_file():
            continue
        try:
            fields = [f for f in _SEPARATORS.split(path.read_text(encoding="utf-8-sig")) if f]
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: unreadable ({e})") from e
        bad = [f for f in fields if f not in ("0", "1")]
        if bad:
            raise DataError(f"{path}: flags must be 0 or 1, got {bad[0]!r}")
        if len(fields) != len(boxes):
            raise DataError(f"{path}: {len(fields)} flags but {len(boxes)} boxes in "
                            f"{GROUNDTRUTH}")
        present &= np.array(fields) == "0"
    boxes[~present] = 0.0
    return boxes, present


def frame_paths(seq_dir: str | os.PathLike) -> list[Path]:
    """The .jpg/.jpeg/.png files of a sequence in natural order.

    `seq_dir` may be the images folder itself or a sequence folder holding `frames/` or
    `img/`; raises DataError when no image is found.
    """
    seq_dir = Path(seq_dir)
    if not seq_dir.is_dir():
        raise DataError(f"{seq_dir}: no such frames folder")
    for sub in FRAME_DIRS:
        folder = seq_dir / sub
        if not folder.is_dir():
            continue
        paths = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        if paths:
            return sorted(paths, key=natural_sort_key)
    raise DataError(f"{seq_dir}: no {'/'.join(IMAGE_SUFFIXES)} frames found")


def load_frame(path: str | os.PathLike) -> np.ndarray:
    """Decodes one frame to uint8 RGB [H, W, 3]; greyscale and RGBA are converted."""
    return read_image(os.fspath(path))


def load_sequence(seq_dir: str | os.PathLike, max_frames: int | None = None) -> dict:
    """Loads a sequence folder's frames and boxes.

    Args:
        seq_dir: folder with groundtruth.txt and its frames (see `frame_paths`).
        max_frames: keep only the first `max_frames` frames and boxes (>= 1); all if None.

    Returns:
        dict with `frames` uint8 [T, H, W, 3] RGB, `boxes_xywh` float32 [T, 4] and `name`
        (the folder name).
    """
    seq_dir = Path(seq_dir)
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"load_sequence: max_frames must be >= 1, got {max_frames}")
    boxes = read_groundtruth(seq_dir / GROUNDTRUTH)
    # Full counts, before truncation, so that a broken folder fails whatever max_frames.
    paths = sequence_frames(seq_dir, len(boxes))
    if max_frames is not None:
        paths, boxes = paths[:max_frames], boxes[:max_frames]
    return {"frames": load_frames(paths), "boxes_xywh": boxes, "name": seq_dir.name}


def sequence_frames(seq_dir: str | os.PathLike, num_boxes: int) -> list[Path]:
    """`frame_paths(seq_dir)`, checked to match the `num_boxes` boxes of its ground truth."""
    paths = frame_paths(seq_dir)
    if len(paths) != num_boxes:
        raise DataError(f"{seq_dir}: {len(paths)} frames but {num_boxes} boxes in {GROUNDTRUTH}")
    return paths


def iter_frames(paths: list[Path]) -> Iterator[np.ndarray]:
    """Decodes frames of one size one at a time, uint8 RGB [H, W, 3] each (a long clip never
    held whole); DataError if a size differs from the first frame's."""
    first = load_frame(paths[0])
    yield first
    for p in paths[1:]:
        yield read_image(os.fspath(p), expected_size=first.shape[:2])


def load_frames(paths: list[Path]) -> np.ndarray:
    """Decodes frames of one size to uint8 RGB [T, H, W, 3]; DataError if a size differs."""
    decoded = iter_frames(paths)
    first = next(decoded)
    frames = np.empty((len(paths), *first.shape), np.uint8)  # (T, H, W, 3)
    frames[0] = first
    for i, frame in enumerate(decoded, start=1):
        frames[i] = frame
    return frames
