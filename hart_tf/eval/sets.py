"""The fixed evaluation sets, and the record of the data a run was trained on.

The functions take a `hart_tf.train.options.TrainOptions` (its `data` and `config`): the
test set of a run is the one its training options name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hart_tf.data import clip_windows, kitti, kth, synthetic
from hart_tf.eval.sequences import predict, score
from hart_tf.model import metrics


def synthetic_config(options) -> synthetic.SyntheticConfig:
    """The synthetic data's distribution for these options (frame size and data flags)."""
    most = options.data.num_distractors_max
    return synthetic.SyntheticConfig(
        image_size=tuple(options.config.image_size),
        n_distractors=(min(1, most), most),
        distractor_jitter=options.data.distractor_jitter,
        distractor_front_prob=options.data.distractor_front_prob,
        distractor_cross_speed=options.data.distractor_cross_speed,
        occlusion_prob=options.data.occlusion_prob,
    )


# The flags that shape the synthetic data, recorded with every checkpoint.
SYNTHETIC_DATA_FLAGS = ("num_distractors_max", "distractor_jitter", "distractor_front_prob",
                        "distractor_cross_speed", "occlusion_prob")


def data_record(options, windows: clip_windows.ClipWindows | None = None) -> dict:
    """What a run trains on, by flag name: the dataset and, for synthetic, its data flags and
    the real clips mixed in (`train_clips`, by name; for `--train_clips=all`, "all", the
    folder and, given the loaded `windows`, how many clips, not thousands of names)."""
    record = {"dataset": options.data.dataset}
    if options.data.dataset == "synthetic":
        record.update({name: getattr(options.data, name) for name in SYNTHETIC_DATA_FLAGS})
        if all_clips(options):
            record["train_clips"] = clip_windows.ALL
            record["train_clips_dir"] = str(Path(options.data.train_clips_dir).resolve())
            if windows is not None:
                record["train_clips_count"] = len(windows.names)
        elif options.data.train_clips:
            record["train_clips"] = list(options.data.train_clips)
        if options.data.val_clips:
            record["val_clips"] = list(options.data.val_clips)
    return record


def all_clips(options) -> bool:
    return list(options.data.train_clips) == [clip_windows.ALL]


def data_mismatch(trained: dict | None, options) -> str | None:
    """The synthetic data flags that differ between a run's training and these options, as
    "--flag=trained (here value)" phrases; None when they agree or either is not synthetic."""
    if not trained or trained.get("dataset") != "synthetic" or options.data.dataset != "synthetic":
        return None
    here = data_record(options)
    differ = [f"--{k}={trained[k]} (here {here[k]})"
              for k in SYNTHETIC_DATA_FLAGS if k in trained and trained[k] != here[k]]
    return ", ".join(differ) or None


def kitti_sequences(options):
    if not options.data.data_dir:
        raise ValueError("--dataset=kitti needs --data_dir (the folder holding training/)")
    return kitti.load_kitti(options.data.data_dir)


def kth_clips(options, split: str):
    if not options.data.data_dir:
        raise ValueError("--dataset=kth needs --data_dir (the folder of prepared KTH frames "
                         "and KTHBoundingBoxInfo*.txt)")
    return kth.load_kth(options.data.data_dir, split)


def eval_set(options, split: str, n: int, length: int | None = None,
             with_extras: bool = False) -> dict[str, Any]:
    """A fixed evaluation set (stacked arrays) of `n` sequences of `length` frames.

    `with_extras` adds the synthetic look-alikes' boxes (`synthetic.fixed_set`); other
    datasets have none to add.
    """
    length = length or options.schedule.curriculum_lengths[-1]
    if options.data.dataset == "synthetic":
        return synthetic.fixed_set(split, n, length, synthetic_config(options),
                                   with_extras=with_extras)
    if options.data.dataset == "kitti":
        seqs = kitti_sequences(options)
        batches = kitti.kitti_batches(seqs, "test", length, n, shuffle=True, seed=0)
        return _first(batches, options, split, n, length)
    clips = kth_clips(options, "test" if split == "test" else "validation")
    batches = kth.kth_batches(clips, options.data.data_dir, length, n, shuffle=True, seed=0)
    return _first(batches, options, split, n, length)


def _first(batches, options, split: str, n: int, length: int) -> dict[str, Any]:
    for batch in batches:
        return batch
    raise ValueError(
        f"--eval_sequences={n}: the {options.data.dataset} {split} split has fewer "
        f"sequences of {length} frames; lower --eval_sequences"
    )


def clip_val_set(options) -> tuple[dict[str, np.ndarray], list[str]]:
    """The validation windows of `--val_clips` (`clip_windows.validation_windows`, about
    `eval_sequences` of the longest curriculum length) and the clip of each."""
    d = options.data
    if d.dataset != "synthetic" or not d.train_clips_dir:
        raise ValueError("--val_clips names clips of --train_clips_dir (with --dataset="
                         f"synthetic), got --dataset={d.dataset} and --train_clips_dir="
                         f"{d.train_clips_dir}")
    length = options.schedule.curriculum_lengths[-1]
    data, names = clip_windows.validation_windows(
        d.train_clips_dir, d.val_clips, tuple(options.config.image_size), length,
        d.eval_sequences)
    groups = sorted({clip_windows.clip_group(n) for n in names})
    print(f"Validating on real clips {clip_windows.short_list(list(d.val_clips))} "
          f"({len(names)} windows of {length} frames, whole frames"
          + (f"; per source: {', '.join(groups)}" if len(groups) > 1 else "")
          + "): they choose the best checkpoint")
    return data, names


def validate(model, data: dict[str, np.ndarray], length: int | None, batch_size: int,
             clip_names: list[str] | None = None, scores: dict | None = None) -> dict[str, float]:
    """`val_iou`: mean IoU (t >= 1, present objects) on the first `length` frames of `data`
    (all when None); with the windows' `clip_names` from two or more sources
    (`clip_windows.clip_group`), also `val_iou_<source>` over each source's windows.

    One prediction over all of `data`'s frames serves every length (the model is causal: its
    first `length` boxes are those of a `length`-frame run). A `scores` dict receives
    `current_length`, `final_length` (all the frames), and `score` dicts (mean_iou,
    iou_per_step, success_auc, precision_20) `current` and `final` at those lengths and
    `static`, the static baseline's at the final length."""
    full = np.asarray(predict(model, data, batch_size)["boxes"])  # (N, T, 4)
    cut = {k: v[:, :length] for k, v in data.items()}
    pred = full[:, :length]
    if scores is not None:
        gt, presence, steps = data["boxes"], data["presence"], full.shape[1]
        scores.update(current_length=pred.shape[1], final_length=steps,
                      current=score(pred, cut["boxes"], cut["presence"]),
                      final=score(full, gt, presence),
                      static=score(metrics.static_baseline(gt[:, 0], steps), gt, presence))
    out = {"val_iou": float(np.asarray(metrics.mean_iou(pred, cut["boxes"], cut["presence"])))}
    groups = [clip_windows.clip_group(n) for n in clip_names or ()]
    if len(set(groups)) > 1:
        for g in sorted(set(groups)):
            m = np.array([x == g for x in groups])  # (N,) windows of this source
            iou = metrics.mean_iou(pred[m], cut["boxes"][m], cut["presence"][m])
            out[f"val_iou_{g or 'other'}"] = float(np.asarray(iou))
    return out
