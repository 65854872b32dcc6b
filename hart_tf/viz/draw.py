"""Pictures of tracking: boxes on frames, glimpse/location-map panels, strips, GIFs, IoU plots.

Every function returns a uint8 RGB array `(H, W, 3)`, so the same pictures feed evaluation
PNGs, TensorBoard image summaries and `track --gif`. Conventions: boxes are `(y, x, h, w)` in
pixels with `(y, x)` the top-left corner; frames and glimpses are uint8 RGB (float images in
[0, 1] or [0, 255], grey `(H, W)` and `(H, W, 1)` images are accepted too); location maps are
`(fh, fw)` floats in [0, 1].

Plots use `matplotlib.figure.Figure` with the Agg canvas directly (never pyplot), so importing
this module changes no global matplotlib state.
"""

import functools
import os
from collections.abc import Collection, Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw, ImageFont

from hart_tf.utils.files import write_atomic

Color = tuple[int, int, int]

DEFAULT_COLORS: dict[str, Color] = {
    "gt": (0, 220, 0),
    "pred": (255, 40, 40),
    "att": (40, 120, 255),
}
# Colours for box names without a default, in order of first use within one call.
_EXTRA_COLORS: tuple[Color, ...] = (
    (255, 210, 0),
    (230, 0, 230),
    (0, 220, 220),
    (255, 140, 0),
)
_DASH_ON, _DASH_PERIOD = 4, 7  # dashed outlines: 4 pixels drawn, 3 skipped
_GAP = 4  # white pixels between the tiles of a panel
_CELL_GAP = 12  # wider between the cells of a strip, so that panels are told apart
_FONT_SIZE = 10
_TITLE_H = 16  # height of the "t=..." bar above each cell of a strip
_BACKGROUND = 255


def draw_boxes(
    frame: np.ndarray,
    boxes: Mapping[str, Sequence[float] | np.ndarray],
    colors: Mapping[str, Color] | None = None,
    linewidth: int = 2,
    dashed: Collection[str] = (),
    labels: bool = True,
) -> np.ndarray:
    """Draws labelled rectangles into a copy of `frame` (numpy only, fast enough per frame).

    The outline of box `(y, x, h, w)` covers pixel rows `round(y) .. round(y + h) - 1` and the
    matching columns, `linewidth` pixels thick, inwards; pixels inside the outline are left as
    they are. Parts outside the frame are clipped. Boxes with a non-finite value or a
    non-positive size are not drawn (a diverged tracker must not stop a GIF from being written).
    Each label is a small tag with the box name in the box colour, placed outside the box (and
    left out where neither above nor below has room, so the inside is never covered).

    Args:
        frame: `(H, W, 3)` image (see the module docstring for accepted dtypes).
        boxes: name -> `(y, x, h, w)`.
        colors: name -> RGB, overriding `DEFAULT_COLORS` (gt green, pred red, att blue).
        linewidth: outline thickness in pixels, >= 1.
        dashed: names of boxes drawn with dashed outlines.
        labels: whether to draw the name tags.

    Returns:
        `(H, W, 3)` uint8 image.
    """
    if linewidth < 1:
        raise ValueError(f"draw_boxes: linewidth must be >= 1, got {linewidth}")
    img = _as_rgb_uint8(frame, "draw_boxes: frame").copy()
    palette = _palette(boxes, colors)
    drawn = []
    for name, box in boxes.items():
        b = np.asarray(box, dtype=np.float64)
        if b.shape != (4,):
            raise ValueError(
                f"draw_boxes: box {name!r} must be 4 values (y, x, h, w), got shape {b.shape}"
            )
        if not np.all(np.isfinite(b)) or b[2] <= 0 or b[3] <= 0:
            continue
        y0, x0 = _round(b[0]), _round(b[1])
        # Last pixel row/column inside the box; at least one pixel, however small the box.
        y1, x1 = max(y0, _round(b[0] + b[2]) - 1), max(x0, _round(b[1] + b[3]) - 1)
        _draw_rect(img, y0, x0, y1, x1, palette[name], linewidth, name in dashed)
        drawn.append((name, y0, x0, y1, x1))
    if labels and drawn:
        img = _draw_tags(img, drawn, palette)
    return img


def tracking_panel(
    frame: np.ndarray,
    boxes: Mapping[str, Sequence[float] | np.ndarray],
    glimpse: np.ndarray | None = None,
    location_map: np.ndarray | None = None,
    colors: Mapping[str, Color] | None = None,
    labels: bool = True,
    dashed: Collection[str] = (),
) -> np.ndarray:
    """The frame with boxes, then the glimpse, then the location map, side by side.

    Like the paper's Figs. 1, 4 and 6. Glimpse and map are scaled (nearest neighbour, so their
    true resolution stays visible) to the frame's height; the map is drawn at the glimpse's
    size with the viridis colormap on the fixed range [0, 1].

    Args:
        frame: `(H, W, 3)` image.
        boxes: name -> `(y, x, h, w)`, drawn with `draw_boxes`.
        glimpse: optional `(gh, gw, 3)` image.
        location_map: optional `(fh, fw)` (or `(fh, fw, 1)`) values in [0, 1].
        colors: box colours, as in `draw_boxes`.
        labels: whether to tag the boxes with their names, as in `draw_boxes`.
        dashed: names of boxes drawn dashed, as in `draw_boxes`.

    Returns:
        `(H, W', 3)` uint8 image, tiles separated by white gaps.
    """
    tiles = [draw_boxes(frame, boxes, colors, labels=labels, dashed=dashed)]
    height = tiles[0].shape[0]
    tile_hw = None
    if glimpse is not None:
        g = _as_rgb_uint8(glimpse, "tracking_panel: glimpse")
        tile_hw = (height, max(1, _round(g.shape[1] * height / g.shape[0])))
        tiles.append(_resize_nearest(g, *tile_hw))
    if location_map is not None:
        m = np.asarray(location_map, dtype=np.float32)
        if m.ndim == 3 and m.shape[-1] == 1:
            m = m[..., 0]
        if m.ndim != 2 or m.size == 0:
            raise ValueError(f"tracking_panel: location_map must be (fh, fw), got shape {m.shape}")
        if tile_hw is None:
            tile_hw = (height, max(1, _round(m.shape[1] * height / m.shape[0])))
        tiles.append(_colormap(_resize_nearest(m, *tile_hw)))
    return _hconcat(tiles)


def strip_steps(num_steps: int, max_frames: int) -> np.ndarray:
    """The time steps `sequence_strip` shows: up to `max_frames` evenly spaced, first and last
    included (int [S])."""
    steps = np.unique(np.round(np.linspace(0, num_steps - 1, min(num_steps, max_frames))))
    return steps.astype(int)


def sequence_strip(
    frames: np.ndarray,
    boxes: Mapping[str, np.ndarray],
    glimpses: np.ndarray | None = None,
    location_maps: np.ndarray | None = None,
    max_frames: int = 8,
    ncols: int | None = None,
    colors: Mapping[str, Color] | None = None,
    step_labels: Sequence[int] | None = None,
    dashed: Collection[str] = (),
) -> np.ndarray:
    """A grid of `tracking_panel`s for up to `max_frames` evenly spaced time steps.

    Each cell is titled `t=<index into the sequence>`, with a colour legend of the boxes on the
    right of the title bar instead of tags on the boxes, which would hide small objects. Float
    frames are scaled by one rule for
    the whole sequence, so brightness does not jump between cells.

    Args:
        frames: `(T, H, W, 3)` images.
        boxes: name -> `(T, 4)` boxes `(y, x, h, w)`.
        glimpses: optional `(T, gh, gw, 3)`.
        location_maps: optional `(T, fh, fw)` in [0, 1].
        max_frames: most time steps shown (first and last always included).
        ncols: grid columns; by default chosen so that the grid is about 16:9.
        colors: box colours, as in `draw_boxes`.
        step_labels: the number shown as `t=` for each of the T steps (default: its index),
            e.g. the frame numbers of frames picked from a longer clip (`strip_steps`).
        dashed: names of boxes drawn dashed (later boxes are drawn over earlier ones).

    Returns:
        `(rows * (_TITLE_H + H) + (rows - 1) * _CELL_GAP, cols * W' + (cols - 1) * _CELL_GAP, 3)`
        uint8, where `W'` is the width of one `tracking_panel`.
    """
    if max_frames < 1:
        raise ValueError(f"sequence_strip: max_frames must be >= 1, got {max_frames}")
    frames = _as_rgb_uint8(frames, "sequence_strip: frames", batch=True)
    num_steps = frames.shape[0]
    boxes = {k: np.asarray(v, dtype=np.float64) for k, v in boxes.items()}
    for name, b in boxes.items():
        if b.shape != (num_steps, 4):
            raise ValueError(
                f"sequence_strip: boxes[{name!r}] must be ({num_steps}, 4), got {b.shape}"
            )
    if glimpses is not None:
        glimpses = _as_rgb_uint8(glimpses, "sequence_strip: glimpses", batch=True)
    for what, seq in (("glimpses", glimpses), ("location_maps", location_maps)):
        if seq is not None and len(seq) != num_steps:
            raise ValueError(
                f"sequence_strip: {what} has {len(seq)} steps but frames has {num_steps}"
            )
    if step_labels is not None and len(step_labels) != num_steps:
        raise ValueError(f"sequence_strip: step_labels has {len(step_labels)} entries but "
                         f"frames has {num_steps} steps")
    steps = strip_steps(num_steps, max_frames)
    palette = _palette(boxes, colors)  # one palette, so a name keeps its colour in every cell
    panels = [
        tracking_panel(
            frames[t],
            {k: b[t] for k, b in boxes.items()},
            None if glimpses is None else glimpses[t],
            None if location_maps is None else location_maps[t],
            palette,
            labels=False,
            dashed=dashed,
        )
        for t in steps
    ]
    ph, pw = panels[0].shape[:2]
    cell_h = _TITLE_H + ph
    n = len(panels)
    if ncols is None:
        # Columns whose grid aspect ratio is closest to 16:9 (in log scale).
        ncols = min(
            range(1, n + 1),
            key=lambda c: abs(np.log(c * pw / (-(-n // c) * cell_h)) - np.log(16 / 9)),
        )
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    canvas = np.full(
        (nrows * cell_h + (nrows - 1) * _CELL_GAP, ncols * pw + (ncols - 1) * _CELL_GAP, 3),
        _BACKGROUND,
        np.uint8,
    )
    origins = []
    for i, panel in enumerate(panels):
        top, left = (i // ncols) * (cell_h + _CELL_GAP), (i % ncols) * (pw + _CELL_GAP)
        canvas[top + _TITLE_H : top + cell_h, left : left + pw] = panel
        origins.append((top, left))
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    font = _font()
    middle = _TITLE_H // 2
    for (top, left), t in zip(origins, steps, strict=True):
        label = t if step_labels is None else step_labels[t]
        draw.text((left + 1, top + middle), f"t={label}", fill=(0, 0, 0), font=font, anchor="lm")
        x = left + pw  # legend, right-aligned: a colour swatch, then the name
        for name in reversed(list(boxes)):
            x -= int(np.ceil(draw.textlength(name, font=font)))
            draw.text((x, top + middle), name, fill=(0, 0, 0), font=font, anchor="lm")
            x -= 11
            draw.rectangle((x, top + middle - 4, x + 7, top + middle + 3), fill=palette[name])
            x -= 8
    return np.asarray(image)


def iou_per_step_figure(
    curves: Mapping[str, np.ndarray],
    path: str | os.PathLike | None = None,
    title: str = "Mean IoU per time step",
) -> np.ndarray:
    """Line plot of mean IoU against time step, one curve per variant or method (paper Fig. 5).

    Args:
        curves: name -> `(T,)` mean IoU at each step; NaN leaves a gap.
        path: where to write the plot as a PNG (atomically), if given.
        title: plot title.

    Returns:
        `(400, 600, 3)` uint8 RGB rendering of the plot.
    """
    if not curves:
        raise ValueError("iou_per_step_figure: curves is empty")
    fig = Figure(figsize=(6, 4), dpi=100, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, curve in curves.items():
        c = np.asarray(curve, dtype=np.float64)
        if c.ndim != 1 or c.size == 0:
            raise ValueError(f"iou_per_step_figure: curve {name!r} must be (T,), got {c.shape}")
        # Markers help to read short curves; on long ones they only clutter.
        ax.plot(np.arange(c.size), c, label=name, marker="o" if c.size <= 30 else None, ms=3)
    ax.set_xlabel("time step t")
    ax.set_ylabel("mean IoU")
    ax.set_title(title)
    ax.set_ylim(0.0, 1.0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    if path is not None:
        save_png(rgb, path)
    return rgb


def save_png(array: np.ndarray, path: str | os.PathLike) -> None:
    """Writes an image as PNG atomically (temp file, then `os.replace`), creating folders."""
    image = Image.fromarray(_as_rgb_uint8(array, f"save_png({os.fspath(path)!r})"))
    write_atomic(path, lambda f: image.save(f, format="PNG"))


def save_gif(
    frames: Sequence[np.ndarray] | np.ndarray, path: str | os.PathLike, fps: float = 10.0
) -> None:
    """Writes an animated, looping GIF atomically.

    GIF timing has 10 ms resolution, so the frame time is rounded. Pillow merges identical
    consecutive frames into one longer frame, which looks the same.

    Args:
        frames: `(T, H, W, 3)` array or a list of equally shaped images.
        path: output file.
        fps: frames per second, > 0.
    """
    where = f"save_gif({os.fspath(path)!r})"
    if not fps > 0:
        raise ValueError(f"{where}: fps must be > 0, got {fps}")
    if len(frames) == 0:
        raise ValueError(f"{where}: no frames")
    shapes = {np.shape(f) for f in frames}
    if len(shapes) != 1:
        raise ValueError(f"{where}: frames must share one shape, got {sorted(shapes)}")
    video = _as_rgb_uint8(np.stack(list(frames)), f"{where}: frames", batch=True)
    images = [Image.fromarray(f) for f in video]
    duration_ms = max(10, _round(1000.0 / fps))
    write_atomic(
        path,
        lambda f: images[0].save(
            f,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=duration_ms,
            loop=0,
        ),
    )


def _as_rgb_uint8(array, what: str, batch: bool = False) -> np.ndarray:
    """`(H, W[, C])` (or `(T, H, W[, C])` when `batch`) -> uint8 `(..., H, W, 3)`.

    Floats whose maximum is <= 1 are taken as [0, 1], other floats as [0, 255]; the rule is
    applied to the whole array at once.
    """
    a = np.asarray(array)
    rank = 4 if batch else 3
    if a.ndim == rank - 1:
        a = a[..., None]
    if a.ndim != rank or a.shape[-1] not in (1, 3, 4) or 0 in a.shape:
        want = "(T, H, W, 3)" if batch else "(H, W, 3)"
        raise ValueError(f"{what}: expected an image {want}, got shape {np.shape(array)}")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    a = a[..., :3]  # drop alpha
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        a = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        if a.max() <= 1.0:
            a = a * 255.0
        a = np.round(a)
    elif not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{what}: unsupported dtype {a.dtype}")
    return np.clip(a, 0, 255).astype(np.uint8)


def _round(v: float) -> int:
    return int(np.floor(v + 0.5))  # half up: Python's round() goes to even


def _palette(boxes: Mapping[str, object], colors: Mapping[str, Color] | None) -> dict:
    # Tuples of ints: numpy slices and PIL both take them, whatever the caller passed.
    palette = {k: tuple(int(c) for c in v) for k, v in {**DEFAULT_COLORS, **(colors or {})}.items()}
    extra = iter(_EXTRA_COLORS * (1 + len(boxes) // len(_EXTRA_COLORS)))
    for name in boxes:
        if name not in palette:
            palette[name] = next(extra)
    return palette


def _draw_rect(img, y0, x0, y1, x1, color, linewidth, dashed) -> None:
    lw_y, lw_x = min(linewidth, y1 - y0 + 1), min(linewidth, x1 - x0 + 1)
    edges = (  # (rows, cols, dash along columns?)
        ((y0, y0 + lw_y), (x0, x1 + 1), True),  # top
        ((y1 - lw_y + 1, y1 + 1), (x0, x1 + 1), True),  # bottom
        ((y0, y1 + 1), (x0, x0 + lw_x), False),  # left
        ((y0, y1 + 1), (x1 - lw_x + 1, x1 + 1), False),  # right
    )
    height, width = img.shape[:2]
    for (r0, r1), (c0, c1), along_cols in edges:
        r0, r1 = max(r0, 0), min(r1, height)
        c0, c1 = max(c0, 0), min(c1, width)
        if r0 >= r1 or c0 >= c1:
            continue
        if not dashed:
            img[r0:r1, c0:c1] = color
            continue
        # Dash phase counts from the box corner so that it does not move with clipping.
        if along_cols:
            on = (np.arange(c0, c1) - x0) % _DASH_PERIOD < _DASH_ON
            img[r0:r1, np.arange(c0, c1)[on]] = color
        else:
            on = (np.arange(r0, r1) - y0) % _DASH_PERIOD < _DASH_ON
            img[np.arange(r0, r1)[on], c0:c1] = color


def _draw_tags(img: np.ndarray, drawn, palette) -> np.ndarray:
    """Name tags outside each box where room is, avoiding tags already placed."""
    height, width = img.shape[:2]
    image = Image.fromarray(img)
    draw = ImageDraw.Draw(image)
    font = _font()
    ascent, descent = font.getmetrics()
    tag_h = ascent + descent
    placed = []
    for name, y0, x0, y1, x1 in drawn:
        tag_w = int(np.ceil(draw.textlength(name, font=font))) + 4
        candidates = [
            (y0 - tag_h, x0),  # above, left-aligned
            (y1 + 1, x0),  # below, left-aligned
            (y0 - tag_h, x1 + 1 - tag_w),  # above, right-aligned
            (y1 + 1, x1 + 1 - tag_w),  # below, right-aligned
        ]
        candidates = [
            (ty, min(max(tx, 0), width - tag_w))
            for ty, tx in candidates
            if ty >= 0 and ty + tag_h <= height
        ]
        free = [c for c in candidates if not any(_overlap(c, tag_h, tag_w, p) for p in placed)]
        if not candidates:  # no room above or below: the colour must do, the inside stays clear
            continue
        ty, tx = (free or candidates)[0]
        placed.append((ty, tx, tag_h, tag_w))
        color = palette[name]
        draw.rectangle((tx, ty, tx + tag_w - 1, ty + tag_h - 1), fill=color)
        luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
        ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
        draw.text((tx + 2, ty), name, fill=ink, font=font)
    return np.asarray(image)


def _overlap(corner, tag_h, tag_w, other) -> bool:
    (ty, tx), (oy, ox, oh, ow) = corner, other
    return ty < oy + oh and oy < ty + tag_h and tx < ox + ow and ox < tx + tag_w


@functools.cache
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    # Pillow's bundled font: no font files needed on the machine.
    return ImageFont.load_default(size=_FONT_SIZE)


@functools.cache
def _viridis_lut() -> np.ndarray:
    lut = matplotlib.colormaps["viridis"](np.linspace(0.0, 1.0, 256))[:, :3]  # (256, 3)
    return np.round(lut * 255).astype(np.uint8)


def _colormap(values: np.ndarray) -> np.ndarray:
    index = np.round(np.clip(np.nan_to_num(values), 0.0, 1.0) * 255).astype(np.intp)
    return _viridis_lut()[index]  # (h, w, 3)


def _resize_nearest(a: np.ndarray, height: int, width: int) -> np.ndarray:
    rows = np.arange(height) * a.shape[0] // height
    cols = np.arange(width) * a.shape[1] // width
    return a[rows[:, None], cols[None, :]]


def _hconcat(tiles: list[np.ndarray]) -> np.ndarray:
    gap = np.full((tiles[0].shape[0], _GAP, 3), _BACKGROUND, np.uint8)
    parts = [tiles[0]]
    for tile in tiles[1:]:
        parts += [gap, tile]
    return np.concatenate(parts, axis=1)
