"""Atomic, verified checkpoints: the last K step checkpoints plus the best one.

A checkpoint is two files: `ckpt-<step>.keras` (model and optimizer, Keras' own format) and
`ckpt-<step>.json` (training state: step, epoch, curriculum, RNG streams, running metrics,
the model config and the SHA-256 of the `.keras` file). Both are written under a temporary
name and renamed, the JSON last, so a checkpoint either exists whole or not at all; loading
re-hashes the `.keras` file, and a truncated or foreign checkpoint is reported and skipped in
favour of the previous good one.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hart_tf.model.config import REMOVED_FIELDS, HARTConfig
from hart_tf.model.saving import FORMAT, CheckpointError, read_state, sha256
from hart_tf.utils.files import write_json_atomic

_STEP_RE = re.compile(r"^ckpt-(\d+)\.(json|keras)$")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    """Flushes a finished temporary file to disk before it is renamed into place."""
    _fsync(path)


def check_writable(directory: str | os.PathLike, flag: str) -> Path:
    """Checks that `directory` exists or can be created, and is writable, without creating it.

    Raises:
        CheckpointError: naming `flag` (e.g. "--checkpoint_dir") and the reason.
    """
    directory = Path(directory).absolute()
    probe = directory
    while not probe.exists():
        if probe.is_symlink():  # a dangling link: mkdir would fail
            raise CheckpointError(f"{flag}: cannot create {directory}: {probe} is a broken link")
        probe = probe.parent
    if not probe.is_dir():
        raise CheckpointError(f"{flag}: cannot create {directory}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CheckpointError(f"{flag}: cannot write to {directory}: permission denied on {probe}")
    return directory


def config_difference(saved: dict, current: dict) -> str | None:
    """Names the first model-config field that differs, as the flag a user would change."""
    # A field newer than the checkpoint had its default there; a field removed since holds
    # the one value still supported.
    defaults = {**REMOVED_FIELDS, **HARTConfig().to_dict()}
    for key in sorted(set(saved) | set(current)):
        if key in ("name", "alexnet_path"):
            continue
        a, b = saved.get(key, defaults.get(key)), current.get(key, defaults.get(key))
        if isinstance(a, list | tuple):
            a = list(a)
        if isinstance(b, list | tuple):
            b = list(b)
        if a != b:
            return f"--{key} is {_flag_value(b)} here but {_flag_value(a)} in the checkpoint"
    return None


def _flag_value(v) -> str:
    return ",".join(str(x) for x in v) if isinstance(v, list) else repr(v)


class CheckpointManager:
    """Saves and finds checkpoints of one run in `directory`.

    The folder is checked for writability at once but created at the first save, so a run
    that fails on bad input leaves nothing behind.

    Args:
        directory: the run's checkpoint folder.
        keep: how many step checkpoints to keep (the best is kept apart).
        flag: the flag that named the folder, for error messages.
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 3,
                 flag: str = "--checkpoint_dir"):
        self.directory = check_writable(directory, flag)
        self.keep = int(keep)
        self.flag = flag

    def _paths(self, tag: str) -> tuple[Path, Path]:
        return self.directory / f"{tag}.keras", self.directory / f"{tag}.json"

    def save(self, model, state: dict[str, Any], best: bool = False) -> Path:
        """Writes `ckpt-<step>` (and a copy as `best` when asked) atomically; prunes old ones."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CheckpointError(
                f"{self.flag}: cannot create {self.directory}: {e.strerror}") from None
        step = int(state["step"])
        keras_path, json_path = self._paths(f"ckpt-{step}")
        tmp = self.directory / f".tmp-ckpt-{step}.keras"
        model.save(tmp)
        _fsync_file(tmp)
        os.replace(tmp, keras_path)
        record = {**state, "format": FORMAT, "sha256": sha256(keras_path)}
        write_json_atomic(json_path, record, fsync=True, indent=1, sort_keys=True)
        if best:
            best_keras, best_json = self._paths("best")
            tmp = self.directory / ".tmp-best.keras"
            shutil.copyfile(keras_path, tmp)
            _fsync_file(tmp)
            os.replace(tmp, best_keras)
            write_json_atomic(best_json, record, fsync=True, indent=1, sort_keys=True)
        try:
            _fsync(self.directory)  # makes the renames themselves durable
        except OSError:  # some filesystems cannot sync a folder; the renames still happened
            pass
        self._prune()
        return keras_path

    def _steps(self, suffix: str = "json") -> list[int]:
        if not self.directory.is_dir():
            return []
        steps = []
        for p in self.directory.iterdir():
            m = _STEP_RE.match(p.name)
            if m and m.group(2) == suffix:
                steps.append(int(m.group(1)))
        return sorted(steps)

    def _prune(self, keep: int | None = None) -> None:
        """Deletes all but the newest `keep` (default: `self.keep`) step checkpoints, half-
        written saves and temporary files."""
        keep = self.keep if keep is None else keep
        kept = self._steps()[-keep:] if keep > 0 else []
        for step in self._steps():
            if step not in kept:
                for p in self._paths(f"ckpt-{step}"):
                    p.unlink(missing_ok=True)
        # A .keras without its .json is a save killed before its state was written.
        for step in set(self._steps("keras")) - set(kept):
            self._paths(f"ckpt-{step}")[0].unlink(missing_ok=True)
        for pattern in (".tmp-*", ".*.tmp"):  # saves of .keras files, of .json files
            for p in self.directory.glob(pattern):
                p.unlink(missing_ok=True)

    def clear(self) -> int:
        """Deletes every checkpoint of the run (steps, best, unfinished saves); returns how
        many step and best checkpoints there were. Other files in the folder are kept."""
        if not self.directory.is_dir():
            return 0
        found = len(set(self._steps()) | set(self._steps("keras")))
        best = any(p.exists() for p in self._paths("best"))
        self._prune(keep=0)
        for p in self._paths("best"):
            p.unlink(missing_ok=True)
        return found + int(best)

    def verify(self, tag: str) -> dict:
        """Returns the state of checkpoint `tag` after checking it is whole and ours."""
        return read_state(self._paths(tag)[0])

    def candidates(self) -> Iterator[tuple[Path, dict]]:
        """Good step checkpoints, newest first; broken ones are reported and skipped."""
        for step in reversed(self._steps()):
            tag = f"ckpt-{step}"
            try:
                state = self.verify(tag)
            except CheckpointError as e:
                print(f"warning: skipping checkpoint: {e}", file=sys.stderr)
                continue
            yield self._paths(tag)[0], state

    def latest(self) -> tuple[Path, dict] | None:
        """The newest good step checkpoint, skipping (and reporting) broken ones."""
        return next(self.candidates(), None)

    def best(self) -> tuple[Path, dict] | None:
        if not self._paths("best")[1].exists():
            return None
        return self._paths("best")[0], self.verify("best")


