"""Tests for hart_tf.viz: box drawing, panels, strips, GIF/PNG writing, IoU plots."""

import os

import matplotlib
import numpy as np
import pytest
from PIL import Image

from hart_tf.viz import draw as viz

GREEN, RED, BLUE = (viz.DEFAULT_COLORS[k] for k in ("gt", "pred", "att"))


def _frame(h=40, w=50, seed=0):
    # Values kept away from the box colours' channels so that no pixel matches by chance.
    return np.random.default_rng(seed).integers(60, 200, (h, w, 3), dtype=np.uint8)


def _outline_mask(shape, y0, x0, y1, x1, lw):
    """Outline pixels of the box covering rows y0..y1, cols x0..x1 (inclusive), drawn inwards."""
    mask = np.zeros(shape, bool)
    mask[y0 : y1 + 1, x0 : x1 + 1] = True
    mask[y0 + lw : y1 + 1 - lw, x0 + lw : x1 + 1 - lw] = False
    return mask


def _interior_mask(shape, y0, x0, y1, x1, lw):
    mask = np.zeros(shape, bool)
    mask[y0 + lw : y1 + 1 - lw, x0 + lw : x1 + 1 - lw] = True
    return mask


def test_draw_boxes_colours_outline_and_leaves_rest_untouched():
    frame = _frame()
    before = frame.copy()
    out = viz.draw_boxes(frame, {"gt": (10, 12, 15, 20)}, labels=False)
    outline = _outline_mask(frame.shape[:2], 10, 12, 24, 31, lw=2)
    assert out.dtype == np.uint8 and out.shape == frame.shape
    assert np.all(out[outline] == GREEN)
    np.testing.assert_array_equal(out[~outline], frame[~outline])
    np.testing.assert_array_equal(frame, before)  # drew into a copy


def test_draw_boxes_default_colours_and_overrides():
    frame = _frame(60, 60)
    boxes = {"gt": (2, 2, 10, 10), "pred": (20, 20, 10, 10), "att": (40, 40, 10, 10)}
    out = viz.draw_boxes(frame, boxes, labels=False, linewidth=1)
    assert tuple(out[2, 2]) == GREEN and tuple(out[20, 20]) == RED and tuple(out[40, 40]) == BLUE
    out = viz.draw_boxes(frame, {"gt": (2, 2, 10, 10)}, colors={"gt": (1, 2, 3)}, labels=False)
    assert tuple(out[2, 2]) == (1, 2, 3)
    out = viz.draw_boxes(frame, {"other": (2, 2, 10, 10)}, labels=False)
    assert tuple(out[2, 2]) not in (GREEN, RED, BLUE, tuple(frame[2, 2]))


def test_draw_boxes_labels_outside_and_interior_untouched():
    frame = _frame(100, 100)
    boxes = {"gt": (30, 20, 30, 25), "pred": (32, 22, 30, 25), "att": (20, 10, 50, 45)}
    outlines = np.zeros(frame.shape[:2], bool)
    for name, (y, x, h, w) in boxes.items():
        out = viz.draw_boxes(frame, {name: (y, x, h, w)})
        interior = _interior_mask(frame.shape[:2], y, x, y + h - 1, x + w - 1, lw=2)
        outline = _outline_mask(frame.shape[:2], y, x, y + h - 1, x + w - 1, lw=2)
        np.testing.assert_array_equal(out[interior], frame[interior])
        color = viz.DEFAULT_COLORS[name]
        assert np.any(np.all(out[~outline & ~interior] == color, axis=-1))  # the tag
        outlines |= outline
    # Together, every tag is still visible off the outlines.
    out = viz.draw_boxes(frame, boxes)
    for color in (GREEN, RED, BLUE):
        assert np.any(np.all(out[~outlines] == color, axis=-1))


def test_draw_boxes_dashed_outline_has_gaps():
    frame = _frame()
    out = viz.draw_boxes(frame, {"att": (5, 5, 30, 40)}, dashed={"att"}, labels=False)
    outline = _outline_mask(frame.shape[:2], 5, 5, 34, 44, lw=2)
    on = np.all(out == BLUE, axis=-1)
    assert 0.3 < on[outline].mean() < 0.9
    assert not np.any(on[~outline])


def test_draw_boxes_clips_boxes_partly_outside():
    frame = _frame(30, 30)
    out = viz.draw_boxes(frame, {"gt": (-5, -5, 20, 20)}, labels=False, linewidth=1)
    # Rows/cols -5..14: only the bottom (row 14) and right (col 14) edges are inside the frame.
    expected = np.zeros((30, 30), bool)
    expected[14, :15] = True
    expected[:15, 14] = True
    np.testing.assert_array_equal(np.all(out == GREEN, axis=-1), expected)
    np.testing.assert_array_equal(out[~expected], frame[~expected])


@pytest.mark.parametrize(
    "box",
    [
        (100, 100, 5, 5),  # entirely outside
        (-10, -10, 60, 60),  # encloses the frame: every edge is outside
        (float("nan"), 0, 5, 5),
        (0, 0, -5, 5),
    ],
)
def test_draw_boxes_draws_nothing_for_unshowable_boxes(box):
    frame = _frame(30, 30)
    np.testing.assert_array_equal(viz.draw_boxes(frame, {"gt": box}), frame)


def test_draw_boxes_rejects_bad_input():
    with pytest.raises(ValueError, match="box 'gt' must be 4 values"):
        viz.draw_boxes(_frame(), {"gt": (1, 2, 3)})
    with pytest.raises(ValueError, match=r"expected an image \(H, W, 3\)"):
        viz.draw_boxes(np.zeros((4, 5, 6, 3)), {})
    with pytest.raises(ValueError, match="linewidth"):
        viz.draw_boxes(_frame(), {}, linewidth=0)


def test_float_and_grey_frames_are_accepted():
    frame = _frame()
    box = {"gt": (3, 4, 10, 10)}
    expected = viz.draw_boxes(frame, box)
    np.testing.assert_array_equal(viz.draw_boxes(frame / 255.0, box), expected)
    np.testing.assert_array_equal(viz.draw_boxes(frame.astype(np.float32), box), expected)
    grey = viz.draw_boxes(frame[..., 0], box, labels=False)
    assert grey.shape == frame.shape and tuple(grey[3, 4]) == GREEN
    np.testing.assert_array_equal(grey[20, 20], [frame[20, 20, 0]] * 3)


def test_tracking_panel_layout_and_colormap():
    frame = _frame(30, 40)
    boxes = {"gt": (3, 4, 10, 10)}
    glimpse = np.zeros((8, 8, 3), np.uint8)
    location_map = np.zeros((4, 4))
    location_map[0, 0] = 1.0
    panel = viz.tracking_panel(frame, boxes, glimpse, location_map)
    # frame | gap | glimpse scaled to 30x30 | gap | map at the glimpse's size
    assert panel.shape == (30, 40 + viz._GAP + 30 + viz._GAP + 30, 3)
    np.testing.assert_array_equal(panel[:, :40], viz.draw_boxes(frame, boxes))
    np.testing.assert_array_equal(panel[:, 40 + viz._GAP : 70 + viz._GAP], 0)
    cmap = matplotlib.colormaps["viridis"]
    hot, cold = (np.round(np.array(cmap(v)[:3]) * 255) for v in (1.0, 0.0))
    tile = panel[:, -30:]
    np.testing.assert_array_equal(tile[:7, :7], np.broadcast_to(hot, (7, 7, 3)))
    np.testing.assert_array_equal(tile[-7:, -7:], np.broadcast_to(cold, (7, 7, 3)))


def test_tracking_panel_optional_tiles():
    frame = _frame(30, 40)
    assert viz.tracking_panel(frame, {}).shape == (30, 40, 3)
    # A map without glimpse keeps its own aspect ratio at the frame's height.
    assert viz.tracking_panel(frame, {}, location_map=np.zeros((3, 6))).shape == (30, 104, 3)
    with pytest.raises(ValueError, match="location_map must be"):
        viz.tracking_panel(frame, {}, location_map=np.zeros((3, 6, 2)))


def test_sequence_strip_shape_and_titles():
    rng = np.random.default_rng(1)
    num_steps = 10
    frames = rng.random((num_steps, 24, 32, 3))
    boxes = {"gt": np.tile([4, 4, 10, 12], (num_steps, 1)), "pred": np.ones((num_steps, 4))}
    glimpses = rng.random((num_steps, 8, 8, 3))
    maps = rng.random((num_steps, 4, 4))
    ph, pw = viz.tracking_panel(frames[0], {}, glimpses[0], maps[0]).shape[:2]
    strip = viz.sequence_strip(frames, boxes, glimpses, maps, max_frames=4, ncols=2)
    cell_h, gap = viz._TITLE_H + ph, viz._CELL_GAP
    assert strip.dtype == np.uint8
    assert strip.shape == (2 * cell_h + gap, 2 * pw + gap, 3)
    assert np.any(strip[: viz._TITLE_H] != 255)  # title text drawn
    one_row = viz.sequence_strip(frames, boxes, glimpses, maps, max_frames=4, ncols=4)
    assert one_row.shape == (cell_h, 4 * pw + 3 * gap, 3)
    # Fewer steps than max_frames: every step shown; default columns pick some grid.
    short = viz.sequence_strip(frames[:3], {k: v[:3] for k, v in boxes.items()}, ncols=1)
    assert short.shape == (3 * (viz._TITLE_H + 24) + 2 * gap, 32, 3)
    assert viz.sequence_strip(frames, boxes).ndim == 3


def test_sequence_strip_rejects_mismatched_lengths():
    frames = np.zeros((5, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"boxes\['gt'\] must be \(5, 4\)"):
        viz.sequence_strip(frames, {"gt": np.zeros((4, 4))})
    with pytest.raises(ValueError, match="location_maps has 3 steps"):
        viz.sequence_strip(frames, {}, location_maps=np.zeros((3, 2, 2)))


def test_save_gif_writes_readable_animation(tmp_path):
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 0, 0)]
    frames = [np.full((20, 24, 3), c, np.uint8) for c in colors]
    path = tmp_path / "sub" / "track.gif"
    viz.save_gif(frames, path, fps=10)
    with Image.open(path) as gif:
        assert gif.n_frames == len(frames)
        assert gif.size == (24, 20)
        assert gif.info["duration"] == 100
        for i, c in enumerate(colors):
            gif.seek(i)
            assert gif.convert("RGB").getpixel((5, 5)) == c
    viz.save_gif(np.stack(frames).astype(np.float32) / 255.0, path, fps=5)  # array input
    with Image.open(path) as gif:
        assert gif.n_frames == len(frames)
    with pytest.raises(ValueError, match="fps must be > 0"):
        viz.save_gif(frames, path, fps=0)
    with pytest.raises(ValueError, match="frames must share one shape"):
        viz.save_gif([frames[0], frames[1][:10]], path)


def test_save_png_round_trips(tmp_path):
    image = _frame()
    path = tmp_path / "a" / "b.png"
    viz.save_png(image, path)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), image)


def test_iou_per_step_figure_returns_image_and_writes_png(tmp_path):
    curves = {"HART": np.linspace(0.9, 0.6, 20), "baseline": np.linspace(0.8, 0.2, 20)}
    curves["baseline"][5] = np.nan  # a gap must not break the plot
    path = tmp_path / "iou.png"
    img = viz.iou_per_step_figure(curves, path)
    assert img.dtype == np.uint8 and img.shape == (400, 600, 3)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 10  # more than a blank canvas
    np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), img)
    with pytest.raises(ValueError, match="curve 'x' must be"):
        viz.iou_per_step_figure({"x": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="curves is empty"):
        viz.iou_per_step_figure({})


def test_writes_are_atomic(tmp_path, monkeypatch):
    viz.save_png(_frame(), tmp_path / "a.png")
    viz.save_gif([_frame(seed=1), _frame(seed=2)], tmp_path / "a.gif")
    viz.iou_per_step_figure({"x": np.ones(3)}, tmp_path / "iou.png")
    assert sorted(os.listdir(tmp_path)) == ["a.gif", "a.png", "iou.png"]  # no temp files left
    old = (tmp_path / "a.png").read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    for write in (
        lambda: viz.save_png(_frame(seed=3), tmp_path / "a.png"),
        lambda: viz.save_png(_frame(), tmp_path / "b.png"),
        lambda: viz.save_gif([_frame(), _frame(seed=1)], tmp_path / "b.gif"),
    ):
        with pytest.raises(OSError, match="disk full"):
            write()
    # A failed write leaves the old file whole and no new or temp file behind.
    assert sorted(os.listdir(tmp_path)) == ["a.gif", "a.png", "iou.png"]
    assert (tmp_path / "a.png").read_bytes() == old


def test_strip_steps_and_step_labels():
    np.testing.assert_array_equal(viz.strip_steps(100, 6), [0, 20, 40, 59, 79, 99])
    np.testing.assert_array_equal(viz.strip_steps(3, 6), [0, 1, 2])
    frames = np.zeros((3, 20, 30, 3), np.uint8)
    boxes = {"gt": np.tile([[2.0, 3.0, 5.0, 6.0]], (3, 1))}
    # The same frames titled by other numbers: only the title bar differs.
    plain = viz.sequence_strip(frames, boxes, ncols=3)
    labelled = viz.sequence_strip(frames, boxes, ncols=3, step_labels=[40, 59, 99])
    assert plain.shape == labelled.shape and not np.array_equal(plain, labelled)
    with pytest.raises(ValueError, match="step_labels has 2 entries but frames has 3 steps"):
        viz.sequence_strip(frames, boxes, step_labels=[1, 2])
