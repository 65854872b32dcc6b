"""Track one object through your own frames or video:

    python -m hart_tf.track --model=<.keras, run folder or SavedModel> --frames=clip/ \\
        --init=x,y,w,h --out=boxes.txt [--gif=tracked.gif]

`--frames` is a folder of images or a video file (the video extra reads it).

See `hart_tf.track.files` for the formats.
"""

from __future__ import annotations

from pathlib import Path

from hart_tf.cli import common as cli
from hart_tf.cli.common import FLAGS


@cli.one_line_errors
def main(argv):
    cli.reject_extra_args(argv)
    for name in ("model", "init", "out", "frames"):
        if not getattr(FLAGS, name):
            raise ValueError(f"--{name} is required")
    # Keras (and with it TensorFlow) is imported only now that the flags are known good.
    from hart_tf.track.files import track

    video = FLAGS.frames if Path(FLAGS.frames).is_file() else None
    result = track(FLAGS.model, FLAGS.init, FLAGS.out, frames=None if video else FLAGS.frames,
                   video=video, gif=FLAGS.gif)
    print(f"tracked {result['frames']} frames: {result['fps']:.1f} frames per second "
          f"(tracker updates), {result['overall_fps']:.1f} with decoding; boxes in {FLAGS.out}"
          + (f", GIF in {FLAGS.gif}" if FLAGS.gif else ""))


def console_main() -> None:
    """The `hart-track` console script."""
    cli.run(main)
