"""`python -m hart_tf.track`: see `hart_tf.cli.track`."""

from hart_tf.cli import common, track

common.run(track.main)
