"""Training: `options` (what to train, as dataclasses: the one source of defaults),
`sources` (training batches and fixed evaluation sets), `trainer` (the loop), `curriculum`,
`optimizers`, `checkpoints`, `distribute` and `tensorboard`.

`python -m hart_tf.train` runs `hart_tf.cli.train`. Kept free of imports so that the command
line checks its flags before Keras (and TensorFlow) is imported.
"""
