"""Where does a trained HART lose the target? Centre error and size drift per time step.

Usage (from the repo root):
  python tools/box_drift.py --checkpoint=checkpoints/hart [--eval_sequences=32 --eval_steps=30]

Runs the checkpoint (a run folder or a .keras file) on the fixed test set of `--dataset`
(synthetic by default; the same set as `python -m hart_tf.evaluate`) and
prints, for a few time steps, the median centre error in pixels and the mean log ratio of
predicted to ground-truth height and width, for the predicted box and for the attention
(glimpse) box. A log ratio of 0.69 is a box twice as tall (or wide) as the object. With
`--out=<file>.json` the per-step values are written too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from hart_tf import cli
from hart_tf.cli import FLAGS


def drift(pred: np.ndarray, gt: np.ndarray, presence: np.ndarray) -> dict[str, list[float]]:
    """Per time step: median centre error (px) and mean log h / w ratio of `pred` to `gt`
    (boxes (N, T, 4) as (y, x, h, w)), over present objects with positive sizes."""
    def centre(b):
        return b[..., :2] + b[..., 2:] / 2

    err = np.linalg.norm(centre(pred) - centre(gt), axis=-1)
    ok = (presence > 0) & np.all(gt[..., 2:] > 0, -1) & np.all(pred[..., 2:] > 0, -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_h = np.log(pred[..., 2] / gt[..., 2])
        log_w = np.log(pred[..., 3] / gt[..., 3])
    out = {"centre_error_px": [], "log_h_ratio": [], "log_w_ratio": []}
    for t in range(gt.shape[1]):
        m = ok[:, t]
        out["centre_error_px"].append(float(np.median(err[m, t])) if m.any() else float("nan"))
        out["log_h_ratio"].append(float(log_h[m, t].mean()) if m.any() else float("nan"))
        out["log_w_ratio"].append(float(log_w[m, t].mean()) if m.any() else float("nan"))
    return out


@cli.one_line_errors
def main(argv):
    cli.reject_extra_args(argv)
    if not FLAGS.checkpoint:
        print("error: --checkpoint is required (a run folder or a .keras file)",
              file=sys.stderr)
        return 2
    from hart_tf import datasets
    from hart_tf.checkpoints import resolve_checkpoint
    from hart_tf.evaluation import predict
    from hart_tf.saving import load_model
    from hart_tf.train import options_from_flags

    path = resolve_checkpoint(FLAGS.checkpoint)
    model = load_model(path)
    steps = FLAGS.eval_steps or 30
    # The same fixed test set as `python -m hart_tf.evaluate` (dataset and texture flags).
    options = options_from_flags()
    options.config = model.config
    data = datasets.eval_set(options, "test", n=FLAGS.eval_sequences, length=steps + 1)
    out = predict(model, data, batch_size=16)
    result = {"checkpoint": str(path), "sequences": FLAGS.eval_sequences, "steps": steps,
              "box": drift(out["boxes"], data["boxes"], data["presence"]),
              "attention": drift(out["att_boxes"], data["boxes"], data["presence"])}
    print(f"{path}: {FLAGS.eval_sequences} test sequences")
    print(" t | box: centre err px, log h, log w | attention: centre err px, log h, log w")
    for t in sorted({1, 2, 5, 10, 15, 20, 25, 30, steps} & set(range(1, steps + 1))):
        b, a = result["box"], result["attention"]
        print(f"{t:2d} | {b['centre_error_px'][t]:6.1f} {b['log_h_ratio'][t]:6.2f} "
              f"{b['log_w_ratio'][t]:6.2f} | {a['centre_error_px'][t]:6.1f} "
              f"{a['log_h_ratio'][t]:6.2f} {a['log_w_ratio'][t]:6.2f}")
    if FLAGS.out:
        Path(FLAGS.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(cli.run(main))
