"""TensorBoard logging that works on every Keras backend (it needs TensorFlow installed).

Importing this module raises ImportError where TensorFlow is absent (e.g. the JAX GPU
machine); training then runs without TensorBoard and says so once.

What a run's folder shows, by group (every training scalar is that step's value, not a
mean over the epoch so far):

* `loss/*`: `loss/total` and the parts it is the sum of, `loss/weighted/<term>`
  (lambda x the term), `loss/neg_log_lambda/<term>` and `loss/l2` (weight decay); the
  unweighted terms `loss/tracking`, `loss/attention`, `loss/appearance`.
* `lambda/*`: the learned loss weights used at that step.
* `metrics/iou`: the training batch's mean IoU.
* `optim/*`: learning rate, gradient norm before clipping (and its log10, where spikes stay
  visible beside the usual values), the factor clipping scaled the update by, skipped
  (non-finite) updates so far.
* `curriculum/*`: sequence length, promotion threshold, epochs at this length, and at each
  epoch end the epoch's mean train IoU, which the promotion compares with the threshold
  (`curriculum/promotion_iou` instead under the original's test-mode protocol).
* `val/*` (each epoch end): IoU, success AUC and precision@20 of the validation set at the
  training length (`*_current_length`) and at the longest length (`*_final_length`), the
  static baseline's IoU (with `--val_clips` of several sources, each source's IoU), and the
  IoU-per-step plot (`val/iou_per_step`, the paper's Fig. 5);
  `val/tracking` shows validation sequences with boxes (every `image_every` steps and at the
  last step).
* `test/*` (after training): the test scores and IoU-per-step plot of the evaluated model.
* Histograms every `histogram_every` steps: lambdas, per-variable gradient norms, weights.
* HParams: the run's configuration with the test and final-length validation scores, to
  compare runs that share a log folder (`tensorboard --logdir runs`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from hart_tf import viz

try:
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp
except ImportError as e:  # pragma: no cover - exercised on TF-less machines
    raise ImportError("TensorFlow is not installed") from e

# What the hparams view compares runs by.
HPARAM_METRICS = ("test/iou", "test/success_auc", "test/precision_20", "val/iou_final_length",
                  "val/success_auc_final_length")


def hparams(options) -> dict[str, Any]:
    """The run's configuration as flat hparams: `model/<HARTConfig field>`, `data/...`,
    `optimizer/...`, `schedule/...` and the run's seed and numerics (bool, int, float or str)."""
    groups = {"model": options.config, "data": options.data, "optimizer": options.optimizer,
              "schedule": options.schedule}
    out: dict[str, Any] = {}
    for group, obj in groups.items():
        for f in dataclasses.fields(obj):
            out[f"{group}/{f.name}"] = _hparam_value(getattr(obj, f.name))
    for name in ("seed", "mixed_precision", "distribute", "unroll"):
        out[f"run/{name}"] = _hparam_value(getattr(options.run, name))
    return out


def _hparam_value(value):
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in value.items())
    return "none" if value is None else str(value)


class TensorBoardLogger:
    """Per-step scalars, histograms and pictures of a training run (see the module docstring).

    Args:
        options: the run's `TrainOptions` (log folder, image and histogram cadence, hparams).
        val: the validation set (stacked arrays); its first `n_images` sequences are drawn.
        n_images: validation sequences drawn in `val/tracking`.
    """

    def __init__(self, options, val: dict, n_images: int = 2):
        self.options = options
        self.logdir = options.log_dir
        self.writer = tf.summary.create_file_writer(str(self.logdir))
        self.val = {k: v[:n_images] for k, v in val.items()}
        self.image_every = options.run.image_every
        self.image_frames = options.run.image_frames
        self.histogram_every = options.run.histogram_every
        self.last_image_step: int | None = None
        self._started = False

    def _start(self) -> None:
        """The hparams of this run (written once per process; a resumed run repeats them)."""
        self._started = True
        metrics = [hp.Metric(tag) for tag in HPARAM_METRICS]
        values = hparams(self.options)
        with self.writer.as_default(step=0):
            hp.hparams_config(hparams=[hp.HParam(name) for name in values], metrics=metrics)
            hp.hparams(values, trial_id=self.options.run.run_name)

    def on_step(self, step: int, model, curriculum) -> None:
        """Scalars of the step just taken; histograms and images at their cadence."""
        if not self._started:
            self._start()
        opt = model.optimizer
        with self.writer.as_default(step=step):
            for tag, value in model.step_values().items():
                _scalar(tag, value)
            _scalar("optim/learning_rate", float(np.asarray(opt.learning_rate)))
            if hasattr(opt, "grad_norm"):
                norm = float(np.asarray(opt.grad_norm))
                _scalar("optim/grad_norm", norm)
                _scalar("optim/log10_grad_norm", math.log10(max(norm, 1e-12)))
                clip = getattr(opt, "global_clipnorm", None) or _rms_clip_norm(model)
                if clip:
                    _scalar("optim/clip_factor", min(1.0, clip / max(norm, 1e-12)))
                _scalar("optim/skipped_updates", float(np.asarray(opt.bad_steps)))
            _scalar("curriculum/length", curriculum.length)
            _scalar("curriculum/threshold", curriculum.current_threshold())
            _scalar("curriculum/epochs_at_length", curriculum.epochs_at_length)
            if self.histogram_every and step % self.histogram_every == 0:
                self._histograms(model)
        if self.image_every and step % self.image_every == 0:
            self.log_images(step, model, curriculum.length)

    def _histograms(self, model) -> None:
        lambdas = model.loss_weights()
        if lambdas:
            tf.summary.histogram("lambda/all", np.array(list(lambdas.values())))
        opt = model.optimizer
        if hasattr(opt, "grad_norms"):
            tf.summary.histogram("optim/grad_norm_per_variable", np.asarray(opt.grad_norms))
        for v in model.trainable_variables:
            tf.summary.histogram(f"weights/{v.path}", np.asarray(v))

    def on_epoch(self, step: int, logs: dict, scores: dict) -> None:
        """Epoch-end summaries: the curriculum's train IoU and `sets.validate`'s scores."""
        current = scores["current_length"]
        with self.writer.as_default(step=step):
            if "iou" in logs:
                _scalar("curriculum/train_iou_epoch_mean", logs["iou"])
            if "promotion_iou" in logs:  # the original's protocol: test-mode IoU
                _scalar("curriculum/promotion_iou", logs["promotion_iou"])
            for name in ("epoch", "minutes"):
                if name in logs:
                    _scalar(f"run/{name}", logs[name])
            for key in ("current", "final"):
                s = scores[key]
                _scalar(f"val/iou_{key}_length", s["mean_iou"])
                _scalar(f"val/success_auc_{key}_length", s["success_auc"])
                _scalar(f"val/precision_20_{key}_length", s["precision_20"])
            _scalar("val/static_iou_final_length", scores["static"]["mean_iou"])
            for key, value in logs.items():  # --val_clips of several sources: each one's
                if key.startswith("val_iou_") and key != "val_iou_final_length":
                    _scalar(f"val/iou_current_length_{key.removeprefix('val_iou_')}", value)
            _scalar("val/current_length", current)
            title = f"Validation at step {step} (training length T={current})"
            figure = _iou_figure(scores["final"], scores["static"], title)
            tf.summary.image("val/iou_per_step", figure[None], max_outputs=1)
        self.writer.flush()

    def on_test(self, step: int, result: dict | None, model, length: int) -> None:
        """The final test scores (None: training stopped early) and the last step's images."""
        if not self._started:
            self._start()
        if result is not None:
            with self.writer.as_default(step=step):
                _scalar("test/iou", result["mean_iou"])
                _scalar("test/success_auc", result["success_auc"])
                _scalar("test/precision_20", result["precision_20"])
                _scalar("test/static_iou", result["static_mean_iou"])
                static = {"iou_per_step": result["static_iou_per_step"]}
                title = f"Test: {result['sequences']} sequences, {result['steps']} steps"
                figure = _iou_figure(result, static, title)
                tf.summary.image("test/iou_per_step", figure[None], max_outputs=1)
        if self.image_every and step and self.last_image_step != step:
            self.log_images(step, model, length)
        self.writer.flush()

    def close(self) -> None:
        """Writes what is buffered and closes the event file."""
        self.writer.flush()
        self.writer.close()

    def log_images(self, step: int, model, length: int) -> None:
        """`val/tracking`: the first validation sequences at `length` frames with the
        predicted (red), attention (blue) and ground-truth (green, dashed, drawn last so
        that t=0, where the prediction is the given box, shows both) boxes."""
        frames = self.val["frames"][:, :length]
        out = model({"frames": frames, "box0": self.val["boxes"][:, 0]}, training=False)
        out = {k: np.asarray(v) for k, v in out.items()}
        strips = []
        for i in range(len(frames)):
            strips.append(viz.sequence_strip(
                frames[i],
                {"pred": out["boxes"][i], "att": out["att_boxes"][i],
                 "gt": self.val["boxes"][i, :length]},
                location_maps=out["location_maps"][i],
                max_frames=self.image_frames or length,
                dashed=("gt",),
            ))
        with self.writer.as_default(step=step):
            tf.summary.image("val/tracking", np.stack(_pad_same(strips)), max_outputs=len(strips))
        self.last_image_step = step
        self.writer.flush()


def _scalar(tag: str, value) -> None:
    value = float(value)
    if math.isfinite(value):
        tf.summary.scalar(tag, value)


def _rms_clip_norm(model) -> float | None:
    """The global norm that `--clip_rms` clips at: clip_rms x sqrt(number of weights)."""
    clip_rms = getattr(model.optimizer, "clip_rms", 0.0)
    if not clip_rms:
        return None
    return clip_rms * math.sqrt(sum(math.prod(v.shape) for v in model.trainable_variables))


def _iou_figure(scores: dict, static: dict, title: str) -> np.ndarray:
    """The IoU-per-step plot of `scores` beside the static baseline, x = time step (t=0,
    the given box, is not scored)."""
    curves = {"HART": [np.nan, *scores["iou_per_step"]],
              "static baseline": [np.nan, *static["iou_per_step"]]}
    return viz.iou_per_step_figure(curves, title=title)


def _pad_same(images: list[np.ndarray]) -> list[np.ndarray]:
    h = max(i.shape[0] for i in images)
    w = max(i.shape[1] for i in images)
    return [np.pad(i, ((0, h - i.shape[0]), (0, w - i.shape[1]), (0, 0))) for i in images]
