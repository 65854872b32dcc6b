"""Loading saved HART models (registers the custom classes before Keras looks them up)."""

from __future__ import annotations

import os

import keras

import hart_tf.model  # noqa: F401  (registers HART and its layers)
import hart_tf.optim  # noqa: F401  (registers the guarded optimizers)


def load_model(path: str | os.PathLike, compile: bool = False) -> keras.Model:
    """Loads a `.keras` HART checkpoint."""
    return keras.saving.load_model(path, compile=compile)
