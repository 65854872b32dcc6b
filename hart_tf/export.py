"""`python -m hart_tf.export`: see `hart_tf.cli.export`."""

from hart_tf.cli import common, export

if __name__ == "__main__":
    common.run(export.main)
