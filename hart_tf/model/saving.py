"""Saved HART models: loading a `.keras` file and finding the checkpoint a path names.

A checkpoint is two files: `<tag>.keras` (model and optimizer, Keras' own format) and
`<tag>.json` (training state, the model config and the SHA-256 of the `.keras` file); the
tags are `ckpt-<step>` and `best` (`hart_tf.train.checkpoints` writes them).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path

import keras

from hart_tf import pretrained
from hart_tf.model import hart  # noqa: F401  (registers HART and its layers with Keras)

FORMAT = "hart_tf-checkpoint/1"
_STEP_RE = re.compile(r"^ckpt-(\d+)\.json$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (one-line message)."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_state(keras_path: str | os.PathLike) -> dict:
    """The training state saved beside checkpoint `keras_path`, after checking that the pair
    is whole and ours."""
    keras_path = Path(keras_path)
    json_path = keras_path.with_suffix(".json")
    try:
        state = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not valid JSON"
        raise CheckpointError(f"{json_path}: unreadable checkpoint state ({reason})") from None
    if not isinstance(state, dict) or "sha256" not in state or "config" not in state:
        raise CheckpointError(f"{json_path}: not a hart_tf checkpoint")
    if not keras_path.exists():
        raise CheckpointError(f"{keras_path}: missing (its state file exists)")
    if sha256(keras_path) != state["sha256"]:
        raise CheckpointError(f"{keras_path}: truncated or modified (checksum mismatch)")
    return state


def _checkpoint_steps(directory: Path) -> list[int]:
    steps = []
    for p in directory.glob("ckpt-*.json"):
        m = _STEP_RE.match(p.name)
        if m:
            steps.append(int(m.group(1)))
    return sorted(steps)


def trained_data(keras_path: str | os.PathLike) -> dict | None:
    """The data record saved beside a checkpoint (`hart_tf.eval.sets.data_record`), or None
    for a bare `.keras` file or a checkpoint written before runs recorded their data."""
    try:
        state = json.loads(Path(keras_path).with_suffix(".json").read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    data = state.get("data") if isinstance(state, dict) else None
    return data if isinstance(data, dict) else None


def resolve_checkpoint(path: str | os.PathLike, flag: str = "--model") -> Path:
    """A `.keras` file, a run folder (its best checkpoint, else its latest) or `pretrained`
    (the model shipped in the package, `hart_tf.pretrained`); errors name `flag`."""
    if pretrained.is_pretrained(path):
        return pretrained.path()
    p = Path(path)
    if p.is_dir():
        tags = [f"ckpt-{step}" for step in reversed(_checkpoint_steps(p))]
        if (p / "best.json").exists():
            tags.insert(0, "best")
        for tag in tags:  # the best, else the newest good step checkpoint
            try:
                read_state(p / f"{tag}.keras")
            except CheckpointError as e:
                print(f"warning: skipping checkpoint: {e}", file=sys.stderr)
                continue
            return p / f"{tag}.keras"
        raise CheckpointError(f"{flag}: no checkpoint found in {p}")
    if not p.exists():
        raise CheckpointError(f"{flag}: {p} does not exist")
    if p.suffix != ".keras":
        raise CheckpointError(f"{flag}: {p} is not a .keras file or a run folder")
    return p


def load_model(path: str | os.PathLike, compile: bool = False) -> keras.Model:
    """Loads a HART from a `.keras` file, a run folder (its best checkpoint, else its
    latest) or `pretrained` (the model shipped in the package). `compile=True` also
    restores the optimizer: import `hart_tf.train` first,
    which registers the guarded optimizers."""
    return keras.saving.load_model(resolve_checkpoint(path), compile=compile)
