"""Training: Keras `fit` driven epoch by epoch by the curriculum, with checkpoints.

`train(options)` is the library function behind `python -m hart_tf.train`. Each epoch is
one `fit` call on batches of the current curriculum length, so the data switches to longer
sequences in the same process; compiled train functions are reused (TF retraces once per
new length, JAX compiles once per length).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import keras

from hart_tf import datasets
from hart_tf.checkpoints import CheckpointError, CheckpointManager, config_difference
from hart_tf.config import HARTConfig
from hart_tf.curriculum import Curriculum
from hart_tf.model import HART
from hart_tf.optim import GuardedRMSprop


@dataclasses.dataclass
class TrainOptions:
    """Everything `train` needs; built from flags by `hart_tf.train`."""

    config: HARTConfig
    dataset: str = "synthetic"
    data_dir: str | None = None
    img_dir: str | None = None
    label_dir: str | None = None
    batch_size: int = 32
    learning_rate: float = 1e-4
    momentum: float = 0.9
    clip_norm: float = 1.0
    lr_decay: dict[int, float] = dataclasses.field(default_factory=dict)
    steps_per_epoch: int = 50
    epochs: int = 60
    max_minutes: float = 0.0
    seed: int = 0
    jit_compile: str = "auto"
    unroll: bool = False
    curriculum: Curriculum = dataclasses.field(
        default_factory=lambda: Curriculum.from_range(5, 20, min_epochs=1)
    )
    run_name: str = "hart"
    checkpoint_dir: str = "checkpoints"
    logdir: str | None = None
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    resume: bool = True
    image_every: int = 500
    eval_sequences: int = 64
    eval_steps: int = 30
    max_bad_steps: int = 20
    verbose: int = 1

    @property
    def run_dir(self) -> Path:
        return Path(self.checkpoint_dir) / self.run_name

    @property
    def log_dir(self) -> Path:
        return Path(self.logdir) if self.logdir else Path("runs") / self.run_name


def _jit(options: TrainOptions) -> bool:
    if options.jit_compile != "auto":
        return options.jit_compile == "true"
    # XLA on the TF CPU backend is 10-70x slower with the recurrent loop (measured).
    return keras.backend.backend() == "jax"


def build_model(options: TrainOptions) -> HART:
    model = HART(options.config, seed=options.seed, unroll=options.unroll)
    model.build()
    optimizer = GuardedRMSprop(
        learning_rate=options.learning_rate,
        momentum=options.momentum,
        global_clipnorm=options.clip_norm,
    )
    model.compile(optimizer=optimizer, jit_compile=_jit(options))
    return model


def _lr_for(options: TrainOptions, length: int) -> float:
    lr = options.learning_rate
    for at, factor in sorted(options.lr_decay.items()):
        if length >= at:
            lr *= factor
    return lr


def _restore(options: TrainOptions, manager: CheckpointManager):
    found = manager.latest()
    if found is None:
        return None, None
    path, state = found
    diff = config_difference(state["config"], options.config.to_dict())
    if diff:
        raise CheckpointError(f"{path}: checkpoint from a different config: {diff}")
    model = keras.saving.load_model(path, compile=True)
    return model, state


def use_function_for_length(model, kind: str, length: int) -> None:
    """Gives `model` its own compiled train/predict function per sequence length.

    The TF trainer's tf.function relaxes a changing time axis to an unknown size after a
    retrace, which an unrolled recurrence cannot take; one function per length keeps every
    trace static (JAX compiles per shape anyway).
    """
    cache = model.__dict__.setdefault("_hart_functions", {})
    key = (kind, int(length))
    if key not in cache:
        setattr(model, f"{kind}_function", None)
        getattr(model, f"make_{kind}_function")()
        cache[key] = getattr(model, f"{kind}_function")
    setattr(model, f"{kind}_function", cache[key])


class _StepLogger(keras.callbacks.Callback):
    """Counts global steps, checkpoints every N steps and guards against bad updates."""

    def __init__(self, trainer: _Trainer):
        super().__init__()
        self.trainer = trainer

    def on_train_batch_end(self, batch, logs=None):
        t = self.trainer
        t.step += 1
        logs = logs or {}
        if t.tb is not None:
            t.tb.on_step(t.step, logs, self.model, t.curriculum.length)
        bad = int(keras.ops.convert_to_numpy(self.model.optimizer.consecutive_bad))
        if bad >= t.options.max_bad_steps:
            terms = [k for k, v in logs.items() if not math.isfinite(float(v))]
            what = ", ".join(terms) if terms else "gradient"
            t.stop_reason = (
                f"stopped at step {t.step}: {bad} consecutive non-finite updates "
                f"(bad: {what}); the last good checkpoint is kept"
            )
            self.model.stop_training = True
            return
        if t.step % t.options.checkpoint_every == 0 and bad == 0:
            t.save()


class _Trainer:
    def __init__(self, options: TrainOptions):
        self.options = options
        self.curriculum = options.curriculum
        self.step = 0
        self.epoch = 0
        self.best_iou = -1.0
        self.history: list[dict[str, Any]] = []
        self.stop_reason: str | None = None
        self.manager = CheckpointManager(options.run_dir, keep=options.keep_checkpoints)
        self.model = None
        if options.resume:
            self.model, state = _restore(options, self.manager)
            if state is not None:
                self.step, self.epoch = int(state["step"]), int(state["epoch"])
                self.best_iou = float(state.get("best_iou", -1.0))
                self.history = list(state.get("history", []))
                self.curriculum.restore(state["curriculum"])
                print(f"Resumed {options.run_dir} at step {self.step} "
                      f"(epoch {self.epoch}, T={self.curriculum.length})")
        if self.model is None:
            keras.utils.set_random_seed(options.seed)
            self.model = build_model(options)
        self.source = datasets.train_source(options, start_batch=self.step)
        self.val = datasets.eval_set(options, "val", n=options.eval_sequences)
        self.tb = None
        try:
            from hart_tf.tensorboard import TensorBoardLogger

            self.tb = TensorBoardLogger(options.log_dir, self.val, options.image_every)
        except ImportError as e:
            print(f"warning: TensorBoard logging is off ({e})", file=sys.stderr)

    def state(self) -> dict:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "best_iou": self.best_iou,
            "curriculum": self.curriculum.state(),
            "config": self.options.config.to_dict(),
            "data_batches": self.step,
            "history": self.history,
            "backend": keras.backend.backend(),
        }

    def save(self, best: bool = False):
        self.manager.save(self.model, self.state(), best=best)

    def run(self) -> dict:
        o = self.options
        started = time.time()
        logger = _StepLogger(self)
        while self.epoch < o.epochs and self.stop_reason is None:
            length = self.curriculum.length
            self.model.optimizer.learning_rate.assign(_lr_for(o, length))
            if o.verbose:
                print(f"Epoch {self.epoch + 1}/{o.epochs}  T={length}  "
                      f"lr={_lr_for(o, length):.3g}")
            use_function_for_length(self.model, "train", length)
            hist = self.model.fit(
                self.source.batches(length, start=self.step),
                steps_per_epoch=o.steps_per_epoch,
                epochs=1,
                verbose=o.verbose,
                shuffle=False,
                callbacks=[logger],
            )
            if self.stop_reason:
                break
            self.epoch += 1
            logs = {k: float(v[-1]) for k, v in hist.history.items()}
            val = datasets.evaluate_iou(self.model, self.val, length, o.batch_size)
            logs.update({"val_iou": val, "length": length, "epoch": self.epoch,
                         "step": self.step, "minutes": (time.time() - started) / 60})
            self.history.append(logs)
            if o.verbose:
                print(f"  train IoU {logs.get('iou', float('nan')):.3f}  "
                      f"val IoU (T={length}) {val:.3f}")
            if self.tb is not None:
                self.tb.on_epoch(self.step, logs)
            grew = self.curriculum.end_epoch(logs.get("iou", 0.0))
            is_best = self.curriculum.at_max and val > self.best_iou
            if is_best:
                self.best_iou = val
            self.save(best=is_best)
            if grew and o.verbose:
                print(f"  curriculum: sequence length {length} -> {self.curriculum.length}")
            if o.max_minutes and time.time() - started > 60 * o.max_minutes:
                print(f"Time budget of {o.max_minutes} min reached.")
                break
        if self.stop_reason:
            print(self.stop_reason, file=sys.stderr)
        if self.manager.best() is None:
            self.save(best=True)
        return {"step": self.step, "epoch": self.epoch, "length": self.curriculum.length,
                "history": self.history, "stopped": self.stop_reason,
                "minutes": (time.time() - started) / 60}


def train(options: TrainOptions) -> dict:
    """Trains (or resumes) a HART and returns a summary with the final test evaluation."""
    trainer = _Trainer(options)
    summary = trainer.run()
    from hart_tf.evaluation import evaluate_model

    best = trainer.manager.best()
    model = keras.saving.load_model(best[0]) if best else trainer.model
    test = datasets.eval_set(options, "test", n=options.eval_sequences,
                             length=options.eval_steps + 1)
    result = evaluate_model(model, test, batch_size=options.batch_size)
    summary["test"] = {k: v for k, v in result.items() if k != "outputs"}
    summary["checkpoint"] = str(best[0]) if best else None
    out = options.run_dir / "summary.json"
    tmp = out.with_name(".tmp-summary.json")
    tmp.write_text(json.dumps(summary, indent=1, default=float))
    os.replace(tmp, out)
    return summary
