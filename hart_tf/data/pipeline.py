"""Batching shared by every dataset: NumPy stacking and a tf.data wrapper.

Loaders yield the per-sequence dict of `hart_tf.data` (frames, boxes, presence). The JAX
backend consumes NumPy batches straight from `batch_sequences` or an index -> batch function;
the TensorFlow backend gets the same batches through `tf_dataset`, which runs that function
in parallel inside `Dataset.map`. TensorFlow is imported only inside `tf_dataset`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

KEYS = ("frames", "boxes", "presence")
DTYPES = {"frames": np.uint8, "boxes": np.float32, "presence": np.float32}

BatchFn = Callable[[int], Mapping[str, np.ndarray]]


def padded_boxes(
    boxes: np.ndarray, seq_len: int, width: int, mirror: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """A window's L <= seq_len boxes (L, 4) (y, x, h, w) in pixels of frames `width` wide,
    mirrored left to right with `mirror`, as float32 (seq_len, 4) zero-padded, and the
    presence float32 (seq_len,), 0 on padded steps. The caller's boxes are not touched."""
    length = len(boxes)
    padded = np.zeros((seq_len, 4), np.float32)
    padded[:length] = boxes
    if mirror:
        padded[:length, 1] = width - padded[:length, 1] - padded[:length, 3]
    presence = np.zeros((seq_len,), np.float32)
    presence[:length] = 1.0
    return padded, presence


def padded_window(
    images: np.ndarray, boxes: np.ndarray, seq_len: int, mirror: bool = False
) -> dict[str, np.ndarray]:
    """One window of L <= seq_len frames as the per-sequence dict, zero-padded to seq_len.

    `images` (L, H, W, 3) uint8 and `boxes` (L, 4) float32 (y, x, h, w) in its pixels;
    `mirror` flips the window left to right, boxes with it. Padded steps have presence 0.
    """
    length, height, width = images.shape[:3]
    frames = np.zeros((seq_len, height, width, 3), np.uint8)  # (T, H, W, 3)
    frames[:length] = images[:, :, ::-1] if mirror else images
    boxes, presence = padded_boxes(boxes, seq_len, width, mirror)
    return {"frames": frames, "boxes": boxes, "presence": presence}


def epoch_order(count: int, seed: int | None, shuffle: bool = True,
                num_epochs: int | None = None) -> Iterator[int]:
    """Indices 0..count-1 once per epoch, in a new seeded permutation each epoch when
    `shuffle` (else in order); `num_epochs=None` repeats forever."""
    rng = np.random.default_rng(seed)
    epoch = 0
    while num_epochs is None or epoch < num_epochs:
        yield from (rng.permutation(count) if shuffle else range(count))
        epoch += 1


def stack_sequences(sequences: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stacks per-sequence dicts ([T, ...] arrays) into one batch dict ([B, T, ...])."""
    if not sequences:
        raise ValueError("stack_sequences: got no sequences")
    keys = list(sequences[0])
    out = {}
    for i, seq in enumerate(sequences):
        if list(seq) != keys:
            raise ValueError(
                f"stack_sequences: sequence {i} has keys {sorted(seq)}, expected {sorted(keys)}"
            )
    for key in keys:
        shapes = sorted({np.shape(seq[key]) for seq in sequences})
        if len(shapes) > 1:
            raise ValueError(
                f"stack_sequences: '{key}' differs in shape across the batch {shapes}; "
                "cut the sequences to one length first"
            )
        out[key] = np.stack([seq[key] for seq in sequences])
    return out


def batch_sequences(
    sequences: Iterable[Mapping[str, np.ndarray]], batch_size: int, drop_remainder: bool = True
) -> Iterator[dict[str, np.ndarray]]:
    """Groups a stream of per-sequence dicts into stacked batches of `batch_size`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pending = []
    for seq in sequences:
        pending.append(seq)
        if len(pending) == batch_size:
            yield stack_sequences(pending)
            pending = []
    if pending and not drop_remainder:
        yield stack_sequences(pending)


def check_batch(batch: Mapping[str, np.ndarray], batch_size: int, image_size: tuple[int, int]):
    """Raises a one-line ValueError unless `batch` has the keys, shapes and dtypes of a batch."""
    missing = [k for k in KEYS if k not in batch]
    if missing:
        raise ValueError(f"batch is missing {missing}; it has {sorted(batch)}")
    frames = batch["frames"]
    b, t = batch_size, frames.shape[1] if frames.ndim == 5 else -1
    want = {"frames": (b, t, *image_size, 3), "boxes": (b, t, 4), "presence": (b, t)}
    for key in KEYS:
        arr = batch[key]
        if arr.shape != want[key] or arr.dtype != DTYPES[key]:
            raise ValueError(
                f"batch['{key}'] is {arr.dtype}{list(arr.shape)}, expected "
                f"{np.dtype(DTYPES[key])}{list(want[key])}"
            )


def tf_dataset(
    batch_fn: BatchFn,
    *,
    batch_size: int,
    image_size: tuple[int, int],
    num_parallel_calls: int | None = None,
    start: int = 0,
    stop: int | None = None,
    prefetch: int | None = None,
) -> tf.data.Dataset:
    """The batches batch_fn(start), batch_fn(start + 1), ... as a tf.data.Dataset, in order.

    Args:
        batch_fn: batch index -> NumPy batch dict (frames uint8 [B, T, H, W, 3], boxes
            float32 [B, T, 4], presence float32 [B, T]); a pure function of the index, so
            parallel calls give the same stream as a plain loop.
        batch_size: B, for the static shape.
        image_size: (H, W), for the static shape. T stays dynamic (a curriculum changes it).
        num_parallel_calls: batches generated at once (tf.data.AUTOTUNE when None).
        start: first batch index (resuming a run).
        stop: one past the last index; None for an endless stream.
        prefetch: batches kept ready ahead of the consumer (tf.data.AUTOTUNE when None).

    Returns:
        A dataset of dicts with the keys of `hart_tf.data`.
    """
    import tensorflow as tf

    image_size = tuple(int(v) for v in image_size)
    autotune = tf.data.AUTOTUNE

    def generate(index: np.int64) -> tuple[np.ndarray, ...]:
        batch = batch_fn(int(index))
        check_batch(batch, batch_size, image_size)
        return tuple(batch[k] for k in KEYS)

    def load(index: tf.Tensor) -> dict[str, tf.Tensor]:
        arrays = tf.numpy_function(
            generate, [index], [tf.as_dtype(DTYPES[k]) for k in KEYS], stateful=False
        )
        shapes = [(batch_size, None, *image_size, 3), (batch_size, None, 4), (batch_size, None)]
        for arr, shape in zip(arrays, shapes, strict=True):
            arr.set_shape(shape)
        return dict(zip(KEYS, arrays, strict=True))

    indices = tf.data.Dataset.counter(start) if stop is None else tf.data.Dataset.range(start, stop)
    ds = indices.map(
        load,
        num_parallel_calls=autotune if num_parallel_calls is None else num_parallel_calls,
        deterministic=True,
    )
    # Generation runs on CPU threads while the model trains: keep batches ready ahead of it.
    return ds.prefetch(autotune if prefetch is None else prefetch)
