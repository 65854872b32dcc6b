"""Optimizers with gradient clipping that report the gradient norm and skip bad steps.

`GuardedTF1RMSprop` is the original's optimizer (TF1's RMSProp with momentum, `--optimizer=
rmsprop_tf1`); `GuardedRMSprop` is Keras' RMSprop (mean square starting at 0, eps 1e-7);
`GuardedAdam` is the same guard around Adam (`--optimizer=adam`). Gradients are clipped by
their global norm (`clip_norm`, Keras' `global_clipnorm`) or, as the original
(`minimize_clipped(..., soft=True)`), by their per-element RMS (`clip_rms`).
`make_optimizer` builds any of them from flags.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from hart_tf.train.tf1_rmsprop import TF1RMSprop

OPTIMIZERS = ("rmsprop", "rmsprop_tf1", "adam")


def clip_by_rms(grads: list, clip_rms: float) -> list:
    """The original's soft clipping: when the root mean square of all gradient elements,
    `rms = sqrt(sum(g^2) / N)` over the N elements of every gradient, exceeds `clip_rms`,
    every gradient is scaled by `clip_rms / rms` (a global-norm clip at
    `clip_rms * sqrt(N)`); otherwise they are unchanged."""
    n = sum(math.prod(g.shape) for g in grads)  # static shapes: the variables'
    sum_sq = sum(ops.sum(ops.square(ops.cast(g, "float32"))) for g in grads)
    rms = ops.sqrt(sum_sq / n)
    scale = ops.where(rms > clip_rms, clip_rms / ops.maximum(rms, 1e-30), 1.0)
    return [g * ops.cast(scale, g.dtype) for g in grads]


class _Guard:
    """Mixed into a Keras optimizer (before it in the bases) so that it also

    - records the pre-clipping global gradient norm in `grad_norm` and each variable's in
      `grad_norms` (for TensorBoard; not saved, so checkpoints keep the older layout), and
    - skips an update whose gradients are not all finite: the weights and slots stay as
      they were, `bad_steps` counts the skipped updates and `consecutive_bad` the current
      run of them, so training can stop after K in a row.

    `clip_rms` (> 0) clips the gradients on their per-element RMS (`clip_by_rms`, the
    original's soft clipping) before the wrapped optimizer sees them.

    Under `tf.distribute` (MirroredStrategy, MultiWorkerMirroredStrategy) the gradients are
    summed over the replicas before the norm is taken, so the norm, the clipping and the
    skip decision are those of the global batch and the same on every replica (Keras alone
    would clip each replica's gradients before summing them). Under JAX with
    `keras.distribution` the step is one SPMD program over global arrays and needs nothing.
    """

    def __init__(self, *args, clip_rms: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.clip_rms = clip_rms

    def get_config(self):
        return {**super().get_config(), "clip_rms": self.clip_rms}

    def build(self, variables):
        super().build(variables)
        self.grad_norm = self.add_variable((), initializer="zeros", name="grad_norm")
        self.bad_steps = self.add_variable((), initializer="zeros", name="bad_steps")
        self.consecutive_bad = self.add_variable((), initializer="zeros", name="consecutive_bad")
        self.grad_norms = self.add_variable((len(variables),), initializer="zeros",
                                            name="grad_norms")

    def _saved_variables(self) -> list:
        return [v for v in self.variables if v is not self.grad_norms]

    def save_own_variables(self, store):
        for i, variable in enumerate(self._saved_variables()):
            store[str(i)] = variable.numpy()

    def load_own_variables(self, store):
        saved = self._saved_variables()
        if len(store.keys()) != len(saved):
            return super().load_own_variables(store)  # Keras warns and skips the slots
        for i, variable in enumerate(saved):
            variable.assign(store[str(i)])

    def apply(self, grads, trainable_variables=None):
        grads = _sum_over_replicas(list(grads))
        squares = [ops.sum(ops.square(ops.cast(g, "float32"))) for g in grads]
        norm = ops.sqrt(sum(squares))
        finite = ops.isfinite(norm)
        # Non-finite gradients become zeros; the step is then undone below.
        safe = [ops.where(finite, g, ops.zeros_like(g)) for g in grads]
        if self.clip_rms:
            safe = clip_by_rms(safe, self.clip_rms)
        if not self.built:
            self.build(trainable_variables)
        variables = trainable_variables or self._trainable_variables
        before = [ops.copy(v.value) for v in variables]
        slots_before = [ops.copy(v.value) for v in self.variables]
        super().apply(safe, trainable_variables)
        for v, old in zip(variables, before, strict=True):
            v.assign(ops.where(finite, v.value, old))
        for v, old in zip(self.variables, slots_before, strict=True):
            if v is self.iterations or v.path in (self.grad_norm.path, self.bad_steps.path,
                                                   self.consecutive_bad.path,
                                                   self.grad_norms.path):
                continue
            v.assign(ops.where(finite, v.value, old))
        self.grad_norm.assign(ops.where(finite, norm, self.grad_norm.value))
        if len(squares) == self.grad_norms.shape[0]:
            norms = ops.sqrt(ops.stack(squares))
            self.grad_norms.assign(ops.where(finite, norms, self.grad_norms.value))
        bad = 1.0 - ops.cast(finite, "float32")
        self.bad_steps.assign(self.bad_steps + bad)
        self.consecutive_bad.assign((self.consecutive_bad + bad) * bad)

    def _all_reduce_sum_gradients(self, grads_and_vars):
        # TF backend hook: `apply` has already summed the gradients over the replicas.
        return grads_and_vars


@keras.saving.register_keras_serializable(package="hart_tf")
class GuardedRMSprop(_Guard, keras.optimizers.RMSprop):
    """RMSprop with momentum and global-norm clipping, as the original, plus the guard."""


@keras.saving.register_keras_serializable(package="hart_tf")
class GuardedTF1RMSprop(_Guard, TF1RMSprop):
    """TF1's RMSProp (`TF1RMSprop`: mean square from 1, eps 1e-10), plus the guard."""


@keras.saving.register_keras_serializable(package="hart_tf")
class GuardedAdam(_Guard, keras.optimizers.Adam):
    """Adam with global-norm clipping plus the guard (`--optimizer=adam`)."""


def make_optimizer(name: str, learning_rate: float, momentum: float, clip_norm: float,
                   clip_rms: float = 0.0):
    """The guarded optimizer `name` (one of OPTIMIZERS); `momentum` is RMSprop's momentum
    or Adam's beta_1. With `clip_rms` > 0 the gradients are clipped on their per-element
    RMS (the original's) instead of by the global norm `clip_norm`."""
    clip = {"clip_rms": clip_rms} if clip_rms else {"global_clipnorm": clip_norm}
    if name == "rmsprop":
        return GuardedRMSprop(learning_rate=learning_rate, momentum=momentum, **clip)
    if name == "rmsprop_tf1":
        return GuardedTF1RMSprop(learning_rate=learning_rate, momentum=momentum, **clip)
    if name == "adam":
        return GuardedAdam(learning_rate=learning_rate, beta_1=momentum, **clip)
    raise ValueError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


def _sum_over_replicas(grads: list) -> list:
    """Gradients summed over the replicas of a `tf.distribute` strategy (else unchanged)."""
    if keras.backend.backend() != "tensorflow":
        return grads
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return grads
    present = [g for g in grads if g is not None]
    summed = iter(ctx.all_reduce(tf.distribute.ReduceOp.SUM, present))
    return [None if g is None else next(summed) for g in grads]
