"""Evaluation: IoU per time step, success AUC, precision@20 and the static baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hart_tf import viz
from hart_tf.model import metrics
from hart_tf.model.hart import use_function_for_length
from hart_tf.track.baselines import OpenCVTracker, run_tracker
from hart_tf.utils.boxes import xywh_to_yxhw, yxhw_to_xywh
from hart_tf.utils.files import write_json_atomic


def predict(model, data: dict[str, np.ndarray], batch_size: int = 32) -> dict[str, np.ndarray]:
    """Runs `model` (training=False) over stacked sequences in batches -> numpy outputs."""
    n = len(data["frames"])
    use_function_for_length(model, "predict", data["frames"].shape[1])
    outs: dict[str, list] = {}
    for i in range(0, n, batch_size):
        x = {"frames": data["frames"][i : i + batch_size],
             "box0": data["boxes"][i : i + batch_size, 0]}
        # predict_on_batch runs the compiled inference function (eager TF is much slower).
        y = model.predict_on_batch(x)
        for k, v in y.items():
            outs.setdefault(k, []).append(np.asarray(v))
    return {k: np.concatenate(v) for k, v in outs.items()}


def score(pred: np.ndarray, gt: np.ndarray, presence: np.ndarray) -> dict[str, Any]:
    """Tracking scores of boxes (N, T, 4) against ground truth; step 0 is not scored, except
    by `mean_iou_notebook`.

    Two mean IoUs, of two protocols: `mean_iou` (ours) pools every present (object, step)
    pair with t >= 1; `mean_iou_notebook` (the authors' evaluation notebook) is the mean of
    the per-step IoU curve over t = 0 .. T - 2, t = 0 (the given box, IoU 1) included: the
    curve of T - 1 steps, 60 on KITTI, as the notebook's on windows of 60 frames.
    """
    per_step = np.asarray(metrics.iou_per_step(pred, gt, presence))
    ious = np.asarray(metrics.iou(pred, gt))[:, 1:]
    present = presence[:, 1:] > 0
    steps = gt.shape[1] - 1
    return {
        "mean_iou": float(np.asarray(metrics.mean_iou(pred, gt, presence))),
        "mean_iou_notebook": metrics.notebook_mean_iou(pred, gt, presence, steps),
        "iou_per_step": per_step[1:].tolist(),
        "success_auc": metrics.success_auc(ious[present]),
        "precision_20": metrics.precision_at(pred[:, 1:], gt[:, 1:], 20.0, presence[:, 1:]),
    }


def evaluate_model(model, data: dict[str, np.ndarray], batch_size: int = 32) -> dict[str, Any]:
    """Scores `model` and the static baseline (first box repeated) on `data`."""
    out = predict(model, data, batch_size)
    gt, presence = data["boxes"], data["presence"]
    steps = gt.shape[1]
    result = {"steps": steps - 1, "sequences": int(len(gt))}
    result.update(score(out["boxes"], gt, presence))
    static = score(metrics.static_baseline(gt[:, 0], steps), gt, presence)
    result.update({f"static_{k}": v for k, v in static.items()})
    result["outputs"] = out
    return result


def evaluate_opencv(kind: str, data: dict[str, np.ndarray]) -> dict[str, Any]:
    """Scores an OpenCV tracker (csrt, kcf or mil) on the same sequences, from the same box.

    Each sequence is tracked alone at batch 1 from its first box, as `evaluate_model` does.
    Returns the scores of `score` plus `fps` (frames per second of the update calls alone,
    all sequences pooled) and `boxes` (N, T, 4) as (y, x, h, w).
    """

    gt, presence = data["boxes"], data["presence"]
    tracker = OpenCVTracker(kind)
    boxes, seconds = [], 0.0
    for frames, seq_boxes in zip(data["frames"], gt, strict=True):
        xywh, fps = run_tracker(tracker, frames, yxhw_to_xywh(seq_boxes[0]))
        seconds += (len(xywh) - 1) / fps
        boxes.append(xywh_to_yxhw(xywh))
    boxes = np.stack(boxes)
    result = score(boxes, gt, presence)
    result["fps"] = float(gt.shape[0] * (gt.shape[1] - 1) / max(seconds, 1e-12))
    result["boxes"] = boxes
    return result


def write_report(result: dict[str, Any], data: dict[str, np.ndarray], out_dir: str | Path,
                 n_strips: int = 3) -> list[Path]:
    """Writes results.json, iou_per_step.png and a few tracked-sequence strips."""

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    record = {k: v for k, v in result.items() if k != "outputs"}
    path = out_dir / "results.json"
    write_json_atomic(path, record, indent=1)
    written.append(path)
    curves = {"HART": np.array(result["iou_per_step"]),
              "static box": np.array(result["static_iou_per_step"])}
    for kind in result.get("opencv", {}):
        curves[f"OpenCV {kind.upper()}"] = np.array(result["opencv"][kind]["iou_per_step"])
    path = out_dir / "iou_per_step.png"
    viz.iou_per_step_figure(curves, path=path, title="Mean IoU per time step (t >= 1)")
    written.append(path)
    out = result["outputs"]
    for i in range(min(n_strips, len(data["frames"]))):
        strip = viz.sequence_strip(
            data["frames"][i],
            {"gt": data["boxes"][i], "pred": out["boxes"][i], "att": out["att_boxes"][i]},
            location_maps=out["location_maps"][i],
            max_frames=8,
        )
        path = out_dir / f"sequence_{i}.png"
        viz.save_png(strip, path)
        written.append(path)
    return written
