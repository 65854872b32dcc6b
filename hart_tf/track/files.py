"""Tracking one object through a folder of frames or a video file, to a box file.

The library behind `python -m hart_tf.track` (`hart_tf.cli.track`):

Usage:
    python -m hart_tf.track --model=models/hart/1 --frames=clip/ --init=120,40,32,64 \\
        --out=boxes.txt [--gif=tracked.gif]
    python -m hart_tf.track --model=checkpoints/hart --frames=clip.mp4 --init=... --out=...
    python -m hart_tf.track --model=pretrained --frames=clip/ --init=120,40,32,64 --out=boxes.txt

`--model` is a SavedModel export folder, a `.keras` checkpoint, a run folder or `pretrained`
(the model shipped in the package, `hart_tf/pretrained/MODEL_CARD.md`). Frames are
the folder's .jpg/.jpeg/.png files in natural order (frame2 before frame10); a video file as
`--frames` needs the video extra (`pip install -e '.[video]'`). `--init` is the first frame's
box x,y,w,h in pixels. `--out` gets one `x,y,w,h` line per frame, the first being the `--init`
box; `--gif` shows the tracked box (pred) and the glimpse (att). Outputs are written only
after the last frame, each under a temporary name then renamed, so they are complete or absent.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hart_tf import pretrained, viz
from hart_tf.data.clips import frame_paths
from hart_tf.data.errors import DataError
from hart_tf.data.images import read_image
from hart_tf.model.saving import CheckpointError
from hart_tf.track.tracker import Tracker
from hart_tf.utils.boxes import xywh_to_yxhw
from hart_tf.utils.files import write_text_atomic

VIDEO_HINT = "pip install -e '.[video]'"
GIF_MAX_SIDE = 480  # GIF frames are shrunk to this, so a long clip stays a small file
GIF_FPS = 10.0


def parse_init(text: str) -> np.ndarray:
    """`"x,y,w,h"` -> float32 (4,), finite with w, h > 0."""
    try:
        box = np.array([float(v) for v in text.split(",")], np.float32)
    except ValueError:
        box = np.zeros(0, np.float32)
    if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"--init must be four numbers x,y,w,h with w, h > 0, got {text!r}")
    return box


def check_init_in_frame(box: np.ndarray, frame_shape: tuple[int, ...]) -> None:
    """Refuses a box of which less than half lies inside the frame."""
    height, width = frame_shape[:2]
    x, y, w, h = (float(v) for v in box)
    inside_w = max(0.0, min(x + w, width) - max(x, 0.0))
    inside_h = max(0.0, min(y + h, height) - max(y, 0.0))
    if inside_w * inside_h < 0.5 * w * h:
        raise ValueError(
            f"--init box {x:g},{y:g},{w:g},{h:g} lies outside the first frame "
            f"({width}x{height} pixels): at least half of it must be inside"
        )


def load_tracker(path: str | os.PathLike) -> Tracker:
    """A SavedModel export folder, a `.keras` checkpoint, a run folder or `pretrained` (the
    model shipped in the package) -> Tracker."""
    if pretrained.is_pretrained(path):
        return Tracker.from_pretrained()
    p = Path(path)
    if not p.exists():
        raise ValueError(f"--model: {p} does not exist")
    if (p / "saved_model.pb").is_file():
        return Tracker.from_saved_model(p)
    try:
        return Tracker.from_checkpoint(p)
    except CheckpointError as e:
        raise ValueError(str(e)) from None
    except (ValueError, OSError) as e:  # Keras' own message for a broken or foreign file
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"--model: {p}: cannot load it as a HART model ({reason})") from None


def _folder_frames(folder: str) -> Iterator[np.ndarray]:
    try:
        paths = frame_paths(folder)
    except DataError as e:
        raise ValueError(f"--frames: {e}") from None
    first = None
    for path in paths:
        try:
            frame = read_image(os.fspath(path), expected_size=first)
        except DataError as e:
            raise ValueError(f"--frames: {e}") from None
        first = first or frame.shape[:2]
        yield frame


def _video_frames(path: str) -> Iterator[np.ndarray]:
    try:
        import imageio.v3 as iio
    except ImportError:
        raise ValueError(f"--frames: reading a video needs the video extra: {VIDEO_HINT}") from None
    if not Path(path).is_file():
        raise ValueError(f"--frames: {path}: no such file")
    try:
        for frame in iio.imiter(path):
            frame = np.asarray(frame)
            if frame.ndim == 2:  # grey video
                frame = np.repeat(frame[..., None], 3, axis=-1)
            yield frame[..., :3].astype(np.uint8)
    # imageio's plugins raise many types for a file they cannot decode; all mean the same.
    except Exception as e:
        message = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"--frames: {path}: unreadable video ({message})") from None


def _gif_frame(frame: np.ndarray, boxes_xywh: dict[str, np.ndarray]) -> np.ndarray:
    from PIL import Image

    scale = min(1.0, GIF_MAX_SIDE / max(frame.shape[:2]))
    if scale < 1.0:
        size = (round(frame.shape[1] * scale), round(frame.shape[0] * scale))
        frame = np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))
    # viz draws (y, x, h, w) boxes.
    return viz.draw_boxes(frame, {k: xywh_to_yxhw(b) * scale
                                  for k, b in boxes_xywh.items()})


def track(model: str, init: str, out: str, frames: str | None = None,
          video: str | None = None, gif: str | None = None) -> dict:
    """Tracks the `init` box through `frames` (a folder) or `video`; writes `out` (and `gif`).

    Returns:
        dict with `boxes` float32 (T, 4) x,y,w,h, `frames` T, `fps` (tracker updates only)
        and `overall_fps` (with decoding).
    """
    if bool(frames) == bool(video):
        raise ValueError("give exactly one of frames (a folder of images) and video (a file)")
    box0 = parse_init(init)
    source = _folder_frames(frames) if frames else _video_frames(video)
    first = next(source, None)
    if first is None:
        raise ValueError(f"--frames: {video}: no frames")  # a folder without images failed above
    check_init_in_frame(box0, first.shape)
    tracker = load_tracker(model)

    start = time.perf_counter()
    tracker.init(first, box0)
    boxes = [box0]
    pictures = [_gif_frame(first, {"pred": box0})] if gif else []
    update_s = 0.0
    for frame in source:
        t = time.perf_counter()
        box = tracker.update(frame)
        update_s += time.perf_counter() - t
        boxes.append(box)
        if gif:
            pictures.append(_gif_frame(frame, {"pred": box, "att": tracker.last["att_box"]}))
    total_s = time.perf_counter() - start
    boxes = np.stack(boxes).astype(np.float32)  # (T, 4)

    if gif:
        viz.save_gif(pictures, gif, fps=GIF_FPS)
    write_text_atomic(Path(out), "".join(f"{x:.2f},{y:.2f},{w:.2f},{h:.2f}\n"
                                          for x, y, w, h in boxes))
    steps = len(boxes) - 1
    return {"boxes": boxes, "frames": len(boxes),
            "fps": steps / update_s if steps else float("nan"),
            "overall_fps": len(boxes) / max(total_s, 1e-12)}
