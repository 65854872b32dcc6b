"""Scoring a checkpoint on a fixed test set (synthetic, KITTI, KTH), with the report."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hart_tf import pretrained
from hart_tf.eval import sets
from hart_tf.eval.sequences import evaluate_model, evaluate_opencv, write_report
from hart_tf.model.saving import load_model, resolve_checkpoint, trained_data
from hart_tf.track import baselines


def warn_if_other_data(path: Path, options) -> None:
    """One warning line when the checkpoint was trained on other synthetic data flags than
    these options choose for the test set (scoring it there is allowed: it is a different
    question)."""
    if differ := sets.data_mismatch(trained_data(path), options):
        print(f"warning: {path} was trained on other synthetic data: {differ}; pass its "
              "flags to score it on its own test set", file=sys.stderr)


def evaluate_checkpoint(checkpoint: str | os.PathLike, options, out_dir: str | None = None,
                        opencv: tuple[str, ...] = ()) -> dict:
    """Scores a checkpoint on the fixed test set of `options` (a `TrainOptions`: its dataset
    and data flags; the model config comes from the checkpoint) and writes the report.

    Args:
        checkpoint: a `.keras` file or a run folder (its best, else latest, checkpoint).
        options: chooses the test set: `options.data` and `options.optimizer.batch_size`.
        out_dir: where the report goes (default: `eval_<dataset>` beside the checkpoint).
        opencv: OpenCV trackers to score on the same sequences.

    Returns:
        The scores (without the per-sequence outputs) and `written`, the report's files.
    """
    for kind in opencv:
        if kind not in baselines.OPENCV_KINDS:
            raise ValueError(f"--opencv_baselines: unknown tracker {kind!r}; "
                             f"choose from {','.join(baselines.OPENCV_KINDS)}")
    if opencv:
        try:
            baselines._import_cv2()
        except ImportError:
            raise ValueError(f"--opencv_baselines needs OpenCV: {baselines.BENCH_HINT}") from None
    path = resolve_checkpoint(checkpoint)
    model = load_model(path)
    options = options.replace(config=model.config)
    warn_if_other_data(path, options)
    steps = options.data.test_steps
    data = sets.eval_set(options, "test", n=options.data.eval_sequences, length=steps + 1)
    result = evaluate_model(model, data, batch_size=options.optimizer.batch_size)
    if opencv:
        result["opencv"] = {}
        for kind in opencv:
            scores = evaluate_opencv(kind, data)
            scores.pop("boxes")
            result["opencv"][kind] = scores
    out = Path(out_dir) if out_dir else pretrained.report_dir(path, f"eval_{options.data.dataset}")
    written = write_report(result, data, out)
    record = {k: v for k, v in result.items() if k != "outputs"}
    record["written"] = [str(p) for p in written]
    return record
