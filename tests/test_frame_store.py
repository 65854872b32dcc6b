"""The frame store (`hart_tf/data/frame_store.py`): KITTI and KTH windows cut from frames
decoded once are byte-identical to windows decoded from the files (reversed, mirrored and
padded ones too), store rows + `cut_windows` give the same batches, and the training source
gives the same batches with and without a store."""

import re

import keras
import numpy as np
import pytest
from PIL import Image
from test_device_data import _jax
from test_kitti import _row
from test_kth import _box_file, _clip_row

from hart_tf.data import frame_store, kitti, kth
from hart_tf.data.errors import DataError
from hart_tf.train import sources
from hart_tf.train.options import TrainOptions

SIZE = (24, 36)  # (H, W) the fake KITTI frames are resized to


def _noise(path, hw, rng):
    """A frame of pixel noise: any flip or reordering of it shows."""
    Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def kitti_root(tmp_path):
    """Sequence 0000: 12 noise frames of 30x20 (train 0-9); car 1 on every frame, car 2 on
    frames 3-6 (its window from frame 4 is 3 frames long: padded at seq_len 4)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "training" / "image_02" / "0000"
    folder.mkdir(parents=True)
    for f in range(12):
        _noise(folder / f"{f:06d}.png", (20, 30), rng)
    rows = [_row(f, 1) for f in range(12)] + [_row(f, 2, box=(5.0, 4.0, 20.0, 15.0))
                                              for f in range(3, 7)]
    (tmp_path / "training" / "label_02").mkdir()
    (tmp_path / "training" / "label_02" / "0000.txt").write_text("\n".join(rows) + "\n")
    return tmp_path


@pytest.fixture
def kth_root(tmp_path):
    """A 5-frame jogging clip from frame 3 and a 3-frame walking clip (padded at 4)."""
    jog = [(10 + i, 20, 60 + i, 50) for i in range(5)]  # ymin xmin ymax xmax
    walk = [(5, 100, 80, 150)] * 3
    _box_file(tmp_path, [_clip_row(2, 1, 4, 1, 3, jog), _clip_row(2, 1, 6, 1, 1, walk)])
    rng = np.random.default_rng(1)
    for video, count in (("person02_jogging_d1", 7), ("person02_walking_d1", 3)):
        (tmp_path / video).mkdir()
        for f in range(1, count + 1):
            _noise(tmp_path / video / f"{f:06d}.png", kth.FRAME_SIZE, rng)
    return tmp_path


def _assert_same(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


def _kitti_store(seqs, size=SIZE):
    paths, sizes = kitti.split_frames(seqs, "train")
    return frame_store.FrameStore(paths, size, sizes, threads=2)


def _check_windows(windows, from_files, from_store):
    """Every window byte-identical both ways; mirrored and padded ones among them."""
    for w in windows:
        _assert_same(from_files(w), from_store(w))
    assert {w.mirror for w in windows} == {False, True}
    assert {w.reverse for w in windows} == {False, True}
    assert any(w.length < 4 for w in windows)  # padded to seq_len 4


def test_kitti_windows_from_the_store_equal_those_from_the_files(kitti_root):
    seqs = kitti.load_kitti(data_dir=str(kitti_root))
    store = _kitti_store(seqs)
    assert len(store) == 10  # the training part of the segment, frames 0-9
    windows = kitti.make_windows(seqs, "train", 4, augment=True)
    _check_windows(windows, lambda w: kitti.load_sample(w, 4, SIZE),
                   lambda w: kitti.load_sample(w, 4, SIZE, store=store))
    with pytest.raises(ValueError, match="frames, not"):
        next(kitti.kitti_samples(seqs, "train", 4, store=store))  # held at SIZE, not 187x621


def test_kitti_real_frames_from_the_store(six_frames):
    seqs = kitti.load_kitti(data_dir=str(six_frames))  # 1242x375 and 1224x370, resized
    store = _kitti_store(seqs, kitti.FRAME_SIZE)
    windows = kitti.make_windows(seqs, "train", 4, augment=True)  # 3 frames: all padded
    for w in windows[:4] + [w for w in windows if w.seq.name == "0001"][:4]:
        _assert_same(kitti.load_sample(w, 4), kitti.load_sample(w, 4, store=store))


def test_kth_windows_from_the_store_equal_those_from_the_files(kth_root):
    clips = kth.load_kth(str(kth_root), "train")
    paths, sizes = kth.clip_frames(clips, str(kth_root))
    assert len(paths) == 8 and sizes == [kth.FRAME_SIZE] * 8
    store = frame_store.FrameStore(paths, kth.FRAME_SIZE, sizes, threads=2)
    windows = kth.kth_windows(clips, 4, augment=True)
    _check_windows(windows, lambda w: kth.load_kth_sample(w, str(kth_root), 4),
                   lambda w: kth.load_kth_sample(w, str(kth_root), 4, store=store))
    rows = kth.kth_batches(clips, str(kth_root), 4, 8, augment=True, seed=3, store=store,
                           rows=True)
    files = kth.kth_batches(clips, str(kth_root), 4, 8, augment=True, seed=3)
    _check_cut(store, next(rows), next(files))


def _check_cut(store, rows, files):
    """`cut_windows` on the store's rows gives the batch decoded from the files."""
    assert sorted(rows) == ["boxes", "mirror", "presence", "rows"]
    frames = frame_store.cut_windows(store.frames, rows["rows"], rows["mirror"],
                                     rows["presence"])
    assert rows["mirror"].any() and not rows["mirror"].all()
    assert (rows["presence"] == 0).any()  # a padded window among them
    _assert_same({"frames": keras.ops.convert_to_numpy(frames), "boxes": rows["boxes"],
                  "presence": rows["presence"]}, files)


def test_rows_cut_on_the_backend_equal_the_decoded_batch(kitti_root):
    seqs = kitti.load_kitti(data_dir=str(kitti_root))
    store = _kitti_store(seqs)
    n = len(kitti.make_windows(seqs, "train", 4, augment=True))
    kwargs = {"frame_size": SIZE, "seed": 5}
    rows = kitti.kitti_batches(seqs, "train", 4, n, store=store, rows=True, **kwargs)
    _check_cut(store, next(rows), next(kitti.kitti_batches(seqs, "train", 4, n, **kwargs)))


def test_store_rows_bytes_and_errors(kitti_root, tmp_path):
    folder = kitti_root / "training" / "image_02" / "0000"
    paths = [str(folder / f"{f:06d}.png") for f in (2, 0, 2)]
    store = frame_store.FrameStore(paths, SIZE)
    assert len(store) == 2  # a repeated path is held once
    assert store.nbytes == store.frames.size == frame_store.store_bytes(2, SIZE)
    np.testing.assert_array_equal(store.rows(paths), [0, 1, 0])
    np.testing.assert_array_equal(store.take(paths[1:2])[0], store.frames[1])
    other = str(folder / "000011.png")
    with pytest.raises(DataError, match=f"^{re.escape(other)}: not among the 2 frames held"):
        store.rows([paths[0], other])
    missing = str(tmp_path / "gone.png")
    with pytest.raises(DataError, match=f"^{re.escape(missing)}: no such image file"):
        frame_store.FrameStore([paths[0], missing], SIZE)
    with pytest.raises(DataError, match="is 30x20 but the sequence's first frame is 31x20"):
        frame_store.FrameStore(paths[:1], SIZE, [(20, 31)])


def _options(dataset, root, **changes):
    return TrainOptions.from_flat(dataset=dataset, data_dir=str(root), batch_size=3, seed=4,
                                  progress=1, **changes)


def _first(stream, n):
    out = []
    for _ in range(n):
        x, y = next(stream)
        out.append({**x, **y})
    stream.close()
    return out


@pytest.mark.parametrize("dataset, frames, size", [("kitti", 10, kitti.FRAME_SIZE),
                                                   ("kth", 8, kth.FRAME_SIZE)])
def test_training_batches_are_the_same_with_and_without_the_store(dataset, frames, size,
                                                                  request, capsys):
    root = request.getfixturevalue(f"{dataset}_root")
    held = sources.train_source(_options(dataset, root))
    assert held.store is not None and len(held.store) == frames
    assert f"Holding the {frames} {dataset} training frames in memory" in capsys.readouterr().out
    files = sources.train_source(_options(dataset, root, frame_store_mb=0))
    assert files.store is None
    assert capsys.readouterr().out.splitlines() == [
        f"The {dataset} training frames (0.0 GiB) exceed frame_store_mb=0 MiB: each window is "
        "decoded from its files"]
    for a, b in zip(_first(held.batches(4, start=2), 3), _first(files.batches(4, start=2), 3),
                    strict=True):
        assert a["frames"].shape == (3, 4, *size, 3)
        _assert_same(a, b)
    for a, b in zip(_first(held.score_batches(4, 7), 2), _first(files.score_batches(4, 7), 2),
                    strict=True):
        _assert_same(a, b)


_DEVICE = """
    import json
    import numpy as np
    from hart_tf.train import sources
    from hart_tf.train.options import TrainOptions

    def first(render_on):
        options = TrainOptions.from_flat(dataset="kitti", data_dir={root!r}, batch_size=3,
                                         seed=4, render_on=render_on, progress=0)
        source = sources.train_source(options)
        stream = source.batches(4, start=1)
        return source, [next(stream) for _ in range(3)]

    device, on_device = first("device")
    _, on_host = first("host")
    same = all(np.array_equal(np.asarray(a), np.asarray(b))
               for (xa, ya), (xb, yb) in zip(on_device, on_host)
               for a, b in zip([*xa.values(), *ya.values()], [*xb.values(), *yb.values()]))
    print(json.dumps({{"same": same, "frames_held": type(device._frames).__module__,
                      "batch_frames": type(on_device[0][0]["frames"]).__module__}}))
"""


def test_windows_cut_on_the_device_under_jax_equal_the_host_batches(kitti_root):
    r = _jax(_DEVICE.format(root=str(kitti_root)))
    assert r["same"]
    assert r["frames_held"].startswith("jax") and r["batch_frames"].startswith("jax")
