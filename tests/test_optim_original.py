"""The original's optimiser: TF1 RMSProp semantics and soft (per-element RMS) clipping,
each against a NumPy reference of the original's formula."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from hart_tf.train.optimizers import GuardedTF1RMSprop, clip_by_rms, make_optimizer
from hart_tf.train.tf1_rmsprop import TF1RMSprop


def _soft_clip_reference(grads, clip):
    """minimize_clipped(..., soft=True): mean square over all elements, rsqrt scaling."""
    n = sum(g.size for g in grads)
    mean_sq = sum(float((g.astype(np.float64) ** 2).sum()) for g in grads) / n
    if mean_sq > clip**2:
        return [clip * g / np.sqrt(mean_sq) for g in grads]
    return grads


def _tf1_rmsprop_reference(var, grads, lr, rho=0.9, momentum=0.9, eps=1e-10):
    """TF1 ApplyRMSProp (non-centred): ms from ones, mom from zeros, eps inside the sqrt."""
    var = var.astype(np.float64).copy()
    ms, mom = np.ones_like(var), np.zeros_like(var)
    for g in grads:
        ms = ms + (g * g - ms) * (1 - rho)
        mom = mom * momentum + lr * g / np.sqrt(ms + eps)
        var = var - mom
    return var, ms, mom


@pytest.mark.parametrize("scale", [1e-3, 1.0, 30.0])
def test_clip_by_rms_matches_the_original(scale):
    rng = np.random.default_rng(0)
    grads = [scale * rng.normal(size=s).astype(np.float32) for s in [(3, 4), (7,), (2, 2, 5)]]
    got = [keras.ops.convert_to_numpy(g) for g in clip_by_rms(grads, 0.3)]
    want = _soft_clip_reference(grads, 0.3)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-8)
    n = sum(g.size for g in grads)
    rms = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in got) / n)
    assert rms <= 0.3 + 1e-6  # the same as a global norm of 0.3 * sqrt(N)
    if scale == 1e-3:  # below the threshold: unchanged
        for g, w in zip(got, grads, strict=True):
            np.testing.assert_array_equal(g, w)


def test_tf1_rmsprop_slots_and_steps_match_the_reference():
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=(4, 3)).astype(np.float32)
    grads = [rng.normal(size=(4, 3)).astype(np.float32) * s for s in (1.0, 1e-3, 5.0, 0.1)]
    var = keras.Variable(w0)
    opt = TF1RMSprop(learning_rate=3.3e-6, momentum=0.9)
    assert opt.epsilon == 1e-10 and opt.rho == 0.9
    opt.build([var])
    ms, mom = opt._mean_squares[0], opt._momentums[0]
    np.testing.assert_array_equal(ms.numpy(), np.ones((4, 3)))  # TF1: ones, Keras: zeros
    np.testing.assert_array_equal(mom.numpy(), np.zeros((4, 3)))
    for step, g in enumerate(grads, start=1):
        opt.apply([g], [var])
        want_var, want_ms, want_mom = _tf1_rmsprop_reference(w0, grads[:step], 3.3e-6)
        np.testing.assert_allclose(ms.numpy(), want_ms, rtol=1e-5)
        np.testing.assert_allclose(mom.numpy(), want_mom, rtol=1e-4, atol=1e-12)
        np.testing.assert_allclose(var.numpy(), want_var, rtol=1e-6, atol=1e-9)


def test_tf1_epsilon_matters_only_for_tiny_mean_squares():
    # Where the mean square is ~0 (after a long run of zero gradients) TF1's 1e-10 gives a
    # step of lr * g / sqrt(0.1 g^2 + 1e-10), Keras' 1e-7 a much smaller one.
    var = keras.Variable(np.zeros((1,), np.float32))
    opt = TF1RMSprop(learning_rate=1.0, rho=0.0)  # ms = g^2 after one step
    opt.apply([np.array([1e-4], np.float32)], [var])
    np.testing.assert_allclose(var.numpy(), [-1e-4 / np.sqrt(1e-8 + 1e-10)], rtol=1e-5)


def test_tf1_rmsprop_matches_tensorflow_1():
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("compares with tf.compat.v1 on the TensorFlow backend")
    rng = np.random.default_rng(2)
    w0 = rng.normal(size=(5,)).astype(np.float32)
    grads = [rng.normal(size=(5,)).astype(np.float32) for _ in range(3)]
    ref = tf.Variable(w0)
    tf1 = tf.compat.v1.train.RMSPropOptimizer(3.3e-6, momentum=0.9)
    ours = keras.Variable(w0)
    opt = TF1RMSprop(learning_rate=3.3e-6, momentum=0.9)
    for g in grads:
        tf1.apply_gradients([(tf.constant(g), ref)])
        opt.apply([g], [ours])
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-6, atol=1e-9)


def test_guarded_tf1_rmsprop_clips_on_rms_and_round_trips():
    opt = make_optimizer("rmsprop_tf1", 3.3e-6, 0.9, clip_norm=1.0, clip_rms=0.3)
    assert type(opt) is GuardedTF1RMSprop and opt.global_clipnorm is None
    assert opt.clip_rms == 0.3 and opt.epsilon == 1e-10 and opt.momentum == 0.9
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(opt))
    assert type(again) is GuardedTF1RMSprop
    assert (again.clip_rms, again.epsilon, again.momentum) == (0.3, 1e-10, 0.9)
    # One guarded step equals the reference on clipped gradients.
    rng = np.random.default_rng(3)
    w0 = rng.normal(size=(6,)).astype(np.float32)
    g = 10 * rng.normal(size=(6,)).astype(np.float32)
    var = keras.Variable(w0)
    opt.apply([g], [var])
    want, _, _ = _tf1_rmsprop_reference(w0, _soft_clip_reference([g], 0.3), 3.3e-6)
    np.testing.assert_allclose(var.numpy(), want, rtol=1e-6, atol=1e-9)
    assert float(opt.grad_norm.numpy()) == pytest.approx(np.linalg.norm(g), rel=1e-5)


def test_without_clip_rms_the_global_norm_is_used():
    opt = make_optimizer("rmsprop", 1e-3, 0.9, clip_norm=0.5)
    assert opt.global_clipnorm == 0.5 and opt.clip_rms == 0.0
