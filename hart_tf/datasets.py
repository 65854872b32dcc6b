"""Glue between the training/evaluation code and the dataset loaders in `hart_tf.data`.

Training batches are a pure function of the global step (synthetic data) or of a seeded
shuffle (KITTI, KTH), so a resumed run continues the same data stream. Batches are
`(x, y)` pairs: x = {frames (B, T, H, W, 3) uint8, box0 (B, 4)}, y = {boxes (B, T, 4),
presence (B, T)}.
"""

from __future__ import annotations

import concurrent.futures
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hart_tf.data import clip_windows, clips, synthetic


def to_xy(batch: dict[str, np.ndarray]) -> tuple[dict, dict]:
    x = {"frames": batch["frames"], "box0": batch["boxes"][:, 0]}
    y = {"boxes": batch["boxes"], "presence": batch["presence"]}
    return x, y


def synthetic_config(options) -> synthetic.SyntheticConfig:
    """The synthetic data's distribution for these options (frame size and data flags)."""
    most = options.num_distractors_max
    return synthetic.SyntheticConfig(
        image_size=tuple(options.config.image_size),
        texture_source=options.texture_source,
        n_distractors=(min(1, most), most),
        distractor_jitter=options.distractor_jitter,
        distractor_front_prob=options.distractor_front_prob,
        distractor_cross_speed=options.distractor_cross_speed,
        occlusion_prob=options.occlusion_prob,
    )


# The flags that shape the synthetic data, recorded with every checkpoint.
SYNTHETIC_DATA_FLAGS = ("texture_source", "num_distractors_max", "distractor_jitter",
                        "distractor_front_prob", "distractor_cross_speed", "occlusion_prob")


def data_record(options, windows: clip_windows.ClipWindows | None = None) -> dict:
    """What a run trains on, by flag name: the dataset and, for synthetic, its data flags and
    the real clips mixed in (`train_clips`, by name; for `--train_clips=all`, "all", the
    folder and, given the loaded `windows`, how many clips, not thousands of names)."""
    record = {"dataset": options.dataset}
    if options.dataset == "synthetic":
        record.update({name: getattr(options, name) for name in SYNTHETIC_DATA_FLAGS})
        if _all_clips(options):
            record["train_clips"] = clip_windows.ALL
            record["train_clips_dir"] = str(Path(options.train_clips_dir).resolve())
            if windows is not None:
                record["train_clips_count"] = len(windows.names)
        elif options.train_clips:
            record["train_clips"] = list(options.train_clips)
        if options.val_clips:
            record["val_clips"] = list(options.val_clips)
    return record


def _all_clips(options) -> bool:
    return list(options.train_clips) == [clip_windows.ALL]


def data_mismatch(trained: dict | None, options) -> str | None:
    """The synthetic data flags that differ between a run's training and these options, as
    "--flag=trained (here value)" phrases; None when they agree or either is not synthetic."""
    if not trained or trained.get("dataset") != "synthetic" or options.dataset != "synthetic":
        return None
    here = data_record(options)
    differ = [f"--{k}={trained[k]} (here {here[k]})"
              for k in SYNTHETIC_DATA_FLAGS if k in trained and trained[k] != here[k]]
    return ", ".join(differ) or None


# First word of the real windows' seed: their stream is apart from the synthetic ones.
_CLIP_STREAM = 4


def _clip_count(options) -> int:
    """Sequences of each training batch cut from the real clips (at least one)."""
    return max(1, round(options.batch_size * options.train_clips_fraction))


def _train_clips(options) -> clip_windows.ClipWindows | None:
    """The real clips mixed into training (`--train_clips`), or None."""
    if not options.train_clips:
        return None
    if options.dataset != "synthetic":
        raise ValueError("--train_clips mixes real clips into the synthetic training stream: "
                         f"use it with --dataset=synthetic, got --dataset={options.dataset}")
    if not options.train_clips_dir:
        raise ValueError("--train_clips needs --train_clips_dir, the folder that holds them")
    names = list(options.train_clips)
    if options.val_clips:
        if _all_clips(options):  # every clip but the validation ones
            names = [n for n in clips.find_sequences(options.train_clips_dir)
                     if n not in set(options.val_clips)]
        elif both := [n for n in names if n in set(options.val_clips)]:
            raise ValueError(f"--val_clips {clip_windows.short_list(both)} are in --train_clips "
                             "too: a clip validates or trains, not both")
    windows = clip_windows.ClipWindows(options.train_clips_dir, names,
                                       tuple(options.config.image_size),
                                       cache_mb=options.train_clips_cache_mb,
                                       colour_jitter=options.train_clips_colour_jitter)
    which = (f"all {len(windows.names)} real clips of {windows.root}" if _all_clips(options)
             else f"real clips {clip_windows.short_list(windows.names)}")
    memory = ", decoded per window" if windows.lazy else ""  # else held in memory
    print(f"Training on {which} ({windows.num_frames} frames{memory}, "
          f"{_clip_count(options)} of every {options.batch_size} sequences); held out: "
          f"{clip_windows.short_list(windows.held_out())}")
    if windows.skipped:
        print(f"Skipped {len(windows.skipped)} training clips without a frame showing their "
              f"target (e.g. {windows.skipped[0]})")
    return windows


def _kitti_sequences(options):
    from hart_tf.data import kitti

    if not (options.data_dir or options.img_dir or options.label_dir):
        raise ValueError("--dataset=kitti needs --data_dir (or --img_dir and --label_dir)")
    return kitti.load_kitti(options.data_dir, options.img_dir, options.label_dir)


def _kth(options, split: str):
    from hart_tf.data import kth

    if not options.data_dir:
        raise ValueError("--dataset=kth needs --data_dir (the folder of prepared KTH frames "
                         "and KTHBoundingBoxInfo*.txt)")
    return kth.load_kth(options.data_dir, split)


class TrainSource:
    """Endless training batches of a chosen length, resumable at a batch index."""

    def __init__(self, options, start_batch: int = 0, workers: int = 2):
        self.options = options
        self.index = start_batch
        self.workers = workers
        self.clips = _train_clips(options)
        self._kitti = _kitti_sequences(options) if options.dataset == "kitti" else None
        self._kth = _kth(options, "train") if options.dataset == "kth" else None

    def _batch(self, index: int, length: int,
               cfg: synthetic.SyntheticConfig) -> dict[str, np.ndarray]:
        """Synthetic training batch `index`; with real clips, its first share from them."""
        o = self.options
        if self.clips is None:
            return synthetic.train_batch(index, o.batch_size, length, o.seed, cfg)
        n_real = _clip_count(o)
        # Windows of batch `index` are a pure function of (seed, index), like the synthetic.
        rng = np.random.default_rng([_CLIP_STREAM, o.seed, index])
        real = clip_windows.window_batch(self.clips, rng, n_real, length)
        if n_real == o.batch_size:
            return real
        synth = synthetic.train_batch(index, o.batch_size - n_real, length, o.seed, cfg)
        return {k: np.concatenate([real[k], synth[k]]) for k in real}

    def _synthetic(self, length: int) -> Iterator[tuple[dict, dict]]:
        if self.clips is not None:
            self.clips.check_length(length)  # before any worker renders a batch
            if unusable := self.clips.unusable(length):
                print(f"{unusable} of {self.clips.num_clips} training clips have no window of "
                      f"{length} frames that starts and ends with the target visible (too short, "
                      "or absent too often): not sampled at this length")
        cfg = synthetic_config(self.options)
        start = self.index
        # A small thread pool renders upcoming batches while the model trains (NumPy
        # releases the GIL in the heavy array operations).
        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
            pending = {}
            for i in itertools.count(start):
                for j in range(i, i + self.workers + 1):
                    if j not in pending:
                        pending[j] = pool.submit(self._batch, j, length, cfg)
                yield to_xy(pending.pop(i).result())

    def _loader(self, length: int) -> Iterator[tuple[dict, dict]]:
        o = self.options
        epoch = self.index  # reseeds the shuffle each time a new stream starts
        if self._kitti is not None:
            from hart_tf.data import kitti

            it = kitti.kitti_batches(self._kitti, "train", length, o.batch_size,
                                     seed=o.seed + epoch, num_epochs=None)
        else:
            from hart_tf.data import kth

            it = kth.kth_batches(self._kth, o.data_dir, length, o.batch_size,
                                 augment=True, seed=o.seed + epoch, num_epochs=None)
        for batch in it:
            yield to_xy(batch)

    def batches(self, length: int, start: int | None = None) -> Iterator[tuple[dict, dict]]:
        if start is not None:
            self.index = start
        if self.options.dataset == "synthetic":
            return self._synthetic(length)
        return self._loader(length)


def train_source(options, start_batch: int = 0) -> TrainSource:
    return TrainSource(options, start_batch, workers=options.data_workers)


def eval_set(options, split: str, n: int, length: int | None = None,
             with_extras: bool = False) -> dict[str, Any]:
    """A fixed evaluation set (stacked arrays) of `n` sequences of `length` frames.

    `with_extras` adds the synthetic look-alikes' boxes (`synthetic.fixed_set`); other
    datasets have none to add.
    """
    length = length or options.curriculum.lengths[-1]
    if options.dataset == "synthetic":
        return synthetic.fixed_set(split, n, length, synthetic_config(options),
                                   with_extras=with_extras)
    if options.dataset == "kitti":
        from hart_tf.data import kitti

        seqs = _kitti_sequences(options)
        batches = kitti.kitti_batches(seqs, "test", length, n, shuffle=True, seed=0)
        return _first(batches, options, split, n, length)
    from hart_tf.data import kth

    clips = _kth(options, "test" if split == "test" else "validation")
    batches = kth.kth_batches(clips, options.data_dir, length, n, shuffle=True, seed=0)
    return _first(batches, options, split, n, length)


def _first(batches, options, split: str, n: int, length: int) -> dict[str, Any]:
    for batch in batches:
        return batch
    raise ValueError(
        f"--eval_sequences={n}: the {options.dataset} {split} split has fewer "
        f"sequences of {length} frames; lower --eval_sequences"
    )


def clip_val_set(options) -> tuple[dict[str, np.ndarray], list[str]]:
    """The validation windows of `--val_clips` (`clip_windows.validation_windows`, about
    `eval_sequences` of the longest curriculum length) and the clip of each."""
    if options.dataset != "synthetic" or not options.train_clips_dir:
        raise ValueError("--val_clips names clips of --train_clips_dir (with --dataset="
                         f"synthetic), got --dataset={options.dataset} and --train_clips_dir="
                         f"{options.train_clips_dir}")
    length = options.curriculum.lengths[-1]
    data, names = clip_windows.validation_windows(
        options.train_clips_dir, options.val_clips, tuple(options.config.image_size), length,
        options.eval_sequences)
    groups = sorted({clip_windows.clip_group(n) for n in names})
    print(f"Validating on real clips {clip_windows.short_list(list(options.val_clips))} "
          f"({len(names)} windows of {length} frames, whole frames"
          + (f"; per source: {', '.join(groups)}" if len(groups) > 1 else "")
          + "): they choose the best checkpoint")
    return data, names


def validate(model, data: dict[str, np.ndarray], length: int | None, batch_size: int,
             clip_names: list[str] | None = None) -> dict[str, float]:
    """`val_iou`: mean IoU (t >= 1, present objects) on the first `length` frames of `data`
    (all when None); with the windows' `clip_names` from two or more sources
    (`clip_windows.clip_group`), also `val_iou_<source>` over each source's windows."""
    from hart_tf import metrics
    from hart_tf.evaluation import predict

    cut = {k: v[:, :length] for k, v in data.items()}
    pred = np.asarray(predict(model, cut, batch_size)["boxes"])  # (N, T, 4)
    out = {"val_iou": float(np.asarray(metrics.mean_iou(pred, cut["boxes"], cut["presence"])))}
    groups = [clip_windows.clip_group(n) for n in clip_names or ()]
    if len(set(groups)) > 1:
        for g in sorted(set(groups)):
            m = np.array([x == g for x in groups])  # (N,) windows of this source
            iou = metrics.mean_iou(pred[m], cut["boxes"][m], cut["presence"][m])
            out[f"val_iou_{g or 'other'}"] = float(np.asarray(iou))
    return out


def evaluate_iou(model, data: dict[str, np.ndarray], length: int, batch_size: int) -> float:
    """Mean IoU (t >= 1, present objects) of `model` on the first `length` frames of `data`."""
    from hart_tf.evaluation import predict

    cut = {k: v[:, :length] for k, v in data.items()}
    pred = predict(model, cut, batch_size)["boxes"]
    from hart_tf import metrics

    return float(np.asarray(metrics.mean_iou(pred, cut["boxes"], cut["presence"])))
