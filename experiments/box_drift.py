"""Where does a trained HART lose the target? Centre error and size drift per time step.

Usage (from the repo root):
  python experiments/box_drift.py --model=checkpoints/hart [--eval_sequences=32 --eval_steps=30]

Runs the checkpoint (a run folder or a .keras file) on the fixed test set of `--dataset`
(synthetic by default; the same set as `python -m hart_tf.evaluate`, data flags included) and
prints, for a few time steps, the median centre error in pixels and the mean log ratio of
predicted to ground-truth height and width, for the predicted box and for the attention
(glimpse) box. A log ratio of 0.69 is a box twice as tall (or wide) as the object. It
prints the mean IoU, and the mean IoU the same centres would get with the target's true
size. On synthetic data it also prints what the box follows at each step: the target, one
of its look-alike distractors (it overlaps a look-alike more than the target), or nothing,
and how often its centre is nearer a look-alike than the target; and whether the location
map marks the target more than the look-alikes in the same glimpse.
With `--out=<file>.json` the per-step values are written too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from hart_tf.cli import common as cli
from hart_tf.cli.common import FLAGS


def centre(boxes: np.ndarray) -> np.ndarray:
    """(..., 4) boxes (y, x, h, w) -> (..., 2) centres."""
    return boxes[..., :2] + boxes[..., 2:] / 2


def drift(pred: np.ndarray, gt: np.ndarray, presence: np.ndarray) -> dict[str, list[float]]:
    """Per time step: median centre error (px) and mean log h / w ratio of `pred` to `gt`
    (boxes (N, T, 4) as (y, x, h, w)), over present objects with positive sizes."""
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


def follows(pred: np.ndarray, gt: np.ndarray, distractors: np.ndarray,
            presence: np.ndarray) -> dict[str, list[float]]:
    """Per time step, the fraction of present objects whose predicted box is on the target
    (IoU with it > 0 and at least with any look-alike), on a look-alike (a larger IoU with
    one of them) or lost (no overlap with either), and, whatever the sizes, the fraction
    whose centre is nearer a look-alike's centre than the target's (`centre_nearer_look_alike`:
    a box grown over both objects can have the larger IoU with a bigger look-alike while
    still centred on the target).

    Args:
        pred, gt: boxes (N, T, 4) as (y, x, h, w).
        distractors: look-alike boxes (N, T, K, 4); zero-size boxes pad sequences with fewer.
        presence: (N, T).
    """
    from hart_tf.model.metrics import iou

    on_target = np.asarray(iou(pred, gt))  # (N, T)
    if distractors.shape[2]:
        others = np.asarray(iou(pred[:, :, None], distractors)).max(-1)  # (N, T)
    else:
        others = np.zeros_like(on_target)
    present = presence > 0
    kinds = {"target": (on_target > 0) & (on_target >= others),
             "look_alike": others > on_target,
             "lost": (on_target <= 0) & (others <= 0)}
    to_target = np.linalg.norm(centre(pred) - centre(gt), axis=-1)  # (N, T)
    to_looks = np.linalg.norm(centre(pred)[:, :, None] - centre(distractors), axis=-1)
    to_looks = np.where(distractors[..., 2] > 0, to_looks, np.inf).min(-1, initial=np.inf)
    kinds["centre_nearer_look_alike"] = to_looks < to_target
    out = {}
    for name, mask in kinds.items():
        count = (mask & present).sum(0)
        out[name] = (count / np.maximum(present.sum(0), 1)).tolist()
    return out


def true_size_iou(pred: np.ndarray, gt: np.ndarray, presence: np.ndarray) -> dict[str, float]:
    """Mean IoU (as `evaluate`'s) of the predicted boxes, and of the same centres given the
    target's true size: how much of the loss is the boxes' size, how much their position."""
    from hart_tf.model.metrics import mean_iou

    resized = np.concatenate([centre(pred) - gt[..., 2:] / 2, gt[..., 2:]], axis=-1)
    return {"own_size": float(np.asarray(mean_iou(pred, gt, presence))),
            "true_size": float(np.asarray(mean_iou(resized, gt, presence)))}


def map_on_objects(maps: np.ndarray, att_boxes: np.ndarray, gt: np.ndarray,
                   distractors: np.ndarray, presence: np.ndarray) -> dict[str, float]:
    """Does the location map tell the target from its look-alikes?

    On the location map's grid over the glimpse (the cells of `losses.appearance_target`),
    cells covered by the target but by no look-alike are "target" cells, cells covered by a
    look-alike but not by the target "look-alike" cells, the rest "background". Over the
    steps t >= 1 whose glimpse holds at least one cell of each of the first two kinds, returns
    the mean map value on each kind of cell, the fraction of those steps in which the target
    cells' mean is the higher, and how many steps there were.

    Args:
        maps: location maps (N, T, fh, fw) in [0, 1].
        att_boxes, gt: glimpse and target boxes (N, T, 4) as (y, x, h, w).
        distractors: look-alike boxes (N, T, K, 4); zero-size boxes pad.
        presence: (N, T).
    """
    from hart_tf.model.losses import appearance_target

    cells = maps.shape[2:]
    target = np.asarray(appearance_target(gt, att_boxes, cells)) > 0  # (N, T, fh, fw)
    looks = np.zeros_like(target)
    for k in range(distractors.shape[2]):
        cover = np.asarray(appearance_target(distractors[:, :, k], att_boxes, cells)) > 0
        looks |= cover & (distractors[:, :, k, None, None, 2] > 0)
    kinds = {"target": target & ~looks, "look_alike": looks & ~target,
             "background": ~(target | looks)}
    counts = {k: v.sum((2, 3)) for k, v in kinds.items()}
    means = {k: (maps * v).sum((2, 3)) / np.maximum(counts[k], 1) for k, v in kinds.items()}
    both = (counts["target"] > 0) & (counts["look_alike"] > 0) & (presence > 0)
    both[:, 0] = False  # step 0 is the given box
    out = {f"map_on_{k}": float(m[both].mean()) if both.any() else float("nan")
           for k, m in means.items()}
    out["target_above_look_alike"] = (
        float((means["target"][both] > means["look_alike"][both]).mean()) if both.any()
        else float("nan"))
    out["steps"] = int(both.sum())
    return out


@cli.one_line_errors
def main(argv):
    cli.reject_extra_args(argv)
    if not FLAGS.model:
        print("error: --checkpoint is required (a run folder or a .keras file)",
              file=sys.stderr)
        return 2
    from hart_tf.cli.train import options_from_flags
    from hart_tf.eval import sets
    from hart_tf.eval.evaluate import warn_if_other_data
    from hart_tf.eval.sequences import predict
    from hart_tf.model.saving import load_model, resolve_checkpoint

    path = resolve_checkpoint(FLAGS.model)
    model = load_model(path)
    steps = FLAGS.eval_steps or 30
    # The same fixed test set as `python -m hart_tf.evaluate` (dataset and texture flags).
    options = options_from_flags()
    options.config = model.config
    warn_if_other_data(path, options)
    synthetic = options.data.dataset == "synthetic"
    data = sets.eval_set(options, "test", n=FLAGS.eval_sequences, length=steps + 1,
                             with_extras=synthetic)
    out = predict(model, data, batch_size=16)
    result = {"checkpoint": str(path), "sequences": FLAGS.eval_sequences, "steps": steps,
              "box": drift(out["boxes"], data["boxes"], data["presence"]),
              "attention": drift(out["att_boxes"], data["boxes"], data["presence"]),
              "mean_iou": true_size_iou(out["boxes"], data["boxes"], data["presence"])}
    print(f"{path}: {FLAGS.eval_sequences} test sequences")
    print(" t | box: centre err px, log h, log w | attention: centre err px, log h, log w")
    for t in sorted({1, 2, 5, 10, 15, 20, 25, 30, steps} & set(range(1, steps + 1))):
        b, a = result["box"], result["attention"]
        print(f"{t:2d} | {b['centre_error_px'][t]:6.1f} {b['log_h_ratio'][t]:6.2f} "
              f"{b['log_w_ratio'][t]:6.2f} | {a['centre_error_px'][t]:6.1f} "
              f"{a['log_h_ratio'][t]:6.2f} {a['log_w_ratio'][t]:6.2f}")
    m = result["mean_iou"]
    print(f"mean IoU {m['own_size']:.3f}; the same centres with the target's true size: "
          f"{m['true_size']:.3f}")
    if synthetic:
        looks = data["distractor_boxes"]
        result["follows"] = follows(out["boxes"], data["boxes"], looks, data["presence"])
        if model.config.appearance_attention:
            result["location_map"] = map_on_objects(out["location_maps"], out["att_boxes"],
                                                    data["boxes"], looks, data["presence"])
        print(" t | box on the target, on a look-alike, lost (by IoU) | centre nearer a "
              "look-alike (fractions of sequences)")
        for t in sorted({1, 2, 5, 10, 15, 20, 25, 30, steps} & set(range(1, steps + 1))):
            f = result["follows"]
            print(f"{t:2d} | {f['target'][t]:5.2f} {f['look_alike'][t]:5.2f} {f['lost'][t]:5.2f} "
                  f"| {f['centre_nearer_look_alike'][t]:5.2f}")
        if "location_map" in result:
            lm = result["location_map"]
            print(f"location map, over the {lm['steps']} steps whose glimpse holds the target "
                  f"and a look-alike: mean {lm['map_on_target']:.3f} on target cells, "
                  f"{lm['map_on_look_alike']:.3f} on look-alike cells, "
                  f"{lm['map_on_background']:.3f} on the rest; target above look-alike in "
                  f"{lm['target_above_look_alike']:.2f} of them")
    if FLAGS.out:
        Path(FLAGS.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(cli.run(main))
