"""`python -m hart_tf.export --model=<.keras or run folder> --out=<dir>`: a
SavedModel for TF Serving (see `hart_tf.track.export`)."""

from __future__ import annotations

from absl import logging

from hart_tf.cli import common as cli
from hart_tf.cli.common import FLAGS


@cli.one_line_errors
def main(argv):
    cli.reject_extra_args(argv)
    if not FLAGS.model:
        raise ValueError("--model is required (a .keras file or a run folder)")
    if not FLAGS.out:
        raise ValueError("--out is required: the SavedModel folder (e.g. models/hart/1 for TF "
                         "Serving)")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines on saving are noise
    # TensorFlow is imported here, once the flags are known to be good.
    from hart_tf.track.export import KERAS_FILE, SIGNATURES, export_checkpoint

    path = export_checkpoint(FLAGS.model, FLAGS.out)
    print(f"SavedModel written to {path} (signatures: {', '.join(SIGNATURES)}; "
          f"Keras file {KERAS_FILE})")


def console_main() -> None:
    """The `hart-export` console script."""
    cli.run(main)
