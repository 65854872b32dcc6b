"""Training windows cut from real clips: real motion and real appearance for HART.

`ClipWindows` holds a few sequences in the common single-object layout (`hart_tf.data.clips`)
and samples training sequences from them: T frames of one clip at a random start, every
frame or every other one (faster apparent motion), forwards or backwards in time, seen
through one crop window for the whole sequence and mirrored at random. The crop has the
clip's own aspect ratio and spans from the whole frame (the view the tracker gets when it
is evaluated on a clip) down to a zoom that still holds the object's every box of the
window with a margin, so the object stays in view and changes its apparent size and place
from one sequence to the next. Frames are cut and resized with PIL's antialiased bilinear
filter, as the tracker resizes clip frames, into the same dict as the synthetic data:
`frames` uint8 (T, H, W, 3), `boxes` float32 (T, 4) as (y, x, h, w) in pixels of the
resized crop, `presence` float32 (T,) (the clips have a box on every frame).

The named clips' frames are decoded once and held in memory at their own size (frames x
height x width x 3 bytes: 347 MB for the six clips of ../shared/data/real_clips), which suits
a handful of clips, not a whole GOT-10k. Deterministic: a window is a pure function of the
generator it is given. NumPy and PIL only; never imports the model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from hart_tf.data import clips
from hart_tf.data.errors import DataError
from hart_tf.data.images import RESAMPLE
from hart_tf.data.pipeline import stack_sequences

# The crop is at least this many times the extent of the object's boxes over the window.
MIN_CONTEXT = 1.3
# Frame steps a window may take: 1 (the clip's own speed) or 2 (twice as fast).
STRIDES = (1, 2)


class ClipWindows:
    """Random training sequences from named clips of a folder in the common layout.

    Args:
        root: folder of sequence folders, each with groundtruth.txt and its frames.
        names: the clips to take windows from (folder names in `root`).
        image_size: (H, W) of the windows' frames (the model's input size).

    Raises:
        DataError: `root` or a clip cannot be read (names the file), or a name is not a clip
            of `root` (lists those that are).
    """

    def __init__(self, root: str | os.PathLike, names: Sequence[str],
                 image_size: tuple[int, int]):
        root = Path(root)
        found = clips.list_sequences(root)
        names = list(dict.fromkeys(names))  # in the order given, once each
        unknown = [n for n in names if n not in found]
        if unknown:
            raise DataError(f"{root}: no clip {', '.join(unknown)} (found "
                            f"{', '.join(found) or 'none'})")
        if not names:
            raise DataError(f"{root}: no clip named to take training windows from")
        self.root = root
        self.names = names
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self._frames: list[list[Image.Image]] = []
        self._boxes: list[np.ndarray] = []  # (N, 4) (y, x, h, w) frame pixels, per clip
        for name in names:
            seq = clips.load_sequence(root / name)
            self._frames.append([Image.fromarray(f) for f in seq["frames"]])
            self._boxes.append(clips.xywh_to_yxhw(seq["boxes_xywh"]))
        self._lengths = np.array([len(b) for b in self._boxes])  # frames per clip

    @property
    def num_frames(self) -> int:
        return int(self._lengths.sum())

    def held_out(self) -> list[str]:
        """The clips of the folder that no window is taken from."""
        return [n for n in clips.list_sequences(self.root) if n not in self.names]

    def check_length(self, seq_len: int) -> None:
        """Raises DataError when no clip has `seq_len` frames."""
        longest = int(self._lengths.max())
        if seq_len > longest:
            raise DataError(f"{self.root}: training clips {', '.join(self.names)} have at most "
                            f"{longest} frames, fewer than sequences of {seq_len}")

    def sample(self, rng: np.random.Generator, seq_len: int) -> dict[str, np.ndarray]:
        """One training window of `seq_len` frames (see the module docstring)."""
        self.check_length(seq_len)
        weight = self._lengths * (self._lengths >= seq_len)  # clips by frames, if long enough
        clip = int(rng.choice(len(weight), p=weight / weight.sum()))
        n = int(self._lengths[clip])
        strides = [s for s in STRIDES if (seq_len - 1) * s + 1 <= n]
        stride = strides[int(rng.integers(len(strides)))]
        span = (seq_len - 1) * stride + 1
        start = int(rng.integers(n - span + 1))
        index = start + stride * np.arange(seq_len)  # (T,)
        if rng.random() < 0.5:
            index = index[::-1]  # played backwards: as good a motion as forwards
        frames = [self._frames[clip][i] for i in index]
        boxes = self._boxes[clip][index]  # (T, 4) frame pixels
        crop = _crop_window(rng, boxes, frames[0].size[::-1])  # (y0, x0, h, w)
        return _render_window(frames, boxes, crop, self.image_size, flip=rng.random() < 0.5)


def _crop_window(rng: np.random.Generator, boxes: np.ndarray,
                 frame_hw: tuple[int, int]) -> np.ndarray:
    """A crop (y0, x0, h, w) inside the frame, of the frame's aspect, holding every box.

    Its scale is log-uniform between the smallest crop that holds the boxes' extent times
    `MIN_CONTEXT` and the whole frame; where the object is too large for that, the whole
    frame. It is placed uniformly among the positions that keep the boxes and the frame.
    """
    fh, fw = float(frame_hw[0]), float(frame_hw[1])
    top = np.clip(boxes[:, :2].min(0), 0, [fh, fw])  # (2,) extent of the object's boxes
    bottom = np.clip((boxes[:, :2] + boxes[:, 2:]).max(0), 0, [fh, fw])
    extent = np.maximum(bottom - top, 1.0)
    smallest = min(1.0, float((MIN_CONTEXT * extent / [fh, fw]).max()))
    zoom = float(np.exp(rng.uniform(np.log(smallest), 0.0)))  # crop size / frame size
    size = np.array([fh, fw]) * zoom
    # The crop's corner: low enough to hold the extent's end, high enough for its start.
    lo = np.clip(bottom - size, 0, np.array([fh, fw]) - size)
    hi = np.clip(top, lo, np.array([fh, fw]) - size)
    corner = lo + (hi - lo) * rng.random(2)
    return np.concatenate([corner, size])


def _render_window(frames: Sequence[Image.Image], boxes: np.ndarray, crop: np.ndarray,
                   image_size: tuple[int, int], flip: bool) -> dict[str, np.ndarray]:
    """Cuts `crop` (y0, x0, h, w) out of every frame, resized to `image_size` (H, W)."""
    h, w = image_size
    y0, x0, ch, cw = (float(v) for v in crop)
    out = np.empty((len(frames), h, w, 3), np.uint8)  # (T, H, W, 3)
    for t, frame in enumerate(frames):
        out[t] = np.asarray(frame.resize((w, h), RESAMPLE, box=(x0, y0, x0 + cw, y0 + ch)))
    scale = np.array([h / ch, w / cw, h / ch, w / cw], np.float32)
    yxhw = (boxes - np.array([y0, x0, 0, 0], np.float32)) * scale  # (T, 4) window pixels
    if flip:
        out = out[:, :, ::-1]
        yxhw[:, 1] = w - yxhw[:, 1] - yxhw[:, 3]
    return {"frames": np.ascontiguousarray(out), "boxes": yxhw.astype(np.float32),
            "presence": np.ones(len(frames), np.float32)}


def window_batch(windows: ClipWindows, rng: np.random.Generator, n: int,
                 seq_len: int) -> dict[str, np.ndarray]:
    """`n` windows stacked: frames (n, T, H, W, 3), boxes (n, T, 4), presence (n, T)."""
    return stack_sequences([windows.sample(rng, seq_len) for _ in range(n)])
