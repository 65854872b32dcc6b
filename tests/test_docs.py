"""The documents describe the project as it is: no development history, no machine paths.

Every tracked text file is searched for references to the history of its development
(numbered work sessions, issue numbers, owners, lent machines) and for absolute paths of the
machines it was developed on; README.md and RESULTS.md are checked against their size limits.
The train, evaluate, track and export command lines of README.md, docs/ and the flagfile
headers use only flags the package defines, and flagfiles that exist.
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
    # Written with a "~" that is removed before matching, so that this file does not itself
    # carry the references it forbids.
    caught = [text.replace("~", "") for text in (
        "see sess~ion 9", "Sess~ion10 records", "sess~ions 5-9", "(iss~ue 4, bar 1)",
        "fixed in #~12", "the own~er says", "ran on nvidia-h~100-x1", "no machine was le~nt",
        "--checkpoint_dir=/t~mp/ck", "/wo~rk/data", "in this sess~ion we")]
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


# --- flags on the package's command lines ---------------------------------------------------
# README, docs/ and the comment headers of flags/*.cfg show commands of the package; each
# `--name` on such a command must be a flag the package defines (hart_tf.cli.flags, read at
# run time, plus absl's own). Commands of tools/ and experiments/ scripts define their own
# flags and are not checked here.

COMMAND = re.compile(r"(?:python3? -m hart_tf\.(?:train|evaluate|track|export)|"
                     r"(?<![\w/.-])hart-(?:train|evaluate|track|export))\b")
FLAG = re.compile(r"(?<![\w-])--([A-Za-z][\w-]*)(?:=(\S*))?")
# Where a command ends on its line: a shell comment, `&&`, `;`, a pipe, or the next command.
COMMAND_END = re.compile(r"\s#|&&|;|\|")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`([^`]+)`")


def _command_documents() -> list[Path]:
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    return [p for p in docs if p.is_file()] + sorted((REPO / "flags").glob("*.cfg"))


def _snippets(path: Path, text: str) -> list[tuple[int, str]]:
    """(line number, text) of each piece of shell: the comment lines of a flagfile, the lines
    of a fenced block, inline code spans; backslash continuations joined."""
    pieces: list[tuple[int, str]] = []
    if path.suffix == ".cfg":
        for n, line in enumerate(text.splitlines(), 1):
            if line.lstrip().startswith("#"):
                pieces.append((n, line.lstrip()[1:]))
    else:
        for block in FENCE.finditer(text):
            first = text.count("\n", 0, block.start()) + 1
            pieces += [(first + i, line) for i, line in enumerate(block.group(0).splitlines())]
        prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
        for span in INLINE.finditer(prose):
            pieces.append((prose.count("\n", 0, span.start()) + 1, " ".join(span.group(1).split())))
    joined, pending = [], None
    for n, line in pieces:
        if pending is not None:
            n, line = pending[0], pending[1] + " " + line.strip()
        if line.rstrip().endswith("\\"):
            pending = (n, line.rstrip()[:-1])
            continue
        pending = None
        joined.append((n, line))
    return joined


def package_command_flags(path: Path, text: str) -> list[tuple[int, str, str | None]]:
    """(line number, name, value or None) of every `--name[=value]` on a package command
    line in `text`."""
    found = []
    for n, snippet in _snippets(path, text):
        starts = [m.end() for m in COMMAND.finditer(snippet)]
        for i, start in enumerate(starts):
            command = snippet[start:starts[i + 1] if i + 1 < len(starts) else len(snippet)]
            end = COMMAND_END.search(command)
            command = command[:end.start()] if end else command
            found += [(n, m.group(1), m.group(2)) for m in FLAG.finditer(command)]
    return found


def _defined_flags() -> set[str]:
    from absl import app  # noqa: F401  (absl's --helpfull and friends, as the commands have)

    from hart_tf.cli import common

    app.define_help_flags()
    names = set(common.FLAGS)
    booleans = {f"no{name}" for name in names if common.FLAGS[name].boolean}
    return names | booleans | {"flagfile", "undefok"}


def test_command_flag_extraction(tmp_path):
    doc = tmp_path / "x.md"
    text = ("Run `python -m hart_tf.train --a=1\n--b` then `tools/x.py --tool_flag`.\n"
            "```bash\npython -m hart_tf.evaluate --c \\\n    --d=2  # --comment\n"
            "pip install -e . && python -m hart_tf.track --e | grep --f\n"
            "hart-export --g && python tools/benchmark.py --track=kitti\n```\n")
    assert package_command_flags(doc, text) == [
        (4, "c", None), (4, "d", "2"), (6, "e", None), (7, "g", None), (1, "a", "1"),
        (1, "b", None)]
    cfg = tmp_path / "x.cfg"
    text = "#   python -m hart_tf.train --h \\\n#       --i=flags/x.cfg\n--not_a_comment\n"
    assert package_command_flags(cfg, text) == [(1, "h", None), (1, "i", "flags/x.cfg")]


def test_documented_command_flags_are_defined():
    defined = _defined_flags()
    assert {"model", "out", "flagfile", "helpfull", "noresume"} <= defined
    problems = []
    for path in _command_documents():
        where = path.relative_to(REPO)
        for n, name, value in package_command_flags(path, path.read_text(encoding="utf-8")):
            if name not in defined:
                problems.append(f"{where}:{n}: --{name} is not a flag of hart_tf "
                                "(hart_tf/cli/flags.py)")
            elif name == "flagfile" and value and value.startswith("flags/") \
                    and not re.search(r"[<{*]", value) and not (REPO / value).is_file():
                problems.append(f"{where}:{n}: --flagfile={value}: no such file")
    assert not problems, "\n".join(problems)
