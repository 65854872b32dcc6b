"""Decoded frames held in memory, so that training windows are cut without decoding.

A `FrameStore` decodes a dataset's training frames once (PIL in threads, which release the
GIL) into one uint8 array (N, H, W, 3) and serves windows of it by file path. The KITTI and
KTH loaders take one (`store=`): their samples are then byte-identical to decoding each
window from disk, only without the decoding.

For an accelerator, a loader can also give a window as the store's row indices
(`padded_rows`) instead of its pixels: with the array copied to the device once,
`cut_windows` gathers a whole batch there, so only the indices cross the host bus
(`hart_tf.train.sources` does this with `--render_on=device`). KITTI's training split at
187x621 is 6,222 frames, 2.2 GB; KTH's 42,552 frames at 160x120, 2.5 GB.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from hart_tf.data.errors import DataError
from hart_tf.data.images import read_image
from hart_tf.data.pipeline import padded_boxes


class FrameStore:
    """Frames of `paths` decoded at `size` = (H, W), addressed by path.

    Args:
        paths: image files; repeats are held once.
        size: (H, W) every frame is resized to.
        expected_sizes: for each path, the (H, W) its file must have (a sequence's first
            frame's), or None to accept any.
        threads: decoding threads.
    """

    def __init__(
        self,
        paths: Sequence[str],
        size: tuple[int, int],
        expected_sizes: Sequence[tuple[int, int] | None] | None = None,
        threads: int = 8,
    ):
        expected = dict(zip(paths, expected_sizes, strict=True)) if expected_sizes else {}
        unique = list(dict.fromkeys(paths))
        self.size = tuple(size)
        self.row = {path: i for i, path in enumerate(unique)}
        self.frames = np.empty((len(unique), *self.size, 3), np.uint8)  # (N, H, W, 3)

        def decode(i: int) -> None:
            self.frames[i] = read_image(unique[i], self.size, expected.get(unique[i]))

        with ThreadPoolExecutor(max(1, threads)) as pool:
            list(pool.map(decode, range(len(unique))))  # list() re-raises a DataError

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def nbytes(self) -> int:
        return self.frames.nbytes

    def rows(self, paths: Sequence[str]) -> np.ndarray:
        """int32 (L,) row of each path in `frames`."""
        try:
            return np.array([self.row[p] for p in paths], np.int32)
        except KeyError as e:
            raise DataError(f"{e.args[0]}: not among the {len(self)} frames held in memory "
                            "(only the training split's frames are)") from None

    def take(self, paths: Sequence[str]) -> np.ndarray:
        """uint8 (L, H, W, 3): the frames of `paths`, as `read_images` would decode them."""
        return self.frames[self.rows(paths)]


def store_bytes(num_frames: int, size: tuple[int, int]) -> int:
    """Bytes a store of `num_frames` frames of `size` = (H, W) holds."""
    return num_frames * size[0] * size[1] * 3


def padded_rows(
    rows: np.ndarray, boxes: np.ndarray, seq_len: int, width: int, mirror: bool = False
) -> dict[str, np.ndarray]:
    """One window as store rows, the counterpart of `pipeline.padded_window`: rows int32
    (seq_len,) (padded steps point at row 0 and are blanked by `cut_windows`), boxes float32
    (seq_len, 4) in pixels of the stored frame (mirrored in x with `mirror`), presence
    float32 (seq_len,) and mirror bool."""
    padded = np.zeros((seq_len,), np.int32)
    padded[: len(rows)] = rows
    boxes, presence = padded_boxes(boxes, seq_len, width, mirror)
    return {"rows": padded, "boxes": boxes, "presence": presence, "mirror": np.array(bool(mirror))}


def cut_windows(frames, rows, mirror, presence):
    """A batch of windows gathered from a store's frames, in `keras.ops` (so on the device
    where `frames` lives): frames (N, H, W, 3) uint8, rows (B, T) int, mirror (B,) bool,
    presence (B, T). Returns uint8 (B, T, H, W, 3), zero on absent (padded) steps and flipped
    left to right where `mirror`: what stacking `padded_window`s gives."""
    from keras import ops

    x = ops.take(frames, rows, axis=0)  # (B, T, H, W, 3)
    x = ops.where(ops.reshape(mirror, (-1, 1, 1, 1, 1)), ops.flip(x, axis=3), x)
    keep = ops.reshape(presence > 0, (*ops.shape(presence), 1, 1, 1))
    return ops.where(keep, x, ops.zeros_like(x))
