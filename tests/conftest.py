"""Test configuration: backend default, slow-test opt-in, shared data location."""

import os
import pathlib

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

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
