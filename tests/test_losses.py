"""HART losses against hand-computed values; masking, switches and numerical safety."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from hart_tf.layers.adaptive_loss_weights import AdaptiveLossWeights
from hart_tf.model import losses

NLL_ZERO = -math.log(losses.EPS)  # -log of the floor, 18.42


def np_(x):
    return ops.convert_to_numpy(x)


def var_np(v):
    """A variable's value as NumPy (np.asarray on a Variable warns under NumPy 2)."""
    return np_(ops.copy(v))


def softplus(x):
    return math.log1p(math.exp(x))


def value_and_grads(fn, *args):
    """fn(*args) and its gradients with respect to every argument, on either backend."""
    args = [np.asarray(a, np.float32) for a in args]
    if keras.backend.backend() == "jax":
        import jax

        value, grads = jax.value_and_grad(fn, argnums=tuple(range(len(args))))(*args)
        return np.asarray(value), [np.asarray(g) for g in grads]
    import tensorflow as tf

    xs = [tf.convert_to_tensor(a) for a in args]
    with tf.GradientTape() as tape:
        tape.watch(xs)
        value = fn(*xs)
    return value.numpy(), [g.numpy() for g in tape.gradient(value, xs)]


def compiled(fn):
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    import tensorflow as tf

    return tf.function(fn)


def seq(*boxes):
    """One sequence `[1, T, 4]` from T boxes."""
    return np.array([boxes], np.float32)


# ---------------------------------------------------------------- tracking loss


def test_tracking_loss_is_minus_log_iou_and_skips_step0():
    gt = seq([0, 0, 10, 10], [0, 0, 10, 10])
    pred = seq([70, 70, 3, 3], [5, 5, 10, 10])  # t=0 is junk; t=1 has IoU 25/175
    out = losses.tracking_loss(pred, gt, np.ones((1, 2)))
    np.testing.assert_allclose(np_(out), math.log(7), rtol=1e-6)
    perfect = losses.tracking_loss(gt, gt, np.ones((1, 2)))
    np.testing.assert_allclose(np_(perfect), 0.0, atol=1e-6)


def test_tracking_loss_time_weighting_and_masking():
    # Two objects, three steps. Object 1 is gone at t=2 (its junk box must not count).
    gt = np.array([[[0, 0, 10, 10]] * 3] * 2, np.float32)
    pred = np.array(
        [
            [[0, 0, 10, 10], [5, 5, 10, 10], [0, 5, 10, 10]],  # IoU 1/7 then 1/3
            [[0, 0, 10, 10], [0, 0, 10, 10], [99, 99, 0, 0]],  # IoU 1, then absent
        ],
        np.float32,
    )
    presence = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
    # t=1: mean of -log(1/7) and -log 1 over 2 objects; t=2: -log(1/3) for the one left;
    # then the mean over the two steps (the original weighs steps, not sequences).
    want = ((math.log(7) + 0.0) / 2 + math.log(3)) / 2
    np.testing.assert_allclose(np_(losses.tracking_loss(pred, gt, presence)), want, rtol=1e-6)
    # A step nobody is present at is not averaged in.
    presence3 = np.array([[1, 1, 0, 0], [1, 1, 0, 0]], np.float32)
    pred3 = np.concatenate([pred[:, :2], pred[:, 2:], pred[:, 2:]], axis=1)
    gt3 = np.concatenate([gt, gt[:, :1]], axis=1)
    np.testing.assert_allclose(
        np_(losses.tracking_loss(pred3, gt3, presence3)), math.log(7) / 2, rtol=1e-6
    )
    # Nothing present at all: 0, not NaN.
    np.testing.assert_array_equal(np_(losses.tracking_loss(pred, gt, 0 * presence)), 0.0)


def test_tracking_loss_no_overlap_and_zero_area_are_finite():
    gt = seq([0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10])
    pred = seq([0, 0, 10, 10], [50, 50, 10, 10], [3, 3, 0, 0])  # disjoint; zero-area
    value, (g_pred, g_gt) = value_and_grads(
        lambda p, g: losses.tracking_loss(p, g, np.ones((1, 3), np.float32)), pred, gt
    )
    np.testing.assert_allclose(value, NLL_ZERO, rtol=1e-6)
    assert np.isfinite(g_pred).all() and np.isfinite(g_gt).all()
    # Both boxes zero-area too.
    value, (g_pred,) = value_and_grads(
        lambda p: losses.tracking_loss(p, p, np.ones((1, 3), np.float32)),
        seq([0, 0, 0, 0], [1, 1, 0, 0], [2, 2, 0, 3]),
    )
    np.testing.assert_allclose(value, NLL_ZERO, rtol=1e-6)
    assert np.isfinite(g_pred).all()


def test_tracking_loss_gradient_by_hand():
    # pred (2, 2, h, w) inside gt (0, 0, 10, 10): IoU = h w / 100, so -log IoU has
    # gradient -1/h, -1/w in the size and 0 in the position (no ties in min/max).
    gt = seq([0, 0, 10, 10], [0, 0, 10, 10])
    pred = seq([0, 0, 10, 10], [2, 2, 5, 4])
    _, (g,) = value_and_grads(
        lambda p: losses.tracking_loss(p, gt, np.ones((1, 2), np.float32)), pred
    )
    np.testing.assert_allclose(g[0, 1], [0, 0, -1 / 5, -1 / 4], atol=1e-6)
    np.testing.assert_array_equal(g[0, 0], 0)  # step 0 gets no gradient


# ---------------------------------------------------------------- attention loss


def test_attention_loss_by_hand():
    gt = seq([0, 0, 5, 5], [10, 10, 20, 20])  # |g| = 400
    att = seq([0, 0, 5, 5], [0, 0, 20, 40])  # |a ∩ g| = 10 * 20 = 200, |a| = 800
    out = losses.attention_loss(att, gt, np.ones((1, 2)), image_size=(100, 100))
    want = -math.log(200 / 400) - math.log(1 - 800 / 10000)
    np.testing.assert_allclose(np_(out), want, rtol=1e-6)


def test_attention_loss_tightness_weighs_the_area_part():
    gt = seq([0, 0, 5, 5], [10, 10, 20, 20])
    att = seq([0, 0, 5, 5], [0, 0, 20, 40])
    out = losses.attention_loss(att, gt, np.ones((1, 2)), image_size=(100, 100), tightness=10.0)
    want = -math.log(200 / 400) - 10.0 * math.log(1 - 800 / 10000)
    np.testing.assert_allclose(np_(out), want, rtol=1e-6)


def test_attention_loss_box_larger_than_image():
    # |a| / |img| = 2: the area part is -log(floor) with weight clip(2, 1, 10) = 2,
    # and the gt is inside the attention box so the containment part is 0.
    gt = seq([0, 0, 5, 5], [10, 10, 20, 20])
    att = seq([0, 0, 5, 5], [0, 0, 200, 100])
    value, (g_att,) = value_and_grads(
        lambda a: losses.attention_loss(a, gt, np.ones((1, 2), np.float32), (100, 100)), att
    )
    np.testing.assert_allclose(value, 2 * NLL_ZERO, rtol=1e-5)
    # The weight's gradient pushes the area down: d/dh = NLL_ZERO * w / |img| > 0.
    np.testing.assert_allclose(g_att[0, 1, 2], NLL_ZERO * 100 / 10000, rtol=1e-5)


def test_attention_loss_disjoint_and_degenerate_is_finite():
    gt = seq([0, 0, 5, 5], [10, 10, 20, 20], [10, 10, 0, 0])
    att = seq([0, 0, 5, 5], [60, 60, 20, 20], [10, 10, 0, 0])
    value, grads = value_and_grads(
        lambda a, g: losses.attention_loss(a, g, np.ones((1, 3), np.float32), (100, 100)),
        att,
        gt,
    )
    assert np.isfinite(value) and all(np.isfinite(g).all() for g in grads)
    # t=1: -log(floor) - log(1 - 0.04); t=2: -log(floor) (0/1 containment) - log 1.
    want = (NLL_ZERO + NLL_ZERO) / 2 + (-math.log(1 - 0.04) + 0.0) / 2
    np.testing.assert_allclose(value, want, rtol=1e-5)


# ---------------------------------------------------------------- appearance


def test_appearance_target_left_half():
    att = seq([10, 20, 40, 40])
    gt = seq([0, 0, 100, 40])  # x in [0, 40) covers the attention box's x in [20, 40)
    mask = np_(losses.appearance_target(gt, att, (4, 4)))
    assert mask.shape == (1, 1, 4, 4)
    np.testing.assert_array_equal(mask[0, 0, :, :2], 1.0)
    np.testing.assert_array_equal(mask[0, 0, :, 2:], 0.0)


def test_appearance_target_partial_cells_and_degenerate():
    att = seq([0, 0, 40, 40], [0, 0, 40, 40], [0, 0, 0, 0])
    # 1) rows [5, 35) of a 4x10-px grid: 0.5, 1, 1, 0.5; cols [0, 15): 1, 0.5, 0, 0.
    # 2) disjoint gt; 3) zero-area attention box.
    gt = seq([5, 0, 30, 15], [50, 50, 5, 5], [0, 0, 5, 5])
    mask = np_(losses.appearance_target(gt, att, (4, 4)))
    want = np.outer([0.5, 1, 1, 0.5], [1, 0.5, 0, 0])
    np.testing.assert_allclose(mask[0, 0], want, atol=1e-6)
    np.testing.assert_array_equal(mask[0, 1], 0.0)
    np.testing.assert_array_equal(mask[0, 2], 0.0)
    # Non-square maps keep (fh, fw) order.
    assert losses.appearance_target(gt, att, (2, 3)).shape == (1, 3, 2, 3)


def test_appearance_loss_class_balanced_by_hand():
    target = np.array([[[[1, 0], [0, 0]]]], np.float32)  # (1, 1, 2, 2): 1 positive of 4
    logits = np.array([[[[0, 1], [-1, 2]]]], np.float32)
    out = losses.appearance_loss(logits, target, np.ones((1, 1)))
    # weights: 1 / (1/4) on the positive cell, 1 / (3/4) on the negatives; mean of 4 cells.
    want = (4 * math.log(2) + (4 / 3) * (softplus(1) + softplus(-1) + softplus(2))) / 4
    np.testing.assert_allclose(np_(out), want, rtol=1e-6)
    # All-negative target: frac_pos = 0, negatives weigh 1/1.
    empty = losses.appearance_loss(logits, 0 * target, np.ones((1, 1)))
    want = (softplus(0) + softplus(1) + softplus(-1) + softplus(2)) / 4
    np.testing.assert_allclose(np_(empty), want, rtol=1e-6)


def test_appearance_loss_masks_absent_steps_and_scores_step0():
    target = np.array([[[[1, 0], [0, 0]]] * 2], np.float32)  # (1, 2, 2, 2)
    logits = np.array([[[[0, 1], [-1, 2]], [[9, -9], [9, -9]]]], np.float32)
    one = losses.appearance_loss(logits[:, :1], target[:, :1], np.ones((1, 1)))
    masked = losses.appearance_loss(logits, target, np.array([[1, 0]], np.float32))
    np.testing.assert_allclose(np_(masked), np_(one), rtol=1e-6)
    # Step 0 is scored: with only step 0 present the loss is not 0.
    assert np_(one) > 0.1


def test_appearance_loss_gradient_at_zero_logits():
    # d XE / d logit = sigmoid(x) - z, times the class weight, over 4 cells.
    target = np.array([[[[1, 0], [0, 0]]]], np.float32)
    _, (g,) = value_and_grads(
        lambda x: losses.appearance_loss(x, target, np.ones((1, 1), np.float32)),
        np.zeros((1, 1, 2, 2)),
    )
    want = np.array([[-0.5 * 4, 0.5 * 4 / 3], [0.5 * 4 / 3, 0.5 * 4 / 3]]) / 4
    np.testing.assert_allclose(g[0, 0], want, rtol=1e-6)


# ---------------------------------------------------------------- l2, adaptive weights


def test_l2_loss_by_hand():
    weights = [np.ones((2, 3), np.float32), np.full((2,), 2.0, np.float32)]  # 6/2 + 8/2
    dfn = np.array([[1.0, 3.0]], np.float32)  # mean 2
    np.testing.assert_allclose(np_(losses.l2_loss(weights, dfn, 1e-4)), (3 + 4 + 2) * 1e-4)
    np.testing.assert_allclose(np_(losses.l2_loss(weights, None, 1.0)), 7.0)


def test_adaptive_weights_by_hand():
    layer = AdaptiveLossWeights(["a", "b"], initial_weight=4.0)
    np.testing.assert_allclose(var_np(layer.scales["a"]), 2.0)  # s starts at sqrt(weight)
    layer.scales["a"].assign(0.5)
    layer.scales["b"].assign(-3.0)
    lam_a, lam_b = 0.25 + 1e-8, 9.0 + 1e-8
    out = layer({"a": ops.convert_to_tensor(2.0), "b": ops.convert_to_tensor(0.5)})
    want = lam_a * 2.0 - math.log(lam_a) + lam_b * 0.5 - math.log(lam_b)
    np.testing.assert_allclose(np_(out), want, rtol=1e-6)
    np.testing.assert_allclose(np_(layer.lambdas()["b"]), lam_b, rtol=1e-6)
    with pytest.raises(ValueError, match="expected"):
        layer({"a": ops.convert_to_tensor(1.0)})
    with pytest.raises(ValueError, match="identifiers"):
        AdaptiveLossWeights(["a/b"])


def test_adaptive_weights_serialisation_round_trip():
    layer = AdaptiveLossWeights(["tracking", "attention"], initial_weight=2.0, epsilon=1e-6)
    layer.scales["attention"].assign(0.3)
    config = keras.saving.serialize_keras_object(layer)
    assert config["registered_name"] == "hart_tf>AdaptiveLossWeights"
    clone = keras.saving.deserialize_keras_object(config)
    assert clone.get_config() == layer.get_config()
    assert len(clone.trainable_weights) == 2
    for mine, theirs in zip(clone.weights, layer.weights, strict=True):
        mine.assign(var_np(theirs))
    terms = {"tracking": ops.convert_to_tensor(1.5), "attention": ops.convert_to_tensor(0.2)}
    np.testing.assert_allclose(np_(clone(terms)), np_(layer(terms)), rtol=1e-6)


class TwoLossModel(keras.Model):
    """Dense regressor whose two outputs are weighed by AdaptiveLossWeights."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)
        self.weigh = AdaptiveLossWeights(["first", "second"])

    def call(self, x):
        return self.dense(x)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        err = ops.square(y_pred - y)
        return self.weigh({"first": ops.mean(err[:, 0]), "second": ops.mean(err[:, 1])})


def test_adaptive_weights_train_in_fit():
    keras.utils.set_random_seed(0)
    model = TwoLossModel()
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    x = np.ones((4, 3), np.float32)
    y = np.stack([np.zeros(4), np.full(4, 10.0)], -1).astype(np.float32)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    s = {k: float(var_np(v)) for k, v in model.weigh.scales.items()}
    # d/ds (s^2 L - log s^2) = 2 s L - 2 / s: the big-error term's weight shrinks more.
    assert s["first"] != 1.0 and s["second"] < s["first"]


# ---------------------------------------------------------------- hart_loss


def _batch(fh=2, fw=2):
    gt = np.array([[[0, 0, 10, 10], [0, 0, 10, 10]]], np.float32)
    outputs = {
        "boxes": np.array([[[0, 0, 10, 10], [5, 5, 10, 10]]], np.float32),
        "att_boxes": np.array([[[0, 0, 10, 20], [0, 0, 10, 20]]], np.float32),
        "location_logits": np.zeros((1, 2, fh, fw), np.float32),
        "dfn_l2": np.array([[1.0, 3.0]], np.float32),
    }
    targets = {"boxes": gt, "presence": np.ones((1, 2), np.float32)}
    return outputs, targets


KW = dict(image_size=(100, 100), feature_shape=(2, 2))


def test_hart_loss_fixed_weights_is_sum_of_terms():
    outputs, targets = _batch()
    total, terms = losses.hart_loss(
        outputs, targets, adaptive_weights=None, l2_weight=1e-4, l2_terms=[np.ones((2, 2))], **KW
    )
    assert set(terms) == {"tracking", "attention", "appearance", "l2", "iou"}
    np.testing.assert_allclose(np_(terms["tracking"]), math.log(7), rtol=1e-6)
    np.testing.assert_allclose(np_(terms["attention"]), -math.log(1 - 200 / 10000), rtol=1e-5)
    # gt fills the left half of the 10x20 attention box: the left column of a 2x2 map.
    want_app = 2 * math.log(2)  # weight 1 / (1/2) times XE log 2 in every cell, both steps
    np.testing.assert_allclose(np_(terms["appearance"]), want_app, rtol=1e-6)
    np.testing.assert_allclose(np_(terms["l2"]), (2 + 2) * 1e-4, rtol=1e-6)
    np.testing.assert_allclose(np_(terms["iou"]), 1 / 7, rtol=1e-6)
    want = sum(float(np_(terms[k])) for k in ("tracking", "attention", "appearance", "l2"))
    np.testing.assert_allclose(np_(total), want, rtol=1e-6)


def test_hart_loss_adaptive_total_by_hand():
    outputs, targets = _batch()
    weigh = AdaptiveLossWeights(losses.adaptive_term_names())
    for name, s in zip(weigh.names, (0.5, 1.5, 2.0), strict=True):
        weigh.scales[name].assign(s)
    total, terms = losses.hart_loss(
        outputs, targets, adaptive_weights=weigh, l2_weight=1e-4, l2_terms=[], **KW
    )
    want = float(np_(terms["l2"]))
    for name, s in zip(weigh.names, (0.5, 1.5, 2.0), strict=True):
        lam = s * s + 1e-8
        np.testing.assert_allclose(np_(terms[f"lambda/{name}"]), lam, rtol=1e-6)
        want += lam * float(np_(terms[name])) - math.log(lam)
    np.testing.assert_allclose(np_(total), want, rtol=1e-5)


def test_hart_loss_switches_remove_terms():
    outputs, targets = _batch()
    del outputs["location_logits"]
    total, terms = losses.hart_loss(
        outputs,
        targets,
        adaptive_weights=AdaptiveLossWeights(losses.adaptive_term_names(False, False)),
        attention_loss=False,
        appearance_loss=False,
        l2_weight=0.0,
        **KW,
    )
    assert set(terms) == {"tracking", "lambda/tracking", "iou"}
    np.testing.assert_allclose(np_(total), 1.0 * math.log(7), rtol=1e-5)  # lambda = 1, log 1 = 0
    with pytest.raises(ValueError, match="location_logits"):
        losses.hart_loss(outputs, targets, adaptive_weights=None, l2_weight=0.0, **KW)
    with pytest.raises(ValueError, match="adaptive_term_names"):
        losses.hart_loss(
            outputs,
            targets,
            adaptive_weights=AdaptiveLossWeights(losses.adaptive_term_names()),
            appearance_loss=False,
            l2_weight=0.0,
            **KW,
        )


def test_hart_loss_bad_shapes_and_keys():
    outputs, targets = _batch()
    with pytest.raises(ValueError, match="targets has no 'presence'"):
        losses.hart_loss(
            outputs, {"boxes": targets["boxes"]}, adaptive_weights=None, l2_weight=0, **KW
        )
    outputs["boxes"] = outputs["boxes"][..., :3]
    with pytest.raises(ValueError, match="pred_boxes must have rank 3 with last axis 4"):
        losses.hart_loss(outputs, targets, adaptive_weights=None, l2_weight=0.0, **KW)


def test_hart_loss_gradients_finite_at_zero_overlap_and_compiled():
    outputs, targets = _batch()
    far = np.array([[[0, 0, 10, 10], [80, 80, 0, 0]]], np.float32)  # disjoint, zero area

    def total(boxes, att_boxes, logits):
        out = {"boxes": boxes, "att_boxes": att_boxes, "location_logits": logits}
        return losses.hart_loss(out, targets, adaptive_weights=None, l2_weight=0.0, **KW)[0]

    value, grads = value_and_grads(total, far, far, outputs["location_logits"])
    assert np.isfinite(value) and all(np.isfinite(g).all() for g in grads)
    eager = total(outputs["boxes"], outputs["att_boxes"], outputs["location_logits"])
    graph = compiled(total)(outputs["boxes"], outputs["att_boxes"], outputs["location_logits"])
    np.testing.assert_allclose(np_(graph), np_(eager), rtol=1e-6)
