"""Drawing synthetic videos: panning texture backgrounds and anti-aliased textured shapes."""

from __future__ import annotations

import functools

import numpy as np

from hart_tf.data.synthetic.motion import SceneObject

_BANK_SIZE = 32
_BANK_SEED = 1712  # fixed: the background bank is part of the dataset's definition


@functools.lru_cache(maxsize=64)
def interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) linear-interpolation weights that upsample n_in knots to n_out pixels."""
    pos = np.linspace(0, n_in - 1, n_out)
    lo = np.minimum(np.floor(pos).astype(int), n_in - 2)
    frac = pos - lo
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), lo] = 1 - frac
    m[np.arange(n_out), lo + 1] = frac
    m.flags.writeable = False  # cached and shared between threads
    return m


def smooth_noise(rng: np.random.Generator, ch: int, hgt: int, wid: int, cell: float):
    """(ch, hgt, wid) bilinearly upsampled uniform noise in [-1, 1], knots `cell` px apart."""
    ky, kx = max(2, int(hgt / cell) + 2), max(2, int(wid / cell) + 2)
    knots = rng.random((ch, ky, kx), np.float32) * 2 - 1
    # Two matmuls (BLAS) rather than one einsum, which would loop in C without BLAS.
    return interp_matrix(hgt, ky) @ knots @ interp_matrix(wid, kx).T  # (ch, hgt, wid)


@functools.lru_cache(maxsize=4)
def texture_bank(hgt: int, wid: int) -> np.ndarray:
    """(N, 2H, 2W, 3) uint8 background textures, built once per frame size from a fixed seed.

    Cached because a texture costs more to synthesise than the rest of a sequence; windows,
    vertical flips and pans of 32 of them give the variety.
    """
    rng = np.random.default_rng(_BANK_SEED)
    th, tw = 2 * hgt, 2 * wid
    bank = np.empty((_BANK_SIZE, th, tw, 3), np.uint8)
    for k in range(_BANK_SIZE):
        tex = rng.uniform(60, 190, (3, 1, 1)) + 45 * smooth_noise(rng, 3, th, tw, 40.0)
        tex += 25 * smooth_noise(rng, 1, th, tw, 6.0) + 20 * rng.random((1, th, tw))
        bank[k] = np.clip(tex, 0, 255).transpose(1, 2, 0)  # (2H, 2W, 3) from planar
    bank.flags.writeable = False
    return bank


def background(rng: np.random.Generator, frames: np.ndarray, pan_speed: float) -> None:
    """Fills frames (T, H, W, 3) with a window of a bank texture that pans by whole pixels."""
    t_len, hgt, wid, _ = frames.shape
    u = rng.random(6)
    pan = pan_speed * (2 * u[:2] - 1)  # (2,) pixels per frame, (y, x)
    # A long sequence pans at most one frame size: the bank textures are twice the frame.
    pan *= min(1.0, hgt / (abs(pan[0]) * t_len + 1e-6), wid / (abs(pan[1]) * t_len + 1e-6))
    steps = np.round(np.arange(t_len)[:, None] * np.abs(pan)).astype(int)  # (T, 2)
    steps = np.where(pan < 0, steps[-1] - steps, steps)
    y0 = int(u[2] * (hgt - steps.max(0)[0] + 1))
    x0 = int(u[3] * (wid - steps.max(0)[1] + 1))
    bank = texture_bank(hgt, wid)
    tex = bank[int(u[4] * len(bank))]
    tex = tex[:: 1 if u[5] < 0.5 else -1]  # flipping rows is free; flipping columns is not
    for t, (y, x) in enumerate(steps.tolist()):
        frames[t] = tex[y0 + y : y0 + y + hgt, x0 + x : x0 + x + wid]


def sdf(shape: str, orient: int, dy, dx, ry, rx) -> np.ndarray:
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


def pattern(kind: str, freq, angle, phase, u, v) -> np.ndarray:
    """Texture in [0, 1] at normalised object coordinates u, v in [-1, 1]."""
    f = np.pi * freq
    if kind == "stripes":
        return 0.5 + 0.5 * np.sin((f * np.cos(angle)) * u + ((f * np.sin(angle)) * v + phase))
    if kind == "checker":
        s = np.sin(f * u + phase) * (1.5 * np.sin(f * v + angle))
        return np.clip(s + 0.5, 0, 1)
    return 0.5 + 0.5 * np.cos(f * np.sqrt(u**2 + v**2) + phase)


def draw(frames: np.ndarray, objs: list[SceneObject]) -> None:
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
    alpha = sdf(objs[0].shape, objs[0].orient, dy, dx, ry, rx)  # (N, Sy, Sx)
    alpha += 0.5  # pixels within half a pixel of the edge are partly covered
    np.minimum(np.maximum(alpha, 0, out=alpha), 1, out=alpha)

    params = np.array([[o.freq, o.angle, o.phase, *o.c1, *o.c2] for o in objs], f32)  # (n, 9)
    params = np.repeat(params, t_len, 0)[:, :, None, None]  # (N, 9, 1, 1)
    tex = pattern(objs[0].texture, *params[:, :3].transpose(1, 0, 2, 3), dx / rx, dy / ry)
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
