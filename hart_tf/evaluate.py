"""`python -m hart_tf.evaluate`: see `hart_tf.cli.evaluate`."""

from hart_tf.cli import common, evaluate

if __name__ == "__main__":
    common.run(evaluate.main)
