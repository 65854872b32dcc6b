"""Shared plumbing for the command-line entry points."""

from __future__ import annotations

import functools
import os
import sys
import traceback

from hart_tf import flags as hflags
from hart_tf.config import HARTConfig

FLAGS = hflags.FLAGS

# User mistakes are reported as one line; anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError)
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _raised_by_us(error: BaseException) -> bool:
    """True when the innermost frame of the error is hart_tf code (a message we wrote).

    A ValueError from deep inside Keras or TensorFlow is a bug, not a user mistake: it keeps
    its traceback instead of being cut to one misleading line.
    """
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and os.path.abspath(frames[-1].filename).startswith(_PACKAGE_DIR)


def one_line_errors(main):
    """Wraps `main(argv)` so a user error prints `error: <message>` and exits with 2."""

    @functools.wraps(main)
    def wrapper(argv):
        try:
            return main(argv)
        except USER_ERRORS as e:
            if not _raised_by_us(e):
                raise
            message = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def reject_extra_args(argv) -> None:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])} (flags start with --)")


def _pair(name: str, value) -> tuple[int, int] | None:
    if not value:
        return None
    try:
        pair = tuple(int(v) for v in value)
    except ValueError:
        raise ValueError(f"--{name} must be two integers H,W, got {','.join(value)}") from None
    if len(pair) != 2 or min(pair) <= 0:
        raise ValueError(f"--{name} must be two positive integers H,W, got {','.join(value)}")
    return pair


def config_from_flags() -> HARTConfig:
    """The model config: the preset for --config (or --dataset) with flag overrides."""
    preset = FLAGS.config or {"kitti": "kitti", "kth": "kth"}.get(FLAGS.dataset, "small")
    overrides = {
        "learned_sigma": FLAGS.learned_sigma,
        "appearance_attention": FLAGS.appearance_attention,
        "attention_loss": FLAGS.attention_loss,
        "appearance_loss": FLAGS.appearance_loss,
        "adaptive_loss": FLAGS.adaptive_loss,
        "l2_weight": FLAGS.l2_weight,
    }
    for name in ("rnn_units", "keep_prob", "zoneout"):
        if getattr(FLAGS, name) is not None:
            overrides[name] = getattr(FLAGS, name)
    for name in ("image_size", "glimpse_size"):
        pair = _pair(name, getattr(FLAGS, name))
        if pair:
            overrides[name] = pair
    if FLAGS.alexnet_dir:
        overrides["alexnet_path"] = f"{FLAGS.alexnet_dir.rstrip('/')}/bvlc_alexnet.npy"
    try:
        return HARTConfig.from_preset(preset, **overrides)
    except ValueError as e:
        msg = str(e)
        if msg.startswith("glimpse_size") and "larger than" in msg:
            msg = "--" + msg
        raise ValueError(msg) from None
