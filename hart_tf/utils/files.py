"""Atomic writes: a file appears whole or not at all (temporary name beside it, then rename).

A crash mid-write leaves no truncated file, so a resumed run may trust any file it finds.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable
from typing import IO, Any


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], Any],
                 fsync: bool = False) -> None:
    """Calls `write(file)` on a temporary binary file beside `path`, then renames it onto
    `path` (creating the folder). `fsync` flushes it to disk before the rename."""
    path = os.path.abspath(os.fspath(path))
    folder, base = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{base}.{uuid.uuid4().hex[:12]}.tmp")
    # os.open with 0o666 lets the umask decide permissions, as a plain open() would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str, fsync: bool = False) -> None:
    """`text` (UTF-8) written atomically to `path`."""
    write_atomic(path, lambda f: f.write(text.encode()), fsync=fsync)


def write_json_atomic(path: str | os.PathLike, data: Any, fsync: bool = False, **kwargs) -> None:
    """`json.dumps(data, **kwargs)` written atomically to `path`."""
    write_text_atomic(path, json.dumps(data, **kwargs), fsync=fsync)
