"""Training on a large real tracking dataset (`--train_clips=all`): GOT-10k's and LaSOT's
layouts, frames where the target is absent, and frames decoded per window (lazy mode)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image
from test_clip_windows import train_tiny_on_clips

from hart_tf.data import clip_windows, clips
from hart_tf.data.errors import DataError

RED = (230, 20, 20)
SIZE = (48, 64)  # the windows' (H, W)


def _frames(folder, n, hw, absent=(), fmt="jpg"):
    """`n` frames of grey noise with a red box (x, y, w, h) moving right, drawn only on the
    frames not in `absent`; returns the boxes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    boxes = []
    for i in range(n):
        img = rng.integers(90, 140, (*hw, 3)).astype(np.uint8)
        x, y, w, h = 4 + 2 * i * hw[1] // 160, hw[0] // 3, hw[1] // 5, hw[0] // 4
        if i not in absent:
            img[y:y + h, x:x + w] = RED
        Image.fromarray(img).save(folder / f"{i + 1:08d}.{fmt}", quality=95)
        boxes.append((x, y, w, h))
    return boxes


def _got10k(root, name, n=16, hw=(60, 80), absent=(3, 4, 9)):
    """GOT-10k: comma-separated boxes, absence.txt, frames beside groundtruth.txt."""
    seq = root / name
    boxes = _frames(seq, n, hw, absent)
    (seq / "groundtruth.txt").write_text(
        "".join(f"{x:.4f},{y:.4f},{w:.4f},{h:.4f}\n" for x, y, w, h in boxes))
    (seq / "absence.txt").write_text("".join(f"{int(i in absent)}\n" for i in range(n)))
    return seq


def _lasot(root, name, n=16, hw=(60, 80), occluded=(5,), out_of_view=(6,), empty=(7,)):
    """LaSOT: <category>/<name>/, frames in img/, occlusion and out-of-view flags on one
    comma-separated line, and an empty 0,0,0,0 box."""
    seq = root / name
    boxes = _frames(seq / "img", n, hw, absent={*occluded, *out_of_view, *empty})
    lines = ["0,0,0,0" if i in empty else ",".join(map(str, b)) for i, b in enumerate(boxes)]
    (seq / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    (seq / "full_occlusion.txt").write_text(",".join(str(int(i in occluded)) for i in range(n)))
    (seq / "out_of_view.txt").write_text(",".join(str(int(i in out_of_view)) for i in range(n)))
    return seq


@pytest.fixture
def got_root(tmp_path):
    root = tmp_path / "got10k"
    for i in (1, 2):
        _got10k(root, f"GOT-10k_Train_{i:06d}")
    (root / "list.txt").write_text("GOT-10k_Train_000001\nGOT-10k_Train_000002\n")
    return root


@pytest.fixture
def lasot_root(tmp_path):
    root = tmp_path / "lasot"
    _lasot(root, "airplane/airplane-1")
    _lasot(root, "bird/bird-2", occluded=(2, 3))
    return root


def _redness(frames):
    f = frames.astype(np.float32)
    return f[..., 0] - 0.5 * (f[..., 1] + f[..., 2])  # high on the box, ~0 on grey noise


def test_all_finds_both_layouts_and_names_nested_clips(got_root, lasot_root):
    got = clip_windows.ClipWindows(got_root, ["all"], SIZE)
    assert got.names == ["GOT-10k_Train_000001", "GOT-10k_Train_000002"]
    assert got.num_frames == 32 and got.held_out() == [] and not got.lazy
    lasot = clip_windows.ClipWindows(lasot_root, ["all"], SIZE)
    assert lasot.names == ["airplane/airplane-1", "bird/bird-2"]
    one = clip_windows.ClipWindows(lasot_root, ["bird/bird-2"], SIZE)
    assert one.held_out() == ["airplane/airplane-1"]
    # An unknown name lists what is there, shortened for large folders.
    for i in range(12):
        (got_root / f"extra{i:02d}").mkdir()
        (got_root / f"extra{i:02d}" / "groundtruth.txt").write_text("1 1 2 2\n")
    with pytest.raises(DataError) as e:
        clip_windows.ClipWindows(got_root, ["nope"], SIZE)
    assert str(e.value) == (f"{got_root}: no clip nope (found GOT-10k_Train_000001, "
                            "GOT-10k_Train_000002, extra00, extra01, extra02, extra03, extra04, "
                            "extra05, extra06, extra07 and 4 more)")
    with pytest.raises(DataError, match="no sequence folder with a groundtruth.txt"):
        clip_windows.ClipWindows(got_root / "extra00", ["all"], SIZE)


def test_absent_frames_are_read_for_training_only(got_root, lasot_root):
    _, present = clips.read_training_boxes(got_root / "GOT-10k_Train_000001")
    assert np.flatnonzero(~present).tolist() == [3, 4, 9]
    boxes, present = clips.read_training_boxes(lasot_root / "airplane/airplane-1")
    assert np.flatnonzero(~present).tolist() == [5, 6, 7]
    assert np.all(boxes[~present] == 0) and np.all(boxes[present, 2:] > 0)
    # Evaluation's reader stays strict.
    with pytest.raises(DataError, match=r"groundtruth.txt:8: width and height must be > 0"):
        clips.read_groundtruth(lasot_root / "airplane/airplane-1" / "groundtruth.txt")
    (got_root / "GOT-10k_Train_000002" / "absence.txt").write_text("0\n1\n")
    with pytest.raises(DataError, match=r"absence.txt: 2 flags but 16 boxes in groundtruth.txt"):
        clips.read_training_boxes(got_root / "GOT-10k_Train_000002")


@pytest.mark.parametrize("cache_mb", [2048, 0])
def test_presence_is_zero_exactly_where_the_target_is_absent(lasot_root, cache_mb):
    windows = clip_windows.ClipWindows(lasot_root, ["all"], SIZE, cache_mb=cache_mb)
    assert windows.lazy == (cache_mb == 0)
    seen_absent = 0
    for seed in range(12):
        w = windows.sample(np.random.default_rng(seed), 6)
        presence, boxes = w["presence"], w["boxes"]
        assert presence[0] == 1 and presence[-1] == 1  # starts (either way) on the target
        red = _redness(w["frames"]).max(axis=(1, 2))  # (T,)
        np.testing.assert_array_equal(presence, (red > 100).astype(np.float32))
        for t in np.flatnonzero(presence == 0):  # the last visible box, held
            np.testing.assert_array_equal(boxes[t], boxes[t - 1])
            seen_absent += 1
        assert np.all(np.isfinite(boxes)) and np.all(boxes[:, 2:] > 0)
    assert seen_absent > 0


def test_lazy_windows_match_eager_ones(tmp_path):
    root = tmp_path / "hd"
    _got10k(root, "a", n=12, hw=(240, 320), absent=(5,))
    eager = clip_windows.ClipWindows(root, ["all"], SIZE)
    exact = clip_windows.ClipWindows(root, ["all"], SIZE, cache_mb=0, draft=False)
    draft = clip_windows.ClipWindows(root, ["all"], SIZE, cache_mb=0)
    assert not eager.lazy and exact.lazy and draft.lazy
    for seed in range(4):
        a, b, c = (w.sample(np.random.default_rng(seed), 8) for w in (eager, exact, draft))
        for key in ("frames", "boxes", "presence"):
            np.testing.assert_array_equal(a[key], b[key])
        np.testing.assert_array_equal(a["boxes"], c["boxes"])
        np.testing.assert_array_equal(a["presence"], c["presence"])
        diff = np.abs(a["frames"].astype(int) - c["frames"])
        assert diff.mean() < 4 and diff.max() < 80, (seed, diff.mean(), diff.max())
        # Lazy mode is a pure function of the generator too.
        again = draft.sample(np.random.default_rng(seed), 8)
        np.testing.assert_array_equal(again["frames"], c["frames"])
    # The whole 320x240 frame into 64x48 decodes at a quarter of its size (DCT reduction).
    path = root / "a" / "00000001.jpg"
    size = clip_windows._draft_size(np.array([0, 0, 240, 320]), (240, 320), SIZE)
    assert clip_windows.decode_frame(path, (240, 320), size).shape == (60, 80, 3)


def test_memory_budget_decides_lazy_mode(got_root):
    need_mb = 2 * 16 * 60 * 80 * 3 / 2**20  # two clips of 16 frames of 80x60 RGB
    assert not clip_windows.ClipWindows(got_root, ["all"], SIZE, cache_mb=need_mb).lazy
    assert clip_windows.ClipWindows(got_root, ["all"], SIZE, cache_mb=need_mb * 0.99).lazy


def test_bad_frames_and_unusable_clips_are_one_line_errors(got_root, lasot_root, capsys):
    seq = got_root / "GOT-10k_Train_000002"
    Image.new("RGB", (81, 60)).save(seq / "00000005.jpg")
    with pytest.raises(DataError, match=r"00000005.jpg: image is 81x60 but the sequence's "
                                        r"first frame is 80x60"):
        clip_windows.ClipWindows(got_root, ["all"], SIZE)
    lazy = clip_windows.ClipWindows(got_root, ["GOT-10k_Train_000002"], SIZE, cache_mb=0)
    with pytest.raises(DataError, match="00000005.jpg: image is 81x60"):
        for seed in range(20):
            lazy.sample(np.random.default_rng(seed), 12)
    (seq / "00000005.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"00000005.jpg: unreadable or corrupt image"):
        for seed in range(20):
            lazy.sample(np.random.default_rng(seed), 12)
    # A clip without a visible frame is skipped and counted; none at all is an error.
    (lasot_root / "bird/bird-2" / "out_of_view.txt").write_text(",".join(["1"] * 16))
    windows = clip_windows.ClipWindows(lasot_root, ["all"], SIZE)
    assert windows.skipped == ["bird/bird-2"] and windows.num_clips == 1
    with pytest.raises(DataError, match="none of the 1 training clips has a frame"):
        clip_windows.ClipWindows(lasot_root, ["bird/bird-2"], SIZE)
    # Absent on its first and last frames, a 10-frame clip has no 10-frame window.
    _got10k(lasot_root, "cut", n=10, absent=(0, 9))
    cut = clip_windows.ClipWindows(lasot_root, ["cut"], SIZE)
    assert cut.unusable(8) == 0 and cut.unusable(10) == 1
    with pytest.raises(DataError, match="no training clip has a window of 10 frames that "
                                        "starts and ends with its target visible"):
        cut.sample(np.random.default_rng(0), 10)


def test_train_cli_trains_on_all_clips_of_a_folder(lasot_root, tmp_path, capsys, monkeypatch):
    from hart_tf.cli import train as train_cli

    from_flags = train_cli.options_from_flags  # frames decoded per window, as for a big set
    monkeypatch.setattr(train_cli, "options_from_flags",
                        lambda: from_flags().replace(train_clips_cache_mb=0))
    train_tiny_on_clips(tmp_path, lasot_root, "--train_clips=all")
    out = capsys.readouterr().out
    assert (f"Training on all 2 real clips of {lasot_root} (32 frames, decoded per window, "
            "1 of every 2 sequences); held out: none") in out
    run = tmp_path / "ck" / "r"
    summary = json.loads((run / "summary.json").read_text())
    record = {"train_clips": "all", "train_clips_dir": str(lasot_root.resolve()),
              "train_clips_count": 2}
    assert summary["data"].items() >= record.items()
    checkpoints = [p for p in run.glob("*.json") if p.name != "summary.json"]
    assert checkpoints and all(json.loads(p.read_text())["data"].items() >= record.items()
                               for p in checkpoints)


def test_small_sets_stay_eager_and_give_the_windows_they_gave_before(shared_data):
    # SHA-256 of a batch of two shared clips' windows, as the eager-only ClipWindows (before
    # lazy mode and absent frames) gave it for this generator; lazy mode without draft too.
    # Strides 1 and 2 as then (stride 3 came later) and no colour jitter: the same windows.
    golden = "5ec9616a6c75b7c752ae11c62109b2074bdbd8e3aea5f2b5fee5ebbbd8d6a176"
    root = shared_data / "real_clips"
    for kwargs in ({}, {"cache_mb": 0, "draft": False}):
        windows = clip_windows.ClipWindows(root, ["Dog1", "Skiing"], (96, 128), strides=(1, 2),
                                           **kwargs)
        assert windows.lazy == bool(kwargs)
        b = clip_windows.window_batch(windows, np.random.default_rng(3), 4, 10)
        digest = hashlib.sha256(b["frames"].tobytes() + b["boxes"].tobytes()
                                + b["presence"].tobytes()).hexdigest()
        assert digest == golden, kwargs
