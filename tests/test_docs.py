"""The documents describe the project as it is: no development history, no machine paths.

Every tracked text file is searched for references to the history of its development
(numbered work sessions, issue numbers, owners, lent machines) and for absolute paths of the
machines it was developed on; README.md and RESULTS.md are checked against their size limits.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# (what, pattern). A `tf.compat.v1.Session` or pytest's `scope="session"` is code, not
# history: only a numbered session or a phrase about one is.
FORBIDDEN = [
    ("a numbered session", re.compile(r"\bsessions?[ _-]?\d+", re.IGNORECASE)),
    ("a work session",
     re.compile(r"\b(?:this|that|last|next|previous|earlier|later) session\b", re.IGNORECASE)),
    ("an issue number", re.compile(r"\bissues? ?#?\d+", re.IGNORECASE)),
    ("a #number in prose", re.compile(r"(?<![\w&#/`'\"])#\d+\b")),
    ("an owner", re.compile(r"\bowners?\b", re.IGNORECASE)),
    ("a lent machine", re.compile(r"nvidia-h[12]00-x\d|\blent\b", re.IGNORECASE)),
    ("a machine path", re.compile(r"(?<![\w.~-])/(?:work|tmp|root)/")),
]
LIMITS = {"README.md": 12_000, "RESULTS.md": 25_000}


def _tracked_text_files() -> list[Path]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    this = Path(__file__).resolve()
    files = []
    for name in filter(None, names):
        path = REPO / name
        if not path.is_file() or path.resolve() == this:
            continue
        data = path.read_bytes()
        if b"\0" in data:  # binary (images)
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        files.append(path)
    return files


def find_history(text: str) -> list[tuple[int, str, str]]:
    """(line number, what, matched text) of every forbidden reference in `text`."""
    hits = []
    for number, line in enumerate(text.splitlines(), 1):
        for what, pattern in FORBIDDEN:
            hits += [(number, what, m.group(0)) for m in pattern.finditer(line)]
    return hits


def test_patterns_catch_history_and_spare_code():
    caught = ("see session 9", "Session10 records", "sessions 5-9", "(issue 4, bar 1)",
              "fixed in #12", "the owner says", "ran on nvidia-h100-x1",
              "no machine was lent", "--checkpoint_dir=/tmp/ck", "/work/shared/data",
              "in this session we")
    for text in caught:
        assert find_history(text), text
    spared = ("sess = tf.compat.v1.Session()", '@pytest.fixture(scope="session")',
              "once per test session", "shape (B, 4)  # 4 numbers", "color = '#000000'",
              "../shared/data/real_clips", "a.owner_id = 3")
    for text in spared:
        assert not find_history(text), text


def test_tracked_files_have_no_history_or_machine_paths():
    problems = []
    for path in _tracked_text_files():
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(REPO)
        problems += [f"{rel}:{n}: {what}: {found!r}" for n, what, found in find_history(text)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_document_size(name):
    text = (REPO / name).read_text(encoding="utf-8")
    assert len(text) <= LIMITS[name], f"{name}: {len(text):,} characters > {LIMITS[name]:,}"
