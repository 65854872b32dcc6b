"""HART against baselines on real single-object clips, through the online tracker API.

    python -m hart_tf.evaluate --dataset=clips --data_dir=../shared/data/real_clips \\
        --checkpoint=checkpoints/real [--out_dir=...]

Every sequence folder of `data_dir` (`groundtruth.txt` with one `x y w h` box per frame,
0-based pixels, and its frames; see `hart_tf.data.clips`) is tracked from its first box by
HART (`hart_tf.tracker.Tracker`), the static box (the first box repeated) and, where OpenCV
with its contrib trackers is installed (the `bench` extra), CSRT, all in the same run. Scores
over frames 1..N-1: mean IoU, OTB success AUC, precision@20 px (in the clip's own pixels)
and frames per second of the `update` calls; per sequence and pooled over all frames.
Writes `clips_results.json` and `clips_results.md` (and one strip picture per sequence) to
`out_dir`, by default `<checkpoint folder>/eval_clips`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hart_tf import metrics
from hart_tf.baselines import OpenCVTracker, StaticTracker, run_tracker
from hart_tf.data import clips

STATIC, CSRT, HART = "static box", "CSRT", "HART"
RESULTS_JSON, RESULTS_MD = "clips_results.json", "clips_results.md"


def score(pred_xywh: np.ndarray, gt_xywh: np.ndarray) -> dict[str, Any]:
    """Mean IoU, success AUC and precision@20 of boxes (T, 4) x y w h over frames 1..T-1."""
    pred, gt = clips.xywh_to_yxhw(pred_xywh)[1:], clips.xywh_to_yxhw(gt_xywh)[1:]
    ious = np.asarray(metrics.iou(pred, gt), np.float64)  # (T-1,)
    return {
        "mean_iou": float(ious.mean()),
        "success_auc": metrics.success_auc(ious),
        "precision_20": metrics.precision_at(pred, gt, 20.0),
        "frames": int(len(ious)),
        "ious": ious,
    }


def _trackers(checkpoint: str | os.PathLike, with_csrt: bool) -> tuple[dict, dict[str, str]]:
    from hart_tf.tracker import Tracker

    trackers = {HART: Tracker.from_checkpoint(checkpoint), STATIC: StaticTracker()}
    skipped = {}
    if with_csrt:
        try:
            trackers[CSRT] = OpenCVTracker("csrt")
        except ImportError as e:
            skipped[CSRT] = str(e)
            print(f"warning: CSRT left out: {e}", file=sys.stderr)
    return trackers, skipped


def _warm_up(tracker, frames: np.ndarray, box: np.ndarray) -> None:
    """One init + update, so that compiling the step is not timed as tracking."""
    tracker.init(frames[0], box)
    tracker.update(frames[min(1, len(frames) - 1)])


def _pooled(per_seq: dict[str, dict], name: str) -> dict[str, Any]:
    ious = np.concatenate([r[name]["ious"] for r in per_seq.values()])
    pred = np.concatenate([r[name]["boxes"][1:] for r in per_seq.values()])
    gt = np.concatenate([r["gt"][1:] for r in per_seq.values()])
    seconds = sum(r[name]["frames"] / r[name]["fps"] for r in per_seq.values())
    return {
        "mean_iou": float(ious.mean()),
        "success_auc": metrics.success_auc(ious),
        "precision_20": metrics.precision_at(clips.xywh_to_yxhw(pred), clips.xywh_to_yxhw(gt),
                                             20.0),
        "frames": int(len(ious)),
        "fps": len(ious) / max(seconds, 1e-12),
        # The mean over sequences weighs a short clip like a long one.
        "mean_iou_over_sequences": float(np.mean([r[name]["mean_iou"]
                                                  for r in per_seq.values()])),
    }


def markdown(record: dict[str, Any]) -> str:
    """One row per sequence and one for all frames; mean IoU / AUC / P@20 / fps per tracker."""
    names = record["trackers"]
    head = "| sequence | frames | " + " | ".join(
        f"{n} IoU | {n} AUC | {n} P@20 | {n} fps" for n in names) + " |"
    rows = [head, "|" + "---|" * (2 + 4 * len(names))]

    def row(label: str, frames: int, results: dict) -> str:
        cells = []
        for n in names:
            r = results[n]
            # The static box does no work per frame: its "fps" measures nothing.
            fps = "–" if n == "static box" else f"{r['fps']:.0f}"
            cells.append(f"{r['mean_iou']:.3f} | {r['success_auc']:.3f} | "
                         f"{r['precision_20']:.3f} | {fps}")
        return f"| {label} | {frames} | " + " | ".join(cells) + " |"

    for seq, r in record["sequences"].items():
        rows.append(row(seq, r["frames"], r["scores"]))
    overall = record["overall"]
    rows.append(row("**all frames**", overall[names[0]]["frames"], overall))
    return "\n".join(rows)


def _strip(seq: dict, results: dict, path: Path) -> None:
    from hart_tf import viz

    boxes = {"gt": clips.xywh_to_yxhw(seq["boxes_xywh"])}
    colors = {"gt": (0, 220, 0), HART: (255, 40, 40), CSRT: (255, 210, 0)}
    for name in (HART, CSRT):
        if name in results:
            boxes[name] = clips.xywh_to_yxhw(results[name]["boxes"])
    viz.save_png(viz.sequence_strip(seq["frames"], boxes, max_frames=6, ncols=6,
                                    colors=colors), path)


def evaluate_clips(
    checkpoint: str | os.PathLike,
    data_dir: str | os.PathLike | None,
    out_dir: str | os.PathLike | None = None,
    *,
    max_frames: int | None = None,
    sequences: Sequence[str] | None = None,
    with_csrt: bool = True,
    strips: bool = True,
) -> dict[str, Any]:
    """Tracks every clip of `data_dir` with HART, the static box and CSRT; writes the report.

    Args:
        checkpoint: a `.keras` checkpoint or a run folder (its best, else latest, one).
        data_dir: folder of sequence folders (see `hart_tf.data.clips`).
        out_dir: where to write the JSON, markdown table and strips; default
            `<checkpoint folder>/eval_clips`.
        max_frames: keep only the first frames of each clip (>= 2), e.g. for a quick test.
        sequences: names of the clips to track (default: all, sorted).
        with_csrt: also run OpenCV CSRT where it can be imported.
        strips: write a `strip_<sequence>.png` with the ground truth, HART and CSRT boxes.

    Returns:
        The record written to `clips_results.json`: per-sequence and pooled scores per tracker.
    """
    from hart_tf.checkpoints import resolve_checkpoint, trained_data

    if not data_dir:
        raise ValueError("--dataset=clips needs --data_dir: a folder of sequence folders, each "
                         "with groundtruth.txt (x y w h per frame) and its frames")
    if max_frames is not None and max_frames < 2:
        raise ValueError(f"evaluate_clips: max_frames must be >= 2 (the first frame only gives "
                         f"the box), got {max_frames}")
    path = resolve_checkpoint(checkpoint)
    names = clips.list_sequences(data_dir)
    if not names:
        raise ValueError(f"--data_dir={data_dir}: no sequence folder with a groundtruth.txt")
    if sequences is not None:
        unknown = sorted(set(sequences) - set(names))
        if unknown:
            raise ValueError(f"--data_dir={data_dir}: no sequence {', '.join(unknown)} "
                             f"(found {', '.join(names)})")
        names = [n for n in names if n in set(sequences)]
    # Clips the run trained on (`--train_clips`, matched by name) score fitting, not tracking;
    # `--train_clips=all` took every clip of its folder, so all of this one if it is the same.
    trained = trained_data(path) or {}
    trained_clips = set(trained.get("train_clips", []))
    if trained.get("train_clips") == "all":
        same = Path(trained.get("train_clips_dir", "")).resolve() == Path(data_dir).resolve()
        trained_clips = set(names) if same else set()
    trained_on = [n for n in names if n in trained_clips]
    if trained_on:
        print(f"warning: {path} was trained on {', '.join(trained_on)}: their scores are not "
              "held-out results (--clips chooses the clips to score)", file=sys.stderr)
    out = Path(out_dir) if out_dir else path.parent / "eval_clips"
    out.mkdir(parents=True, exist_ok=True)
    trackers, skipped = _trackers(path, with_csrt)

    per_seq: dict[str, dict] = {}
    for i, name in enumerate(names):
        seq = clips.load_sequence(Path(data_dir) / name, max_frames=max_frames)
        gt = seq["boxes_xywh"]
        if len(gt) < 2:
            raise ValueError(f"{Path(data_dir) / name}: needs at least 2 frames to track")
        if i == 0:
            _warm_up(trackers[HART], seq["frames"], gt[0])
        results = {"gt": gt}
        for tname, tracker in trackers.items():
            boxes, fps = run_tracker(tracker, seq["frames"], gt[0])
            results[tname] = {**score(boxes, gt), "fps": fps, "boxes": boxes}
        per_seq[name] = results
        if strips:
            _strip(seq, results, out / f"strip_{name}.png")
        line = ", ".join(f"{t} {results[t]['mean_iou']:.3f}" for t in trackers)
        print(f"{name}: {len(gt)} frames, mean IoU {line}")

    record = {
        "checkpoint": str(path),
        "data_dir": str(data_dir),
        "max_frames": max_frames,
        "trackers": list(trackers),
        "skipped": skipped,
        "trained_on": trained_on,
        "sequences": {
            name: {"frames": int(len(r["gt"])),
                   "scores": {t: {k: v for k, v in r[t].items() if k not in ("ious", "boxes")}
                              for t in trackers},
                   "boxes_xywh": {t: r[t]["boxes"].round(2).tolist() for t in trackers}}
            for name, r in per_seq.items()
        },
        "overall": {t: _pooled(per_seq, t) for t in trackers},
    }
    table = markdown(record)
    tmp = out / f".tmp-{RESULTS_JSON}"
    tmp.write_text(json.dumps(record, indent=1, default=float))
    os.replace(tmp, out / RESULTS_JSON)
    (out / RESULTS_MD).write_text(
        f"Checkpoint `{path}` on `{data_dir}`"
        + (f" (first {max_frames} frames of each clip)" if max_frames else "")
        + ". Scores over frames 1..N-1 from the first box; P@20: centre within 20 px."
        + (f" Trained on {', '.join(trained_on)}: not held out." if trained_on else "")
        + "\n\n"
        + table + "\n")
    print(table)
    print(f"Wrote {out / RESULTS_JSON} and {out / RESULTS_MD}")
    return record
