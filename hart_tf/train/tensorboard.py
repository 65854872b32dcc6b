"""TensorBoard logging that works on every Keras backend (it needs TensorFlow installed).

Importing this module raises ImportError where TensorFlow is absent (e.g. the JAX GPU
machine); training then runs without TensorBoard and says so once.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from hart_tf import viz

try:
    import tensorflow as tf
except ImportError as e:  # pragma: no cover - exercised on TF-less machines
    raise ImportError("TensorFlow is not installed") from e


class TensorBoardLogger:
    """Scalars every step, epoch summaries, and tracking pictures every N steps.

    Scalars: every loss term and lambda, train IoU, learning rate, gradient norm, skipped
    (non-finite) updates, sequence length; val IoU per epoch. Images: a few validation
    sequences with ground-truth, predicted and attention boxes, glimpses and location maps.
    """

    def __init__(self, logdir: str | Path, val: dict, image_every: int, n_images: int = 2):
        self.logdir = Path(logdir)
        self.writer = tf.summary.create_file_writer(str(self.logdir))
        self.val = {k: v[:n_images] for k, v in val.items()}
        self.image_every = image_every

    def on_step(self, step: int, logs: dict, model, length: int) -> None:
        opt = model.optimizer
        with self.writer.as_default(step=step):
            for name, value in logs.items():
                value = float(value)
                if math.isfinite(value):
                    tf.summary.scalar(f"train/{name}", value)
            tf.summary.scalar("train/sequence_length", length)
            tf.summary.scalar("train/learning_rate", float(opt.learning_rate.numpy()))
            for name, value in model.loss_weights().items():
                tf.summary.scalar(f"train/lambda_{name}", value)
            if hasattr(opt, "grad_norm"):
                tf.summary.scalar("train/grad_norm", float(opt.grad_norm.numpy()))
                tf.summary.scalar("train/skipped_updates", float(opt.bad_steps.numpy()))
        if self.image_every and step % self.image_every == 0:
            self.log_images(step, model, length)

    def on_epoch(self, step: int, logs: dict) -> None:
        with self.writer.as_default(step=step):
            for name in ("val_iou", "epoch", "minutes"):
                if name in logs:
                    tf.summary.scalar(f"epoch/{name}", float(logs[name]))
        self.writer.flush()

    def close(self) -> None:
        """Writes what is buffered and closes the event file."""
        self.writer.flush()
        self.writer.close()

    def log_images(self, step: int, model, length: int) -> None:
        frames = self.val["frames"][:, :length]
        out = model({"frames": frames, "box0": self.val["boxes"][:, 0]}, training=False)
        out = {k: np.asarray(v) for k, v in out.items()}
        strips = []
        for i in range(len(frames)):
            strips.append(viz.sequence_strip(
                frames[i],
                {"gt": self.val["boxes"][i, :length], "pred": out["boxes"][i],
                 "att": out["att_boxes"][i]},
                location_maps=out["location_maps"][i],
                max_frames=6,
            ))
        with self.writer.as_default(step=step):
            tf.summary.image("val/tracking", np.stack(_pad_same(strips)), max_outputs=len(strips))
        self.writer.flush()


def _pad_same(images: list[np.ndarray]) -> list[np.ndarray]:
    h = max(i.shape[0] for i in images)
    w = max(i.shape[1] for i in images)
    return [np.pad(i, ((0, h - i.shape[0]), (0, w - i.shape[1]), (0, 0))) for i in images]
