"""Training: Keras `fit` driven epoch by epoch by the curriculum, with checkpoints.

`train(options)` is the library function behind `python -m hart_tf.train`. Each curriculum
length is one `fit` call of many epochs; at the end of each epoch a callback validates,
checkpoints and asks the curriculum, and stops the `fit` when the length grows, so the data
switches to longer sequences in the same process; compiled train functions are reused (TF
retraces once per new length, JAX compiles once per length).

Reliability:
    * Resume: a rerun of the same command continues from the newest good checkpoint with its
      weights, optimizer slots, step, epoch (mid-epoch too, with the epoch's running
      metrics), curriculum position and noise RNG state; training batches are a function of
      the step, so the data stream continues too.
    * NaN guard: the guarded optimizer (`hart_tf.train.optimizers`) skips an update whose gradients
      are not finite; here the batch-norm moving statistics and the running metrics of that
      step are rolled back, so a checkpoint never holds a non-finite value; after
      `max_bad_steps` bad steps in a row training stops with a message naming the step and
      the loss terms.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import keras

from hart_tf.eval import sets
from hart_tf.eval.sequences import evaluate_model
from hart_tf.layers.v1 import load_alexnet_weights
from hart_tf.model.config import HARTConfig
from hart_tf.model.hart import HART, use_function_for_length
from hart_tf.model.saving import CheckpointError, resolve_checkpoint
from hart_tf.train import distribute
from hart_tf.train import sources as datasets
from hart_tf.train import state as run_state
from hart_tf.train.checkpoints import CheckpointManager, check_writable, config_difference
from hart_tf.train.curriculum import collapse_warning
from hart_tf.train.optimizers import make_optimizer
from hart_tf.train.options import TrainOptions
from hart_tf.train.summaries import Summaries
from hart_tf.utils.files import write_json_atomic


def _jit(options: TrainOptions) -> bool:
    if options.run.jit_compile != "auto":
        return options.run.jit_compile == "true"
    # XLA on the TF CPU backend is 10-70x slower with the recurrent loop (measured).
    return keras.backend.backend() == "jax"


def _fit_verbosity(progress: int) -> int:
    """Keras' progress bar on a terminal; one line per epoch when the output is a file or a
    pipe (the bar's redraws would fill a log with control codes)."""
    if not progress:
        return 0
    return 1 if sys.stdout.isatty() else 2


def _runtime_options(model: HART, options: TrainOptions) -> None:
    """How to run (not what to compute): the flags of this run win over a checkpoint's."""
    model.unroll = model.rnn.unroll = options.run.unroll
    model.run_eagerly = options.run.run_eagerly
    model.jit_compile = _jit(options) and not options.run.run_eagerly


def _load_v1_weights(model: HART, config: HARTConfig) -> None:
    if config.v1 != "alexnet":
        return
    if config.alexnet_path:
        load_alexnet_weights(model.cell.v1, config.alexnet_path)
    else:
        print("warning: no --alexnet_dir: the AlexNet V1 starts from random weights",
              file=sys.stderr)


def build_model(options: TrainOptions) -> HART:
    """A new compiled HART (with the AlexNet weights when the config names them)."""
    distribute.setup(options)  # the device layout comes before any variable
    model = HART(options.config, seed=options.run.seed, unroll=options.run.unroll,
                 mixed_precision=options.run.mixed_precision)
    model.build()
    _load_v1_weights(model, options.config)
    o = options.optimizer
    optimizer = make_optimizer(o.optimizer, o.learning_rate, o.momentum, o.clip_norm,
                               o.clip_rms)
    model.compile(optimizer=optimizer, jit_compile=_jit(options) and not options.run.run_eagerly,
                  run_eagerly=options.run.run_eagerly)
    _runtime_options(model, options)
    return distribute.prepare_model(model)


def _init_from(model: HART, path: Path) -> None:
    """Copies every weight of the checkpoint at `path` into `model` (a new run's), in order;
    the optimizer, curriculum, step count and noise streams start afresh."""
    try:
        source = keras.saving.load_model(path, compile=False)
    except Exception as e:
        reason = run_state.load_error(e)
        raise CheckpointError(f"--init_from: cannot load {path}: {reason}") from None
    if not isinstance(source, HART):
        raise CheckpointError(f"--init_from: {path} holds a {type(source).__name__}, not a HART")
    # In creation order, as Keras' own loading matches them (paths carry name counters).
    mine = [v for v in model.weights if not run_state.is_seed_state(v)]
    theirs = [v for v in source.weights if not run_state.is_seed_state(v)]
    diff = config_difference(source.config.to_dict(), model.config.to_dict())
    shapes = [tuple(v.shape) for v in mine], [tuple(v.shape) for v in theirs]
    if shapes[0] != shapes[1]:
        what = diff or f"{len(theirs)} weights there, {len(mine)} here, or other shapes"
        raise CheckpointError(f"--init_from: {path} holds a different model: {what}")
    for v, w in zip(mine, theirs, strict=True):
        v.assign(w.numpy())
    print(f"Initialised from {path}" + (f" (its config differs: {diff})" if diff else ""))


def _eval_set(options: TrainOptions, split: str, n: int, length: int | None = None) -> dict:
    try:
        return sets.eval_set(options, split, n=n, length=length)
    except StopIteration:  # a loader's batch iterator had not one full batch
        length = length or options.schedule.curriculum_lengths[-1]
        raise ValueError(
            f"--eval_sequences={n}: the {options.data.dataset} {split} split has fewer "
            f"sequences of {length} frames; lower --eval_sequences"
        ) from None


def _restore(options: TrainOptions, manager: CheckpointManager):
    """(model, state, path) of the newest good checkpoint, or (None, None, None)."""
    for path, state in manager.candidates():
        diff = config_difference(state["config"], options.config.to_dict())
        if diff:
            raise CheckpointError(f"{path}: checkpoint from a different config: {diff}")
        options.schedule.curriculum().restore(state["curriculum"])  # same lengths?
        try:
            model = keras.saving.load_model(path, compile=True)
        except Exception as e:
            reason = run_state.load_error(e)
            print(f"warning: skipping checkpoint: {path}: cannot load ({reason})",
                  file=sys.stderr)
            continue
        _runtime_options(model, options)
        if "rng" in state:
            run_state.assign(run_state.seed_variables(model), state["rng"], "RNG states", path)
        return model, state, path
    return None, None, None


class _StepLogger(keras.callbacks.Callback):
    """Counts global steps, checkpoints every N steps and guards against bad updates."""

    def __init__(self, trainer: _Trainer):
        super().__init__()
        self.trainer = trainer
        self.good: list = []  # values of run_state.guarded_variables after the last good step

    def on_epoch_begin(self, epoch, logs=None):
        t = self.trainer
        model = self.model
        if t.resume_metrics is not None:
            # A mid-epoch resume: fit has just reset the metrics; continue the epoch's means.
            run_state.assign(run_state.running_metrics(model), t.resume_metrics,
                             "metric values", t.resumed_from)
            t.resume_metrics = None
        self.good = run_state.values(run_state.guarded_variables(model))

    def on_train_batch_begin(self, batch, logs=None):
        t = self.trainer
        o = t.options.optimizer
        if t.step <= o.warmup_steps:  # at warmup_steps: the full rate again
            self.model.optimizer.learning_rate.assign(o.rate_at(t.curriculum.length, t.step))

    def on_train_batch_end(self, batch, logs=None):
        t = self.trainer
        model = self.model  # under JAX, reading .model syncs the trainer state into variables
        t.step += 1
        t.epoch_step += 1
        logs = logs or {}
        t.log_step(logs, model)
        bad = int(model.optimizer.consecutive_bad.numpy())
        guarded = run_state.guarded_variables(model)
        if bad == 0:
            self.good = run_state.values(guarded)
            t.bad_since, t.bad_terms = None, set()
        else:
            t.note_bad_step(logs, model)
            # Roll back what the bad forward pass changed (NaN moving statistics would
            # poison every later checkpoint even though the weights were kept).
            run_state.assign(guarded, self.good, "guarded values", t.options.run_dir)
        if bad >= t.options.run.max_bad_steps:
            t.stop_after_bad_steps(bad)
            model.stop_training = True
            return
        last_of_epoch = t.epoch_step >= t.epoch_steps(t.curriculum.length)  # the end saves
        if t.step % t.options.run.checkpoint_every == 0 and bad == 0 and not last_of_epoch:
            t.save()

    def on_epoch_end(self, epoch, logs=None):
        t = self.trainer
        if t.data_error is not None:  # the batches stopped early: `run` re-raises the error
            self.model.stop_training = True
        elif t.stop_reason is None and t.end_epoch(logs):
            self.model.stop_training = True


class _Trainer:
    def __init__(self, options: TrainOptions):
        self.options = options
        self.curriculum = options.schedule.curriculum()
        self.step = 0
        self.epoch = 0
        self.epoch_step = 0
        self.best_iou = -1.0
        self.history: list[dict[str, Any]] = []
        self.stop_reason: str | None = None
        self.bad_since: int | None = None
        self.bad_terms: set[str] = set()
        self.resume_metrics: list | None = None
        self.resumed_from: Path | None = None
        self.data_error: Exception | None = None
        self.started = time.time()  # reset when `run` starts: the time budget counts from there
        self.out_of_time = False
        # Check every input before writing anything: a bad flag or file leaves no output.
        init_from = resolve_checkpoint(options.run.init_from, "--init_from") if (
            options.run.init_from) else None
        self.manager = CheckpointManager(options.run_dir, keep=options.run.keep_checkpoints)
        check_writable(options.log_dir, "--logdir")
        self.source = datasets.train_source(options)
        # Validation windows of --val_clips (with their clip names) or synthetic ones (None).
        self.val, self.val_clips = sets.clip_val_set(options) if options.data.val_clips else (
            _eval_set(options, "val", options.data.eval_sequences), None)
        distribute.setup(options)  # before a checkpoint is loaded, so it is laid out too
        self.model = None
        if options.run.resume:
            self.model, state, path = _restore(options, self.manager)
            if state is not None:
                self._resume(state, path)
        elif removed := self.manager.clear():
            # Starting afresh: an earlier run's checkpoints would otherwise be resumed later
            # or, when this run writes no best checkpoint, evaluated as its result.
            print(f"--noresume: removed {removed} checkpoint(s) of an earlier run from "
                  f"{options.run_dir}")
        if self.model is None:
            keras.utils.set_random_seed(options.run.seed)
            self.model = build_model(options)
            if init_from is not None:
                _init_from(self.model, init_from)
        elif init_from is not None:
            print(f"--init_from ignored: the run resumed from its own checkpoint in "
                  f"{options.run_dir}")
        self.model = distribute.prepare_model(self.model)
        self.manager = distribute.chief_writes(self.manager)  # one writer on several hosts
        self.tb = Summaries(options, self.val)  # TensorBoard, made at the first step

    def _resume(self, state: dict, path: Path) -> None:
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.epoch_step = int(state.get("epoch_step", 0))
        self.best_iou = float(state.get("best_iou", -1.0))
        self.history = list(state.get("history", []))
        self.curriculum.restore(state["curriculum"])
        self.resumed_from = path
        if self.epoch_step and state.get("metrics") is not None:
            self.resume_metrics = state["metrics"]
        print(f"Resumed {self.options.run_dir} at step {self.step} "
              f"(epoch {self.epoch}, T={self.curriculum.length}) from {path.name}")
        if differ := sets.data_mismatch(state.get("data"), self.options):
            print(f"warning: {path.name} was trained on other synthetic data: {differ}; "
                  "training goes on with this run's flags", file=sys.stderr)

    # ---- logging ------------------------------------------------------------------------

    def log_step(self, logs: dict, model) -> None:
        self.tb.on_step(self.step, model, self.curriculum)

    def note_bad_step(self, logs: dict, model) -> None:
        if self.bad_since is None:
            self.bad_since = self.step
        bad = {k for k, v in logs.items() if not math.isfinite(float(v))}
        terms = bad & set(model.loss_terms)
        if not terms and "loss" in bad:
            terms = {"total loss (learned weights or L2)"}
        self.bad_terms |= terms or {"gradient only (the loss was finite)"}

    def stop_after_bad_steps(self, bad: int) -> None:
        latest = self.manager.latest()
        kept = (f"the last good checkpoint {latest[0]} is kept and rerunning resumes from it"
                if latest else "no checkpoint was written before")
        self.stop_reason = (
            f"training stopped at step {self.step}: {bad} updates in a row had a non-finite "
            f"loss or gradient, from step {self.bad_since} on (non-finite: "
            f"{', '.join(sorted(self.bad_terms))}); {kept}"
        )

    # ---- checkpoints --------------------------------------------------------------------

    def state(self) -> dict:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "best_iou": self.best_iou,
            "curriculum": self.curriculum.state(),
            "config": self.options.config.to_dict(),
            "data": sets.data_record(self.options, self.source.clips),
            "data_batches": self.step,
            "history": self.history,
            "backend": keras.backend.backend(),
            "rng": run_state.values(run_state.seed_variables(self.model)),
            "metrics": (run_state.values(run_state.running_metrics(self.model))
                        if self.epoch_step else None),
        }

    def save(self, best: bool = False):
        self.manager.save(self.model, self.state(), best=best)

    # ---- the loop -----------------------------------------------------------------------

    def _batches(self, length: int, steps: int):
        """The next `steps` training batches; an error while making one (a corrupt frame,
        say) is kept and re-raised after `fit`, which would turn it into a multi-line
        TensorFlow error.

        The stream is closed when `fit` returns (`run` closes it; so does the end of the
        `steps`), so its render threads stop there instead of rendering batches that the
        next length would not use (the next `fit` restarts the stream at its own step)."""
        stream = self.source.batches(length, start=self.step)
        try:
            yield from itertools.islice(stream, steps)
        # Any error of the data code, re-raised unchanged once fit has returned.
        except Exception as e:
            self.data_error = e
        finally:
            stream.close()

    def end_epoch(self, logs: dict) -> bool:
        """Validation, checkpoint and curriculum at the end of an epoch (called from inside
        `fit`); True when this `fit` should stop: the curriculum grew or time is up."""
        o = self.options
        length = self.curriculum.length
        self.epoch += 1
        self.epoch_step = 0
        logs = {k: float(v) for k, v in (logs or {}).items()}
        scores: dict = {}  # at the training length and at the longest (for TensorBoard)
        val_logs = sets.validate(self.model, self.val, length, o.optimizer.batch_size,
                                 self.val_clips, scores)
        val = val_logs["val_iou"]  # at the training length
        logs.update(val_logs, val_iou_final_length=scores["final"]["mean_iou"])
        logs.update({"length": length, "epoch": self.epoch,
                     "step": self.step, "minutes": (time.time() - self.started) / 60,
                     "unix_time": time.time()})
        self.history.append(logs)
        if warning := collapse_warning(self.history):
            print(warning, file=sys.stderr)
        if o.run.progress:
            groups = "".join(f", {k.removeprefix('val_iou_')} {v:.3f}"
                             for k, v in val_logs.items() if k != "val_iou")
            print(f"  train IoU {logs.get('iou', float('nan')):.3f}  "
                  f"val IoU (T={length}) {val:.3f}" + (f" ({groups[2:]})" if groups else "")
                  + f", (T={scores['final_length']}) {logs['val_iou_final_length']:.3f}")
        # Only a validation at the longest length competes for the best checkpoint.
        is_best = self.curriculum.at_max and val > self.best_iou
        grew = self.curriculum.end_epoch(self._promotion_score(logs, length))
        self.tb.on_epoch(self.step, logs, scores)
        if is_best:
            self.best_iou = val
        self.save(best=is_best)
        if grew and o.run.progress:
            print(f"  curriculum: sequence length {length} -> {self.curriculum.length}")
        if o.schedule.max_minutes and time.time() - self.started > 60 * o.schedule.max_minutes:
            print(f"Time budget of {o.schedule.max_minutes} min reached.")
            self.out_of_time = True
        return grew or self.out_of_time

    def epoch_steps(self, length: int) -> int:
        """Steps of an epoch at `length`: --steps_per_epoch, or with --epoch_from_windows
        one pass over the augmented training windows (the original's epoch)."""
        if not self.options.schedule.epoch_from_windows:
            return self.options.schedule.steps_per_epoch
        sizes = self.__dict__.setdefault("_epoch_sizes", {})
        if length not in sizes:
            sizes[length] = self.source.epoch_steps(length)
            print(f"  epoch at T={length}: {sizes[length]} steps (all augmented windows)")
        return sizes[length]

    def _promotion_score(self, logs: dict, length: int) -> float | None:
        """The curriculum's score for this epoch: the running train IoU, or (test_mode, the
        original's) the IoU with training=False over a quarter epoch of training batches,
        computed only when a promotion check is due."""
        if self.options.schedule.curriculum_score != "test_mode":
            return logs.get("iou", 0.0)
        if not self.curriculum.check_due():
            return None
        n = max(1, self.epoch_steps(length) // 4)
        score = datasets.promotion_iou(self.model, self.source, length, n, self.step)
        logs["promotion_iou"] = score
        if self.options.run.progress:
            print(f"  test-mode IoU on {n} training batches (T={length}) {score:.3f}, "
                  f"needed {self.curriculum.current_threshold():.3f}")
        return score

    def run(self) -> dict:
        """Trains until `epochs`, the time budget or a stop: one `fit` per curriculum length
        (Keras' own epochs, so its per-call set-up and tear-down are paid once per length),
        or one epoch long when resuming mid-epoch."""
        o = self.options
        self.started = time.time()
        self.out_of_time = False
        logger = _StepLogger(self)
        try:
            while (self.epoch < o.schedule.epochs and self.stop_reason is None
                   and not self.out_of_time):
                length = self.curriculum.length
                lr = o.optimizer.rate_at(length, self.step)
                self.model.optimizer.learning_rate.assign(lr)
                if o.run.progress:
                    print(f"Sequence length T={length}  lr={lr:.3g}")
                use_function_for_length(self.model, "train", length)
                steps = self.epoch_steps(length) - self.epoch_step
                last = self.epoch + 1 if self.epoch_step else o.schedule.epochs
                opened = []  # the batch stream `fit` asks for; closed when `fit` returns

                def make(length=length, n=steps * (last - self.epoch), opened=opened):
                    opened.append(self._batches(length, n))
                    return opened[-1]

                with warnings.catch_warnings():
                    # The batches never run out; when they stop, self.data_error says why.
                    warnings.filterwarnings("ignore", message="Your input ran out of data")
                    try:
                        self.model.fit(
                            distribute.feed(make),
                            steps_per_epoch=steps,
                            initial_epoch=self.epoch,
                            epochs=last,
                            verbose=_fit_verbosity(o.run.progress),
                            shuffle=False,
                            callbacks=[logger],
                        )
                    except Exception:
                        if self.data_error is None:
                            raise
                    finally:
                        for stream in opened:
                            with contextlib.suppress(ValueError):  # still running: GC ends it
                                stream.close()
                if self.data_error is not None:
                    raise self.data_error
            if self.stop_reason is None and self.manager.best() is None:
                self.save(best=True)
        finally:
            self.tb.flush()  # `train` adds the test scores, then closes it
        return {"step": self.step, "epoch": self.epoch, "length": self.curriculum.length,
                "history": self.history, "stopped": self.stop_reason,
                "minutes": (time.time() - self.started) / 60}


def train(options: TrainOptions) -> dict:
    """Trains (or resumes) a HART and returns a summary with the final test evaluation.

    When the NaN guard stops training, the summary's `stopped` holds the reason, `test` is
    None and `checkpoint` is the last good checkpoint (or None).
    """
    trainer = _Trainer(options)
    summary = trainer.run()
    if summary["stopped"]:
        latest = trainer.manager.latest()
        summary["test"] = None
        summary["checkpoint"] = str(latest[0]) if latest else None
    else:
        best = trainer.manager.best()
        model = keras.saving.load_model(best[0]) if best else trainer.model
        test = _eval_set(options, "test", options.data.eval_sequences, options.data.test_steps + 1)
        result = evaluate_model(model, test, batch_size=options.optimizer.batch_size)
        summary["test"] = {k: v for k, v in result.items() if k != "outputs"}
        summary["checkpoint"] = str(best[0]) if best else None
        if trainer.val_clips is not None:  # the chosen model on the whole validation windows
            summary["val_clips"] = sets.validate(model, trainer.val, None,
                                                  options.optimizer.batch_size, trainer.val_clips)
    trainer.tb.finish(trainer.step, summary["test"], trainer.model, trainer.curriculum.length)
    summary["data"] = sets.data_record(options, trainer.source.clips)
    if trainer.source.clips is not None:
        clips = trainer.source.clips
        summary["train_clips"] = {"dir": str(clips.root), "trained_on": clips.names,
                                  "held_out": clips.held_out()}
    write_json_atomic(options.run_dir / "summary.json", summary, indent=1, default=float)
    return summary
