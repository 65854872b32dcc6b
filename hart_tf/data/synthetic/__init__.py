"""Embedded synthetic tracking videos, generated procedurally on the fly.

Each sequence has a slowly panning textured background, one textured target that moves with
smooth random velocity and acceleration while its scale and aspect drift, 1-3 look-alike
distractors (same shape, perturbed colour, texture and size) that cross the target's path,
and sometimes an occluding bar that passes in front of it. Spatial attention alone follows
whichever look-alike is nearest; the appearance stream has to tell them apart. By default a
look-alike's own random path takes it past the target slowly, so it often travels beside it;
`SyntheticConfig.distractor_cross_speed` makes each cross the target once, in a straight line.

Frames are rendered with anti-aliased signed-distance shapes, vectorised over time and over
look-alike objects: each object is drawn into one small crop per frame, gathered and
scattered through a strided view; backgrounds are panning windows of a cached texture bank.
Every sequence has its own generator, seeded by (split, seed, index), so any batch can be
regenerated alone and in parallel. NumPy only, so the JAX backend runs it without TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from hart_tf.data.synthetic.config import SHAPES, TEXTURES, SyntheticConfig
from hart_tf.data.synthetic.motion import make_objects, make_occluder
from hart_tf.data.synthetic.render import background, draw

__all__ = ["SHAPES", "TEXTURES", "SyntheticConfig", "batch_fn", "fixed_set", "make_sequence",
           "sequence_rng", "train_batch", "train_iterator"]

_SPLIT_TAGS = {"train": 1, "val": 2, "test": 3}


def sequence_rng(split: str, seed: int, index: int) -> np.random.Generator:
    """The generator of sequence `index` of a split; independent of every other sequence."""
    if split not in _SPLIT_TAGS:
        raise ValueError(f"split must be one of {sorted(_SPLIT_TAGS)}, got {split!r}")
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    return np.random.default_rng([_SPLIT_TAGS[split], seed, index])


def make_sequence(
    rng: np.random.Generator,
    seq_len: int,
    cfg: SyntheticConfig | None = None,
    *,
    target_only: bool = False,
    with_extras: bool = False,
) -> dict[str, np.ndarray]:
    """One sequence: frames [T, H, W, 3] uint8, boxes [T, 4] float32, presence [T] float32.

    Deterministic given the generator's state. `target_only` draws the target alone on a black
    frame (same draws, so the same boxes: for checking boxes against pixels). `with_extras`
    adds `distractor_boxes` [T, N, 4] and `occluder_boxes` [T, 0 or 1, 4].
    """
    cfg = cfg or SyntheticConfig()
    t_len = _check_len(seq_len)
    frames = np.empty((t_len, *cfg.image_size, 3), np.uint8)
    return _render(rng, t_len, cfg, frames, target_only=target_only, with_extras=with_extras)


def train_batch(
    index: int,
    batch_size: int,
    seq_len: int,
    seed: int = 0,
    cfg: SyntheticConfig | None = None,
) -> dict[str, np.ndarray]:
    """Training batch number `index` of stream `seed`: a pure function of its arguments."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return _stacked("train", seed, index * batch_size, batch_size, seq_len, cfg)


def batch_fn(
    batch_size: int,
    seq_len: int | Callable[[], int],
    seed: int = 0,
    cfg: SyntheticConfig | None = None,
) -> Callable[[int], dict[str, np.ndarray]]:
    """Batch index -> training batch, for `pipeline.tf_dataset` and `train_iterator`.

    `seq_len` may be a callable, read when each batch is generated, so a curriculum can
    lengthen the sequences in the same process.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    length = seq_len if callable(seq_len) else (lambda: seq_len)
    return lambda index: train_batch(index, batch_size, length(), seed, cfg)


def train_iterator(
    batch_size: int,
    seq_len: int | Callable[[], int],
    seed: int = 0,
    cfg: SyntheticConfig | None = None,
    start: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
    """Endless stream of NumPy training batches (B, T, ...) from batch index `start` on.

    `seq_len` may be a callable read before every batch (a curriculum switching length).
    """
    make = batch_fn(batch_size, seq_len, seed, cfg)
    index = start
    while True:
        yield make(index)
        index += 1


def fixed_set(
    split: str,
    n_sequences: int,
    seq_len: int,
    cfg: SyntheticConfig | None = None,
    *,
    with_extras: bool = False,
) -> dict[str, np.ndarray]:
    """The fixed validation or test set, stacked (N, T, ...); identical on every call.

    `with_extras` adds `distractor_boxes` (N, T, K, 4), K the most look-alikes of any
    sequence, padded with zero boxes (the same sequences either way).
    """
    if split not in ("val", "test"):
        raise ValueError(f"fixed_set split must be 'val' or 'test', got {split!r}")
    if n_sequences < 1:
        raise ValueError(f"n_sequences must be >= 1, got {n_sequences}")
    return _stacked(split, 0, 0, n_sequences, seq_len, cfg, with_extras)


def _check_len(seq_len: int) -> int:
    if not isinstance(seq_len, int | np.integer) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive integer, got {seq_len!r}")
    return int(seq_len)


def _stacked(
    split: str,
    seed: int,
    first: int,
    n: int,
    seq_len: int,
    cfg: SyntheticConfig | None,
    with_extras: bool = False,
) -> dict[str, np.ndarray]:
    """Sequences first .. first + n - 1 of a stream, rendered straight into one batch array."""
    cfg = cfg or SyntheticConfig()
    t_len = _check_len(seq_len)
    frames = np.empty((n, t_len, *cfg.image_size, 3), np.uint8)  # (B, T, H, W, 3)
    seqs = [
        _render(sequence_rng(split, seed, first + i), t_len, cfg, frames[i],
                with_extras=with_extras)
        for i in range(n)
    ]
    out = {
        "frames": frames,
        "boxes": np.stack([s["boxes"] for s in seqs]),
        "presence": np.stack([s["presence"] for s in seqs]),
    }
    if with_extras:
        most = max(s["distractor_boxes"].shape[1] for s in seqs)
        out["distractor_boxes"] = np.zeros((n, t_len, most, 4), np.float32)
        for i, s in enumerate(seqs):
            out["distractor_boxes"][i, :, : s["distractor_boxes"].shape[1]] = s["distractor_boxes"]
    return out


def _render(
    rng: np.random.Generator,
    t_len: int,
    cfg: SyntheticConfig,
    frames: np.ndarray,
    target_only: bool = False,
    with_extras: bool = False,
) -> dict[str, np.ndarray]:
    """Draws one sequence into `frames` (T, H, W, 3), C-contiguous uint8, in place."""
    objects = make_objects(rng, t_len, cfg)
    target, distractors = objects[0], objects[1:]
    in_front = (rng.random(len(distractors)) < cfg.distractor_front_prob).tolist()
    occluders = [make_occluder(rng, target)] if rng.random() < cfg.occlusion_prob else []
    # Every draw that shapes the boxes comes before this point, so target_only keeps them.
    if target_only:
        frames[...] = 0
        draw(frames, [target])
    else:
        background(rng, frames, cfg.pan_speed)
        behind = [d for d, front in zip(distractors, in_front, strict=True) if not front]
        front = [d for d, front in zip(distractors, in_front, strict=True) if front]
        draw(frames, behind + [target] + front)
        if occluders:
            draw(frames, occluders)

    inside = ((target.pos >= 0) & (target.pos < cfg.image_size)).all(-1)  # (T,)
    out = {
        "frames": frames,
        "boxes": target.boxes(),
        # Cut at the first absence: a target that left stays lost.
        "presence": np.cumprod(inside).astype(np.float32),
    }
    if with_extras:
        for key, objs in (("distractor_boxes", distractors), ("occluder_boxes", occluders)):
            boxes = [o.boxes() for o in objs]
            out[key] = np.stack(boxes, 1) if boxes else np.zeros((t_len, 0, 4), np.float32)
    return out
