"""Test configuration and shared fixtures: backend default, slow-test opt-in, shared data,
a command-line runner, clips in the GOT-10k and LaSOT layouts, and the small tracking models
of the tracker, export and track tests."""

import os
import pathlib
from typing import NamedTuple

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: pass --runslow to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture
def shared_data():
    """Path to ../shared/data; skips the test with a reason where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def six_frames(shared_data, tmp_path):
    """The six real frames as two 3-frame sequences (renumbered 0..2) with their real labels.

    Sequence 0000 is 0001's frames 10, 15, 20 (1242x375); 0001 is 0016's 2, 7, 12 (1224x370).
    """
    real = shared_data / "kitti_tracking" / "training"
    for new, (old, frames) in {"0000": ("0001", (10, 15, 20)),
                               "0001": ("0016", (2, 7, 12))}.items():
        folder = tmp_path / "training" / "image_02" / new
        folder.mkdir(parents=True)
        rows = []
        for i, f in enumerate(frames):
            (folder / f"{i:06d}.png").write_bytes((real / "image_02" / old / f"{f:06d}.png")
                                                 .read_bytes())
            for line in (real / "label_02" / f"{old}.txt").read_text().splitlines():
                vals = line.split()
                if int(vals[0]) == f:
                    rows.append(" ".join([str(i)] + vals[1:]))
        labels = tmp_path / "training" / "label_02"
        labels.mkdir(parents=True, exist_ok=True)
        (labels / f"{new}.txt").write_text("\n".join(rows) + "\n")
    return tmp_path


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same global seeds (Python, NumPy, backend), so a random
    initialisation or draw cannot make a test pass on one run and fail on the next."""
    import keras

    keras.utils.set_random_seed(0)


# ---- command lines ------------------------------------------------------------------------


class CliRun(NamedTuple):
    """What `run_cli` saw: exit code, stdout, stderr lines and what `main` returned."""

    code: int
    out: str
    err: list[str]
    value: object = None


@pytest.fixture
def run_cli(capsys):
    """Runs an entry point's `main` in this process as `python -m ...` would.

    `run_cli(main, argv)` parses `argv` (flags only, no program name) into the global absl
    FLAGS with `hart_tf.cli.common.parse_flags`, calls `main` on what is left, and returns a
    `CliRun`; a `SystemExit` from parsing or `main` becomes its code. FLAGS are reset before
    and after, so no flag leaks into the next test. Anything but `SystemExit` propagates.
    `main` may be any callable of argv that reads FLAGS (e.g. `lambda _: options_from_flags()`).
    With `code`, the run must exit with it (its stderr is the assertion message).
    """
    from absl import flags

    from hart_tf.cli import common

    def run(main, argv, prog: str = "prog", code: int | None = None) -> CliRun:
        flags.FLAGS.unparse_flags()
        exit_code, value = 0, None
        try:
            value = main(common.parse_flags([prog, *map(str, argv)]))
        except SystemExit as e:
            exit_code = e.code if isinstance(e.code, int) else int(e.code is not None)
        finally:
            flags.FLAGS.unparse_flags()
        captured = capsys.readouterr()
        result = CliRun(exit_code, captured.out, captured.err.strip().splitlines(), value)
        assert code is None or result.code == code, result.err
        return result

    return run


@pytest.fixture
def train_tiny_on_clips(run_cli, tmp_path):
    """`train_tiny_on_clips(clips_dir, *flags)`: one update of a tiny model through
    `python -m hart_tf.train`'s main, run `r` in `tmp_path / "ck"`, on real clips of
    `clips_dir` (`flags` choose them); returns its `CliRun`, which must exit with `code`."""
    from hart_tf.cli import train as train_cli

    def train(clips_dir, *flags: str, code: int = 0) -> CliRun:
        return run_cli(train_cli.main, [
            "--image_size=64,64", "--glimpse_size=8,8", "--rnn_units=12", "--batch_size=2",
            "--steps_per_epoch=1", "--epochs=1", "--curriculum_lengths=3",
            "--eval_sequences=1", "--eval_steps=2", "--image_every=0", "--run_eagerly",
            "--max_minutes=0", "--run_name=r", f"--checkpoint_dir={tmp_path / 'ck'}",
            f"--logdir={tmp_path / 'tb'}", f"--train_clips_dir={clips_dir}", *flags], code=code)

    return train


# ---- tracking datasets on disk (GOT-10k and LaSOT layouts) -----------------------------

CLIP_RED = (230, 20, 20)


def _clip_frames(folder, n, hw, absent=(), fmt="jpg"):
    """`n` frames of grey noise with a red box (x, y, w, h) moving right, drawn only on the
    frames not in `absent`; returns the boxes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    boxes = []
    for i in range(n):
        img = rng.integers(90, 140, (*hw, 3)).astype(np.uint8)
        x, y, w, h = 4 + 2 * i * hw[1] // 160, hw[0] // 3, hw[1] // 5, hw[0] // 4
        if i not in absent:
            img[y:y + h, x:x + w] = CLIP_RED
        Image.fromarray(img).save(folder / f"{i + 1:08d}.{fmt}", quality=95)
        boxes.append((x, y, w, h))
    return boxes


def _got10k(root, name, n=16, hw=(60, 80), absent=(3, 4, 9)):
    """GOT-10k: comma-separated boxes, absence.txt, frames beside groundtruth.txt."""
    seq = root / name
    boxes = _clip_frames(seq, n, hw, absent)
    (seq / "groundtruth.txt").write_text(
        "".join(f"{x:.4f},{y:.4f},{w:.4f},{h:.4f}\n" for x, y, w, h in boxes))
    (seq / "absence.txt").write_text("".join(f"{int(i in absent)}\n" for i in range(n)))
    return seq


def _lasot(root, name, n=16, hw=(60, 80), occluded=(5,), out_of_view=(6,), empty=(7,)):
    """LaSOT: <category>/<name>/, frames in img/, occlusion and out-of-view flags on one
    comma-separated line, and an empty 0,0,0,0 box."""
    seq = root / name
    boxes = _clip_frames(seq / "img", n, hw, absent={*occluded, *out_of_view, *empty})
    lines = ["0,0,0,0" if i in empty else ",".join(map(str, b)) for i, b in enumerate(boxes)]
    (seq / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    (seq / "full_occlusion.txt").write_text(",".join(str(int(i in occluded)) for i in range(n)))
    (seq / "out_of_view.txt").write_text(",".join(str(int(i in out_of_view)) for i in range(n)))
    return seq


@pytest.fixture
def clip_layouts():
    """Writers of synthetic clips in the real datasets' layouts: `got10k(root, name, n=16,
    hw=(60, 80), absent=(3, 4, 9))` and `lasot(root, name, n=16, hw=(60, 80), occluded=(5,),
    out_of_view=(6,), empty=(7,))`; each draws a red box moving right on grey noise."""
    import types

    return types.SimpleNamespace(got10k=_got10k, lasot=_lasot)


@pytest.fixture
def got_root(tmp_path):
    """Two GOT-10k clips of 16 frames (target absent on frames 3, 4 and 9) and list.txt."""
    root = tmp_path / "got10k"
    for i in (1, 2):
        _got10k(root, f"GOT-10k_Train_{i:06d}")
    (root / "list.txt").write_text("GOT-10k_Train_000001\nGOT-10k_Train_000002\n")
    return root


@pytest.fixture
def lasot_root(tmp_path):
    """Two LaSOT clips of 16 frames: airplane/airplane-1 and bird/bird-2."""
    root = tmp_path / "lasot"
    _lasot(root, "airplane/airplane-1")
    _lasot(root, "bird/bird-2", occluded=(2, 3))
    return root


# ---- tracking models ----------------------------------------------------------------------
# `trained_checkpoint` is a small HART trained for about 40 s on two CPU cores on easy
# synthetic clips (one target, no distractors, no occluder) until it follows the target;
# `untrained_checkpoint` has random weights, for tests that only check plumbing. Each is
# built once per test session.

TRACKING_SIZE = (48, 64)


@pytest.fixture(scope="session")
def tracking_config():
    """The small model of the tracking checkpoints, at 48x64 frames."""
    from hart_tf.model.config import HARTConfig

    return HARTConfig.from_preset(
        "small", image_size=TRACKING_SIZE, glimpse_size=(16, 16), rnn_units=32,
        dorsal_units=32, v1_channels=16)


@pytest.fixture(scope="session")
def easy_clips():
    """Synthetic clips of one slow target alone on the panning background, at the tracking
    model's input size."""
    from hart_tf.data import synthetic

    return synthetic.SyntheticConfig(
        image_size=TRACKING_SIZE, target_size=(10.0, 16.0), max_speed=2.0,
        n_distractors=(0, 0), occlusion_prob=0.0)


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory, tracking_config, easy_clips) -> pathlib.Path:
    """`tracking_config` trained on `easy_clips` (150 steps of batch 16, T=8, lr 1e-3)."""
    import keras

    from hart_tf.data import synthetic
    from hart_tf.train import sources
    from hart_tf.train.options import TrainOptions
    from hart_tf.train.trainer import build_model

    steps, batch, length = 150, 16, 8
    keras.utils.set_random_seed(0)
    model = build_model(TrainOptions.from_flat(
        config=tracking_config, optimizer="rmsprop", learning_rate=1e-3, batch_size=batch,
        unroll=False))

    def batches():
        i = 0
        while True:
            yield sources.to_xy(synthetic.train_batch(i, batch, length, 0, easy_clips))
            i += 1

    model.fit(batches(), steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    path = tmp_path_factory.mktemp("tracking_checkpoints") / "trained.keras"
    model.save(path)
    return path


@pytest.fixture(scope="session")
def untrained_checkpoint(tmp_path_factory, tracking_config) -> pathlib.Path:
    """`tracking_config` with random weights (seed 1), unrolled as the TF training default:
    export must still serve any length T."""
    import keras

    from hart_tf.model.hart import HART

    keras.utils.set_random_seed(1)
    model = HART(tracking_config, seed=1, unroll=True)
    model.build()
    path = tmp_path_factory.mktemp("tracking_checkpoints") / "untrained.keras"
    model.save(path)
    return path


@pytest.fixture(scope="session")
def exported_dir(tmp_path_factory, untrained_checkpoint) -> pathlib.Path:
    """`untrained_checkpoint` exported by `hart_tf.track.export` (SavedModel and .keras file)."""
    from hart_tf.track.export import export_checkpoint

    path = tmp_path_factory.mktemp("export") / "1"
    export_checkpoint(untrained_checkpoint, path)
    return path
