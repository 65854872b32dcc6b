"""Evaluate a trained HART: `python -m hart_tf.evaluate --checkpoint=<.keras or run dir>`.

`--checkpoint` (or `--model`, the same here) may be `pretrained`: the model shipped in the
package (`hart_tf/pretrained/MODEL_CARD.md`).

Reports mean IoU over `--eval_steps` steps (30 synthetic, 60 KITTI as the paper), IoU per
time step (JSON and a PNG like the paper's Fig. 5), OTB success AUC and precision@20 px, with
the static baseline (first box repeated) beside every number, and PNG strips of a few
tracked sequences with glimpse boxes and location maps. `--opencv_baselines=csrt,kcf`
scores OpenCV trackers on the same sequences beside HART (needs the bench extra).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hart_tf import cli, datasets, pretrained
from hart_tf.checkpoints import resolve_checkpoint, trained_data
from hart_tf.cli import FLAGS
from hart_tf.evaluation import evaluate_model, evaluate_opencv, write_report
from hart_tf.saving import load_model


def warn_if_other_data(path: Path, options) -> None:
    """One warning line when the checkpoint was trained on other synthetic data flags than
    these options choose for the test set (scoring it there is allowed: it is a different
    question)."""
    if differ := datasets.data_mismatch(trained_data(path), options):
        print(f"warning: {path} was trained on other synthetic data: {differ}; pass its "
              "flags to score it on its own test set", file=sys.stderr)


def evaluate_checkpoint(checkpoint: str, dataset: str, out_dir: str | None,
                        eval_steps: int | None, eval_sequences: int, batch_size: int,
                        opencv: tuple[str, ...] = ()) -> dict:
    from hart_tf.baselines import BENCH_HINT, OPENCV_KINDS, _import_cv2

    for kind in opencv:
        if kind not in OPENCV_KINDS:
            raise ValueError(f"--opencv_baselines: unknown tracker {kind!r}; "
                             f"choose from {','.join(OPENCV_KINDS)}")
    if opencv:
        try:
            _import_cv2()
        except ImportError:
            raise ValueError(f"--opencv_baselines needs OpenCV: {BENCH_HINT}") from None
    path = resolve_checkpoint(checkpoint)
    model = load_model(path)
    from hart_tf.train import options_from_flags

    options = options_from_flags()
    options.config = model.config
    options.dataset = dataset
    warn_if_other_data(path, options)
    steps = eval_steps or (60 if dataset == "kitti" else 30)
    data = datasets.eval_set(options, "test", n=eval_sequences, length=steps + 1)
    result = evaluate_model(model, data, batch_size=batch_size)
    if opencv:
        result["opencv"] = {}
        for kind in opencv:
            scores = evaluate_opencv(kind, data)
            scores.pop("boxes")
            result["opencv"][kind] = scores
    out = Path(out_dir) if out_dir else pretrained.report_dir(path, f"eval_{dataset}")
    written = write_report(result, data, out)
    record = {k: v for k, v in result.items() if k != "outputs"}
    record["written"] = [str(p) for p in written]
    return record


@cli.one_line_errors
def main(argv):
    cli.reject_extra_args(argv)
    if FLAGS.checkpoint and FLAGS.model and FLAGS.checkpoint != FLAGS.model:
        raise ValueError("give the model once: --checkpoint or --model (the same flag here)")
    checkpoint = FLAGS.checkpoint or FLAGS.model
    if not checkpoint:
        raise ValueError("--checkpoint is required (a .keras file, a run folder, or pretrained "
                         "for the model shipped in the package; --model is the same here)")
    if FLAGS.dataset == "clips":
        from hart_tf.clips_eval import evaluate_clips

        evaluate_clips(checkpoint, FLAGS.data_dir, FLAGS.out_dir,
                       sequences=FLAGS.clips or None)
        return
    if FLAGS.clips:
        raise ValueError("--clips chooses the clips to score with --dataset=clips, got "
                         f"--dataset={FLAGS.dataset}")
    r = evaluate_checkpoint(checkpoint, FLAGS.dataset, FLAGS.out_dir, FLAGS.eval_steps,
                            FLAGS.eval_sequences, FLAGS.batch_size,
                            tuple(FLAGS.opencv_baselines or ()))
    shown = {k: v for k, v in r.items() if "per_step" not in k and k != "opencv"}
    if "opencv" in r:
        shown["opencv"] = {kind: {k: v for k, v in s.items() if k != "iou_per_step"}
                           for kind, s in r["opencv"].items()}
    print(json.dumps(shown, indent=1))
    others = "".join(f"; OpenCV {kind.upper()} {s['mean_iou']:.3f}"
                     for kind, s in r.get("opencv", {}).items())
    print(f"mean IoU over {r['steps']} steps: {r['mean_iou']:.3f} "
          f"(static baseline {r['static_mean_iou']:.3f}{others}); "
          f"success AUC {r['success_auc']:.3f}; precision@20 {r['precision_20']:.3f}")


if __name__ == "__main__":
    cli.run(main)
