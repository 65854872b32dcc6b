"""`python -m hart_tf.track`: boxes file and GIF, and a one-line error for each bad input."""

import importlib.util
import re
import subprocess
import sys
import types

import numpy as np
import pytest
from PIL import Image

from hart_tf.cli import track as track_cli
from hart_tf.track import files as track
from hart_tf.track.baselines import run_tracker
from hart_tf.track.tracker import Tracker

N_FRAMES, FRAME_H, FRAME_W = 12, 60, 90
INIT = "20,15,24,18"


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (N_FRAMES, FRAME_H, FRAME_W, 3)).astype(np.uint8)
    clip[:, 10:40, 15:50] = 200  # a bright block so frames are not pure noise
    return clip


@pytest.fixture
def frames_dir(tmp_path, frames):
    folder = tmp_path / "clip"
    folder.mkdir()
    for i, frame in enumerate(frames, start=1):  # frame1 .. frame12: natural order matters
        Image.fromarray(frame).save(folder / f"frame{i}.png")
    return folder


def _lines(path) -> list[str]:
    return path.read_text().splitlines()


def test_cli_writes_one_line_per_frame_and_a_gif(untrained_checkpoint, frames, frames_dir,
                                                  tmp_path):
    out, gif = tmp_path / "res" / "boxes.txt", tmp_path / "res" / "tracked.gif"
    proc = subprocess.run(
        [sys.executable, "-m", "hart_tf.track", f"--model={untrained_checkpoint}",
         f"--frames={frames_dir}", f"--init={INIT}", f"--out={out}", f"--gif={gif}"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(rf"^tracked {N_FRAMES} frames: [\d.]+ frames per second \(tracker "
                     rf"updates\), [\d.]+ with decoding; boxes in {out}, GIF in {gif}$",
                     proc.stdout, re.M), proc.stdout
    lines = _lines(out)
    assert len(lines) == N_FRAMES
    assert lines[0] == "20.00,15.00,24.00,18.00"
    got = np.array([[float(v) for v in line.split(",")] for line in lines])
    # The same tracker in this process, over the frames in natural order (1, 2, ..., 12).
    want, _ = run_tracker(Tracker.from_checkpoint(untrained_checkpoint), frames,
                          np.array([20, 15, 24, 18], np.float32))
    np.testing.assert_allclose(got, want, atol=0.006)
    with Image.open(gif) as image:
        assert image.n_frames == N_FRAMES
        assert image.size == (FRAME_W, FRAME_H)
    assert sorted(p.name for p in out.parent.iterdir()) == ["boxes.txt", "tracked.gif"]


def _error(run_cli, **flags) -> str:
    """Runs main in this process; returns the one line it printed on stderr (exit code 2)."""
    run = run_cli(track_cli.main, [f"--{k}={v}" for k, v in flags.items()], "track", code=2)
    assert len(run.err) == 1, run.err
    return run.err[0]


def test_missing_flags(run_cli, tmp_path, untrained_checkpoint):
    assert _error(run_cli, init=INIT, out="o.txt") == "error: --model is required"
    assert _error(run_cli, model="m", out="o.txt") == "error: --init is required"
    assert _error(run_cli, model="m", init=INIT) == "error: --out is required"
    common = dict(model=untrained_checkpoint, init=INIT, out=tmp_path / "o.txt")
    assert _error(run_cli, **common) == "error: --frames is required"
    with pytest.raises(ValueError, match="give exactly one of frames"):
        track.track(str(untrained_checkpoint), INIT, str(tmp_path / "o.txt"),
                    frames=str(tmp_path), video=str(tmp_path / "v.mp4"))


def test_frame_folder_errors(run_cli, tmp_path, frames_dir, untrained_checkpoint):
    out = tmp_path / "o.txt"
    common = dict(model=untrained_checkpoint, init=INIT, out=out)
    missing = tmp_path / "nowhere"
    assert _error(run_cli, **common, frames=missing) == (
        f"error: --frames: {missing}: no such frames folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    assert _error(run_cli, **common, frames=empty) == (
        f"error: --frames: {empty}: no .jpg/.jpeg/.png frames found")
    bad = frames_dir / "frame1.png"
    good = bad.read_bytes()
    bad.write_bytes(b"not a png")
    assert re.fullmatch(rf"error: --frames: {bad}: unreadable or corrupt image \(.+\)",
                        _error(run_cli, **common, frames=frames_dir))
    bad.write_bytes(good)
    # A frame that breaks mid-clip: the model has run, yet no output may be left behind.
    late = frames_dir / "frame7.png"
    late.write_bytes(good[: len(good) // 2])
    gif = tmp_path / "o.gif"
    assert re.fullmatch(rf"error: --frames: {late}: unreadable or corrupt image \(.+\)",
                        _error(run_cli, **common, frames=frames_dir, gif=gif))
    assert not out.exists() and not gif.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip", "empty"]  # nothing written
    assert _error(run_cli, model=tmp_path / "none.keras", init=INIT, out=out,
                  frames=frames_dir) == f"error: --model: {tmp_path / 'none.keras'} does not exist"
    broken = tmp_path / "broken.keras"
    broken.write_text("not a zip file")
    assert re.fullmatch(rf"error: --model: {broken}: cannot load it as a HART model \(.+\)",
                        _error(run_cli, model=broken, init=INIT, out=out, frames=frames_dir))
    assert _error(run_cli, model=tmp_path / "empty", init=INIT, out=out, frames=frames_dir) == (
        f"error: --model: no checkpoint found in {tmp_path / 'empty'}")


@pytest.mark.parametrize("init", ["1,2,3", "a,b,c,d", "1,2,0,4", "1,2,3,nan", "1;2;3;4"])
def test_malformed_init(run_cli, tmp_path, frames_dir, init):
    assert _error(run_cli, model="m", init=init, out=tmp_path / "o.txt", frames=frames_dir) == (
        f"error: --init must be four numbers x,y,w,h with w, h > 0, got {init!r}")


@pytest.mark.parametrize("init", ["100,10,20,20", "-15,10,20,20", "80,55,20,20"])
def test_init_outside_the_frame(run_cli, tmp_path, frames_dir, init):
    assert _error(run_cli, model="m", init=init, out=tmp_path / "o.txt", frames=frames_dir) == (
        f"error: --init box {init} lies outside the first frame ({FRAME_W}x{FRAME_H} pixels): "
        f"at least half of it must be inside")


def test_init_half_inside_is_accepted():
    shape = (FRAME_H, FRAME_W, 3)
    assert track.check_init_in_frame(np.array([-10, 0, 20, 20]), shape) is None  # half inside
    with pytest.raises(ValueError, match="at least half of it must be inside"):
        track.check_init_in_frame(np.array([-10.5, 0, 20, 20]), shape)  # half inside


def _fake_imageio(monkeypatch, imiter) -> None:
    """Stands in for the optional imageio package (not installed by default)."""
    v3 = types.ModuleType("imageio.v3")
    v3.imiter = imiter
    package = types.ModuleType("imageio")
    package.v3 = v3
    monkeypatch.setitem(sys.modules, "imageio", package)
    monkeypatch.setitem(sys.modules, "imageio.v3", v3)


def test_video_errors(run_cli, monkeypatch, tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 100)
    common = dict(model="m", init=INIT, out=tmp_path / "o.txt")
    monkeypatch.setitem(sys.modules, "imageio", None)  # the extra is not installed
    assert _error(run_cli, **common, frames=video) == (
        "error: --frames: reading a video needs the video extra: pip install -e '.[video]'")

    def broken(path):
        raise OSError(f"Could not find a backend to open `{path}`\nwith iomode `r`.")
        yield  # a generator, as imageio's imiter

    _fake_imageio(monkeypatch, broken)
    assert _error(run_cli, **common, frames=video) == (
        f"error: --frames: {video}: unreadable video (Could not find a backend to open "
        f"`{video}` with iomode `r`.)")
    missing = tmp_path / "none.mp4"
    with pytest.raises(ValueError, match=f"--frames: {missing}: no such file"):
        track.track("m", INIT, str(tmp_path / "o.txt"), video=str(missing))
    _fake_imageio(monkeypatch, lambda path: iter(()))
    assert _error(run_cli, **common, frames=video) == f"error: --frames: {video}: no frames"


def test_video_is_tracked(monkeypatch, tmp_path, frames, untrained_checkpoint):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00")
    grey = frames[..., 0]  # (T, H, W): grey videos come without a channel axis
    _fake_imageio(monkeypatch, lambda path: iter(grey))
    out = tmp_path / "boxes.txt"
    result = track.track(str(untrained_checkpoint), INIT, str(out), video=str(video))
    assert result["frames"] == N_FRAMES
    assert len(_lines(out)) == N_FRAMES
    want, _ = run_tracker(Tracker.from_checkpoint(untrained_checkpoint),
                          np.repeat(grey[..., None], 3, -1), np.array([20, 15, 24, 18]))
    np.testing.assert_allclose(result["boxes"], want, atol=1e-4)


@pytest.mark.skipif(importlib.util.find_spec("imageio") is None,
                    reason="the video extra (imageio) is not installed")
def test_real_imageio_video(run_cli, tmp_path, frames, untrained_checkpoint):
    import imageio.v3 as iio

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    common = dict(model=untrained_checkpoint, init=INIT, out=tmp_path / "o.txt")
    assert _error(run_cli, **common, frames=broken).startswith(
        f"error: --frames: {broken}: unreadable video (")
    video = tmp_path / "clip.gif"  # GIF: imageio reads it with Pillow, no ffmpeg needed
    iio.imwrite(video, frames, extension=".gif")
    result = track.track(str(untrained_checkpoint), INIT, str(tmp_path / "o.txt"),
                         video=str(video))
    assert result["frames"] == N_FRAMES
    assert len(_lines(tmp_path / "o.txt")) == N_FRAMES
