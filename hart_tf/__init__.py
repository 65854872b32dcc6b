"""hart_tf: Hierarchical Attentive Recurrent Tracking in Keras 3.

Importing the package (and its layers, model and losses) never imports TensorFlow, so the
same model runs on the JAX backend.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `hart_tf.Tracker` is imported on first use: importing the package stays light.
    if name == "Tracker":
        from hart_tf.tracker import Tracker

        return Tracker
    raise AttributeError(f"module 'hart_tf' has no attribute {name!r}")
