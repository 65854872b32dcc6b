"""The HART model: `cell` (one tracking step), `hart` (the `HART` Keras model over a
sequence), `losses`, `metrics`, `config` (`HARTConfig` and its presets) and `saving`
(loading checkpoints).

Kept free of imports so that `hart_tf.model.config` loads without Keras (the command lines
read it before they import Keras and, with it, TensorFlow).
"""
