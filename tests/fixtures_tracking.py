"""Checkpoints shared by the tracking tests (tracker, export, track CLI).

`trained_checkpoint` is a small HART trained for about 40 s on two CPU cores on easy
synthetic clips (one target, no distractors, no occluder) until it follows the target;
`untrained_checkpoint` has random weights, for tests that only check plumbing. Each is built
once per test session: pytest makes a session fixture once per module that imports it, so
the file is cached under the session's base temp folder.
"""

from __future__ import annotations

import time
from pathlib import Path

import keras
import pytest

from hart_tf.data import synthetic
from hart_tf.model.config import HARTConfig
from hart_tf.model.hart import HART
from hart_tf.train import sources as datasets
from hart_tf.train.options import TrainOptions
from hart_tf.train.trainer import build_model

SIZE = (48, 64)
CONFIG = HARTConfig.from_preset(
    "small", image_size=SIZE, glimpse_size=(16, 16), rnn_units=32, dorsal_units=32,
    v1_channels=16,
)


def easy_clips() -> synthetic.SyntheticConfig:
    """One slow target alone on the panning background, at the model's input size."""
    return synthetic.SyntheticConfig(
        image_size=SIZE, target_size=(10.0, 16.0), max_speed=2.0, n_distractors=(0, 0),
        occlusion_prob=0.0,
    )


STEPS, BATCH, LENGTH, LEARNING_RATE = 150, 16, 8, 1e-3


def train_small(path: Path) -> dict:
    """Trains CONFIG on `easy_clips` and saves it to `path`; returns timing."""
    keras.utils.set_random_seed(0)
    model = build_model(TrainOptions.from_flat(
        config=CONFIG, optimizer="rmsprop", learning_rate=LEARNING_RATE, batch_size=BATCH,
        unroll=False))
    clips = easy_clips()

    def batches():
        i = 0
        while True:
            yield datasets.to_xy(synthetic.train_batch(i, BATCH, LENGTH, 0, clips))
            i += 1

    start = time.perf_counter()
    model.fit(batches(), steps_per_epoch=STEPS, epochs=1, verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return {"train_seconds": seconds}


def _cached(tmp_path_factory, name: str, make) -> Path:
    path = tmp_path_factory.getbasetemp() / "tracking_checkpoints" / name
    if not path.exists():
        make(path)
    return path


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory) -> Path:
    return _cached(tmp_path_factory, "trained.keras", train_small)


@pytest.fixture(scope="session")
def untrained_checkpoint(tmp_path_factory) -> Path:
    def make(path: Path) -> None:
        keras.utils.set_random_seed(1)
        # Unrolled, as the TF training default: export must still serve any length T.
        model = HART(CONFIG, seed=1, unroll=True)
        model.build()
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)

    return _cached(tmp_path_factory, "untrained.keras", make)


@pytest.fixture(scope="session")
def exported_dir(tmp_path_factory, untrained_checkpoint) -> Path:
    """`untrained_checkpoint` exported by `hart_tf.track.export` (SavedModel and .keras file)."""
    from hart_tf.track.export import export_checkpoint

    return _cached(tmp_path_factory, "export/1",
                   lambda path: export_checkpoint(untrained_checkpoint, path))
