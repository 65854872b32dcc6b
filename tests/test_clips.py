"""Tests for the real-clip reader, on the shared clips and on small files made here."""

import numpy as np
import pytest
from PIL import Image

from hart_tf.data import clips
from hart_tf.data.errors import DataError
from hart_tf.utils.boxes import xywh_to_yxhw, yxhw_to_xywh

# name: (frames, (H, W), first box x y w h, greyscale source JPEGs), from real_clips/README.md.
REAL_CLIPS = {
    "Car1": (200, (240, 320), (22, 87, 66, 55), True),
    "David": (150, (240, 320), (128, 79, 64, 78), False),
    "Dog1": (300, (240, 320), (120, 98, 80, 62), True),
    "Jogging1": (130, (288, 352), (110, 97, 25, 101), False),
    "Skiing": (81, (360, 640), (445, 180, 29, 26), False),
    "bag": (196, (360, 480), (291.827, 124.711, 150.346, 139.578), False),
}


def _write_frames(folder, names, size=(6, 8), mode="RGB"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        colour = (i * 20, 0, 0) if mode == "RGB" else i * 20
        Image.new(mode, (size[1], size[0]), colour).save(folder / name)


def _make_sequence(tmp_path, n_frames, gt_text):
    seq = tmp_path / "seq"
    _write_frames(seq / "frames", [f"{i:05d}.jpg" for i in range(n_frames)])
    (seq / "groundtruth.txt").write_text(gt_text)
    return seq


def test_list_sequences_real(shared_data):
    assert clips.list_sequences(shared_data / "real_clips") == sorted(REAL_CLIPS)


@pytest.mark.parametrize("name", sorted(REAL_CLIPS))
def test_real_clip_counts_first_box_and_frames(shared_data, name):
    n, (h, w), box0, grey = REAL_CLIPS[name]
    seq_dir = shared_data / "real_clips" / name
    paths = clips.frame_paths(seq_dir)
    boxes = clips.read_groundtruth(seq_dir / "groundtruth.txt")
    assert len(paths) == n and boxes.shape == (n, 4) and boxes.dtype == np.float32
    assert paths[0].name == "00000.jpg" and paths[-1].name == f"{n - 1:05d}.jpg"
    np.testing.assert_allclose(boxes[0], box0, rtol=1e-6)
    assert np.all(boxes[:, 2:] > 0)
    with Image.open(paths[0]) as img:
        assert (img.mode == "L") == grey  # the README's greyscale clips really are 1-channel
    seq = clips.load_sequence(seq_dir, max_frames=3)
    assert seq["name"] == name
    assert seq["frames"].shape == (3, h, w, 3) and seq["frames"].dtype == np.uint8
    np.testing.assert_array_equal(seq["boxes_xywh"], boxes[:3])
    if grey:
        np.testing.assert_array_equal(seq["frames"][..., 0], seq["frames"][..., 2])


def test_natural_sort_key_orders_numbers_by_value(tmp_path):
    names = ["frame10.jpg", "frame2.jpg", "Frame1.png", "frame02b.jpeg", "notes.txt"]
    _write_frames(tmp_path, [n for n in names if not n.endswith(".txt")])
    (tmp_path / "notes.txt").write_text("not a frame")
    got = [p.name for p in clips.frame_paths(tmp_path)]
    assert got == ["Frame1.png", "frame2.jpg", "frame02b.jpeg", "frame10.jpg"]
    assert sorted(["a10", "a9", "a100"], key=clips.natural_sort_key) == ["a9", "a10", "a100"]


def test_frame_paths_finds_otb_img_folder_and_rejects_empty(tmp_path):
    _write_frames(tmp_path / "seq" / "img", ["0001.jpg", "0002.jpg"])
    assert [p.name for p in clips.frame_paths(tmp_path / "seq")] == ["0001.jpg", "0002.jpg"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no .* frames found"):
        clips.frame_paths(tmp_path / "empty")


@pytest.mark.parametrize(
    "text",
    [
        "1 2 3 4\n5 6 7 8\n\n",
        "1,2,3,4\n5,6,7,8",
        "1\t2\t3\t4\r\n5\t6\t7\t8\r\n",
        "1, 2,3\t4\n5;6 7,8",
    ],
)
def test_read_groundtruth_separators(tmp_path, text):
    path = tmp_path / "groundtruth.txt"
    path.write_bytes(("\ufeff" + text).encode())  # with a BOM, as some Windows tools write
    np.testing.assert_array_equal(clips.read_groundtruth(path), [[1, 2, 3, 4], [5, 6, 7, 8]])


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("1 2 3 4\n1 2 3\n", 2, "expected 4 numbers"),
        ("1 2 3 4\n1 2 3 4 5\n", 2, "expected 4 numbers"),
        ("1 2 x 4\n", 1, "not a number"),
        ("1 2 3 4\n1 2 nan 4\n", 2, "non-finite"),
        ("1 2 0 4\n", 1, "width and height must be > 0"),
        ("1 2 3 -4\n", 1, "width and height must be > 0"),
        ("1 2 3 4\n\n1 2 3 4\n", 2, "expected 4 numbers"),
    ],
)
def test_read_groundtruth_malformed_rows(tmp_path, text, line, message):
    path = tmp_path / "groundtruth.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=f"groundtruth.txt:{line}: {message}") as err:
        clips.read_groundtruth(path)
    assert "\n" not in str(err.value)


def test_read_groundtruth_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match="no such ground-truth file"):
        clips.read_groundtruth(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DataError, match="empty.txt: ground-truth file has no boxes"):
        clips.read_groundtruth(tmp_path / "empty.txt")


def test_load_sequence_count_mismatch(tmp_path):
    seq = _make_sequence(tmp_path, 3, "1 1 2 2\n1 1 2 2\n")
    with pytest.raises(DataError, match="seq: 3 frames but 2 boxes"):
        clips.load_sequence(seq, max_frames=2)  # full counts are checked before truncation


def test_load_sequence_max_frames(tmp_path):
    seq = _make_sequence(tmp_path, 3, "0 0 2 2\n1 1 2 2\n2 2 2 2\n")
    out = clips.load_sequence(seq, max_frames=2)
    assert out["frames"].shape == (2, 6, 8, 3)
    np.testing.assert_array_equal(out["boxes_xywh"], [[0, 0, 2, 2], [1, 1, 2, 2]])
    assert out["frames"][1, 0, 0, 0] > out["frames"][0, 0, 0, 0]  # frames kept in order
    with pytest.raises(ValueError, match="max_frames must be >= 1"):
        clips.load_sequence(seq, max_frames=0)


def test_load_sequence_rejects_frames_of_another_size(tmp_path):
    seq = _make_sequence(tmp_path, 2, "0 0 2 2\n1 1 2 2\n")
    _write_frames(seq / "frames", ["00001.jpg"], size=(5, 8))
    with pytest.raises(DataError, match="00001.jpg: image is 8x5"):
        clips.load_sequence(seq)


@pytest.mark.parametrize("mode, suffix", [("L", ".jpg"), ("RGBA", ".png"), ("P", ".png")])
def test_load_frame_converts_to_rgb(tmp_path, mode, suffix):
    path = tmp_path / f"frame{suffix}"
    img = Image.new(mode, (5, 4), 200 if mode in ("L", "P") else (10, 20, 30, 40))
    img.save(path)
    frame = clips.load_frame(path)
    assert frame.shape == (4, 5, 3) and frame.dtype == np.uint8
    if mode == "RGBA":
        np.testing.assert_array_equal(frame[0, 0], [10, 20, 30])  # alpha dropped, colour kept
    elif mode == "L":
        assert np.all(np.abs(frame.astype(int) - 200) <= 1)  # JPEG rounding only


def test_load_frame_corrupt_file(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(DataError, match="broken.jpg: unreadable") as err:
        clips.load_frame(path)
    assert "\n" not in str(err.value)


def test_box_order_round_trip():
    xywh = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    yxhw = xywh_to_yxhw(xywh)
    np.testing.assert_array_equal(yxhw, [[2, 1, 4, 3], [6, 5, 8, 7]])
    np.testing.assert_array_equal(yxhw_to_xywh(yxhw), xywh)
    assert yxhw.dtype == np.float32
    with pytest.raises(ValueError, match=r"must be \[\.\.\., 4\]"):
        xywh_to_yxhw(np.zeros((2, 3)))
