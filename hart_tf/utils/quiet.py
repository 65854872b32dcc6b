"""Importing TensorFlow without its C++ start-up log.

TensorFlow 2.21 prints about eight lines on stderr when it is imported (oneDNN, CUDA, CPU
features), some before its logging reads TF_CPP_MIN_LOG_LEVEL, so the variable alone does not
hide them. `import_tensorflow_quietly` imports it, and runs one op, with the process's stderr
(file descriptor 2) pointed at /dev/null, unless the user set TF_CPP_MIN_LOG_LEVEL.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def silenced_stderr() -> Iterator[None]:
    """Points file descriptor 2 at /dev/null (C++ logging included) for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow (when installed) with its start-up log hidden; a no-op when the user
    set TF_CPP_MIN_LOG_LEVEL themselves or TensorFlow is already imported."""
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return
    if importlib.util.find_spec("tensorflow") is None:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    with silenced_stderr():
        import tensorflow as tf  # the import and the first op are what print

        tf.constant(0.0)
