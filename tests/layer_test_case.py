"""Shared layer test: serialisation round trips, weight counts, eager/compiled calls, a fit step."""

from __future__ import annotations

import inspect
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops


def _numpy_leaves(outputs) -> list[np.ndarray]:
    return [np.asarray(ops.convert_to_numpy(o)) for o in keras.tree.flatten(outputs)]


def _assert_same(actual, expected, atol: float, what: str) -> None:
    a, e = _numpy_leaves(actual), _numpy_leaves(expected)
    assert len(a) == len(e), f"{what}: {len(a)} outputs vs {len(e)}"
    for i, (x, y) in enumerate(zip(a, e, strict=True)):
        assert x.shape == y.shape, f"{what}: output {i} shape {x.shape} vs {y.shape}"
        np.testing.assert_allclose(x, y, atol=atol, rtol=atol, err_msg=f"{what}: output {i}")


def _shape_list(spec) -> list[tuple]:
    # A dict in sorted-key order (how keras.tree flattens), a list of shapes, or one shape.
    if isinstance(spec, dict):
        return [tuple(spec[k]) for k in sorted(spec)]
    if all(isinstance(d, int) for d in spec):
        return [tuple(spec)]
    return [tuple(s) for s in spec]


def _accepts_training(layer: keras.layers.Layer) -> bool:
    return "training" in inspect.signature(layer.call).parameters


class _Probe(keras.Model):
    """Reduces any layer's outputs to one value per example so `fit` can train it."""

    def __init__(self, layer: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        self.inner = layer

    def call(self, inputs, training=None):
        kwargs = {"training": training} if _accepts_training(self.inner) else {}
        outputs = self.inner(*inputs, **kwargs)
        batch = ops.shape(inputs[0])[0]
        total = 0.0
        for o in keras.tree.flatten(outputs):
            # o + o^2 so that neither a zero-mean nor a sign-symmetric output hides a gradient.
            if len(o.shape) >= 1 and o.shape[0] == inputs[0].shape[0]:
                flat = ops.reshape(o, (batch, -1))  # (B, N)
                total = total + ops.mean(flat + flat**2, axis=1)
            else:
                total = total + ops.mean(o + o**2)
        return total


def run_layer_test(
    layer_cls: type[keras.layers.Layer],
    init_kwargs: dict[str, Any],
    input_data: Sequence[np.ndarray],
    *,
    expected_num_trainable_weights: int,
    expected_num_non_trainable_weights: int = 0,
    expected_output_shape: Any = None,
    call_kwargs: dict[str, Any] | None = None,
    run_training: bool = True,
    atol: float = 1e-5,
) -> keras.layers.Layer:
    """Checks one layer end to end and returns the (built) instance.

    1. eager call with `input_data` (positional) and `call_kwargs`; output shapes;
    2. weight counts;
    3. get_config -> from_config gives the same config and, with copied weights, the same
       outputs;
    4. a functional model (symbolic call) run compiled (`jit_compile=True`: XLA on TF,
       jax.jit on JAX) equals the eager call, and survives `.keras` save/load unchanged;
    5. one `fit` step (Adam) on random targets changes every trainable weight (so each one
       has a non-zero gradient) and leaves them finite.
    """
    input_data = [np.asarray(x) for x in input_data]
    call_kwargs = call_kwargs or {}
    layer = layer_cls(**init_kwargs)
    outputs = layer(*input_data, **call_kwargs)
    if expected_output_shape is not None:
        shapes = [tuple(np.shape(o)) for o in _numpy_leaves(outputs)]
        expected = _shape_list(expected_output_shape)
        assert shapes == expected, f"output shapes {shapes} != {expected}"
    assert len(layer.trainable_weights) == expected_num_trainable_weights, [
        w.path for w in layer.trainable_weights
    ]
    assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights, [
        w.path for w in layer.non_trainable_weights
    ]

    # Config round trip, then the same weights give the same inference outputs.
    config = layer.get_config()
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config
    # NumPy copies: JAX may donate (delete) variable buffers an output aliases.
    reference = _numpy_leaves(layer(*input_data))
    clone(*input_data)
    clone.set_weights(layer.get_weights())
    _assert_same(clone(*input_data), reference, atol, "from_config")

    # Symbolic call in a functional model, compiled, and through a .keras file.
    batch = input_data[0].shape[0]
    inputs = [keras.Input(shape=x.shape[1:], batch_size=batch, dtype=x.dtype) for x in input_data]
    symbolic = layer(*inputs)
    compiled = keras.Model(inputs, symbolic)
    compiled.compile(jit_compile=True)
    _assert_same(compiled.predict_on_batch(input_data), reference, atol, "compiled")
    model = keras.Model(inputs, symbolic)  # uncompiled: no optimizer state in the file
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
    _assert_same(restored(input_data), reference, atol, ".keras round trip")

    if run_training and layer.trainable_weights:
        probe = _Probe(layer, name="probe")
        probe.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
        before = [np.array(ops.convert_to_numpy(w)) for w in layer.trainable_weights]
        targets = np.random.default_rng(0).normal(size=(batch,)).astype("float32")
        history = probe.fit(input_data, targets, batch_size=batch, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        for w, old in zip(layer.trainable_weights, before, strict=True):
            new = np.asarray(ops.convert_to_numpy(w))
            assert np.all(np.isfinite(new)), f"{w.path} became non-finite"
            assert not np.array_equal(new, old), f"{w.path} got no gradient"
    return layer
