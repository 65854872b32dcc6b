"""The trainer's TensorBoard hook: it imports TensorFlow only when logging starts.

`Summaries` forwards to `hart_tf.train.tensorboard.TensorBoardLogger`, made at the first
call, so a run that fails on bad input writes no event file, and the JAX-only machine (no
TensorFlow) trains without logging after one warning that says what it still gets.
"""

from __future__ import annotations

import sys

OFF_MESSAGE = ("warning: TensorBoard logging is off ({reason}): no event files (no per-step "
               "scalars, histograms, images or hparams); the epochs' validation scores and the "
               "test scores still go to the output and to summary.json")


class Summaries:
    """Lazily made TensorBoard logger; every method is a no-op while logging is off.

    Args:
        options: the run's `TrainOptions`.
        val: the validation set (stacked arrays), for the tracking pictures.
    """

    def __init__(self, options, val: dict):
        self.options = options
        self.val = val
        self.logger = None
        self.off = False

    def _get(self):
        if self.logger is None and not self.off:
            try:
                # TensorBoard's writer needs TensorFlow: imported only when logging starts.
                from hart_tf.train.tensorboard import TensorBoardLogger

                self.logger = TensorBoardLogger(self.options, self.val)
            except ImportError as e:
                self.off = True
                print(OFF_MESSAGE.format(reason=e), file=sys.stderr)
        return self.logger

    def on_step(self, step: int, model, curriculum) -> None:
        if (logger := self._get()) is not None:
            logger.on_step(step, model, curriculum)

    def on_epoch(self, step: int, logs: dict, scores: dict) -> None:
        if (logger := self._get()) is not None:
            logger.on_epoch(step, logs, scores)

    def flush(self) -> None:
        if self.logger is not None:
            self.logger.writer.flush()

    def finish(self, step: int, test: dict | None, model, length: int) -> None:
        """The test scores (None: none) and the last step's pictures; closes the file."""
        if self.logger is not None:
            self.logger.on_test(step, test, model, length)
            self.logger.close()
