"""Shared plumbing for the command-line entry points.

Every entry point fails with one line, `error: <what to fix>`, never a stack trace, for a
mistake a user can make: `run(main)` parses flags that way (a bad value, an unknown flag
with the flagfile and line it came from, a missing flagfile) and `one_line_errors` wraps
`main` for the errors raised while it runs. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence

from absl import app
from absl import flags as absl_flags
from absl import logging as absl_logging

from hart_tf.cli import flags as hflags
from hart_tf.model.config import HARTConfig
from hart_tf.utils import quiet

FLAGS = hflags.FLAGS

# User mistakes are reported as one line; anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError)
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # hart_tf/
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class Stop(Exception):
    """Ends a command with a one-line message and an exit code (e.g. training diverged)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(" ".join(str(message).split()))
        self.code = code


def _raised_by_us(error: BaseException) -> bool:
    """True when the innermost frame of the error is hart_tf code (a message we wrote).

    A ValueError from deep inside Keras or TensorFlow is a bug, not a user mistake: it keeps
    its traceback instead of being cut to one misleading line.
    """
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and os.path.abspath(frames[-1].filename).startswith(_PACKAGE_DIR)


def user_message(e: BaseException) -> str | None:
    """The one-line message of a user error, or None for a bug (which keeps its traceback).

    Our messages are one line; a several-line one comes from a library (Keras re-raises its
    own errors with its frames cut, so they look raised by us) and is a bug.
    """
    if not isinstance(e, USER_ERRORS) or not _raised_by_us(e):
        return None
    text = str(e).strip()
    return text if text and "\n" not in text else None


def one_line_errors(main: Callable) -> Callable:
    """Wraps `main(argv)`: a user error prints `error: <message>` and exits with 2, a `Stop`
    prints its message and exits with its code, Ctrl-C exits with 130."""

    @functools.wraps(main)
    def wrapper(argv):
        try:
            return main(argv)
        except Stop as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(e.code)
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)
        except USER_ERRORS as e:
            message = user_message(e)
            if message is None:
                raise
            print(f"error: {message}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)

    return wrapper


# ---- flags ------------------------------------------------------------------------------


def _flagfiles(argv: Sequence[str]) -> list[str]:
    out = []
    for i, arg in enumerate(argv):
        if arg.startswith("--flagfile="):
            out.append(arg.split("=", 1)[1])
        elif arg == "--flagfile" and i + 1 < len(argv):
            out.append(argv[i + 1])
    return out


def _find_flag_line(argv: Sequence[str], name: str, seen: set | None = None):
    """(flagfile, line number) where `--name` is set, searching nested flagfiles."""
    seen = set() if seen is None else seen
    pattern = re.compile(rf"^--{re.escape(name)}(=|\s|$)")
    for path in _flagfiles(argv):
        if path in seen:
            continue
        seen.add(path)
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for n, line in enumerate(lines, start=1):
            if pattern.match(line.strip()):
                return path, n
        nested = _find_flag_line([line.strip() for line in lines], name, seen)
        if nested:
            return nested
    return None


def flag_error_message(e: absl_flags.Error, argv: Sequence[str]) -> str:
    """absl's flag-parsing error as one line that says where the bad flag came from."""
    text = " ".join(str(e).split())
    if isinstance(e, absl_flags.UnrecognizedFlagError):
        name = e.flagname
        message = f"unknown flag --{name}"
        hint = re.search(r"Did you mean: (.+?) ?\?$", text)
        if hint:
            names = [f"--{s.strip()}" for s in hint.group(1).split(",") if s.strip()]
            message += f" (did you mean {' or '.join(names)}?)"
        where = _find_flag_line(argv, name)
        return f"{where[0]}:{where[1]}: {message}" if where else message
    if isinstance(e, absl_flags.CantOpenFlagFileError):
        for path in _flagfiles(argv):
            if not os.path.isfile(path):
                return f"--flagfile: {path}: no such file"
        return text.removeprefix("ERROR:: ")
    return text


def parse_flags(argv: Sequence[str]) -> list[str]:
    """Parses `argv` into FLAGS; a flag error prints one line and exits with 2."""
    try:
        return FLAGS(list(argv))
    except absl_flags.Error as e:
        print(f"error: {flag_error_message(e, argv)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def quiet_tensorflow() -> None:
    """Hides TensorFlow's C++ start-up log and JAX's INFO lines unless --verbose asks for
    them (or the user set TF_CPP_MIN_LOG_LEVEL): TensorFlow is imported here, quietly, when
    it is installed (TensorBoard logging imports it on the JAX backend too)."""
    if FLAGS.verbose:
        return
    absl_logging.set_verbosity(absl_logging.WARNING)
    quiet.import_tensorflow_quietly()


def run(main: Callable) -> None:
    """`absl.app.run(main)` with one-line flag errors and a quiet TensorFlow."""

    def main_quietly(argv):
        quiet_tensorflow()
        return main(argv)

    app.run(main_quietly, flags_parser=parse_flags)


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
    overrides = {name: getattr(FLAGS, name) for name in (
        "learned_sigma", "appearance_attention", "attention_loss", "appearance_loss",
        "adaptive_loss")}
    if FLAGS.rnn_units is not None:
        overrides["rnn_units"] = FLAGS.rnn_units
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
        if msg.startswith("glimpse_size") and ("larger than" in msg or "divisible" in msg):
            msg = "--" + msg
        raise ValueError(msg) from None
