"""KTH loader: the three real box files (pinned counts), samples from a fake frame folder,
frame extraction, and one-line errors."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from hart_tf.data import kth
from hart_tf.data.errors import DataError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Tracking subset (actions 4-6) of each real box file: clips, frames, windows of 30 frames.
PINNED = {"train": (900, 42552, 1807), "validation": (150, 6604, 255), "test": (150, 6356, 248)}
PINNED_ALL_ACTIONS = {"train": (1793, 140542), "validation": (300, 23392), "test": (298, 22565)}


@pytest.fixture
def box_dir(shared_data):
    return str(shared_data / "kth")


def _independent_counts(path, actions):
    """(clips, frames) by a plain reading of the format: rows whose first token is a number."""
    clips = frames = 0
    for line in open(path).read().splitlines():
        vals = line.split()
        if vals and vals[0].isdigit() and int(vals[2]) in actions:
            clips += 1
            frames += int(vals[5]) - int(vals[4]) + 1
            assert len(vals) == 6 + 4 * (int(vals[5]) - int(vals[4]) + 1)
    return clips, frames


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_real_box_files_pinned(box_dir, split):
    clips = kth.load_kth(box_dir, split)
    got = (len(clips), sum(len(c.boxes) for c in clips), len(kth.kth_windows(clips, 30)))
    assert got == PINNED[split]
    path = os.path.join(box_dir, kth.BOX_FILES[split])
    assert got[:2] == _independent_counts(path, {4, 5, 6})
    every = kth.read_box_file(path, actions=range(1, 7))
    assert (len(every), sum(len(c.boxes) for c in every)) == PINNED_ALL_ACTIONS[split]
    assert PINNED_ALL_ACTIONS[split] == _independent_counts(path, set(range(1, 7)))
    assert {c.action for c in clips} == {4, 5, 6}
    # The files split by scenario: 1-3 train; 4 validation (sequences 1-2) and test (3-4).
    scenarios = {"train": {1, 2, 3}, "validation": {4}, "test": {4}}[split]
    assert {c.scenario for c in clips} == scenarios
    boxes = np.concatenate([c.boxes for c in clips])
    assert (boxes[:, 2:] > 0).all() and (boxes[:, :2] + boxes[:, 2:] <= [120, 160]).all()


def test_real_first_clip_boxes(box_dir):
    clip = kth.read_box_file(os.path.join(box_dir, kth.BOX_FILES["train"]), actions=[1])[0]
    # Row `1 1 1 1 1 95 17 54 111 92 ...`: ymin 17 xmin 54 ymax 111 xmax 92 on frame 1.
    assert (clip.person, clip.scenario, clip.action, clip.sequence, clip.start) == (1, 1, 1, 1, 1)
    assert len(clip.boxes) == 95 and clip.video == "person01_boxing_d1"
    np.testing.assert_array_equal(clip.boxes[0], [17, 54, 94, 38])


def _box_file(tmp_path, rows, header=True):
    text = "Each row provides ...\nperson number + ...\n\n\n" if header else ""
    path = tmp_path / "KTHBoundingBoxInfoTrain.txt"
    path.write_text(text + "\n".join(rows) + "\n")
    return path


def _frames(folder, count, value_offset=0):
    folder.mkdir(parents=True)
    for f in range(1, count + 1):  # pixel value = frame number, to check order
        Image.new("RGB", (160, 120), (value_offset + f, 0, 0)).save(folder / f"{f:06d}.png")


def _clip_row(person, scenario, action, seq, start, boxes):
    return " ".join(map(str, [person, scenario, action, seq, start, start + len(boxes) - 1]
                        + [v for b in boxes for v in b]))


def test_samples_from_fake_frames(tmp_path):
    jog = [(10 + i, 20, 60 + i, 50) for i in range(5)]  # ymin xmin ymax xmax, frames 3-7
    walk = [(5, 100, 80, 150)] * 3  # frames 1-3
    rows = [_clip_row(2, 1, 4, 1, 3, jog), _clip_row(2, 1, 6, 1, 1, walk),
            _clip_row(2, 1, 1, 1, 1, [(1, 1, 2, 2)])]  # boxing: not in the tracking subset
    _box_file(tmp_path, rows)
    clips = kth.load_kth(str(tmp_path), "train")
    assert [c.video for c in clips] == ["person02_jogging_d1", "person02_walking_d1"]
    frame_dir = tmp_path / "frames"
    _frames(frame_dir / "person02_jogging_d1", 7)
    _frames(frame_dir / "person02_walking_d1", 3, value_offset=100)

    windows = kth.kth_windows(clips, 4)  # jog: 5 frames -> one window at 0 (tail dropped)
    assert [(w.clip.action, w.offset, w.length) for w in windows] == [(4, 0, 4), (6, 0, 3)]
    samples = list(kth.kth_samples(clips, str(frame_dir), 4, shuffle=False, num_threads=2))
    jog_sample, walk_sample = samples
    assert jog_sample["frames"].shape == (4, 120, 160, 3)
    np.testing.assert_array_equal(jog_sample["frames"][:, 0, 0, 0], [3, 4, 5, 6])
    np.testing.assert_array_equal(jog_sample["boxes"][1], [11, 20, 50, 30])
    np.testing.assert_array_equal(walk_sample["presence"], [1, 1, 1, 0])
    np.testing.assert_array_equal(walk_sample["frames"][:3, 0, 0, 0], [101, 102, 103])
    assert not walk_sample["frames"][3].any()

    augmented = list(kth.kth_samples(clips[:1], str(frame_dir), 4, augment=True, shuffle=False))
    base, rev, mirror, _ = augmented
    np.testing.assert_array_equal(rev["frames"], base["frames"][::-1])
    np.testing.assert_array_equal(mirror["frames"], base["frames"][:, :, ::-1])
    np.testing.assert_array_equal(mirror["boxes"][:, 1], 160 - 20 - 30)

    batches = list(kth.kth_batches(clips, str(frame_dir), 4, batch_size=2, num_epochs=2))
    assert len(batches) == 2 and batches[0]["frames"].shape == (2, 4, 120, 160, 3)


def _fake_reader(count, shape=(120, 160)):
    def read(path):
        for i in range(count):
            yield np.full(shape, i + 1, np.uint8)  # grey frames, as KTH's
    return read


def test_extract_videos(tmp_path):
    videos = tmp_path / "avi" / "jogging"
    videos.mkdir(parents=True)
    for name in ("person01_jogging_d1", "person01_boxing_d1"):
        (videos / f"{name}_uncomp.avi").write_bytes(b"")
    out = tmp_path / "frames"
    done = kth.extract_videos(str(tmp_path / "avi"), str(out), progress=False,
                              reader=_fake_reader(3))
    assert done == 1 and sorted(os.listdir(out)) == ["person01_jogging_d1"]
    frames = sorted(os.listdir(out / "person01_jogging_d1"))
    assert frames == ["000001.png", "000002.png", "000003.png"]
    image = np.asarray(Image.open(out / "person01_jogging_d1" / "000002.png"))
    assert image.shape == (120, 160, 3) and (image == 2).all()
    assert kth.extract_videos(str(tmp_path / "avi"), str(out), progress=False,
                              reader=_fake_reader(3)) == 0  # resumable: done videos skipped

    (videos / "person02_running_d1_uncomp.avi").write_bytes(b"")
    message = _error(kth.extract_videos, str(tmp_path / "avi"), str(out), progress=False,
                     reader=_fake_reader(2, shape=(240, 320)))
    assert "person02_running_d1_uncomp.avi: frame 1 is 320x240, expected 160x120" in message
    assert sorted(os.listdir(out)) == ["person01_jogging_d1"]  # no half-written folder


def test_read_video_without_backends(monkeypatch):
    for name in ("imageio", "imageio.v3", "imageio_ffmpeg", "cv2"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails
    with pytest.raises(ImportError, match=r"needs imageio \+ imageio-ffmpeg .* or OpenCV"):
        next(kth.read_video("x.avi"))


@pytest.mark.skipif(importlib.util.find_spec("imageio_ffmpeg") is None,
                    reason="imageio-ffmpeg not installed (optional: pip install -e '.[video]')")
def test_extract_real_avi(tmp_path):
    import imageio.v3 as iio

    video = tmp_path / "avi" / "person03_walking_d2_uncomp.avi"
    video.parent.mkdir()
    frames = np.zeros((4, 120, 160, 3), np.uint8)
    frames[:, 40:80, 60:100] = 200
    iio.imwrite(video, frames, plugin="FFMPEG", fps=25, macro_block_size=1)
    assert kth.extract_videos(str(video.parent), str(tmp_path / "out"), progress=False) == 1
    first = np.asarray(Image.open(tmp_path / "out" / "person03_walking_d2" / "000001.png"))
    assert len(os.listdir(tmp_path / "out" / "person03_walking_d2")) == 4
    assert first.shape == (120, 160, 3) and abs(int(first[60, 80, 0]) - 200) < 20


@pytest.mark.skipif(importlib.util.find_spec("cv2") is None,
                    reason="OpenCV not installed (optional: opencv-python-headless)")
def test_read_video_opencv(tmp_path, monkeypatch):
    import cv2

    path = str(tmp_path / "person01_running_d1_uncomp.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
    for i in range(3):
        frame = np.zeros((120, 160, 3), np.uint8)
        frame[..., 2] = 200  # red in OpenCV's BGR
        frame[:10] = 60 * i
        writer.write(frame)
    writer.release()
    monkeypatch.setitem(sys.modules, "imageio", None)  # force the OpenCV path
    frames = list(kth.read_video(path))
    assert len(frames) == 3 and frames[0].shape == (120, 160, 3)
    assert abs(int(frames[1][60, 80, 0]) - 200) < 20 and int(frames[1][60, 80, 2]) < 20  # RGB


def test_prepare_kth_tool_errors(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO)
    cmd = [sys.executable, "tools/prepare_kth.py", f"--video_dir={tmp_path}",
           f"--out_dir={tmp_path}/out"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    assert run.returncode == 1
    assert run.stderr.strip() == (f"error: {tmp_path}: no KTH videos "
                                  "(person*_<action>_d*_uncomp.avi) of ['jogging', 'running', "
                                  "'walking']")


# ----- errors: one line, naming the file and line or field --------------------------------


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_error_malformed_rows(tmp_path):
    good = _clip_row(1, 1, 4, 1, 1, [(1, 2, 30, 40)] * 2)
    path = _box_file(tmp_path, [good, good.replace(" 4 ", " x ", 1)])
    assert f"{path}:6: field 'action' is 'x', not an integer" in _error(
        kth.read_box_file, str(path))
    path = _box_file(tmp_path, [good + " 7"])
    assert f"{path}:5: 9 box values for frames 1..2, expected 8" in _error(
        kth.read_box_file, str(path))
    path = _box_file(tmp_path, [good.replace("30", "1", 1)])
    assert f"{path}:5: zero or negative box size at frame 1" in _error(
        kth.read_box_file, str(path))
    path = _box_file(tmp_path, [_clip_row(1, 1, 4, 1, 5, [(1, 2, 30, 40), (1, 2, 30, 161)])])
    assert f"{path}:5: box at frame 6 is outside the 160x120 frame" in _error(
        kth.read_box_file, str(path))
    path = _box_file(tmp_path, [_clip_row(1, 1, 1, 1, 5, [(1, 2, 30, 40)])])
    assert "no clips of actions [4, 5, 6]" in _error(kth.load_kth, str(tmp_path), "train")


def test_error_missing_frames(tmp_path):
    _box_file(tmp_path, [_clip_row(1, 1, 4, 1, 1, [(1, 2, 30, 40)] * 3)])
    clips = kth.load_kth(str(tmp_path), "train")
    frame_dir = tmp_path / "frames"
    frame_dir.mkdir()
    assert "person01_jogging_d1: no frame folder for the clip at" in _error(
        kth.check_frames, clips, str(frame_dir))
    _frames(frame_dir / "person01_jogging_d1", 2)
    message = _error(lambda: next(kth.kth_samples(clips, str(frame_dir), 4)))
    assert message.endswith(f"person01_jogging_d1/000003.png: missing, needed by the clip at "
                            f"{tmp_path}/KTHBoundingBoxInfoTrain.txt:5")
