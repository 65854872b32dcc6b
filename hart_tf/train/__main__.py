"""`python -m hart_tf.train`: see `hart_tf.cli.train`."""

from hart_tf.cli import common, train

common.run(train.main)
