"""Atomic, verified checkpoints: the last K step checkpoints plus the best one.

A checkpoint is two files: `ckpt-<step>.keras` (model and optimizer, Keras' own format) and
`ckpt-<step>.json` (training state: step, epoch, curriculum, RNG streams, the model config
and the SHA-256 of the `.keras` file). Both are written under a temporary name and renamed,
the JSON last, so a checkpoint either exists whole or not at all; loading re-hashes the
`.keras` file, and a truncated or foreign checkpoint is reported and skipped in favour of
the previous good one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

_STEP_RE = re.compile(r"^ckpt-(\d+)\.json$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (one-line message)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def config_difference(saved: dict, current: dict) -> str | None:
    """Names the first model-config field that differs, as the flag a user would change."""
    for key in sorted(set(saved) | set(current)):
        if key in ("name", "alexnet_path"):
            continue
        a, b = saved.get(key), current.get(key)
        if isinstance(a, list | tuple):
            a = list(a)
        if isinstance(b, list | tuple):
            b = list(b)
        if a != b:
            return f"--{key} is {b!r} here but {a!r} in the checkpoint"
    return None


class CheckpointManager:
    """Saves and finds checkpoints of one run in `directory`.

    Args:
        directory: the run's checkpoint folder (created if missing).
        keep: how many step checkpoints to keep (the best is kept apart).
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 3):
        self.directory = Path(directory)
        self.keep = int(keep)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise CheckpointError(
                f"--checkpoint_dir: cannot write to {self.directory}: {e.strerror}"
            ) from None

    def _paths(self, tag: str) -> tuple[Path, Path]:
        return self.directory / f"{tag}.keras", self.directory / f"{tag}.json"

    def save(self, model, state: dict[str, Any], best: bool = False) -> Path:
        """Writes `ckpt-<step>` (and `best` when asked) atomically; prunes old ones."""
        step = int(state["step"])
        tags = [f"ckpt-{step}"] + (["best"] if best else [])
        for tag in tags:
            keras_path, json_path = self._paths(tag)
            tmp = self.directory / f".tmp-{tag}.keras"
            model.save(tmp)
            _fsync_file(tmp)
            os.replace(tmp, keras_path)
            _write_json_atomic(json_path, {**state, "sha256": _sha256(keras_path)})
        self._prune()
        return self._paths(tags[0])[0]

    def _steps(self) -> list[int]:
        steps = []
        for p in self.directory.iterdir():
            m = _STEP_RE.match(p.name)
            if m:
                steps.append(int(m.group(1)))
        return sorted(steps)

    def _prune(self) -> None:
        for step in self._steps()[: -self.keep]:
            for p in self._paths(f"ckpt-{step}"):
                p.unlink(missing_ok=True)
        for p in self.directory.glob(".tmp-*"):
            p.unlink(missing_ok=True)

    def verify(self, tag: str) -> dict:
        """Returns the state of checkpoint `tag` after checking it is whole and ours."""
        keras_path, json_path = self._paths(tag)
        try:
            state = json.loads(json_path.read_text())
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{json_path}: unreadable checkpoint state ({e})") from None
        if not isinstance(state, dict) or "sha256" not in state or "config" not in state:
            raise CheckpointError(f"{json_path}: not a hart_tf checkpoint")
        if not keras_path.exists():
            raise CheckpointError(f"{keras_path}: missing (its state file exists)")
        if _sha256(keras_path) != state["sha256"]:
            raise CheckpointError(f"{keras_path}: truncated or modified (checksum mismatch)")
        return state

    def latest(self) -> tuple[Path, dict] | None:
        """The newest good step checkpoint, skipping (and reporting) broken ones."""
        for step in reversed(self._steps()):
            tag = f"ckpt-{step}"
            try:
                return self._paths(tag)[0], self.verify(tag)
            except CheckpointError as e:
                print(f"warning: skipping checkpoint: {e}", file=sys.stderr)
        return None

    def best(self) -> tuple[Path, dict] | None:
        if not self._paths("best")[1].exists():
            return None
        return self._paths("best")[0], self.verify("best")


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A `.keras` file, or a run folder (its best checkpoint, else its latest)."""
    p = Path(path)
    if p.is_dir():
        manager = CheckpointManager.__new__(CheckpointManager)
        manager.directory, manager.keep = p, 0
        found = manager.best() or manager.latest()
        if found is None:
            raise CheckpointError(f"--checkpoint: no checkpoint found in {p}")
        return found[0]
    if not p.exists():
        raise CheckpointError(f"--checkpoint: {p} does not exist")
    if p.suffix != ".keras":
        raise CheckpointError(f"--checkpoint: {p} is not a .keras file or a run folder")
    return p
