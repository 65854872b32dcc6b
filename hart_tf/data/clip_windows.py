"""Training windows cut from real clips: real motion and real appearance for HART.

`ClipWindows` holds sequences in the common single-object layout (`hart_tf.data.clips`; a
handful named one by one, or `all` of a large set such as GOT-10k or LaSOT) and samples
training sequences from them: T frames of one clip at a random start, every frame, every
other one or every third one (faster apparent motion), forwards or backwards in time, seen
through one crop window for the whole sequence, mirrored at random and, with
`colour_jitter`, with one random brightness, contrast and saturation for the whole sequence
(boxes unchanged). The crop has the clip's own aspect ratio and spans from the whole frame
(the view the tracker gets when it is evaluated on a clip) down to a zoom that still holds
the object's every visible box of the window with a margin, so the object stays in view and
changes its apparent size and place from one sequence to the next. Frames are cut and
resized with PIL's antialiased bilinear filter, as the tracker resizes clip frames, into the
same dict as the synthetic data: `frames` uint8 (T, H, W, 3), `boxes` float32 (T, 4) as (y,
x, h, w) in pixels of the resized crop, `presence` float32 (T,). Each window is drawn as a
`WindowPlan` (which frames, in which order, which crop, mirrored or not, which colours) and
then rendered, so every transform can be checked on its own.

`validation_windows` cuts a fixed, unaugmented set from other clips (whole frames, every frame,
forwards, evenly spaced starts): the view the tracker gets when it is evaluated on a clip.

Frames where the target is not visible (`clips.read_training_boxes`: GOT-10k's absence.txt,
LaSOT's occlusion and out-of-view flags, empty boxes) get presence 0 and the last visible
box before them in the window; every loss term and the train IoU mask such steps out
(`hart_tf.model.losses.time_weighted_mean`), and a real box keeps their values finite. A window
starts and ends on a visible target (played backwards, its last frame is its first), since
the tracker is initialised from the first box.

Memory: when the decoded frames fit in `cache_mb` (estimated from each sequence's first-frame
header, frames x height x width x 3 bytes: 347 MB for the six clips of
../shared/data/real_clips), they are decoded once and held. Otherwise only the frame paths
and boxes are held and a window's frames are decoded when it is sampled; JPEGs are then
decoded at the largest DCT reduction (1/2, 1/4, 1/8; PIL's `Image.draft`) that leaves the
crop at least `image_size`, which is what makes HD frames affordable. Deterministic either
way: a window is a pure function of the generator it is given. NumPy and PIL only; never
imports the model.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from hart_tf.data import clips
from hart_tf.data.errors import DataError
from hart_tf.data.images import RESAMPLE
from hart_tf.data.images import image_size as header_size
from hart_tf.data.pipeline import stack_sequences
from hart_tf.utils.boxes import xywh_to_yxhw

# The crop is at least this many times the extent of the object's boxes over the window.
MIN_CONTEXT = 1.3
# Frame steps a window may take: 1 (the clip's own speed) to 3 (three times as fast).
STRIDES = (1, 2, 3)
# `names` value that takes every sequence of the folder.
ALL = "all"


@dataclasses.dataclass(frozen=True)
class WindowPlan:
    """What one training window shows, drawn before any pixel is decoded.

    Attributes:
        clip: index of the clip (in `ClipWindows.names` less `skipped`).
        index: (T,) int, the clip's frames in the order shown (a constant step of 1-3, or
            its reverse).
        crop: (4,) float, (y0, x0, h, w) in the clip's frame pixels.
        flip: mirrored left to right.
        colour: (3,) float, brightness, contrast and saturation factors (1: unchanged).
    """

    clip: int
    index: np.ndarray
    crop: np.ndarray
    flip: bool
    colour: np.ndarray


def short_list(names: Sequence[str], most: int = 10) -> str:
    """`a, b, c` or, for long lists, the first `most` and how many more (one line)."""
    shown = ", ".join(names[:most]) or "none"
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


class ClipWindows:
    """Random training sequences from clips of a folder in the common layout.

    Args:
        root: folder of sequence folders (or of category folders of them, as LaSOT), each
            with groundtruth.txt and its frames.
        names: the clips to take windows from (names as `clips.find_sequences` gives them),
            or `["all"]` for every sequence found.
        image_size: (H, W) of the windows' frames (the model's input size).
        cache_mb: hold the decoded frames when they fit in this many MiB; else decode each
            window's frames when it is sampled.
        draft: in that lazy mode, decode JPEGs at a DCT reduction (see the module docstring).
        strides: the frame steps a window may take (each clip draws among those it is long
            enough for).
        colour_jitter: each window's brightness, contrast and saturation factors are drawn
            uniformly from [1 - colour_jitter, 1 + colour_jitter] (0: colours unchanged).

    Attributes:
        lazy: whether frames are decoded per window.
        skipped: named sequences without a single frame with the target visible.

    Raises:
        DataError: `root` or a clip cannot be read (names the file), a name is not a clip of
            `root` (lists those that are), or no clip shows its target.
    """

    def __init__(self, root: str | os.PathLike, names: Sequence[str],
                 image_size: tuple[int, int], cache_mb: float = 2048.0, draft: bool = True,
                 colour_jitter: float = 0.0, strides: Sequence[int] = STRIDES):
        if not 0.0 <= colour_jitter < 1.0:
            raise ValueError(f"colour_jitter must be in [0, 1), got {colour_jitter}")
        self.colour_jitter = float(colour_jitter)
        self.strides = tuple(int(s) for s in strides)
        if not self.strides or min(self.strides) < 1:
            raise ValueError(f"strides must be positive integers, got {strides}")
        root = Path(root)
        found = clips.find_sequences(root)
        names = list(dict.fromkeys(names))  # in the order given, once each
        if names == [ALL]:
            names = found
            if not names:
                raise DataError(f"{root}: no sequence folder with a {clips.GROUNDTRUTH}, nor "
                                "one level further down")
        unknown = [n for n in names if n not in set(found)]
        if unknown:
            raise DataError(f"{root}: no clip {short_list(unknown)} (found "
                            f"{short_list(found)})")
        if not names:
            raise DataError(f"{root}: no clip named to take training windows from")
        self.root = root
        self.names = names
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.draft = draft
        self.skipped: list[str] = []
        self.clip_names: list[str] = []  # `names` less `skipped`: the clips sampled
        self._dirs: list[Path] = []
        self._files: list[np.ndarray] = []  # frame file names as bytes (N,), per clip
        self._hw: list[tuple[int, int]] = []  # frame (H, W), per clip
        self._boxes: list[np.ndarray] = []  # (N, 4) (y, x, h, w) frame pixels, per clip
        self._present: list[np.ndarray | None] = []  # (N,) bool, None when all present
        for name in names:
            seq_dir = root / name
            boxes, present = clips.read_training_boxes(seq_dir)
            paths = clips.sequence_frames(seq_dir, len(boxes))
            if not present.any():
                self.skipped.append(name)
                continue
            self.clip_names.append(name)
            self._dirs.append(paths[0].parent)
            self._files.append(np.array([os.fsencode(p.name) for p in paths]))
            self._hw.append(header_size(os.fspath(paths[0])))
            self._boxes.append(xywh_to_yxhw(boxes))
            self._present.append(None if present.all() else present)
        if not self._boxes:
            raise DataError(f"{root}: none of the {len(names)} training clips has a frame "
                            "with its target visible")
        self._lengths = np.array([len(b) for b in self._boxes])  # frames per clip
        self._windows_by_length: dict[int, tuple[np.ndarray, list[dict]]] = {}
        need = sum(n * h * w * 3 for n, (h, w) in zip(self._lengths, self._hw, strict=True))
        self.lazy = need > cache_mb * 2**20
        self._frames: list[list[Image.Image]] = []
        if not self.lazy:
            for i, hw in enumerate(self._hw):
                self._frames.append([Image.fromarray(decode_frame(self._path(i, j), hw))
                                     for j in range(self._lengths[i])])

    @property
    def num_frames(self) -> int:
        return int(self._lengths.sum())

    @property
    def num_clips(self) -> int:
        """Clips windows are taken from (the named ones less `skipped`)."""
        return len(self._lengths)

    def held_out(self) -> list[str]:
        """The clips of the folder that no window is taken from."""
        taken = set(self.names)
        return [n for n in clips.find_sequences(self.root) if n not in taken]

    def _path(self, clip: int, i: int) -> Path:
        return self._dirs[clip] / os.fsdecode(self._files[clip][i])

    def _windows(self, seq_len: int) -> tuple[np.ndarray, list[dict]]:
        """Per clip, its sampling weight (its frames, 0 when it has no window of `seq_len`)
        and the strides it can take, each with its window starts (None: every start)."""
        if seq_len not in self._windows_by_length:  # computed once per curriculum length
            weight, options = np.zeros(len(self._lengths), np.int64), []
            for i, (n, present) in enumerate(zip(self._lengths, self._present, strict=True)):
                starts = {}
                for s in self.strides:
                    span = (seq_len - 1) * s + 1
                    if span > n:
                        continue
                    if present is None:
                        starts[s] = None
                    elif (ok := np.flatnonzero(present[:n - span + 1] & present[span - 1:])).size:
                        starts[s] = ok  # both ends visible: either direction starts on it
                weight[i] = n if starts else 0
                options.append(starts)
            self._windows_by_length[seq_len] = (weight, options)
        return self._windows_by_length[seq_len]

    def unusable(self, seq_len: int) -> int:
        """How many clips have no window of `seq_len` frames (never sampled at that length)."""
        return int((self._windows(seq_len)[0] == 0).sum())

    def check_length(self, seq_len: int) -> None:
        """Raises DataError when no clip has a window of `seq_len` frames."""
        if self._windows(seq_len)[0].any():
            return
        if all(p is None for p in self._present):
            raise DataError(f"{self.root}: training clips {short_list(self.names)} have at "
                            f"most {int(self._lengths.max())} frames, fewer than sequences of "
                            f"{seq_len}")
        raise DataError(f"{self.root}: no training clip has a window of {seq_len} frames that "
                        "starts and ends with its target visible")

    def sample(self, rng: np.random.Generator, seq_len: int) -> dict[str, np.ndarray]:
        """One training window of `seq_len` frames (see the module docstring)."""
        return self.render(self.plan(rng, seq_len))

    def plan(self, rng: np.random.Generator, seq_len: int) -> WindowPlan:
        """Draws a window of `seq_len` frames: clip, frames, crop, mirror and colours."""
        self.check_length(seq_len)
        weight, options = self._windows(seq_len)
        clip = int(rng.choice(len(weight), p=weight / weight.sum()))
        n = int(self._lengths[clip])
        strides = [s for s in self.strides if s in options[clip]]
        stride = strides[int(rng.integers(len(strides)))]
        starts = options[clip][stride]
        if starts is None:
            start = int(rng.integers(n - (seq_len - 1) * stride))
        else:
            start = int(starts[rng.integers(len(starts))])
        index = start + stride * np.arange(seq_len)  # (T,)
        if rng.random() < 0.5:
            index = index[::-1]  # played backwards: as good a motion as forwards
        boxes, present = self._window_boxes(clip, index)
        crop = _crop_window(rng, boxes[present], self._hw[clip])  # (y0, x0, h, w)
        flip = bool(rng.random() < 0.5)
        # Drawn whenever jitter is on (the stream depends on whether it is, not on its size);
        # without it the stream is the one from before colour jitter existed.
        colour = 1.0 + self.colour_jitter * rng.uniform(-1.0, 1.0, 3) if self.colour_jitter \
            else np.ones(3)  # (3,)
        return WindowPlan(clip, index, crop, flip, colour)

    def _window_boxes(self, clip: int, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (T, 4) in frame pixels and presence (T,) bool of frames `index` of `clip`;
        absent steps hold the last visible box (the first is visible)."""
        boxes = self._boxes[clip][index]  # (T, 4) frame pixels
        present = np.ones(len(index), bool) if self._present[clip] is None else \
            self._present[clip][index]
        if not present.all():
            boxes = boxes[np.maximum.accumulate(np.where(present, np.arange(len(index)), 0))]
        return boxes, present

    def render(self, plan: WindowPlan) -> dict[str, np.ndarray]:
        """The frames, boxes and presence of a planned window (decoding its frames)."""
        clip, index, crop = plan.clip, plan.index, plan.crop
        boxes, present = self._window_boxes(clip, index)
        hw = self._hw[clip]
        if self.lazy:
            paths = [self._path(clip, i) for i in index]
            reduce = _draft_size(crop, hw, self.image_size) if self.draft else None
            frames = [Image.fromarray(decode_frame(p, hw, reduce)) for p in paths]
        else:
            frames = [self._frames[clip][i] for i in index]
        window = _render_window(frames, boxes, crop, self.image_size, flip=plan.flip,
                                frame_hw=hw, presence=present.astype(np.float32))
        window["frames"] = jitter_colours(window["frames"], plan.colour)
        return window

    def whole_frame_plans(self, seq_len: int, per_clip: int) -> list[WindowPlan]:
        """Up to `per_clip` unaugmented windows of each clip: whole frames, every frame,
        forwards, at evenly spaced starts where the target is visible at both ends."""
        plans = []
        for clip, starts in enumerate(self._windows(seq_len)[1]):
            if 1 not in starts:
                continue
            ok = starts[1] if starts[1] is not None else \
                np.arange(self._lengths[clip] - seq_len + 1)
            picks = ok[np.unique(np.linspace(0, len(ok) - 1, per_clip).round().astype(int))]
            crop = np.array([0.0, 0.0, *self._hw[clip]])
            plans += [WindowPlan(clip, int(s) + np.arange(seq_len), crop, False, np.ones(3))
                      for s in picks]
        return plans


def jitter_colours(frames: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """uint8 frames (T, H, W, 3) with brightness, contrast and saturation scaled by `colour`
    (3,), the same for every frame; factors of 1 return the frames unchanged."""
    if np.all(colour == 1.0):
        return frames
    brightness, contrast, saturation = (float(c) for c in colour)
    f = frames.astype(np.float32) * brightness  # (T, H, W, 3)
    grey = f @ np.array([0.299, 0.587, 0.114], np.float32)  # (T, H, W) luma
    f = grey[..., None] + saturation * (f - grey[..., None])
    f = grey.mean() + contrast * (f - grey.mean())  # one mean over the window: no flicker
    return np.clip(f, 0, 255).round().astype(np.uint8)


def _draft_size(crop: np.ndarray, frame_hw: tuple[int, int],
                image_size: tuple[int, int]) -> tuple[int, int]:
    """The (W, H) to ask `Image.draft` for: the frame at the scale that makes `crop`
    (y0, x0, h, w) exactly `image_size`, or the full frame where the crop is smaller."""
    scale = min(1.0, max(image_size[0] / float(crop[2]), image_size[1] / float(crop[3])))
    return (max(1, math.ceil(frame_hw[1] * scale)), max(1, math.ceil(frame_hw[0] * scale)))


def decode_frame(path: Path, frame_hw: tuple[int, int],
                 draft: tuple[int, int] | None = None) -> np.ndarray:
    """Decodes a frame of size `frame_hw` to uint8 RGB; with `draft` (W, H), a JPEG at the
    largest DCT reduction still at least that large (other formats at full size)."""
    try:
        with Image.open(path) as img:
            if (img.height, img.width) != tuple(frame_hw):
                raise DataError(f"{path}: image is {img.width}x{img.height} but the sequence's "
                                f"first frame is {frame_hw[1]}x{frame_hw[0]}")
            if draft is not None:
                img.draft("RGB", draft)
            img.load()  # decode now, inside the try, so a truncated file fails here
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError as e:
        raise DataError(f"{path}: no such image file") from e
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: unreadable or corrupt image ({e})") from e


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
                   image_size: tuple[int, int], flip: bool, frame_hw: tuple[int, int],
                   presence: np.ndarray) -> dict[str, np.ndarray]:
    """Cuts `crop` (y0, x0, h, w) in pixels of `frame_hw` out of every frame (which may be
    decoded smaller: the crop is scaled with it), resized to `image_size` (H, W)."""
    h, w = image_size
    y0, x0, ch, cw = (float(v) for v in crop)
    out = np.empty((len(frames), h, w, 3), np.uint8)  # (T, H, W, 3)
    for t, frame in enumerate(frames):
        sy, sx = frame.height / frame_hw[0], frame.width / frame_hw[1]  # 1 at full size
        box = (x0 * sx, y0 * sy, (x0 + cw) * sx, (y0 + ch) * sy)
        out[t] = np.asarray(frame.resize((w, h), RESAMPLE, box=box))
    scale = np.array([h / ch, w / cw, h / ch, w / cw], np.float32)
    yxhw = (boxes - np.array([y0, x0, 0, 0], np.float32)) * scale  # (T, 4) window pixels
    if flip:
        out = out[:, :, ::-1]
        yxhw[:, 1] = w - yxhw[:, 1] - yxhw[:, 3]
    return {"frames": np.ascontiguousarray(out), "boxes": yxhw.astype(np.float32),
            "presence": presence}


def window_batch(windows: ClipWindows, rng: np.random.Generator, n: int,
                 seq_len: int) -> dict[str, np.ndarray]:
    """`n` windows stacked: frames (n, T, H, W, 3), boxes (n, T, 4), presence (n, T)."""
    return stack_sequences([windows.sample(rng, seq_len) for _ in range(n)])


def clip_group(name: str) -> str:
    """The group of a clip for reports by source: its name up to the first `_` (`davis`,
    `uav`), or "" for a name without one."""
    return name.split("_", 1)[0] if "_" in name else ""


def validation_windows(root: str | os.PathLike, names: Sequence[str],
                       image_size: tuple[int, int], seq_len: int,
                       n: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """A fixed validation set of about `n` windows of `seq_len` frames from the clips `names`
    of `root`: as many from each clip (`ClipWindows.whole_frame_plans`: whole frames, every
    frame, forwards, no colour change), in the order of `names`.

    Returns:
        frames (N, T, H, W, 3) uint8, boxes (N, T, 4), presence (N, T) as `window_batch`, and
        the clip name of each of the N windows.

    Raises:
        DataError: a clip cannot be read, or none has a window of `seq_len` frames.
    """
    windows = ClipWindows(root, names, image_size)
    plans = windows.whole_frame_plans(seq_len, max(1, math.ceil(n / windows.num_clips)))
    if not plans:
        raise DataError(f"{root}: no validation clip ({short_list(windows.names)}) has a "
                        f"window of {seq_len} frames with its target visible at both ends")
    batch = stack_sequences([windows.render(p) for p in plans])
    return batch, [windows.clip_names[p.clip] for p in plans]
