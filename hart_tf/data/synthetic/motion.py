"""Objects of a synthetic video and their paths: the target, its look-alikes and the occluder."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from hart_tf.data.synthetic.config import _MIN_COLOUR, SHAPES, TEXTURES, SyntheticConfig


@dataclasses.dataclass
class SceneObject:
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

    def __post_init__(self):
        # Plain floats: NumPy float64 scalars would promote the float32 rendering to float64.
        self.freq, self.angle, self.phase = float(self.freq), float(self.angle), float(self.phase)

    def boxes(self) -> np.ndarray:
        return np.concatenate([self.pos - self.size / 2, self.size], -1).astype(np.float32)




def fold(x: np.ndarray, lo: Any, hi: Any) -> np.ndarray:
    """Reflects x into [lo, hi] at both ends: a path that hits a border bounces off it."""
    span = np.maximum(hi - lo, 1e-6)
    u = np.mod(x - lo, 2 * span)
    return lo + span - np.abs(u - span)


def shift(x: np.ndarray, axis: int) -> np.ndarray:
    """Cumulative sum along `axis` that starts at zero: the total before each step."""
    out = np.zeros_like(x)
    head = [slice(None)] * x.ndim
    tail = list(head)
    head[axis], tail[axis] = slice(None, -1), slice(1, None)
    np.cumsum(x[tuple(head)], axis=axis, out=out[tuple(tail)])
    return out


def middle_frame(u: np.ndarray, t_len: int) -> np.ndarray:
    """Frame indices in the middle half of the sequence from uniforms u in [0, 1)."""
    first, last = t_len // 4, max(t_len // 4, (3 * t_len) // 4)
    return first + (u * (last - first + 1)).astype(int)


def make_objects(rng: np.random.Generator, t_len: int, cfg: SyntheticConfig) -> list[SceneObject]:
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
    log_sa = fold(log0[:, :, None] + shift(rate, 2), lo[:, None], hi[:, None])
    size = np.exp(log_sa[:, :1] + np.array([[0.5], [-0.5]]) * log_sa[:, 1:])  # (n, [h, w], T)
    size = size.transpose(0, 2, 1)  # (n, T, 2)

    # Velocity starts in a random direction; acceleration drifts by a random jerk.
    ang = 2 * np.pi * u[:, 2:3]
    vel0 = np.concatenate([np.sin(ang), np.cos(ang)], 1) * (0.3 + 0.7 * u[:, 3:4])  # (n, 2)
    jerk = z[:, 4 + t2 : 4 + 2 * t2].reshape(n, t_len, 2) * (cfg.accel / 2)
    jerk[:, 0] *= 2  # the initial acceleration
    vel = vel0[:, None] * cfg.max_speed + shift(np.cumsum(jerk, 1), 1)  # (n, T, 2)
    speed = np.sqrt((vel**2).sum(-1, keepdims=True))
    vel *= np.minimum(1.0, cfg.max_speed / np.maximum(speed, 1e-6))
    disp = shift(vel, 1)  # (n, T, 2) displacement from t=0

    # Centre range that keeps each whole box inside at its largest.
    low = size.max(1, keepdims=True) / 2  # (n, 1, 2)
    high = np.array(cfg.image_size) - low
    pos = np.empty((n, t_len, 2))
    pos[0] = low[0] + (high[0] - low[0]) * u[0, 4:6] + disp[0]
    if not cfg.allow_leave:
        pos[0] = fold(pos[0], low[0], high[0])
    # Each distractor passes close to the target at a random frame of the middle half.
    t_cross = middle_frame(u[1:, 6], t_len)  # (n_dis,)
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
        pos[1:] = fold(meet + rel, low[1:], high[1:])

    look = random_look(rng)
    objects = [SceneObject(pos[0], size[0], **look)]
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
        objects.append(SceneObject(pos[i], size[i], **(look | jittered)))
    return objects


def random_look(rng: np.random.Generator) -> dict[str, Any]:
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


def make_occluder(rng: np.random.Generator, target: SceneObject) -> SceneObject:
    """A bar that sweeps across the target around a middle frame, covering part of it."""
    t_len = len(target.pos)
    u = rng.random(8)
    t_occ = int(middle_frame(u[0], t_len))
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
    look = random_look(rng) | dict(
        shape="rectangle",
        texture="stripes",
        c1=np.clip(grey + tint[0], _MIN_COLOUR, 255),
        c2=np.clip(0.6 * grey + tint[1], _MIN_COLOUR, 255),
    )
    return SceneObject(pos, size, **look)
