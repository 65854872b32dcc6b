"""Convert the authors' trained KITTI model (a TF1 checkpoint) into a hart_tf `.keras` model.

Usage (from the repo root):
  git clone https://github.com/akosiorek/hart ../hart
  python tools/convert_original_checkpoint.py \\
      --checkpoint=../hart/checkpoints/kitti/pretrained/model.ckpt-347346 --out=hart_kitti.keras
  python -m hart_tf.cli.track --model=hart_kitti.keras --frames=<folder of frames> \\
      --init=x,y,w,h --out=boxes.txt

`--checkpoint` is the checkpoint's prefix (the path of its `.index` without the extension).
Its 52 variables are read with `tf.train.load_checkpoint` and assigned to a model of the
`kitti` preset (`hart_tf.model.original_checkpoint` documents the mapping and the layout
changes); the result loads with `hart_tf.load_model` and `hart_tf.Tracker`. A checkpoint
that cannot be read, or has a missing, extra or mis-shaped variable, is refused with one line
naming them. The flags live here, not in hart_tf/cli/flags.py: this tool shares none with training.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:  # run as `python tools/convert_original_checkpoint.py`
    sys.path.insert(0, str(_REPO))

from hart_tf.model.original_checkpoint import (  # noqa: E402
    OriginalCheckpointError,
    load_original_checkpoint,
)

flags.DEFINE_string("checkpoint", None, "Prefix of the authors' TF1 checkpoint, e.g. "
                    "<hart>/checkpoints/kitti/pretrained/model.ckpt-347346.")
flags.DEFINE_string("out", "hart_kitti.keras", "The .keras file to write.")
FLAGS = flags.FLAGS


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])} (flags start with --)")
    if not FLAGS.checkpoint:
        _fail("--checkpoint is required (the prefix of the .index file)")
    out = Path(FLAGS.out)
    if out.suffix != ".keras":
        _fail(f"--out must end in .keras, got {FLAGS.out}")
    if not out.parent.is_dir():
        _fail(f"--out: folder {out.parent} does not exist")
    try:
        model = load_original_checkpoint(FLAGS.checkpoint)
    except OriginalCheckpointError as e:
        _fail(str(e))
    model.save(out)
    print(f"wrote {out} (the kitti preset with the weights of {FLAGS.checkpoint})")


if __name__ == "__main__":
    app.run(main)
