"""HART against baselines on real single-object clips, through the online tracker API.

    python -m hart_tf.evaluate --dataset=clips --data_dir=../shared/data/real_clips \\
        --model=checkpoints/real [--out=...]

Every sequence folder one or two levels under `data_dir` (`clips.find_sequences`: `name` as
in OTB and GOT-10k, `category/name` as in LaSOT; `groundtruth.txt` with one `x y w h` box per
frame, 0-based pixels, and its frames; see `hart_tf.data.clips`) is tracked by HART
(`hart_tf.track.tracker.Tracker`), the static box (the first box repeated) and, where OpenCV with
its contrib trackers is installed (the `bench` extra), CSRT, all in the same run.

Frames without a visible target (`clips.read_training_boxes`: a NaN, zero or negative box,
GOT-10k's `absence.txt`, LaSOT's `full_occlusion.txt` / `out_of_view.txt`) are not scored:
tracking starts at the first frame where the target is visible, from its box (earlier frames
are not tracked), every tracker runs over all later frames, and the scores are taken over the
later frames where the target is visible. That is this tool's protocol; the official LaSOT and
GOT-10k toolkits (GOT-10k's test server among them) score their own way. A sequence with fewer
than 2 visible frames is skipped, with one printed line. Scores: mean IoU, OTB success AUC,
precision@20 px (in the clip's own pixels) and frames per second of the `update` calls; per
sequence, pooled over all scored frames and, when the clips' names carry two or more sources
(`davis_dog`, `uav_boat1`: `clip_windows.clip_group`), pooled per source. Writes
`clips_results.json` and `clips_results.md`, `iou_per_frame.png` (each tracker's IoU on each
scored frame, one panel per sequence; the JSON holds the values, null where not scored) and
one strip picture per sequence (`/` in a name written `__`) to `out_dir`, by default
`<checkpoint folder>/eval_clips` (`results/pretrained/eval_clips` for the shipped model).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hart_tf import pretrained, viz
from hart_tf.data import clips
from hart_tf.data.clip_windows import clip_group, short_list
from hart_tf.data.images import image_size, read_image
from hart_tf.model import metrics
from hart_tf.model.saving import resolve_checkpoint, trained_data
from hart_tf.track.baselines import OpenCVTracker, StaticTracker, run_tracker
from hart_tf.track.tracker import Tracker
from hart_tf.utils.boxes import xywh_to_yxhw
from hart_tf.utils.files import write_json_atomic

STATIC, CSRT, HART = "static box", "CSRT", "HART"
RESULTS_JSON, RESULTS_MD = "clips_results.json", "clips_results.md"
IOU_PLOT = "iou_per_frame.png"
# A clip's frames are held decoded when they fit in this many bytes, else decoded again for
# each tracker as it runs (a LaSOT clip of 2,500 frames at 1280x720 is 6.9 GB decoded).
HOLD_BYTES = 2**30


class ClipFrames:
    """A clip's frames, uint8 RGB [T, H, W, 3]: `len`, indexing and iteration (each pass
    decodes again when the clip is over `HOLD_BYTES`; `held` says whether it is not)."""

    def __init__(self, paths: Sequence[Path]):
        if not paths:
            raise ValueError("ClipFrames: no frames")
        self.paths = list(paths)
        h, w = image_size(os.fspath(self.paths[0]))  # from the header: nothing decoded yet
        self.held = len(self.paths) * h * w * 3 <= HOLD_BYTES
        self._frames = clips.load_frames(self.paths) if self.held else None  # (T, H, W, 3)
        self._hw = (h, w)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        if self._frames is not None:
            return self._frames[i]
        return read_image(os.fspath(self.paths[i]), expected_size=self._hw)

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._frames is not None:
            return iter(self._frames)
        return clips.iter_frames(self.paths)


def score(pred_xywh: np.ndarray, gt_xywh: np.ndarray,
          present: np.ndarray | None = None) -> dict[str, Any]:
    """Mean IoU, success AUC and precision@20 of boxes (T, 4) x y w h over frames 1..T-1.

    `present` (bool [T], default all true) marks the frames where the target is visible;
    only those of frames 1..T-1 are scored (`frames` counts them).
    """
    keep = _scored(present, len(gt_xywh))  # (T-1,)
    if not keep.any():
        raise ValueError("score: no frame after the first where the target is visible")
    pred = xywh_to_yxhw(pred_xywh)[1:][keep]  # (F, 4), F scored frames
    gt = xywh_to_yxhw(gt_xywh)[1:][keep]  # (F, 4)
    ious = np.asarray(metrics.iou(pred, gt), np.float64)  # (F,)
    return {
        "mean_iou": float(ious.mean()),
        "success_auc": metrics.success_auc(ious),
        "precision_20": metrics.precision_at(pred, gt, 20.0),
        "frames": int(len(ious)),
        "ious": ious,
    }


def _scored(present: np.ndarray | None, n: int) -> np.ndarray:
    """bool [n-1]: the frames 1..n-1 that are scored (all, or those where `present`)."""
    if present is None:
        return np.ones(n - 1, bool)
    present = np.asarray(present, bool)
    if present.shape != (n,):
        raise ValueError(f"score: present must be [{n}], got shape {present.shape}")
    return present[1:]


def strip_name(sequence: str) -> str:
    """`strip_<sequence>.png`, a nested name's `/` written `__` (LaSOT: strip_cat__cat-1.png)."""
    return f"strip_{sequence.replace('/', '__')}.png"


def _trackers(checkpoint: str | os.PathLike, with_csrt: bool) -> tuple[dict, dict[str, str]]:
    trackers = {HART: Tracker.from_checkpoint(checkpoint), STATIC: StaticTracker()}
    skipped = {}
    if with_csrt:
        try:
            trackers[CSRT] = OpenCVTracker("csrt")
        except ImportError as e:
            skipped[CSRT] = str(e)
            print(f"warning: CSRT left out: {e}", file=sys.stderr)
    return trackers, skipped


def _warm_up(tracker, frames: ClipFrames, box: np.ndarray) -> None:
    """One init + update, so that compiling the step is not timed as tracking."""
    tracker.init(frames[0], box)
    tracker.update(frames[min(1, len(frames) - 1)])


def _pooled(per_seq: dict[str, dict], name: str) -> dict[str, Any]:
    ious = np.concatenate([r[name]["ious"] for r in per_seq.values()])  # (F,) scored frames
    pred = np.concatenate([r[name]["boxes"][1:][r["present"][1:]] for r in per_seq.values()])
    gt = np.concatenate([r["gt"][1:][r["present"][1:]] for r in per_seq.values()])  # (F, 4)
    # fps times every update call, absent frames included.
    updates = [len(r[name]["boxes"]) - 1 for r in per_seq.values()]
    seconds = sum(u / r[name]["fps"] for u, r in zip(updates, per_seq.values(), strict=True))
    return {
        "mean_iou": float(ious.mean()),
        "success_auc": metrics.success_auc(ious),
        "precision_20": metrics.precision_at(xywh_to_yxhw(pred), xywh_to_yxhw(gt),
                                             20.0),
        "frames": int(len(ious)),
        "fps": sum(updates) / max(seconds, 1e-12),
        # The mean over sequences weighs a short clip like a long one.
        "mean_iou_over_sequences": float(np.mean([r[name]["mean_iou"]
                                                  for r in per_seq.values()])),
    }


def markdown(record: dict[str, Any]) -> str:
    """One row per sequence and one for all frames; mean IoU / AUC / P@20 / fps per tracker.

    `frames`: the clip's (within max_frames); `scored`: visible frames after the first visible
    one; `absent`: frames without a visible target, not scored (frames = 1 + scored + absent).
    """
    names = record["trackers"]
    head = "| sequence | frames | scored | absent | " + " | ".join(
        f"{n} IoU | {n} AUC | {n} P@20 | {n} fps" for n in names) + " |"
    rows = [head, "|" + "---|" * (4 + 4 * len(names))]

    def row(label: str, counts: tuple[int, int, int], results: dict) -> str:
        cells = []
        for n in names:
            r = results[n]
            # The static box does no work per frame: its "fps" measures nothing.
            fps = "–" if n == "static box" else f"{r['fps']:.0f}"
            cells.append(f"{r['mean_iou']:.3f} | {r['success_auc']:.3f} | "
                         f"{r['precision_20']:.3f} | {fps}")
        return f"| {label} | " + " | ".join(map(str, counts)) + " | " + " | ".join(cells) + " |"

    seqs = record["sequences"].values()
    for seq, r in record["sequences"].items():
        rows.append(row(seq, (r["frames"], r["scored"], r["absent"]), r["scores"]))
    for group, results in record.get("groups", {}).items():
        members = [r for n, r in record["sequences"].items() if clip_group(n) == group]
        counts = (sum(r["frames"] for r in members), results[names[0]]["frames"],
                  sum(r["absent"] for r in members))
        label = f"all {group}_*" if group else "all others"
        rows.append(row(f"{label} ({len(members)})", counts, results))
    overall = record["overall"]
    totals = (sum(r["frames"] for r in seqs), overall[names[0]]["frames"],
              sum(r["absent"] for r in seqs))
    rows.append(row("**all frames**", totals, overall))
    return "\n".join(rows)


def _strip(frames: ClipFrames, gt_xywh: np.ndarray, results: dict, path: Path,
           first: int = 0) -> None:
    """Six evenly spaced frames of `frames` (the clip from its frame `first`, the first
    visible), titled by their frame number in the clip, with the boxes (only these six frames
    are decoded); absent frames' zero gt boxes are not drawn."""
    steps = viz.strip_steps(len(frames), 6)  # (S,) indices into frames
    boxes = {"gt": xywh_to_yxhw(gt_xywh[steps])}
    colors = {"gt": (0, 220, 0), HART: (255, 40, 40), CSRT: (255, 210, 0)}
    for name in (HART, CSRT):
        if name in results:
            boxes[name] = xywh_to_yxhw(results[name]["boxes"][steps])
    shown = np.stack([frames[t] for t in steps])  # (S, H, W, 3)
    viz.save_png(viz.sequence_strip(shown, boxes, max_frames=6, ncols=6, colors=colors,
                                    step_labels=[int(t) + first for t in steps]), path)


def iou_per_frame(ious: np.ndarray, present: np.ndarray) -> list[float | None]:
    """IoU on each frame after the first (`ious` over the scored ones), None where the target
    is absent (not scored)."""
    out: list[float | None] = [None] * (len(present) - 1)
    for i, v in zip(np.flatnonzero(present[1:]), ious, strict=True):
        out[i] = float(v)
    return out


def _iou_figure(per_seq: dict[str, dict], trackers: Sequence[str], path: Path) -> None:
    """One panel per sequence: each tracker's IoU on every frame (gaps where not scored)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure



    cols = min(3, len(per_seq))
    rows = -(-len(per_seq) // cols)
    fig = Figure(figsize=(4.2 * cols, 2.6 * rows), dpi=80, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    for k, (name, r) in enumerate(per_seq.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        frames = r["first_visible"] + np.arange(1, len(r["present"]))  # clip frame numbers
        for t in trackers:
            curve = np.array([np.nan if v is None else v
                              for v in iou_per_frame(r[t]["ious"], r["present"])])
            ax.plot(frames, curve, label=t, lw=1)
        ax.set_title(name, fontsize=9)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7, loc="lower left")
    fig.supxlabel("frame")
    fig.supylabel("IoU")
    canvas.draw()
    viz.save_png(np.asarray(canvas.buffer_rgba())[..., :3].copy(), path)


def _read_boxes(seq_dir: Path, max_frames: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """`(boxes_xywh [N, 4], present [N], boxes in the file)`, N within max_frames."""
    boxes, present = clips.read_training_boxes(seq_dir)  # (N, 4), (N,)
    total = len(boxes)
    if max_frames is not None:
        boxes, present = boxes[:max_frames], present[:max_frames]
    return boxes, present, total


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
        data_dir: folder of sequence folders, or of category folders of them as LaSOT (see
            `hart_tf.data.clips.find_sequences`).
        out_dir: where to write the JSON, markdown table and strips; default
            `<checkpoint folder>/eval_clips`.
        max_frames: keep only the first frames of each clip (>= 2), e.g. for a quick test;
            absent frames among them count as in a whole clip.
        sequences: names of the clips to track, as `find_sequences` gives them (`cat/cat-1`
            for LaSOT; default: all, sorted).
        with_csrt: also run OpenCV CSRT where it can be imported.
        strips: write a `strip_<sequence>.png` (`/` written `__`) with the ground truth, HART
            and CSRT boxes.

    Returns:
        The record written to `clips_results.json`: per-sequence and pooled scores per tracker,
        over the frames after the first visible one where the target is visible.
    """
    if not data_dir:
        raise ValueError("--dataset=clips needs --data_dir: a folder of sequence folders, each "
                         "with groundtruth.txt (x y w h per frame) and its frames")
    if max_frames is not None and max_frames < 2:
        raise ValueError(f"evaluate_clips: max_frames must be >= 2 (the first frame only gives "
                         f"the box), got {max_frames}")
    path = resolve_checkpoint(checkpoint)
    names = clips.find_sequences(data_dir)
    if not names:
        raise ValueError(f"--data_dir={data_dir}: no sequence folder with a groundtruth.txt, "
                         "nor one level further down")
    if sequences is not None:
        unknown = sorted(set(sequences) - set(names))
        if unknown:
            raise ValueError(f"--data_dir={data_dir}: no sequence {short_list(unknown)} "
                             f"(found {short_list(names)})")
        names = [n for n in names if n in set(sequences)]
    # Boxes first (no frames decoded): sequences without 2 visible frames have nothing to score.
    read = {name: _read_boxes(Path(data_dir) / name, max_frames) for name in names}
    too_few = [n for n in names if read[n][1].sum() < 2]
    within = f" in their first {max_frames} frames" if max_frames else ""
    if too_few and len(too_few) == len(names):
        raise ValueError(f"--data_dir={data_dir}: no sequence has 2 frames where the target is "
                         f"visible{within} (of {short_list(names)})")
    if too_few:
        print(f"warning: skipped {len(too_few)} sequence(s) with fewer than 2 frames where the "
              f"target is visible{within}: {short_list(too_few)}", file=sys.stderr)
    names = [n for n in names if n not in set(too_few)]
    # Clips the run trained on (`--train_clips`, matched by name) score fitting, not tracking;
    # `--train_clips=all` took every clip of its folder, so all of this one if it is the same.
    trained = trained_data(path) or {}
    trained_clips = set(trained.get("train_clips", []))
    if trained.get("train_clips") == "all":
        same = Path(trained.get("train_clips_dir", "")).resolve() == Path(data_dir).resolve()
        trained_clips = set(names) - set(trained.get("val_clips", [])) if same else set()
    trained_on = [n for n in names if n in trained_clips]
    if trained_on:
        print(f"warning: {path} was trained on {', '.join(trained_on)}: their scores are not "
              "held-out results (--clips chooses the clips to score)", file=sys.stderr)
    out = Path(out_dir) if out_dir else pretrained.report_dir(path, "eval_clips")
    out.mkdir(parents=True, exist_ok=True)
    trackers, skipped = _trackers(path, with_csrt)

    per_seq: dict[str, dict] = {}
    for i, name in enumerate(names):
        seq_dir = Path(data_dir) / name
        boxes, present, total = read[name]  # (N, 4), (N,)
        # Full counts, before max_frames, so that a broken folder fails whatever max_frames.
        paths = clips.sequence_frames(seq_dir, total)
        start = int(np.argmax(present))  # the first visible frame gives the box
        frames = ClipFrames(paths[start:len(boxes)])  # (T, H, W, 3), T = N - start
        gt, seen = boxes[start:], present[start:]  # (T, 4), (T,)
        if i == 0:
            _warm_up(trackers[HART], frames, gt[0])
        results = {"gt": gt, "present": seen, "first_visible": start, "clip_frames": len(boxes)}
        for tname, tracker in trackers.items():
            pred, fps = run_tracker(tracker, frames, gt[0])
            results[tname] = {**score(pred, gt, seen), "fps": fps, "boxes": pred}
        per_seq[name] = results
        if strips:
            _strip(frames, gt, results, out / strip_name(name), first=start)
        line = ", ".join(f"{t} {results[t]['mean_iou']:.3f}" for t in trackers)
        absent = len(boxes) - int(present.sum())
        counts = (f" ({absent} absent, from frame {start}: {int(seen[1:].sum())} scored)"
                  if absent else "")
        print(f"{name}: {len(boxes)} frames{counts}, mean IoU {line}")

    record = {
        "checkpoint": str(path),
        "data_dir": str(data_dir),
        "max_frames": max_frames,
        "trackers": list(trackers),
        "skipped": skipped,
        "skipped_sequences": too_few,
        "trained_on": trained_on,
        # frames: the clip's (within max_frames) = 1 (the first visible, which gives the box)
        # + scored + absent; boxes_xywh: one per frame from first_visible on.
        "sequences": {
            name: {"frames": int(r["clip_frames"]),
                   "first_visible": int(r["first_visible"]),
                   "scored": int(r["present"][1:].sum()),
                   # every frame before first_visible is absent too
                   "absent": int(r["clip_frames"] - r["present"].sum()),
                   "scores": {t: {k: v for k, v in r[t].items() if k not in ("ious", "boxes")}
                              for t in trackers},
                   "boxes_xywh": {t: r[t]["boxes"].round(2).tolist() for t in trackers},
                   # frames first_visible + 1 on; null where the target is absent
                   "iou_per_frame": {t: iou_per_frame(r[t]["ious"], r["present"])
                                     for t in trackers}}
            for name, r in per_seq.items()
        },
        "overall": {t: _pooled(per_seq, t) for t in trackers},
    }
    groups = sorted({clip_group(n) for n in per_seq})
    if len(groups) > 1:  # pooled per source as well (davis_*, uav_*)
        record["groups"] = {
            g: {t: _pooled({n: r for n, r in per_seq.items() if clip_group(n) == g}, t)
                for t in trackers}
            for g in groups}
    _iou_figure(per_seq, list(trackers), out / IOU_PLOT)
    table = markdown(record)
    write_json_atomic(out / RESULTS_JSON, record, indent=1, default=float)
    (out / RESULTS_MD).write_text(
        f"Checkpoint `{path}` on `{data_dir}`"
        + (f" (first {max_frames} frames of each clip)" if max_frames else "")
        + ". Tracked from the first frame where the target is visible (its box); scored over "
        "the later frames where it is visible: absent frames are not scored (frames = 1 + "
        "scored + absent). P@20: centre within 20 px."
        + (f" Skipped (fewer than 2 visible frames): {short_list(too_few)}." if too_few else "")
        + (f" Trained on {', '.join(trained_on)}: not held out." if trained_on else "")
        + "\n\n"
        + table + "\n")
    print(table)
    print(f"Wrote {out / RESULTS_JSON}, {out / RESULTS_MD} and {out / IOU_PLOT}")
    return record
