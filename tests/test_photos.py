"""Real-photo textures for the synthetic videos (texture_source="photos")."""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from hart_tf.data import photos, synthetic
from hart_tf.data.synthetic import SyntheticConfig, make_sequence, sequence_rng

pytest.importorskip("skimage", reason="the real extra (scikit-image) is not installed")

PHOTOS = SyntheticConfig(texture_source="photos")


def test_banks_are_real_photo_crops_and_fixed():
    bg = photos.background_bank(24, 32, 5)
    assert bg.shape == (5, 48, 64, 3) and bg.dtype == np.uint8
    obj = photos.object_bank()
    assert obj.shape[1:] == (photos.PATCH_SIZE, photos.PATCH_SIZE, 3) and len(obj) >= 64
    # Photographs, not flat fills: every crop has texture.
    assert min(b.std() for b in bg) > 5 and np.median([o.std() for o in obj]) > 10
    # Rebuilt from scratch (caches cleared) they are the same: part of the dataset's definition.
    photos.background_bank.cache_clear()
    photos.object_bank.cache_clear()
    np.testing.assert_array_equal(photos.background_bank(24, 32, 5), bg)
    np.testing.assert_array_equal(photos.object_bank(), obj)
    # The first background is a window of the first photograph (the astronaut, in colour).
    assert photos.PHOTO_FILES[0] == "astronaut.png"
    assert np.abs(bg[0].astype(int)[..., 0] - bg[0][..., 2]).mean() > 5


def test_photos_sequences_deterministic_and_unlike_procedural():
    a = synthetic.fixed_set("test", 3, 6, PHOTOS)
    b = synthetic.fixed_set("test", 3, 6, PHOTOS)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    proc = synthetic.fixed_set("test", 3, 6, SyntheticConfig())
    assert not np.array_equal(a["frames"], proc["frames"])
    assert a["frames"].std() > 10
    batch = synthetic.train_batch(0, 2, 5, seed=1, cfg=PHOTOS)
    assert batch["frames"].shape == (2, 5, 96, 128, 3) and batch["frames"].dtype == np.uint8


@pytest.mark.parametrize("index", range(6))
def test_photo_boxes_match_drawn_target(index):
    # The target alone on black, photo-textured (colours lifted above 0): its pixels' bounding
    # box is the box within 1 px, scale jumps included.
    debug = make_sequence(sequence_rng("val", 0, index), 10, PHOTOS, target_only=True)
    full = make_sequence(sequence_rng("val", 0, index), 10, PHOTOS)
    np.testing.assert_array_equal(debug["boxes"], full["boxes"])
    for t in range(10):
        mask = debug["frames"][t].max(-1) > 0
        ys, xs = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
        drawn = np.array([ys[0], xs[0], ys[-1] + 1, xs[-1] + 1], float)
        y, x, h, w = debug["boxes"][t]
        np.testing.assert_allclose(drawn, [y, x, y + h, x + w], atol=1.0)


def test_scale_jumps_happen_and_stay_inside():
    jumps = 0
    for i in range(16):
        seq = make_sequence(sequence_rng("train", 0, i), 16, PHOTOS)
        area = seq["boxes"][:, 2] * seq["boxes"][:, 3]
        # Smooth drift changes the area by a few % a frame; a jump by >= 1.6x within 3 frames.
        ratio = area[3:] / area[:-3]
        jumps += bool(np.any((ratio > 1.6) | (ratio < 1 / 1.6)))
        centre = seq["boxes"][:, :2] + seq["boxes"][:, 2:] / 2
        assert np.all((centre >= 0) & (centre < (96, 128))) and np.all(seq["presence"] == 1)
    assert 2 <= jumps <= 14, jumps


def test_augment_changes_light_and_sharpness_only_of_frames():
    checker = np.indices((24, 32)).sum(0) % 2 * 120 + 60  # (24, 32) high-frequency pattern
    frames0 = np.repeat(checker[None, :, :, None], 3, -1).repeat(12, 0).astype(np.uint8)
    lit, blurred = 0, 0
    for seed in range(20):
        frames = frames0.copy()
        synthetic._augment(np.random.default_rng(seed), frames)
        again = frames0.copy()
        synthetic._augment(np.random.default_rng(seed), again)
        np.testing.assert_array_equal(frames, again)
        means = frames.reshape(12, -1).mean(1)
        lit += means.max() - means.min() > 10
        # A blurred checker loses its pixel-to-pixel contrast.
        contrast = np.abs(np.diff(frames[..., 0].astype(int), axis=2)).mean((1, 2))
        blurred += contrast.min() < 0.5 * contrast.max()
    assert 5 <= lit <= 19 and 2 <= blurred <= 15, (lit, blurred)


def test_bad_texture_source():
    with pytest.raises(ValueError, match="texture_source"):
        SyntheticConfig(texture_source="pictures")


def test_missing_scikit_image_is_one_clear_error(monkeypatch):
    photos.load_photos.cache_clear()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "skimage" else real(name, *a))
    try:
        with pytest.raises(ValueError, match=r"scikit-image.*\[real\]"):
            photos.load_photos()
    finally:
        monkeypatch.undo()
        photos.load_photos.cache_clear()


def test_texture_source_flag():
    from hart_tf.flags import FLAGS

    assert FLAGS["texture_source"].default == "procedural"
    assert set(FLAGS["texture_source"].parser.enum_values) == set(synthetic.TEXTURE_SOURCES)


def test_no_tensorflow_import():
    code = (
        "import sys; from hart_tf.data import synthetic;"
        "synthetic.train_batch(0, 1, 3, cfg=synthetic.SyntheticConfig(texture_source='photos'));"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
