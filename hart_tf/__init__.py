"""hart_tf: Hierarchical Attentive Recurrent Tracking (Kosiorek et al., NIPS 2017) in Keras 3.

The public API, importable from the top:

    from hart_tf import HART, HARTConfig, Tracker, load_model

Subpackages by role: `layers` (Keras layers), `model` (the cell, `HART`, losses, metrics,
config, saving), `data` (datasets; never imports the model), `train`, `track` (the
`Tracker`, baselines, SavedModel export), `eval` and `cli` (flags and entry points).

Importing the package, its layers, model and losses never imports TensorFlow, so the same
model runs on the JAX backend. The names above are resolved on first use, so that
`import hart_tf` stays cheap for the command lines, which check their flags before Keras
(and with it TensorFlow) is imported.
"""

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "HART": "hart_tf.model.hart",
    "HARTConfig": "hart_tf.model.config",
    "Tracker": "hart_tf.track.tracker",
    "load_model": "hart_tf.model.saving",
}
__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'hart_tf' has no attribute {name!r}")
