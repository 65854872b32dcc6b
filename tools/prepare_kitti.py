"""Resize KITTI tracking frames once to 187x621 and cache them, as scripts/resize_imgs.sh did.

Usage (after `pip install -e .`):
  python tools/prepare_kitti.py --data_dir=/data/kitti_tracking
      # reads training/image_02, writes training/image_02_187x621 (the loader's default)
  python tools/prepare_kitti.py --img_dir=/data/image_02 --out_dir=/data/image_02_small

The output keeps the layout `<out_dir>/<seq>/<frame:06d>.png` and gets `native_sizes.json`
(each sequence's original (H, W), which the loader needs to scale boxes) once every frame is
done; the loader treats a folder as prepared only when that file exists. Runs are resumable:
each frame is written to a temporary name and renamed, and frames already present are skipped.
All frames of a sequence must have the size of its first frame.

The flags live here, not in hart_tf/cli/flags.py: this tool is its own process and shares no
flags with training.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from hart_tf.data.errors import DataError
from hart_tf.data.kitti import FRAME_SIZE, PREPARED_SUBDIR
from hart_tf.data.kitti_prepare import prepare_frames

flags.DEFINE_string("data_dir", None, "KITTI root holding training/image_02.")
flags.DEFINE_string("img_dir", None, "Source image folder (overrides data_dir).")
flags.DEFINE_string("out_dir", None, "Output folder (default: training/image_02_187x621).")
flags.DEFINE_integer("height", FRAME_SIZE[0], "Output frame height.")
flags.DEFINE_integer("width", FRAME_SIZE[1], "Output frame width.")
flags.DEFINE_integer("num_workers", os.cpu_count() or 1, "Worker processes.")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.img_dir is None and FLAGS.data_dir is None:
        raise app.UsageError("give --data_dir or --img_dir")
    if FLAGS.out_dir is None and FLAGS.data_dir is None:
        raise app.UsageError("give --out_dir with --img_dir")
    training = os.path.join(FLAGS.data_dir or "", "training")
    src = FLAGS.img_dir or os.path.join(training, "image_02")
    out = FLAGS.out_dir or os.path.join(training, PREPARED_SUBDIR)
    try:
        written = prepare_frames(src, out, (FLAGS.height, FLAGS.width), FLAGS.num_workers)
    except DataError as e:
        sys.exit(f"error: {e}")
    print(f"wrote {written} frames to {out}")


if __name__ == "__main__":
    app.run(main)
