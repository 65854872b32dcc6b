"""hart_tf: Hierarchical Attentive Recurrent Tracking in Keras 3.

Importing the package (and its layers, model and losses) never imports TensorFlow, so the
same model runs on the JAX backend.
"""

__version__ = "0.1.0"
