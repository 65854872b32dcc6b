"""Evaluate a trained HART: `python -m hart_tf.evaluate --model=<.keras or run folder>`.

Reports mean IoU over `--eval_steps` steps (30 synthetic, 60 KITTI as the paper) by two
protocols: `mean_iou` (ours: every present object and step t >= 1 pooled) and
`mean_iou_notebook` (the authors' evaluation notebook: the mean of the per-step IoU curve
over t = 0 .. steps - 1, where t = 0 scores 1); IoU per time step (JSON and a PNG like the
paper's Fig. 5), OTB success AUC and precision@20 px, with the static baseline (first box
repeated) beside every number, and PNG strips of a few tracked sequences with glimpse boxes
and location maps; `--opencv_baselines=csrt,kcf` scores OpenCV trackers on the same
sequences. `--dataset=clips` tracks real clips beside
the static box and CSRT (`hart_tf.eval.clips`).
"""

from __future__ import annotations

from hart_tf.cli import common as cli
from hart_tf.cli.common import FLAGS
from hart_tf.cli.train import options_from_flags


@cli.one_line_errors
def main(argv):
    cli.reject_extra_args(argv)
    if not FLAGS.model:
        raise ValueError("--model is required (a .keras file or a run folder)")
    if FLAGS.clips and FLAGS.dataset != "clips":
        raise ValueError("--clips chooses the clips to score with --dataset=clips, got "
                         f"--dataset={FLAGS.dataset}")
    options = options_from_flags()
    # Keras (and with it TensorFlow) is imported only now that the flags are known good.
    from hart_tf.eval.clips import evaluate_clips
    from hart_tf.eval.evaluate import evaluate_checkpoint

    if FLAGS.dataset == "clips":
        evaluate_clips(FLAGS.model, FLAGS.data_dir, FLAGS.out, sequences=FLAGS.clips or None)
        return
    r = evaluate_checkpoint(FLAGS.model, options, FLAGS.out, tuple(FLAGS.opencv_baselines))
    others = "".join(f"; OpenCV {kind.upper()} {s['mean_iou']:.3f}"
                     for kind, s in r.get("opencv", {}).items())
    print(f"mean IoU over {r['steps']} steps (ours, t >= 1 pooled): {r['mean_iou']:.3f} "
          f"(static baseline {r['static_mean_iou']:.3f}{others}); "
          f"success AUC {r['success_auc']:.3f}; precision@20 {r['precision_20']:.3f}")
    print(f"mean IoU of the {r['steps']}-step curve from t = 0 (the authors' notebook): "
          f"{r['mean_iou_notebook']:.3f} (static baseline "
          f"{r['static_mean_iou_notebook']:.3f})")
    print(f"report: {r['written'][0] if r['written'] else FLAGS.out}")


def console_main() -> None:
    """The `hart-evaluate` console script."""
    cli.run(main)
