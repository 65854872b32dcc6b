"""Extract the frames of the KTH videos of the tracking subset (jogging, running, walking).

Usage (after `pip install -e .`):
  python tools/prepare_kth.py --video_dir=/data/kth/avi --out_dir=/data/kth/frames
  python tools/prepare_kth.py --video_dir=... --out_dir=... --actions=4,5,6 --num_workers=4

Reads every `person<pp>_<action>_d<s>_uncomp.avi` under --video_dir (any depth) and writes
`<out_dir>/person<pp>_<action>_d<s>/<frame:06d>.png`, 160x120 RGB, frames numbered from 1 as
in the KTHBoundingBoxInfo*.txt box files. Resumable: each video goes to a temporary folder
renamed when complete, and finished videos are skipped.

Needs imageio + imageio-ffmpeg (pip install -e '.[video]') or OpenCV; neither is imported
unless a video is read. The flags live here, not in hart_tf/cli/flags.py: this tool is its own
process and shares no flags with training.
"""

from __future__ import annotations

import sys

from absl import app, flags

from hart_tf.data.errors import DataError
from hart_tf.data.kth import TRACKING_ACTIONS, extract_videos

flags.DEFINE_string("video_dir", None, "Folder holding the KTH .avi files (any depth).")
flags.DEFINE_string("out_dir", None, "Output frame folder.")
flags.DEFINE_list("actions", [str(a) for a in TRACKING_ACTIONS],
                  "KTH action numbers to extract (4 jogging, 5 running, 6 walking).")
flags.DEFINE_integer("num_workers", 1, "Worker processes.")
flags.mark_flags_as_required(["video_dir", "out_dir"])
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        actions = [int(a) for a in FLAGS.actions]
    except ValueError:
        raise app.UsageError(f"--actions must be integers 1..6, got {FLAGS.actions}") from None
    try:
        done = extract_videos(FLAGS.video_dir, FLAGS.out_dir, actions, FLAGS.num_workers)
    except (DataError, ImportError) as e:
        sys.exit(f"error: {e}")
    print(f"extracted {done} videos to {FLAGS.out_dir}")


if __name__ == "__main__":
    app.run(main)
