"""A few training steps of the paper's KITTI config (187x621, AlexNet V1) on real frames."""

import keras
import numpy as np
import pytest

from hart_tf.model.config import HARTConfig
from hart_tf.train import sources as datasets
from hart_tf.train.options import TrainOptions
from hart_tf.train.trainer import build_model


# About 17 s of CPU on 2 cores (the full-size KITTI model); tests/test_kitti.py reads the
# same frames fast.
@pytest.mark.slow
def test_kitti_config_trains_on_real_frames(six_frames):
    options = TrainOptions.from_flat(
        config=HARTConfig.from_preset("kitti"),
        dataset="kitti",
        data_dir=str(six_frames),
        batch_size=2,
        learning_rate=3.33e-6,
        clip_norm=0.3,
        curriculum_lengths=(2,),
        unroll=False,
    )
    keras.utils.set_random_seed(0)
    model = build_model(options)
    batches = datasets.train_source(options).batches(2)
    x, y = next(batches)
    assert x["frames"].shape == (2, 2, 187, 621, 3) and x["frames"].dtype == np.uint8
    assert y["boxes"].shape == (2, 2, 4)
    # Boxes are in pixels of the resized frame and inside it.
    present = y["presence"] > 0
    assert np.all(y["boxes"][present][:, 0] >= 0) and np.all(y["boxes"][present][:, 1] >= 0)
    assert np.all(y["boxes"][present][:, 0] + y["boxes"][present][:, 2] <= 187 + 1e-3)
    assert np.all(y["boxes"][present][:, 1] + y["boxes"][present][:, 3] <= 621 + 1e-3)
    before = [np.array(v) for v in model.trainable_variables]
    hist = model.fit(batches, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False).history
    assert np.isfinite(hist["loss"][-1])
    changed = [not np.array_equal(b, np.array(v))
               for b, v in zip(before, model.trainable_variables, strict=True)]
    assert sum(changed) > 0.9 * len(changed)
