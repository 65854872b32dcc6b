"""Tests of the shared batching helpers and the tf.data wrapper."""

import itertools

import numpy as np
import pytest

from hart_tf.data import pipeline, synthetic

CFG = synthetic.SyntheticConfig(image_size=(32, 40), target_size=(6.0, 12.0))
SIZE = CFG.image_size


def _seq(t, fill=0):
    return {
        "frames": np.full((t, *SIZE, 3), fill, np.uint8),
        "boxes": np.full((t, 4), fill, np.float32),
        "presence": np.ones((t,), np.float32),
    }


def test_stack_sequences():
    batch = pipeline.stack_sequences([_seq(3, 1), _seq(3, 2)])
    assert batch["frames"].shape == (2, 3, *SIZE, 3) and batch["frames"].dtype == np.uint8
    assert batch["boxes"].shape == (2, 3, 4) and batch["presence"].shape == (2, 3)
    np.testing.assert_array_equal(batch["boxes"][:, 0, 0], [1, 2])
    pipeline.check_batch(batch, 2, SIZE)


def test_stack_sequences_rejects_mismatch():
    with pytest.raises(ValueError, match="'frames' differs in shape"):
        pipeline.stack_sequences([_seq(3), _seq(4)])
    with pytest.raises(ValueError, match="keys"):
        pipeline.stack_sequences([_seq(3), {"frames": _seq(3)["frames"]}])
    with pytest.raises(ValueError, match="no sequences"):
        pipeline.stack_sequences([])


@pytest.mark.parametrize("mirror", [False, True])
def test_padded_window_pads_and_mirrors_boxes_with_pixels(mirror):
    # Two frames, each with one white rectangle at its box; padded to 4 steps.
    boxes = np.array([[3, 5, 6, 8], [10, 20, 4, 12]], np.float32)  # (y, x, h, w)
    images = np.zeros((2, *SIZE, 3), np.uint8)
    for t, (y, x, h, w) in enumerate(boxes.astype(int)):
        images[t, y : y + h, x : x + w] = 255
    given = boxes.copy()
    out = pipeline.padded_window(images, boxes, 4, mirror=mirror)
    np.testing.assert_array_equal(boxes, given)  # the caller's boxes are not touched
    assert out["frames"].shape == (4, *SIZE, 3) and out["frames"].dtype == np.uint8
    np.testing.assert_array_equal(out["presence"], [1, 1, 0, 0])
    assert not out["frames"][2:].any() and not out["boxes"][2:].any()
    for t in range(2):  # the box is where the rectangle's pixels are
        ys, xs = np.nonzero(out["frames"][t, ..., 0])
        np.testing.assert_array_equal(
            out["boxes"][t], [ys.min(), xs.min(), ys.max() + 1 - ys.min(), xs.max() + 1 - xs.min()]
        )
    expected_x = SIZE[1] - given[:, 1] - given[:, 3] if mirror else given[:, 1]
    np.testing.assert_array_equal(out["boxes"][:2, 1], expected_x)


def test_batch_sequences():
    seqs = (_seq(2, i) for i in range(5))
    batches = list(pipeline.batch_sequences(seqs, 2))
    assert [b["boxes"][:, 0, 0].tolist() for b in batches] == [[0, 1], [2, 3]]
    tail = list(pipeline.batch_sequences((_seq(2, i) for i in range(5)), 2, drop_remainder=False))
    assert tail[-1]["frames"].shape[0] == 1
    with pytest.raises(ValueError, match="batch_size"):
        next(pipeline.batch_sequences([], 0))


def test_check_batch_messages():
    batch = pipeline.stack_sequences([_seq(3)])
    with pytest.raises(ValueError, match="missing"):
        pipeline.check_batch({"frames": batch["frames"]}, 1, SIZE)
    bad = dict(batch, boxes=batch["boxes"].astype(np.float64))
    with pytest.raises(ValueError, match=r"batch\['boxes'\] is float64"):
        pipeline.check_batch(bad, 1, SIZE)
    with pytest.raises(ValueError, match="frames"):
        pipeline.check_batch(batch, 1, (48, 64))


def test_tf_dataset_matches_numpy_iterator():
    fn = synthetic.batch_fn(2, 3, seed=5, cfg=CFG)
    ds = pipeline.tf_dataset(fn, batch_size=2, image_size=SIZE, num_parallel_calls=2)
    spec = ds.element_spec
    assert spec["frames"].shape.as_list() == [2, None, *SIZE, 3]
    assert spec["frames"].dtype.name == "uint8" and spec["boxes"].dtype.name == "float32"
    ref = synthetic.train_iterator(2, 3, seed=5, cfg=CFG)
    for got, want in zip(itertools.islice(ds.as_numpy_iterator(), 3), ref, strict=False):
        for k in pipeline.KEYS:
            np.testing.assert_array_equal(got[k], want[k])


def test_tf_dataset_start_stop_and_further_map():
    import tensorflow as tf

    fn = synthetic.batch_fn(2, 4, seed=0, cfg=CFG)
    ds = pipeline.tf_dataset(fn, batch_size=2, image_size=SIZE, start=1, stop=3)
    # Downstream transforms compose with the generator inside Dataset.map.
    ds = ds.map(lambda b: (tf.cast(b["frames"], tf.float32) / 255.0, b["boxes"][:, 0]))
    out = list(ds.as_numpy_iterator())
    assert len(out) == 2
    np.testing.assert_allclose(out[0][0], fn(1)["frames"] / np.float32(255.0), rtol=1e-6)
    np.testing.assert_array_equal(out[1][1], fn(2)["boxes"][:, 0])


def test_tf_dataset_follows_seq_len_switch():
    holder = [3]
    fn = synthetic.batch_fn(1, lambda: holder[0], seed=0, cfg=CFG)
    ds = pipeline.tf_dataset(fn, batch_size=1, image_size=SIZE, num_parallel_calls=1, prefetch=1)
    it = ds.as_numpy_iterator()
    assert next(it)["frames"].shape[1] == 3
    holder[0] = 5
    # Batches already in flight keep the old length; new ones take the new one, for good.
    lengths = [next(it)["frames"].shape[1] for _ in range(6)]
    assert lengths[-1] == 5 and lengths == sorted(lengths)


def test_tf_dataset_reports_bad_batches():
    import tensorflow as tf

    def bad(index):
        return dict(synthetic.train_batch(index, 1, 2, cfg=CFG), presence=np.ones((1, 2)))

    ds = pipeline.tf_dataset(bad, batch_size=1, image_size=SIZE)
    with pytest.raises(tf.errors.InvalidArgumentError, match="presence"):
        next(iter(ds))


def test_epoch_order_covers_every_index_each_epoch_reshuffled_and_seeded():
    from hart_tf.data.pipeline import epoch_order

    order = list(epoch_order(6, seed=3, num_epochs=3))
    epochs = [order[i:i + 6] for i in range(0, 18, 6)]
    assert len(order) == 18 and all(sorted(e) == list(range(6)) for e in epochs)
    assert epochs[0] != epochs[1] or epochs[1] != epochs[2]  # a new permutation each epoch
    assert order == list(epoch_order(6, seed=3, num_epochs=3))
    assert list(epoch_order(3, seed=0, shuffle=False, num_epochs=2)) == [0, 1, 2, 0, 1, 2]
    forever = epoch_order(2, seed=0)
    assert len([next(forever) for _ in range(9)]) == 9
