"""KITTI tracking loader: the original's rules, pinned counts on the real labels, real frames,
the prepared cache, and one-line errors."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from hart_tf.data import kitti, kitti_prepare
from hart_tf.data.errors import DataError
from hart_tf.data.images import read_image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# kitti_stats(all 21 real label files, seq_len=30): {split: {class: (tracks, windows)}}.
PINNED_STATS_30 = {
    "train": {"Car": (714, 1075), "Cyclist": (44, 95), "Misc": (19, 43),
              "Pedestrian": (325, 487), "Person": (24, 19), "Tram": (13, 8), "Truck": (11, 46),
              "Van": (59, 96)},
    "test": {"Car": (164, 157), "Cyclist": (10, 11), "Misc": (3, 2), "Pedestrian": (74, 72),
             "Person": (3, 1), "Tram": (2, 2), "Truck": (10, 11), "Van": (11, 11)},
}
# Windows per split (before augmentation) for two lengths; augmentation multiplies by 4.
PINNED_WINDOWS = {5: {"train": 10149, "test": 1674}, 30: {"train": 1869, "test": 267}}
PINNED_REMOVED = {"DontCare": 18039, "occluded > 1": 9499, "truncated > 1": 471}


def _row(frame, track, cls="Car", trunc=0, occ=0, box=(2.0, 3.0, 10.0, 12.0)):
    left, top, right, bottom = box
    return (f"{frame} {track} {cls} {trunc} {occ} -1.5 {left:.2f} {top:.2f} {right:.2f} "
            f"{bottom:.2f} 1.5 1.6 3.9 1.0 1.7 20.0 -1.5")


def _make(root, seqs, size=(20, 30)):
    """data_dir with training/{image_02,label_02}: seqs = {name: (num_frames, [label rows])}."""
    for name, (num_frames, rows) in seqs.items():
        folder = root / "training" / "image_02" / name
        folder.mkdir(parents=True)
        for f in range(num_frames):
            Image.new("RGB", size[::-1], (f, 0, 0)).save(folder / f"{f:06d}.png")
        labels = root / "training" / "label_02"
        labels.mkdir(parents=True, exist_ok=True)
        (labels / f"{name}.txt").write_text("\n".join(rows) + "\n")
    return str(root)


@pytest.fixture
def real_labels(shared_data):
    return str(shared_data / "kitti_tracking" / "training" / "label_02")


def _reference_windows(label_path, seq_len, train_fraction=0.8):
    """Windows per split of one label file, from a presence matrix (independent of kitti.py)."""
    table = np.genfromtxt(label_path, dtype=str)  # (rows, 17)
    keep = ((table[:, 2] != "DontCare") & (table[:, 3].astype(float) <= 1)
            & (table[:, 4].astype(int) <= 1))
    frame = table[keep, 0].astype(int)
    _, col = np.unique(table[keep, 1].astype(int), return_inverse=True)
    presence = np.zeros((frame.max() + 2, col.max() + 1), bool)  # (frames, objects)
    presence[frame, col] = True
    edges = np.diff(np.r_[0, presence.any(1).astype(int), 0])
    counts = {"train": 0, "test": 0}
    for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        n, k = b - a, int(train_fraction * (b - a) + 0.5)
        parts = {"train": (a, b)} if n <= 2 or n - k == 1 else {"train": (a, a + k),
                                                               "test": (a + k, b)}
        for split, (p, q) in parts.items():
            step = seq_len - seq_len // 2
            starts = [p] if q - p <= seq_len else range(p, q - seq_len + 1, step)
            for s in starts:
                run = np.cumprod(presence[s:min(s + seq_len, q)], axis=0).sum(0)  # (objects,)
                counts[split] += int((run >= 2).sum())
    return counts


def test_stats_pinned_on_real_labels(real_labels):
    seqs = kitti.load_kitti(label_dir=real_labels)
    assert len(seqs) == 21
    stats = kitti_prepare.kitti_stats(seqs, 30)
    got = {s: {c: (v["tracks"], v["windows"]) for c, v in per.items()} for s, per in stats.items()}
    assert got == PINNED_STATS_30
    for seq_len, per_split in PINNED_WINDOWS.items():
        for split, n in per_split.items():
            assert len(kitti.make_windows(seqs, split, seq_len)) == n
            assert len(kitti.make_windows(seqs, split, seq_len, augment=True)) == 4 * n
    removed = {k: sum(s.removed[k] for s in seqs) for k in PINNED_REMOVED}
    assert removed == PINNED_REMOVED


@pytest.mark.parametrize("name", ["0000", "0016", "0019"])
@pytest.mark.parametrize("seq_len", [5, 30])
def test_windows_match_numpy_reference(real_labels, name, seq_len):
    path = os.path.join(real_labels, f"{name}.txt")
    tracks, segments, removed = kitti.read_labels(path)
    seq = kitti.KittiSequence(name, tuple(tracks), segments, removed)
    stats = kitti_prepare.kitti_stats([seq], seq_len)
    got = {s: sum(c["windows"] for c in per.values()) for s, per in stats.items()}
    assert got == _reference_windows(path, seq_len)
    assert got["train"] > 0 and got["test"] > 0


def test_main_prints_stats(real_labels, capsys):
    assert kitti_prepare.main(["kitti", f"--label_dir={real_labels}", "--stats"]) == 0
    out = capsys.readouterr().out
    assert "train  all                1209     1869" in out
    assert "test   all                 277      267" in out
    assert kitti_prepare.main(["kitti", "--label_dir=/nonexistent", "--stats"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/nonexistent: directory not found" in err


def test_module_entry_point(real_labels):
    cmd = [sys.executable, "-m", "hart_tf.data.kitti_prepare", f"--label_dir={real_labels}",
           "--stats", "--seq_len=5"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert "train  Car                 714     5831" in out


def test_split_segment_rules():
    assert kitti.split_segment(0, 1) == {"train": (0, 1), "test": ()}
    assert kitti.split_segment(0, 2) == {"train": (0, 2), "test": ()}
    assert kitti.split_segment(0, 3) == {"train": (0, 3), "test": ()}  # test would be 1 frame
    assert kitti.split_segment(0, 7) == {"train": (0, 7), "test": ()}  # int(6.1) = 6
    assert kitti.split_segment(5, 13) == {"train": (5, 11), "test": (11, 13)}  # int(6.9) = 6
    assert kitti.split_segment(0, 10) == {"train": (0, 8), "test": (8, 10)}


def test_window_starts():
    assert kitti.window_starts(3, 4) == [0]
    assert kitti.window_starts(4, 4) == [0]
    assert kitti.window_starts(10, 4) == [0, 2, 4, 6]
    assert kitti.window_starts(9, 4) == [0, 2, 4]  # the original drops the tail
    assert kitti.window_starts(12, 5) == [0, 3, 6]  # overlap int(5 / 2) = 2


def test_tracks_split_at_gaps_and_windows(tmp_path):
    rows = [_row(f, 1) for f in range(10)]  # A: frames 0-9
    rows += [_row(f, 2, "Pedestrian") for f in (3, 4, 5, 6)]  # B: 3-6
    rows += [_row(2, 3, "Van")]  # C: one frame
    rows += [_row(f, 4, "Cyclist") for f in (0, 1, 4, 5)]  # D: gap at 2-3 -> two tracks
    rows += [_row(f, 5, trunc=2) for f in range(10)]  # filtered by truncation
    rows += [_row(f, 6, occ=2) for f in range(10)]  # filtered by occlusion
    rows += [_row(f, 7, "DontCare") for f in range(3)]
    path = tmp_path / "0000.txt"
    path.write_text("\n".join(rows) + "\n")
    tracks, segments, removed = kitti.read_labels(str(path))
    assert removed == {"DontCare": 3, "occluded > 1": 10, "truncated > 1": 10}
    assert segments == ((0, 10),)
    got = sorted((t.track_id, t.cls, t.start, t.stop) for t in tracks)
    assert got == [(1, "Car", 0, 10), (2, "Pedestrian", 3, 7), (3, "Van", 2, 3),
                   (4, "Cyclist", 0, 2), (4, "Cyclist", 4, 6)]
    np.testing.assert_allclose(tracks[0].boxes[0], [3.0, 2.0, 9.0, 8.0])  # (y, x, h, w)

    seq = kitti.KittiSequence("0000", tuple(tracks), segments, removed)
    # Train frames 0-7: windows at 0, 2, 4 (T=4); test frames 8-9: one window of 2.
    train = [(w.track.track_id, w.start, w.length) for w in kitti.make_windows([seq], "train", 4)]
    assert sorted(train) == [(1, 0, 4), (1, 2, 4), (1, 4, 4), (2, 4, 3), (4, 0, 2), (4, 4, 2)]
    test = [(w.track.track_id, w.start, w.length) for w in kitti.make_windows([seq], "test", 4)]
    assert test == [(1, 8, 2)]
    augmented = kitti.make_windows([seq], "train", 4, augment=True)
    assert [(w.reverse, w.mirror) for w in augmented[:4]] == [
        (False, False), (True, False), (False, True), (True, True)]


def test_unlabelled_frames_split_segments(tmp_path):
    path = tmp_path / "0000.txt"
    path.write_text("\n".join([_row(f, 1) for f in (0, 1, 2, 5, 6)]) + "\n")
    tracks, segments, _ = kitti.read_labels(str(path))
    assert segments == ((0, 3), (5, 7))
    assert [(t.start, t.stop) for t in tracks] == [(0, 3), (5, 7)]


def test_real_frames_samples(six_frames):
    seqs = kitti.load_kitti(data_dir=str(six_frames))
    assert [s.native_size for s in seqs] == [(375, 1242), (370, 1224)]
    windows = kitti.make_windows(seqs, "train", 3)
    assert not kitti.make_windows(seqs, "test", 3)  # 3-frame segments go wholly to training
    # Objects kept (truncation, occlusion <= 1) on the first two frames. 0001 frames 10, 15:
    # tracks 2, 3, 4, 5 (1 is gone at 15). 0016 frames 2, 7: 0-7, 22, 24, 25 (23 is occluded 2).
    assert len(windows) == 4 + 11

    window = next(w for w in windows if w.seq.name == "0001" and w.track.track_id == 0)
    sample = kitti.load_sample(window, seq_len=4)
    assert sample["frames"].shape == (4, 187, 621, 3) and sample["frames"].dtype == np.uint8
    np.testing.assert_array_equal(sample["presence"], [1, 1, 1, 0])
    assert not sample["frames"][3].any() and not sample["boxes"][3].any()
    first = read_image(str(six_frames / "training/image_02/0001/000000.png"), (187, 621))
    np.testing.assert_array_equal(sample["frames"][0], first)
    # Car 0 in 0016 frame 2: left 1096.113377 top 185.391934 right 1223 bottom 236.803249,
    # scaled by this sequence's own 1224x370 (not the original's fixed .5).
    sy, sx = 187 / 370, 621 / 1224
    expected = [185.391934 * sy, 1096.113377 * sx, (236.803249 - 185.391934) * sy,
                (1223 - 1096.113377) * sx]
    np.testing.assert_allclose(sample["boxes"][0], expected, rtol=1e-5)
    assert sample["boxes"][0, 1] + sample["boxes"][0, 3] <= 621

    variants = [kitti.load_sample(kitti.Window(window.seq, window.track, window.start, 3, r, m),
                                  seq_len=3) for r, m in [(True, False), (False, True)]]
    base = kitti.load_sample(window, seq_len=3)
    np.testing.assert_array_equal(variants[0]["frames"], base["frames"][::-1])
    np.testing.assert_array_equal(variants[0]["boxes"], base["boxes"][::-1])
    mirrored = variants[1]
    np.testing.assert_array_equal(mirrored["frames"], base["frames"][:, :, ::-1])
    np.testing.assert_allclose(mirrored["boxes"][:, 1],
                               621 - base["boxes"][:, 1] - base["boxes"][:, 3], rtol=1e-6)
    # The mirrored box covers the mirrored pixels of the original box.
    y, x, h, w = np.round(base["boxes"][1]).astype(int)
    my, mx, mh, mw = np.round(mirrored["boxes"][1]).astype(int)
    np.testing.assert_array_equal(mirrored["frames"][1, my:my + mh, mx:mx + mw],
                                  base["frames"][1, y:y + h, x:x + w][:, ::-1])

    batches = list(kitti.kitti_batches(seqs, "train", 3, batch_size=4, augment=False,
                                       num_threads=2))
    assert len(batches) == 3  # 15 samples, remainder dropped
    assert batches[0]["frames"].shape == (4, 3, 187, 621, 3)
    assert batches[0]["boxes"].shape == (4, 3, 4) and batches[0]["presence"].shape == (4, 3)


def test_prepared_cache(six_frames):
    src = str(six_frames / "training" / "image_02")
    out = str(six_frames / "training" / kitti.PREPARED_SUBDIR)
    assert kitti_prepare.prepare_frames(src, out, progress=False) == 6
    assert Image.open(os.path.join(out, "0001", "000002.png")).size == (621, 187)
    assert kitti_prepare.prepare_frames(src, out, progress=False) == 0  # resumable: nothing left
    os.remove(os.path.join(out, "0000", "000001.png"))
    assert kitti_prepare.prepare_frames(src, out, progress=False) == 1
    assert not [f for _, _, fs in os.walk(out) for f in fs if ".tmp" in f]

    original = kitti.load_kitti(img_dir=src, label_dir=str(six_frames / "training/label_02"))
    prepared = kitti.load_kitti(data_dir=str(six_frames))  # picks the prepared folder
    assert prepared[0].frame_dir.startswith(out) and prepared[1].native_size == (370, 1224)
    for a, b in zip(kitti.make_windows(original, "train", 3),
                    kitti.make_windows(prepared, "train", 3), strict=True):
        sa, sb = kitti.load_sample(a, 3), kitti.load_sample(b, 3)
        for key in sa:
            np.testing.assert_array_equal(sa[key], sb[key])


def test_prepare_kitti_tool(six_frames, tmp_path):
    out = tmp_path / "small"
    cmd = [sys.executable, "tools/prepare_kitti.py", f"--img_dir={six_frames}/training/image_02",
           f"--out_dir={out}", "--num_workers=2"]
    env = dict(os.environ, PYTHONPATH=REPO)
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    assert run.returncode == 0, run.stderr
    assert "wrote 6 frames" in run.stdout and "6/6" in run.stderr  # the progress bar
    assert (out / kitti.PREPARED_MARKER).is_file()
    assert len(list(out.glob("*/*.png"))) == 6
    bad = subprocess.run(cmd[:2] + ["--img_dir=/nonexistent", f"--out_dir={out}"],
                         capture_output=True, text=True, cwd=REPO, env=env)
    assert bad.returncode == 1
    assert bad.stderr.strip() == "error: /nonexistent: directory not found"


# ----- errors: one line, naming the file and line or field --------------------------------


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_error_missing_directory(tmp_path):
    assert f"{tmp_path}/nope: directory not found" in _error(
        kitti.load_kitti, label_dir=str(tmp_path / "nope"))


def test_error_label_without_images(tmp_path):
    root = _make(tmp_path, {"0000": (2, [_row(0, 1), _row(1, 1)])})
    (tmp_path / "training/label_02/0001.txt").write_text(_row(0, 1) + "\n")
    assert "0001.txt: no image folder" in _error(kitti.load_kitti, data_dir=root)


def test_error_images_without_labels(tmp_path):
    root = _make(tmp_path, {"0000": (2, [_row(0, 1), _row(1, 1)])})
    (tmp_path / "training/image_02/0003").mkdir()
    message = _error(kitti.load_kitti, data_dir=root)
    assert "image_02/0003: image folder has no label file" in message


def test_error_not_a_png(tmp_path):
    root = _make(tmp_path, {"0000": (2, [_row(0, 1), _row(1, 1)])})
    (tmp_path / "training/image_02/0000/000000.png").write_bytes(b"not a png")
    assert "0000/000000.png: unreadable image" in _error(kitti.load_kitti, data_dir=root)


def test_error_empty_after_filters(tmp_path):
    rows = [_row(0, -1, "DontCare"), _row(0, 1, occ=2), _row(1, 2, trunc=2), _row(1, 2, occ=3)]
    root = _make(tmp_path, {"0000": (2, rows)})
    message = _error(kitti.load_kitti, data_dir=root)
    assert message.endswith("no objects left after the filters (DontCare removed 1 rows, "
                            "occluded > 1 removed 2 rows, truncated > 1 removed 1 rows)")
    root = _make(tmp_path / "b", {"0000": (2, [_row(0, 1), _row(1, 2)])})  # 1-frame tracks
    seqs = kitti.load_kitti(data_dir=root)
    assert "no train samples of seq_len 2" in _error(lambda: next(
        kitti.kitti_samples(seqs, "train", 2)))


def test_error_box_outside_image_without_images(tmp_path):
    _make(tmp_path, {"0000": (2, [_row(0, 1), _row(1, 1, box=(2, 3, 30.5, 12))])})
    label_dir = str(tmp_path / "training/label_02")
    kitti.load_kitti(label_dir=label_dir)  # without images only negative corners are outside
    (tmp_path / "training/label_02/0000.txt").write_text(_row(0, 1, box=(-1, 3, 9, 12)) + "\n")
    assert "0000.txt:1: box" in _error(kitti.load_kitti, label_dir=label_dir)
