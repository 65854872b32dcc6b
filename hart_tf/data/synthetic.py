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

import dataclasses
import functools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

SHAPES = ("ellipse", "rectangle", "triangle", "diamond")
TEXTURES = ("stripes", "checker", "rings")
# Where backgrounds and object textures come from: procedural noise and patterns, or crops
# of real photographs (`hart_tf.data.photos`, needs scikit-image) with stronger augmentation.
TEXTURE_SOURCES = ("procedural", "photos")
# First word of every sequence's seed: keeps training and the fixed sets on disjoint streams.
_SPLIT_TAGS = {"train": 1, "val": 2, "test": 3}
_MIN_COLOUR = 40.0  # object colours stay above this so a debug render is non-zero everywhere


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Distribution of the synthetic sequences.

    Attributes:
        image_size: (H, W) of the frames in pixels.
        target_size: range of the target's size sqrt(h * w) in pixels.
        aspect: range of the target's aspect ratio h / w.
        max_speed: cap on the speed of the target and distractors, pixels per frame.
        accel: scale of the smooth random acceleration, pixels per frame^2.
        scale_rate: scale of the per-frame change of log size and log aspect.
        n_distractors: (min, max) number of distractors, inclusive.
        distractor_jitter: relative perturbation of a distractor's size, colour and texture.
        distractor_front_prob: probability that a distractor is drawn in front of the target
            (hiding it while they cross) rather than behind it.
        distractor_cross_speed: 0 (the default): each distractor moves on its own smooth
            random path, like the target's, that passes close to the target at a random
            middle frame and bounces off the borders; their relative speed is whatever the two
            velocities give, often slow, so a look-alike tends to travel beside the target for
            much of the video. > 0: each distractor crosses the target's path once instead: a
            straight line through the same meeting point, at this speed relative to the
            target's velocity there (pixels per frame, in a random direction), leaving the
            frame at the borders rather than bouncing back.
        occlusion_prob: probability that an occluder passes in front of the target.
        pan_speed: maximum background pan, pixels per frame (integer steps).
        allow_leave: let the target leave the frame (presence 0 from its centre's first
            frame outside); off keeps it inside by reflecting at the borders.
        texture_source: "procedural" (noise backgrounds, patterned objects) or "photos":
            backgrounds and object textures cut from real photographs, plus scale jumps of
            the target, illumination changes, blur and sensor noise (`_augment`). Both are
            deterministic by seed; "photos" needs scikit-image (the `real` extra).
    """

    image_size: tuple[int, int] = (96, 128)
    target_size: tuple[float, float] = (12.0, 30.0)
    aspect: tuple[float, float] = (0.6, 1.6)
    max_speed: float = 3.0
    accel: float = 0.4
    scale_rate: float = 0.03
    n_distractors: tuple[int, int] = (1, 3)
    distractor_jitter: float = 0.15
    distractor_front_prob: float = 0.5
    distractor_cross_speed: float = 0.0
    occlusion_prob: float = 0.5
    pan_speed: float = 0.5
    allow_leave: bool = False
    texture_source: str = "procedural"

    def __post_init__(self):
        if self.texture_source not in TEXTURE_SOURCES:
            raise ValueError(
                f"SyntheticConfig.texture_source must be one of {TEXTURE_SOURCES}, "
                f"got {self.texture_source!r}"
            )
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "target_size", tuple(float(v) for v in self.target_size))
        object.__setattr__(self, "aspect", tuple(float(v) for v in self.aspect))
        object.__setattr__(self, "n_distractors", tuple(int(v) for v in self.n_distractors))
        h, w = self.image_size
        lo, hi = self.target_size
        if not 0 < lo <= hi:
            raise ValueError(
                f"SyntheticConfig.target_size must be 0 < min <= max, got {self.target_size}"
            )
        if not 0 < self.aspect[0] <= self.aspect[1]:
            raise ValueError(f"SyntheticConfig.aspect must be 0 < min <= max, got {self.aspect}")
        if not 0 <= self.n_distractors[0] <= self.n_distractors[1]:
            raise ValueError(
                f"SyntheticConfig.n_distractors must be 0 <= min <= max, got {self.n_distractors}"
            )
        if not 0.0 <= self.distractor_front_prob <= 1.0:
            raise ValueError(
                "SyntheticConfig.distractor_front_prob must be in [0, 1], "
                f"got {self.distractor_front_prob}"
            )
        if not 0.0 <= self.occlusion_prob <= 1.0:
            raise ValueError(
                f"SyntheticConfig.occlusion_prob must be in [0, 1], got {self.occlusion_prob}"
            )
        # Largest extent of any object (the occluder is up to twice the target's size): each
        # must fit in the frame to be drawn from one crop.
        biggest = max(2.0 * hi, hi * np.sqrt(max(self.aspect[1], 1 / self.aspect[0])))
        if biggest + 4 > min(h, w):
            raise ValueError(
                f"SyntheticConfig.target_size {self.target_size} is too big for "
                f"image_size {self.image_size}"
            )
        for name in ("max_speed", "accel", "scale_rate", "distractor_jitter", "pan_speed",
                     "distractor_cross_speed"):
            if getattr(self, name) < 0:
                raise ValueError(f"SyntheticConfig.{name} must be >= 0, got {getattr(self, name)}")


@dataclasses.dataclass
class _Object:
    """One drawn object: per-frame centre and size, shape and texture parameters."""

    pos: np.ndarray  # (T, 2) centre (y, x), pixels
    size: np.ndarray  # (T, 2) (h, w), pixels
    shape: str
    orient: int  # triangle apex: 0 up, 1 down, 2 left, 3 right
    texture: str
    freq: float  # texture cycles across the object
    angle: float
    phase: float
    c1: np.ndarray  # (3,) colours the texture blends between
    c2: np.ndarray
    patch: int = -1  # index into photos.object_bank(), or -1 for the procedural pattern

    def __post_init__(self):
        # Plain floats: NumPy float64 scalars would promote the float32 rendering to float64.
        self.freq, self.angle, self.phase = float(self.freq), float(self.angle), float(self.phase)

    def boxes(self) -> np.ndarray:
        return np.concatenate([self.pos - self.size / 2, self.size], -1).astype(np.float32)


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
    objects = _make_objects(rng, t_len, cfg)
    target, distractors = objects[0], objects[1:]
    photos = cfg.texture_source == "photos"
    if photos:
        _scale_jump(rng, target, cfg)
        patch = int(rng.integers(len(_photo_patches())))
        for o in objects:  # look-alikes share the target's patch, tinted and shifted apart
            o.patch = patch
    in_front = (rng.random(len(distractors)) < cfg.distractor_front_prob).tolist()
    occluders = [_make_occluder(rng, target)] if rng.random() < cfg.occlusion_prob else []
    if photos:
        for o in occluders:
            o.patch = int(rng.integers(len(_photo_patches())))
    # Every draw that shapes the boxes comes before this point, so target_only keeps them.
    if target_only:
        frames[...] = 0
        _draw(frames, [target])
    else:
        bank = _photo_backgrounds(*cfg.image_size) if photos else None
        _background(rng, frames, cfg.pan_speed, bank)
        behind = [d for d, front in zip(distractors, in_front, strict=True) if not front]
        front = [d for d, front in zip(distractors, in_front, strict=True) if front]
        _draw(frames, behind + [target] + front)
        if occluders:
            _draw(frames, occluders)
        if photos:
            _augment(rng, frames)

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


# ----------------------------------------------------------------------------- motion


def _fold(x: np.ndarray, lo: Any, hi: Any) -> np.ndarray:
    """Reflects x into [lo, hi] at both ends: a path that hits a border bounces off it."""
    span = np.maximum(hi - lo, 1e-6)
    u = np.mod(x - lo, 2 * span)
    return lo + span - np.abs(u - span)


def _shift(x: np.ndarray, axis: int) -> np.ndarray:
    """Cumulative sum along `axis` that starts at zero: the total before each step."""
    out = np.zeros_like(x)
    head = [slice(None)] * x.ndim
    tail = list(head)
    head[axis], tail[axis] = slice(None, -1), slice(1, None)
    np.cumsum(x[tuple(head)], axis=axis, out=out[tuple(tail)])
    return out


def _middle_frame(u: np.ndarray, t_len: int) -> np.ndarray:
    """Frame indices in the middle half of the sequence from uniforms u in [0, 1)."""
    first, last = t_len // 4, max(t_len // 4, (3 * t_len) // 4)
    return first + (u * (last - first + 1)).astype(int)


def _make_objects(rng: np.random.Generator, t_len: int, cfg: SyntheticConfig) -> list[_Object]:
    """The target, then its look-alike distractors, whose paths cross the target's."""
    n_dis = int(rng.integers(cfg.n_distractors[0], cfg.n_distractors[1] + 1))
    n, j, t2 = 1 + n_dis, cfg.distractor_jitter, 2 * t_len
    # All draws at once (Python overhead, not arithmetic, is the cost at these sizes).
    z = rng.standard_normal((n, 2 * t2 + 15))
    u = rng.random((n, 7))

    # Log size and log aspect: the target's uniform in range, each distractor's near it.
    lo, hi = np.log(cfg.target_size), np.log(cfg.aspect)
    lo, hi = np.array([lo[0], hi[0]]), np.array([lo[1], hi[1]])
    log0 = lo + (hi - lo) * u[0, :2] + j * z[:, :2] * (np.arange(n) > 0)[:, None]  # (n, 2)
    # Smooth drift: the rate of change itself takes a random walk.
    rate = cfg.scale_rate * (z[:, 2:4, None] + np.cumsum(z[:, 4 : 4 + t2], 1).reshape(n, 2, -1) / 3)
    log0 = np.minimum(np.maximum(log0, lo), hi)
    log_sa = _fold(log0[:, :, None] + _shift(rate, 2), lo[:, None], hi[:, None])
    size = np.exp(log_sa[:, :1] + np.array([[0.5], [-0.5]]) * log_sa[:, 1:])  # (n, [h, w], T)
    size = size.transpose(0, 2, 1)  # (n, T, 2)

    # Velocity starts in a random direction; acceleration drifts by a random jerk.
    ang = 2 * np.pi * u[:, 2:3]
    vel0 = np.concatenate([np.sin(ang), np.cos(ang)], 1) * (0.3 + 0.7 * u[:, 3:4])  # (n, 2)
    jerk = z[:, 4 + t2 : 4 + 2 * t2].reshape(n, t_len, 2) * (cfg.accel / 2)
    jerk[:, 0] *= 2  # the initial acceleration
    vel = vel0[:, None] * cfg.max_speed + _shift(np.cumsum(jerk, 1), 1)  # (n, T, 2)
    speed = np.sqrt((vel**2).sum(-1, keepdims=True))
    vel *= np.minimum(1.0, cfg.max_speed / np.maximum(speed, 1e-6))
    disp = _shift(vel, 1)  # (n, T, 2) displacement from t=0

    # Centre range that keeps each whole box inside at its largest.
    low = size.max(1, keepdims=True) / 2  # (n, 1, 2)
    high = np.array(cfg.image_size) - low
    pos = np.empty((n, t_len, 2))
    pos[0] = low[0] + (high[0] - low[0]) * u[0, 4:6] + disp[0]
    if not cfg.allow_leave:
        pos[0] = _fold(pos[0], low[0], high[0])
    # Each distractor passes close to the target at a random frame of the middle half.
    t_cross = _middle_frame(u[1:, 6], t_len)  # (n_dis,)
    offset = 0.3 * np.exp(log0[0, 0]) * z[1:, 2 * t2 + 4 : 2 * t2 + 6]
    meet = (pos[0, t_cross] + offset)[:, None]  # (n_dis, 1, 2)
    if cfg.distractor_cross_speed > 0:
        # A straight crossing at a set speed relative to the target's actual step there, in
        # the direction drawn for the distractor's initial velocity above.
        target_step = pos[0, np.minimum(t_cross + 1, t_len - 1)] - pos[0, t_cross]  # (n_dis, 2)
        across = np.concatenate([np.sin(ang[1:]), np.cos(ang[1:])], 1)  # (n_dis, 2)
        vel_d = target_step + cfg.distractor_cross_speed * across
        frames_off = (np.arange(t_len) - t_cross[:, None])[:, :, None]  # (n_dis, T, 1)
        pos[1:] = meet + vel_d[:, None] * frames_off
    else:
        rel = disp[1:] - disp[np.arange(1, n), t_cross][:, None]  # (n_dis, T, 2)
        pos[1:] = _fold(meet + rel, low[1:], high[1:])

    look = _random_look(rng)
    objects = [_Object(pos[0], size[0], **look)]
    pert = j * z[1:, 2 * t2 + 6 :]  # (n_dis, 9)
    colours = np.minimum(
        np.maximum(np.r_[look["c1"], look["c2"]] + 127 * pert[:, 3:], _MIN_COLOUR), 255
    )
    for i, (p, c) in enumerate(zip(pert.tolist(), colours, strict=True), 1):
        jittered = dict(
            freq=look["freq"] * np.exp(p[0]),
            angle=look["angle"] + p[1],
            phase=look["phase"] + 2 * p[2],
            c1=c[:3],
            c2=c[3:],
        )
        objects.append(_Object(pos[i], size[i], **(look | jittered)))
    return objects


def _random_look(rng: np.random.Generator) -> dict[str, Any]:
    u = rng.random(12)
    return dict(
        shape=SHAPES[int(u[0] * len(SHAPES))],
        orient=int(u[1] * 4),
        texture=TEXTURES[int(u[2] * len(TEXTURES))],
        freq=1.0 + 2.0 * u[3],
        angle=np.pi * u[4],
        phase=2 * np.pi * u[5],
        c1=_MIN_COLOUR + (255 - _MIN_COLOUR) * u[6:9],
        c2=_MIN_COLOUR + (255 - _MIN_COLOUR) * u[9:12],
    )


def _make_occluder(rng: np.random.Generator, target: _Object) -> _Object:
    """A bar that sweeps across the target around a middle frame, covering part of it."""
    t_len = len(target.pos)
    u = rng.random(8)
    t_occ = int(_middle_frame(u[0], t_len))
    axis = int(u[1] < 0.5)  # 1: a vertical bar moving sideways; 0: horizontal, moving up/down
    # Thinner than the target ever is along the sweep, longer than it is across.
    thick = (0.35 + 0.35 * u[2]) * target.size[:, axis].min()
    length = (1.3 + 0.7 * u[3]) * float(np.sqrt(target.size[t_occ].prod()))
    # Constant velocity relative to the target's own at t_occ, so the bar does sweep past it.
    t_near = min(t_occ + 1, t_len - 1)
    own = target.pos[t_near, axis] - target.pos[max(t_near - 1, 0), axis]
    speed = own + (1.5 + 2.0 * u[4]) * (1 if u[5] < 0.5 else -1)
    pos = np.repeat(target.pos[t_occ : t_occ + 1], t_len, 0)  # (T, 2)
    pos[:, axis] += speed * (np.arange(t_len) - t_occ)
    pos[:, 1 - axis] += (u[6] - 0.5) * 0.8 * length  # off-centre across the sweep
    size = np.empty((t_len, 2))
    size[:, axis], size[:, 1 - axis] = thick, length
    grey = 60 + 140 * u[7]
    tint = rng.normal(0, 15, (2, 3))
    look = _random_look(rng) | dict(
        shape="rectangle",
        texture="stripes",
        c1=np.clip(grey + tint[0], _MIN_COLOUR, 255),
        c2=np.clip(0.6 * grey + tint[1], _MIN_COLOUR, 255),
    )
    return _Object(pos, size, **look)


# ----------------------------------------------------------------------------- rendering

_BANK_SIZE = 32
_BANK_SEED = 1712  # fixed: the background bank is part of the dataset's definition


@functools.lru_cache(maxsize=64)
def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) linear-interpolation weights that upsample n_in knots to n_out pixels."""
    pos = np.linspace(0, n_in - 1, n_out)
    lo = np.minimum(np.floor(pos).astype(int), n_in - 2)
    frac = pos - lo
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), lo] = 1 - frac
    m[np.arange(n_out), lo + 1] = frac
    m.flags.writeable = False  # cached and shared between threads
    return m


def _smooth_noise(rng: np.random.Generator, ch: int, hgt: int, wid: int, cell: float):
    """(ch, hgt, wid) bilinearly upsampled uniform noise in [-1, 1], knots `cell` px apart."""
    ky, kx = max(2, int(hgt / cell) + 2), max(2, int(wid / cell) + 2)
    knots = rng.random((ch, ky, kx), np.float32) * 2 - 1
    # Two matmuls (BLAS) rather than one einsum, which would loop in C without BLAS.
    return _interp_matrix(hgt, ky) @ knots @ _interp_matrix(wid, kx).T  # (ch, hgt, wid)


@functools.lru_cache(maxsize=4)
def _texture_bank(hgt: int, wid: int) -> np.ndarray:
    """(N, 2H, 2W, 3) uint8 background textures, built once per frame size from a fixed seed.

    Cached because a texture costs more to synthesise than the rest of a sequence; windows,
    vertical flips and pans of 32 of them give the variety.
    """
    rng = np.random.default_rng(_BANK_SEED)
    th, tw = 2 * hgt, 2 * wid
    bank = np.empty((_BANK_SIZE, th, tw, 3), np.uint8)
    for k in range(_BANK_SIZE):
        tex = rng.uniform(60, 190, (3, 1, 1)) + 45 * _smooth_noise(rng, 3, th, tw, 40.0)
        tex += 25 * _smooth_noise(rng, 1, th, tw, 6.0) + 20 * rng.random((1, th, tw))
        bank[k] = np.clip(tex, 0, 255).transpose(1, 2, 0)  # (2H, 2W, 3) from planar
    bank.flags.writeable = False
    return bank


def _background(
    rng: np.random.Generator, frames: np.ndarray, pan_speed: float, bank: np.ndarray | None = None
) -> None:
    """Fills frames (T, H, W, 3) with a window of a bank texture that pans by whole pixels.

    `bank` (N, 2H, 2W, 3) defaults to the procedural texture bank.
    """
    t_len, hgt, wid, _ = frames.shape
    u = rng.random(6)
    pan = pan_speed * (2 * u[:2] - 1)  # (2,) pixels per frame, (y, x)
    # A long sequence pans at most one frame size: the bank textures are twice the frame.
    pan *= min(1.0, hgt / (abs(pan[0]) * t_len + 1e-6), wid / (abs(pan[1]) * t_len + 1e-6))
    steps = np.round(np.arange(t_len)[:, None] * np.abs(pan)).astype(int)  # (T, 2)
    steps = np.where(pan < 0, steps[-1] - steps, steps)
    y0 = int(u[2] * (hgt - steps.max(0)[0] + 1))
    x0 = int(u[3] * (wid - steps.max(0)[1] + 1))
    bank = _texture_bank(hgt, wid) if bank is None else bank
    tex = bank[int(u[4] * len(bank))]
    tex = tex[:: 1 if u[5] < 0.5 else -1]  # flipping rows is free; flipping columns is not
    for t, (y, x) in enumerate(steps.tolist()):
        frames[t] = tex[y0 + y : y0 + y + hgt, x0 + x : x0 + x + wid]


def _sdf(shape: str, orient: int, dy, dx, ry, rx) -> np.ndarray:
    """Signed distance (pixels, > 0 inside) to the shape's edge, clamped to its box."""
    box = np.minimum(rx - np.abs(dx), ry - np.abs(dy))  # (N, Sy, Sx)
    if shape == "rectangle":
        return box
    if shape == "ellipse":
        # First-order distance f / |grad f| of the implicit f = 1 - (dx/rx)^2 - (dy/ry)^2.
        f = (1 - (dx / rx) ** 2) - (dy / ry) ** 2
        grad = np.sqrt((dx / rx**2) ** 2 + (dy / ry**2) ** 2)
        return np.minimum(f / np.maximum(2 * grad, 1e-3), box)
    if shape == "diamond":
        d = (1 - np.abs(dx) / rx - np.abs(dy) / ry) / np.sqrt(1 / rx**2 + 1 / ry**2)
        return np.minimum(d, box)
    # Triangle with its apex on one side of the box and its base on the opposite side.
    if orient >= 2:
        dy, dx, ry, rx = dx, dy, rx, ry
    if orient % 2:
        dy = -dy
    k = rx / (2 * ry)  # half-width grows by k per pixel away from the apex
    norm = 1 / np.sqrt(1 + k**2)
    side = (k * norm) * (dy + ry) - norm * np.abs(dx)
    return np.minimum(side, box)


def _pattern(kind: str, freq, angle, phase, u, v) -> np.ndarray:
    """Texture in [0, 1] at normalised object coordinates u, v in [-1, 1]."""
    f = np.pi * freq
    if kind == "stripes":
        return 0.5 + 0.5 * np.sin((f * np.cos(angle)) * u + ((f * np.sin(angle)) * v + phase))
    if kind == "checker":
        s = np.sin(f * u + phase) * (1.5 * np.sin(f * v + angle))
        return np.clip(s + 0.5, 0, 1)
    return 0.5 + 0.5 * np.cos(f * np.sqrt(u**2 + v**2) + phase)


def _draw(frames: np.ndarray, objs: list[_Object]) -> None:
    """Alpha-blends objects into frames (T, H, W, 3) uint8 in place, later ones on top.

    The objects must share shape, orientation and texture kind (a target and its
    distractors do): their coverage and colour are computed together, as N = n * T crops.
    """
    t_len, hgt, wid, _ = frames.shape
    n, f32 = len(objs), np.float32
    pos = np.concatenate([o.pos for o in objs])  # (N, 2)
    size = np.concatenate([o.size for o in objs])  # (N, 2)
    # One crop size covers every object at its largest plus the 1 px anti-aliasing fringe.
    sy, sx = np.minimum(np.ceil(size.max(0)).astype(int) + 3, (hgt, wid)).tolist()
    corner = np.floor(pos - size / 2).astype(int) - 1  # (N, 2)
    corner = np.minimum(np.maximum(corner, 0), (hgt - sy, wid - sx))
    first = (corner + 0.5 - pos).astype(f32)  # first pixel centre minus object centre
    dy = (first[:, 0:1] + np.arange(sy, dtype=f32))[:, :, None]  # (N, Sy, 1)
    dx = (first[:, 1:2] + np.arange(sx, dtype=f32))[:, None, :]  # (N, 1, Sx)
    r = (size / 2).astype(f32)[:, None, None, :]  # (N, 1, 1, 2)
    ry, rx = r[..., 0], r[..., 1]
    alpha = _sdf(objs[0].shape, objs[0].orient, dy, dx, ry, rx)  # (N, Sy, Sx)
    alpha += 0.5  # pixels within half a pixel of the edge are partly covered
    np.minimum(np.maximum(alpha, 0, out=alpha), 1, out=alpha)

    params = np.array([[o.freq, o.angle, o.phase, *o.c1, *o.c2] for o in objs], f32)  # (n, 9)
    params = np.repeat(params, t_len, 0)[:, :, None, None]  # (N, 9, 1, 1)
    if objs[0].patch >= 0:
        patches = np.repeat([o.patch for o in objs], t_len)  # (N,)
        colour = _photo_colour(patches, params, dx / rx, dy / ry)
    else:
        tex = _pattern(objs[0].texture, *params[:, :3].transpose(1, 0, 2, 3), dx / rx, dy / ry)
        colour = np.empty((n * t_len, sy, sx, 3), f32)
        for c in range(3):  # one channel at a time: broadcasting against a trailing 3 is slow
            colour[..., c] = (params[:, 6 + c] - params[:, 3 + c]) * tex + params[:, 3 + c]

    # Writeable strided view: windows[t, y, x] is the (Sy, Sx, 3) crop of frame t at (y, x);
    # one object's T crops lie in different frames, so its scatter never overlaps itself.
    st = frames.strides
    windows = np.ndarray(
        (t_len, hgt - sy + 1, wid - sx + 1, sy, sx, 3),
        np.uint8,
        buffer=frames,
        strides=(st[0], st[1], st[2], st[1], st[2], st[3]),
    )
    for i in range(n):
        rows = slice(i * t_len, (i + 1) * t_len)
        index = (np.arange(t_len), corner[rows, 0], corner[rows, 1])
        crop = windows[index].astype(f32)  # (T, Sy, Sx, 3)
        blend = colour[rows] - crop
        for c in range(3):
            blend[..., c] *= alpha[rows]
        blend += crop
        windows[index] = blend  # truncation leaves alpha-0 pixels exactly as they were


# ----------------------------------------------------------------------------- real photos


def _photo_patches() -> np.ndarray:
    from hart_tf.data import photos

    return photos.object_bank()


def _photo_backgrounds(hgt: int, wid: int) -> np.ndarray:
    from hart_tf.data import photos

    return photos.background_bank(hgt, wid, _BANK_SIZE)


def _photo_colour(patches: np.ndarray, params: np.ndarray, u: np.ndarray, v: np.ndarray):
    """(N, Sy, Sx, 3) float32 colours of photo-textured objects at object coordinates u, v.

    The procedural look parameters pick the window of the patch and its tint, so that a
    distractor (whose parameters are jittered) is the same patch slightly shifted, zoomed
    and tinted: a look-alike. freq sets the window's size (55-95 % of the patch), phase
    and angle its centre, c1 a per-channel gain of 0.87-1.25.
    """
    bank = _photo_patches()  # (P, S, S, 3)
    size = bank.shape[1]
    freq, angle, phase = params[:, 0], params[:, 1], params[:, 2]  # (N, 1, 1) each
    span = np.minimum(0.35 + 0.2 * freq, 0.95)
    cy = 0.5 + (1 - span) / 2 * np.sin(phase)
    cx = 0.5 + (1 - span) / 2 * np.cos(phase + angle)
    iy = np.clip(np.rint((cy + v * span / 2) * (size - 1)), 0, size - 1).astype(np.intp)
    ix = np.clip(np.rint((cx + u * span / 2) * (size - 1)), 0, size - 1).astype(np.intp)
    colour = bank[patches[:, None, None], iy, ix].astype(np.float32)  # (N, Sy, Sx, 3)
    # Lifted above _MIN_COLOUR like the procedural colours, then tinted.
    gain = 0.75 + params[:, 3:6, 0, 0] / 510  # (N, 3)
    colour = (_MIN_COLOUR + (1 - _MIN_COLOUR / 255) * colour) * gain[:, None, None, :]
    return np.minimum(colour, 255.0, out=colour)


def _scale_jump(rng: np.random.Generator, target: _Object, cfg: SyntheticConfig) -> None:
    """Half the time, the target's size jumps by a factor 0.6-1.65 within 1-3 frames.

    Like a zoom or an object turning towards the camera in real footage. Sizes stay within
    [4 px, 45 % of the frame]; the path is reflected again so the target stays inside.
    """
    t_len = len(target.pos)
    u = rng.random(5)
    if u[0] >= 0.5 or t_len < 3:
        return
    t0 = int(_middle_frame(u[1], t_len))
    span = 1 + int(u[2] * 3)
    magnitude = (0.25 + 0.25 * u[3]) * (1 if u[4] < 0.5 else -1)
    ramp = np.clip((np.arange(t_len) - t0 + 1) / span, 0.0, 1.0)  # (T,)
    limit = 0.45 * min(cfg.image_size)
    target.size = np.clip(target.size * np.exp(magnitude * ramp)[:, None], 4.0, limit)
    if not cfg.allow_leave:
        low = target.size.max(0) / 2
        target.pos = _fold(target.pos, low, np.array(cfg.image_size) - low)


def _box_blur(frames: np.ndarray, radius: int) -> np.ndarray:
    """Separable (2 radius + 1)^2 mean filter of float frames (T, H, W, 3), edges repeated."""
    width = 2 * radius + 1
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (radius, radius)
        padded = np.pad(frames, pad, mode="edge")
        size = frames.shape[axis]
        frames = sum(np.take(padded, range(k, k + size), axis=axis) for k in range(width))
        frames /= width
    return frames


def _augment(rng: np.random.Generator, frames: np.ndarray) -> None:
    """Photometric changes of real footage, in place on uint8 frames (T, H, W, 3).

    Each independently: an illumination change (a gain moving smoothly between two levels
    over a middle stretch, with a colour cast; p=0.6), blur of a run of frames (box filter
    of radius 1-2, as defocus or motion; p=0.35) and Gaussian sensor noise (p=0.3).
    """
    t_len = len(frames)
    u = rng.random(10)
    light, blur, noise = u[0] < 0.6, u[1] < 0.35, u[2] < 0.3
    if not (light or blur or noise):
        return
    out = frames.astype(np.float32)  # (T, H, W, 3)
    if light:
        levels = -0.6 + 0.95 * u[3:5]  # log gains in [-0.6, 0.35]
        middle = float(_middle_frame(u[5], t_len))
        width = max(1.0, t_len * (0.05 + 0.2 * u[6]))
        step = 1 / (1 + np.exp(-(np.arange(t_len) - middle) / width))  # (T,) 0 -> 1
        gain = np.exp(levels[0] + (levels[1] - levels[0]) * step).astype(np.float32)
        cast = np.exp(rng.normal(0, 0.06, 3)).astype(np.float32)  # (3,)
        out *= gain[:, None, None, None] * cast
    if blur:
        first = int(u[7] * t_len)
        last = min(t_len, first + max(1, int(t_len * (0.2 + 0.4 * u[8]))))
        out[first:last] = _box_blur(out[first:last], 1 + int(u[9] < 0.4))
    if noise:
        sigma = rng.uniform(2.0, 8.0)
        out += sigma * rng.standard_normal(out.shape, np.float32)
    np.clip(np.rint(out), 0, 255, out=out)
    frames[...] = out
