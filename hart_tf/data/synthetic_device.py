"""The synthetic tracking videos of `hart_tf.data.synthetic`, rendered on the accelerator.

The same generator as the NumPy renderer (same motion model, sizes, look-alikes, occluder,
panning background bank, shapes, textures and anti-aliased blending), written in `keras.ops`
with fixed shapes, so a whole batch is one traceable function of (seed, batch index): it
compiles (`jax.jit`, `tf.function`) and can run inside the train step, with no host transfer.
Rendering is dense (every pixel of every object layer), which suits an accelerator; on a CPU
it is an order of magnitude slower than the NumPy renderer's crops.
Per-sequence randomness of the NumPy path (how many look-alikes, which are in front, whether
an occluder passes, which shape and texture) becomes masks and selections over a fixed
maximum: every look-alike slot and every shape is computed and the unused ones get zero
coverage.

Randomness comes from two stateless draws (uniforms and normals) keyed by (seed, index),
rather than a `SeedGenerator`: a seed tensor keeps the function pure, so it traces inside a
compiled step (`jax.jit`, `tf.function`) and the same (seed, index) gives the same batch,
however often it is called (on JAX and TensorFlow: `_draws`). The streams are the backend's,
not NumPy's: batches follow the NumPy path's distribution (tests/test_synthetic_device.py
compares them), not its numbers. The NumPy renderer stays the reference for the fixed
validation and test sets; this one is for training batches.

Only `texture_source="procedural"` is rendered here (the photo banks and their
augmentation stay on the NumPy path).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from hart_tf.data.synthetic import SyntheticConfig, render

_MIN_COLOUR = 40.0  # as the NumPy renderer: object colours stay above this
_N_LOOK = 12  # uniforms of one random look (shape, orient, texture, freq, angle, phase, c1, c2)


def texture_bank(cfg: SyntheticConfig | None = None):
    """The background bank (N, 2H, 2W, 3) uint8 of the NumPy renderer, as a backend tensor.

    Pass it to `train_batch` as an argument of a compiled function (rather than letting each
    trace embed its 4.7 MB as a constant).
    """
    cfg = cfg or SyntheticConfig()
    return keras.ops.convert_to_tensor(render.texture_bank(*cfg.image_size), "uint8")


def _check(cfg: SyntheticConfig, batch_size: int, seq_len: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive integer, got {seq_len!r}")


def _draws(seed, index, b: int, n_uniform: int, n_normal: int):
    """Uniforms (b, n_uniform) and standard normals (b, n_normal), float32, a pure function
    of (seed, index): ints or int32 scalar tensors.

    Stateless draws keyed by a seed tensor: `keras.random` takes one on JAX; TensorFlow's
    Keras random ops take only ints or a `SeedGenerator`, so there its stateless ops are
    called directly.
    """
    ops = keras.ops
    backend = keras.backend.backend()
    if backend not in ("jax", "tensorflow"):
        raise ValueError(f"the device renderer runs on JAX or TensorFlow, not {backend!r}")
    dtype = "uint32" if backend == "jax" else "int64"  # each one's seed dtype
    seed, index = ops.cast(seed, "int32"), ops.cast(index, "int32")
    key_u, key_z = (ops.cast(ops.stack([seed, 2 * index + k]), dtype) for k in (0, 1))
    if backend == "tensorflow":
        import tensorflow as tf

        return (tf.random.stateless_uniform((b, n_uniform), key_u, dtype="float32"),
                tf.random.stateless_normal((b, n_normal), key_z, dtype="float32"))
    return (keras.random.uniform((b, n_uniform), seed=key_u, dtype="float32"),
            keras.random.normal((b, n_normal), seed=key_z, dtype="float32"))


def _fold(x, lo, hi):
    """Reflects x into [lo, hi] at both ends (a path bounces off the borders)."""
    ops = keras.ops
    span = ops.maximum(hi - lo, 1e-6)
    u = ops.mod(x - lo, 2 * span)
    return lo + span - ops.abs(u - span)


def _shift(x, axis: int):
    """Cumulative sum along `axis` starting at zero: the total before each step."""
    ops = keras.ops
    c = ops.cumsum(x, axis=axis)
    n = x.shape[axis]
    zeros = ops.zeros_like(ops.take(x, [0], axis=axis))
    return ops.concatenate([zeros, ops.take(c, list(range(n - 1)), axis=axis)], axis=axis)


def _middle_frame(u, t_len: int):
    """int32 frame indices in the middle half of the sequence from uniforms u in [0, 1)."""
    first, last = t_len // 4, max(t_len // 4, (3 * t_len) // 4)
    idx = first + keras.ops.floor(u * (last - first + 1))
    return keras.ops.cast(keras.ops.minimum(idx, last), "int32")


def _at(x, t_idx, t_len: int):
    """x (..., T, C) at frame t_idx (...): (..., C), as a one-hot sum (any backend)."""
    hot = keras.ops.one_hot(t_idx, t_len, dtype=x.dtype)  # (..., T)
    return keras.ops.sum(x * hot[..., None], axis=-2)


def _look(u):
    """A random look from uniforms u (..., 12), as in the NumPy renderer."""
    ops = keras.ops
    return dict(
        shape=ops.cast(ops.minimum(ops.floor(u[..., 0] * 4), 3), "int32"),
        orient=ops.cast(ops.minimum(ops.floor(u[..., 1] * 4), 3), "int32"),
        texture=ops.cast(ops.minimum(ops.floor(u[..., 2] * 3), 2), "int32"),
        freq=1.0 + 2.0 * u[..., 3],
        angle=math.pi * u[..., 4],
        phase=2 * math.pi * u[..., 5],
        colour=_MIN_COLOUR + (255 - _MIN_COLOUR) * u[..., 6:12],  # (..., 6): c1 then c2
    )


def _layout(t_len: int, k_max: int):
    """Column ranges of the two draws: name -> (start, stop)."""
    t2 = 2 * t_len
    n = 1 + k_max
    cols_u = [("n_dis", 1), ("obj", n * 7), ("look", _N_LOOK), ("front", k_max),
              ("occ_on", 1), ("occ", 8), ("occ_look", _N_LOOK), ("bg", 6)]
    cols_z = [("obj", n * (2 * t2 + 15)), ("tint", 6)]
    out = []
    for cols in (cols_u, cols_z):
        spans, at = {}, 0
        for name, width in cols:
            spans[name] = (at, at + width)
            at += width
        out.append((spans, at))
    return out


def sample_scene(seed, index, batch_size: int, seq_len: int,
                 cfg: SyntheticConfig | None = None) -> dict[str, Any]:
    """Every object's path, size and look for training batch `index` of stream `seed`.

    Cheap (no pixels): the distribution tests sample many sequences through it. `seed` and
    `index` may be Python ints or int32 scalar tensors (traced inside a compiled step).

    Returns:
        A dict of tensors: `pos`, `size` (B, n, T, 2) centre (y, x) and (h, w) of the target
        (object 0) and the K = n_distractors[1] look-alike slots; `present` (B, n) 1 for the
        target and for the slots in use; `front` (B, n) 1 where a look-alike is drawn in
        front of the target; look parameters `freq`, `angle`, `phase` (B, n), `colour`
        (B, n, 6) and `shape`, `orient`, `texture` (B,) int32; the occluder's `occ_pos`,
        `occ_size` (B, T, 2), `occ_on` (B,), `occ_freq`, `occ_angle`, `occ_phase` (B,),
        `occ_colour` (B, 6); the background's `bg_tex` (B,), `bg_flip` (B,), `bg_y`, `bg_x`
        (B, T) int32 window corners in the bank texture.
    """
    ops = keras.ops
    cfg = cfg or SyntheticConfig()
    _check(cfg, batch_size, seq_len)
    b, t_len = batch_size, seq_len
    k_lo, k_max = cfg.n_distractors
    n, t2, j = 1 + k_max, 2 * t_len, cfg.distractor_jitter
    (su, nu), (sz, nz) = _layout(t_len, k_max)
    uu, zz = _draws(seed, index, b, nu, nz)

    def cut(draw, spans, name):
        lo, hi = spans[name]
        return draw[:, lo:hi]

    n_dis = k_lo + ops.floor(cut(uu, su, "n_dis")[:, 0] * (k_max - k_lo + 1))  # (B,)
    slot = ops.arange(n, dtype="float32")  # (n,)
    present = ops.cast((slot[None] == 0) | (slot[None] <= n_dis[:, None]), "float32")  # (B, n)
    z = ops.reshape(cut(zz, sz, "obj"), (b, n, 2 * t2 + 15))
    u = ops.reshape(cut(uu, su, "obj"), (b, n, 7))
    is_dis = ops.cast(slot > 0, "float32")[None, :, None]  # (1, n, 1)

    # Log size and log aspect: the target's uniform in range, each look-alike's near it.
    lo = np.array([math.log(cfg.target_size[0]), math.log(cfg.aspect[0])], np.float32)
    hi = np.array([math.log(cfg.target_size[1]), math.log(cfg.aspect[1])], np.float32)
    log0 = lo + (hi - lo) * u[:, :1, :2] + j * z[..., :2] * is_dis  # (B, n, 2)
    # The rate's random walk runs through both rows (size, then aspect) as in NumPy.
    walk = ops.reshape(ops.cumsum(z[..., 4 : 4 + t2], axis=-1), (b, n, 2, t_len))
    rate = cfg.scale_rate * (z[..., 2:4, None] + walk / 3)  # (B, n, 2, T)
    log0 = ops.minimum(ops.maximum(log0, lo), hi)
    log_sa = _fold(log0[..., None] + _shift(rate, 3), lo[:, None], hi[:, None])  # (B, n, 2, T)
    half = np.array([0.5, -0.5], np.float32)[:, None]  # h = s * sqrt(a), w = s / sqrt(a)
    size = ops.exp(log_sa[:, :, :1] + half * log_sa[:, :, 1:])  # (B, n, 2, T)
    size = ops.transpose(size, (0, 1, 3, 2))  # (B, n, T, 2)

    # Velocity starts in a random direction; acceleration drifts by a random jerk.
    ang = 2 * math.pi * u[..., 2]  # (B, n)
    heading = ops.stack([ops.sin(ang), ops.cos(ang)], -1)  # (B, n, 2)
    vel0 = heading * (0.3 + 0.7 * u[..., 3:4])
    jerk = ops.reshape(z[..., 4 + t2 : 4 + 2 * t2], (b, n, t_len, 2)) * (cfg.accel / 2)
    first = np.ones((t_len, 1), np.float32)
    first[0] = 2.0  # the initial acceleration
    vel = vel0[:, :, None] * cfg.max_speed + _shift(ops.cumsum(jerk * first, 2), 2)
    speed = ops.sqrt(ops.sum(vel**2, -1, keepdims=True))
    vel = vel * ops.minimum(1.0, cfg.max_speed / ops.maximum(speed, 1e-6))  # (B, n, T, 2)
    disp = _shift(vel, 2)  # (B, n, T, 2) displacement from t=0

    # Centre range that keeps each whole box inside at its largest.
    image = np.array(cfg.image_size, np.float32)
    low = ops.max(size, axis=2, keepdims=True) / 2  # (B, n, 1, 2)
    high = image - low
    pos0 = low[:, 0] + (high[:, 0] - low[:, 0]) * u[:, :1, 4:6] + disp[:, 0]  # (B, T, 2)
    if not cfg.allow_leave:
        pos0 = _fold(pos0, low[:, 0], high[:, 0])
    # Each look-alike passes close to the target at a random frame of the middle half.
    t_cross = _middle_frame(u[:, 1:, 6], t_len)  # (B, K)
    offset = 0.3 * ops.exp(log0[:, :1, :1]) * z[:, 1:, 2 * t2 + 4 : 2 * t2 + 6]  # (B, K, 2)
    pos0_k = ops.repeat(pos0[:, None], k_max, axis=1)  # (B, K, T, 2)
    at_cross = _at(pos0_k, t_cross, t_len)  # (B, K, 2) the target's centre there
    meet = (at_cross + offset)[:, :, None]  # (B, K, 1, 2)
    if cfg.distractor_cross_speed > 0:
        # A straight crossing at a set speed relative to the target's step there, in the
        # direction of the look-alike's initial heading.
        step = _at(pos0_k, ops.minimum(t_cross + 1, t_len - 1), t_len) - at_cross
        vel_d = step + cfg.distractor_cross_speed * heading[:, 1:]
        frames_off = ops.arange(t_len, dtype="float32") - ops.cast(t_cross, "float32")[..., None]
        pos_d = meet + vel_d[:, :, None] * frames_off[..., None]  # (B, K, T, 2)
    else:
        rel = disp[:, 1:] - _at(disp[:, 1:], t_cross, t_len)[:, :, None]  # (B, K, T, 2)
        pos_d = _fold(meet + rel, low[:, 1:], high[:, 1:])
    pos = ops.concatenate([pos0[:, None], pos_d], 1)  # (B, n, T, 2)

    # Look-alikes: the target's look with jittered texture and colour.
    look = _look(cut(uu, su, "look"))
    pert = j * z[:, 1:, 2 * t2 + 6 :]  # (B, K, 9)
    colour_d = ops.clip(look["colour"][:, None] + 127 * pert[..., 3:], _MIN_COLOUR, 255.0)
    scene = dict(
        pos=pos, size=size, present=present,
        front=ops.concatenate(
            [ops.zeros((b, 1)),
             ops.cast(cut(uu, su, "front") < cfg.distractor_front_prob, "float32")], 1),
        freq=ops.concatenate([look["freq"][:, None],
                              look["freq"][:, None] * ops.exp(pert[..., 0])], 1),
        angle=ops.concatenate([look["angle"][:, None], look["angle"][:, None] + pert[..., 1]], 1),
        phase=ops.concatenate([look["phase"][:, None],
                               look["phase"][:, None] + 2 * pert[..., 2]], 1),
        colour=ops.concatenate([look["colour"][:, None], colour_d], 1),  # (B, n, 6)
        shape=look["shape"], orient=look["orient"], texture=look["texture"],
    )
    scene.update(_occluder(cut(uu, su, "occ"), cut(uu, su, "occ_look"), cut(zz, sz, "tint"),
                           cut(uu, su, "occ_on")[:, 0] < cfg.occlusion_prob, pos0, size[:, 0]))
    scene.update(_background(cut(uu, su, "bg"), cfg, t_len))
    return scene


def _occluder(u, u_look, tint, on, pos, size) -> dict[str, Any]:
    """A bar sweeping across the target (pos, size (B, T, 2)) around a middle frame."""
    ops = keras.ops
    t_len = pos.shape[1]
    t_occ = _middle_frame(u[:, 0], t_len)  # (B,)
    vertical = u[:, 1] < 0.5  # a vertical bar moving sideways (axis 1), else axis 0
    # (B, 2): 1 on the sweep axis
    sel = ops.cast(ops.stack([ops.logical_not(vertical), vertical], -1), "float32")
    # Thinner than the target ever is along the sweep, longer than it is across.
    thick = (0.35 + 0.35 * u[:, 2]) * ops.sum(ops.min(size, axis=1) * sel, -1)
    size_occ = _at(size, t_occ, t_len)  # (B, 2)
    length = (1.3 + 0.7 * u[:, 3]) * ops.sqrt(size_occ[:, 0] * size_occ[:, 1])
    t_near = ops.minimum(t_occ + 1, t_len - 1)
    own = _at(pos, t_near, t_len) - _at(pos, ops.maximum(t_near - 1, 0), t_len)  # (B, 2)
    speed = ops.sum(own * sel, -1) + (1.5 + 2.0 * u[:, 4]) * ops.where(u[:, 5] < 0.5, 1.0, -1.0)
    frames_off = ops.arange(t_len, dtype="float32") - ops.cast(t_occ, "float32")[:, None]
    across = (u[:, 6] - 0.5) * 0.8 * length  # off-centre across the sweep
    move = sel[:, None] * (speed[:, None] * frames_off)[..., None]  # (B, T, 2)
    occ_pos = _at(pos, t_occ, t_len)[:, None] + move + ((1 - sel) * across[:, None])[:, None]
    occ_size = sel * thick[:, None] + (1 - sel) * length[:, None]  # (B, 2)
    look = _look(u_look)
    grey = (60 + 140 * u[:, 7])[:, None]
    tint = 15 * tint
    colour = ops.concatenate([ops.clip(grey + tint[:, :3], _MIN_COLOUR, 255.0),
                              ops.clip(0.6 * grey + tint[:, 3:], _MIN_COLOUR, 255.0)], -1)
    return dict(occ_pos=occ_pos, occ_size=ops.repeat(occ_size[:, None], t_len, axis=1),
                occ_on=ops.cast(on, "float32"), occ_freq=look["freq"], occ_angle=look["angle"],
                occ_phase=look["phase"], occ_colour=colour)


def _background(u, cfg: SyntheticConfig, t_len: int) -> dict[str, Any]:
    """Which bank texture, flipped or not, and its window's corner in every frame."""
    ops = keras.ops
    hgt, wid = cfg.image_size
    pan = cfg.pan_speed * (2 * u[:, :2] - 1)  # (B, 2) pixels per frame
    extent = np.array([hgt, wid], np.float32)
    # A long sequence pans at most one frame size: the bank textures are twice the frame.
    pan = pan * ops.minimum(1.0, ops.min(extent / (ops.abs(pan) * t_len + 1e-6), -1,
                                         keepdims=True))
    t = ops.arange(t_len, dtype="float32")[None, :, None]
    steps = ops.round(t * ops.abs(pan)[:, None])  # (B, T, 2)
    steps = ops.where(pan[:, None] < 0, steps[:, -1:] - steps, steps)
    top = ops.max(steps, 1)  # (B, 2)
    corner = ops.floor(u[:, 2:4] * (extent - top + 1))  # (B, 2)
    window = ops.cast(corner[:, None] + steps, "int32")  # (B, T, 2)
    n_bank = render._BANK_SIZE
    return dict(bg_tex=ops.cast(ops.minimum(ops.floor(u[:, 4] * n_bank), n_bank - 1), "int32"),
                bg_flip=u[:, 5] >= 0.5, bg_y=window[..., 0], bg_x=window[..., 1])


def _sdf(shape, orient, dy, dx, ry, rx):
    """Signed distance (> 0 inside) for per-sequence shape/orient (B, 1, 1, 1) int32."""
    ops = keras.ops
    box = ops.minimum(rx - ops.abs(dx), ry - ops.abs(dy))
    f = (1 - (dx / rx) ** 2) - (dy / ry) ** 2
    grad = ops.sqrt((dx / rx**2) ** 2 + (dy / ry**2) ** 2)
    ellipse = f / ops.maximum(2 * grad, 1e-3)
    diamond = (1 - ops.abs(dx) / rx - ops.abs(dy) / ry) / ops.sqrt(1 / rx**2 + 1 / ry**2)
    # Triangle: apex on one side of the box, base on the opposite side.
    swap = orient >= 2
    ty, tx = ops.where(swap, dx, dy), ops.where(swap, dy, dx)
    sy, sx = ops.where(swap, rx, ry), ops.where(swap, ry, rx)
    ty = ops.where(orient % 2 == 1, -ty, ty)
    k = sx / (2 * sy)
    norm = 1 / ops.sqrt(1 + k**2)
    triangle = (k * norm) * (ty + sy) - norm * ops.abs(tx)
    d = ops.where(shape == 0, ellipse,
                  ops.where(shape == 1, box, ops.where(shape == 2, triangle, diamond)))
    return ops.minimum(d, box)


def _pattern(kind, freq, angle, phase, u, v):
    """Texture in [0, 1] at object coordinates u, v; kind (B, 1, 1, 1) int32."""
    ops = keras.ops
    f = math.pi * freq
    stripes = 0.5 + 0.5 * ops.sin((f * ops.cos(angle)) * u + ((f * ops.sin(angle)) * v + phase))
    checker = ops.clip(ops.sin(f * u + phase) * (1.5 * ops.sin(f * v + angle)) + 0.5, 0, 1)
    rings = 0.5 + 0.5 * ops.cos(f * ops.sqrt(u**2 + v**2) + phase)
    return ops.where(kind == 0, stripes, ops.where(kind == 1, checker, rings))


def _blend(frame, pos, size, visible, shape, orient, texture, freq, angle, phase, colour):
    """Alpha-blends one object layer into frame (B, T, H, W, 3) float32, truncating to
    whole values as the NumPy renderer's uint8 store does. pos, size (B, T, 2); visible,
    freq, angle, phase (B,); colour (B, 6); shape, orient, texture (B,) int32."""
    ops = keras.ops
    hgt, wid = frame.shape[2:4]

    def px(x):  # (B,) -> (B, 1, 1, 1)
        return x[:, None, None, None]

    ys = ops.arange(hgt, dtype="float32")[None, None, :, None] + 0.5
    xs = ops.arange(wid, dtype="float32")[None, None, None, :] + 0.5
    dy = ys - pos[..., 0, None, None]  # (B, T, H, 1)
    dx = xs - pos[..., 1, None, None]  # (B, T, 1, W)
    ry, rx = size[..., 0, None, None] / 2, size[..., 1, None, None] / 2  # (B, T, 1, 1)
    alpha = _sdf(px(shape), px(orient), dy, dx, ry, rx) + 0.5  # (B, T, H, W)
    alpha = ops.clip(alpha, 0.0, 1.0) * px(visible)
    tex = _pattern(px(texture), px(freq), px(angle), px(phase), dx / rx, dy / ry)
    colour = colour[:, None, None, None]  # (B, 1, 1, 1, 6)
    paint = (colour[..., 3:] - colour[..., :3]) * tex[..., None] + colour[..., :3]
    return ops.floor(frame + alpha[..., None] * (paint - frame))


def render_scene(scene: dict[str, Any], cfg: SyntheticConfig | None = None, bank=None,
                 chunk: int | None = None):
    """Frames (B, T, H, W, 3) uint8 of a `sample_scene` scene: background window, the
    look-alikes behind the target, the target, those in front, then the occluder.

    `chunk` (dividing B) renders that many sequences at a time in a loop (`keras.ops.map`):
    the compiler keeps a few float32 (B, T, H, W) intermediates per object layer, 1 GB each
    at B=1024, T=20, so chunks bound the renderer's memory next to a train step's.
    """
    ops = keras.ops
    cfg = cfg or SyntheticConfig()
    b = scene["pos"].shape[0]
    if chunk is not None and chunk < b:
        if b % chunk:
            raise ValueError(f"chunk {chunk} must divide the batch size {b}")
        parts = {k: ops.reshape(v, (b // chunk, chunk) + tuple(v.shape[1:]))
                 for k, v in scene.items()}  # (B / chunk, chunk, ...)
        bank = texture_bank(cfg) if bank is None else bank
        frames = ops.map(lambda part: render_scene(part, cfg, bank), parts)
        return ops.reshape(frames, (b,) + tuple(frames.shape[2:]))  # (B, T, H, W, 3)
    hgt, wid = cfg.image_size
    bank = texture_bank(cfg) if bank is None else bank
    n_bank, bh, bw, _ = bank.shape
    b, n, t_len = scene["pos"].shape[:3]
    # Background: a gather of whole-pixel windows of one bank texture (rows maybe flipped).
    rows = scene["bg_y"][..., None] + ops.arange(hgt, dtype="int32")  # (B, T, H)
    rows = ops.where(scene["bg_flip"][:, None, None], bh - 1 - rows, rows)
    cols = scene["bg_x"][..., None] + ops.arange(wid, dtype="int32")  # (B, T, W)
    flat = (scene["bg_tex"][:, None, None, None] * bh + rows[..., None]) * bw + cols[:, :, None]
    frame = ops.cast(ops.take(ops.reshape(bank, (n_bank * bh * bw, 3)), flat, axis=0),
                     "float32")  # (B, T, H, W, 3)

    # Depth order: look-alikes behind (by slot), the target, look-alikes in front (by slot).
    slot = ops.arange(n, dtype="float32")[None]
    depth = ops.where(slot == 0, n, slot + 2 * n * scene["front"])  # (B, n)
    order = ops.argsort(depth, axis=1)  # (B, n)

    def nth(x, i):  # x (B, n, ...) at the i-th object in depth order
        hot = ops.one_hot(order[:, i], n, dtype=x.dtype)  # (B, n)
        return ops.sum(x * ops.reshape(hot, (b, n) + (1,) * (len(x.shape) - 2)), 1)

    shared = (scene["shape"], scene["orient"], scene["texture"])
    for i in range(n):
        frame = _blend(frame, nth(scene["pos"], i), nth(scene["size"], i),
                       nth(scene["present"], i), *shared, nth(scene["freq"], i),
                       nth(scene["angle"], i), nth(scene["phase"], i), nth(scene["colour"], i))
    rectangle, stripes = ops.ones((b,), "int32"), ops.zeros((b,), "int32")
    frame = _blend(frame, scene["occ_pos"], scene["occ_size"], scene["occ_on"], rectangle,
                   rectangle, stripes, scene["occ_freq"], scene["occ_angle"],
                   scene["occ_phase"], scene["occ_colour"])
    return ops.cast(frame, "uint8")


def _boxes(pos, size):
    return keras.ops.concatenate([pos - size / 2, size], -1)


def train_batch(seed, index, batch_size: int, seq_len: int,
                cfg: SyntheticConfig | None = None, *, bank=None, chunk: int | None = None,
                with_extras: bool = False) -> dict[str, Any]:
    """Training batch `index` of stream `seed`, rendered with backend ops.

    Args:
        seed, index: ints or int32 scalar tensors; the batch is a pure function of them (and
            of the shapes and `cfg`), so a compiled step can render batch `step` itself.
        batch_size, seq_len: B and T (static).
        cfg: the distribution (`SyntheticConfig`, procedural textures).
        bank: `texture_bank(cfg)`, passed in as an argument of a compiled function.
        chunk: render this many sequences at a time (`render_scene`); None: all at once.
        with_extras: add `distractor_boxes` (B, T, K, 4) (zero boxes in unused slots, as
            `synthetic.fixed_set` pads), `distractor_present` (B, K), `occluder_boxes`
            (B, T, 1, 4) and `occluder_present` (B,).

    Returns:
        frames (B, T, H, W, 3) uint8, boxes (B, T, 4) float32 (y, x, h, w) and presence
        (B, T) float32, as `synthetic.train_batch`.
    """
    ops = keras.ops
    cfg = cfg or SyntheticConfig()
    scene = sample_scene(seed, index, batch_size, seq_len, cfg)
    out = dict(frames=render_scene(scene, cfg, bank, chunk), **scene_boxes(scene, cfg))
    if with_extras:
        dis = _boxes(scene["pos"][:, 1:], scene["size"][:, 1:])  # (B, K, T, 4)
        out["distractor_boxes"] = ops.transpose(
            dis * scene["present"][:, 1:, None, None], (0, 2, 1, 3))
        out["distractor_present"] = scene["present"][:, 1:]
        out["occluder_boxes"] = _boxes(scene["occ_pos"], scene["occ_size"])[:, :, None]
        out["occluder_present"] = scene["occ_on"]
    return out


def scene_boxes(scene: dict[str, Any], cfg: SyntheticConfig) -> dict[str, Any]:
    """The target's boxes (B, T, 4) and presence (B, T) of a scene."""
    ops = keras.ops
    pos = scene["pos"][:, 0]  # (B, T, 2)
    image = np.array(cfg.image_size, np.float32)
    inside = ops.cast(ops.all((pos >= 0) & (pos < image), -1), "float32")
    # Cut at the first absence: a target that left stays lost.
    return dict(boxes=_boxes(pos, scene["size"][:, 0]), presence=ops.cumprod(inside, axis=1))


def device_batches(cfg: SyntheticConfig, batch_size: int, seq_len: int, seed: int = 0,
                   chunk: int | None = None):
    """(render, bank): render(bank, index) -> training batch `index` of stream `seed`.

    `render` is pure and traceable: call it inside the compiled train step with the step
    counter as `index` (an int32 scalar) and `bank` as one of the step's arguments, so each
    step renders its own batch on the device. Batches are (x, y) as `datasets.to_xy` gives.
    """
    cfg = cfg or SyntheticConfig()
    _check(cfg, batch_size, seq_len)

    def render(bank, index):
        batch = train_batch(seed, index, batch_size, seq_len, cfg, bank=bank, chunk=chunk)
        x = {"frames": batch["frames"], "box0": batch["boxes"][:, 0]}
        y = {"boxes": batch["boxes"], "presence": batch["presence"]}
        return x, y

    return render, texture_bank(cfg)
