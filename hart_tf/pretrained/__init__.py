"""Models shipped inside the package: tracking works right after `pip install`, no download.

`hart_real.keras` is a HART (the `small` preset) trained on photo-textured synthetic videos and
real annotated video (DAVIS-2016 and UAV123 sequences); `MODEL_CARD.md` beside it says what it
was trained on, under which terms, the command and how it scores. Wherever hart_tf names a
model (`--model`, `--checkpoint`, `--init_from`, `Tracker.from_checkpoint`), the word
`pretrained` stands for it; `Tracker.from_pretrained()` loads it.

    tracker = hart_tf.Tracker.from_pretrained()
    python -m hart_tf.track --model=pretrained --frames=clip/ --init=x,y,w,h --out=boxes.txt
"""

from __future__ import annotations

from pathlib import Path

# The name that stands for the shipped model where a model path is expected.
PRETRAINED = "pretrained"
DEFAULT = "hart_real"
_HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the shipped models."""
    return sorted(p.stem for p in _HERE.glob("*.keras"))


def path(name: str = DEFAULT) -> Path:
    """The `.keras` file of the shipped model `name`.

    Raises:
        ValueError: no shipped model of that name (names those that are).
    """
    p = _HERE / f"{name}.keras"
    if not p.is_file():
        raise ValueError(f"no shipped model {name!r} (shipped: {', '.join(available()) or 'none'})")
    return p


def is_pretrained(value: object) -> bool:
    """True when a model argument names the shipped model (`pretrained`)."""
    return str(value) == PRETRAINED


def report_dir(checkpoint: Path, name: str) -> Path:
    """Default folder for an evaluation's reports: beside the checkpoint, except for a shipped
    model (whose folder is the installed package) `results/pretrained/<name>`."""
    if checkpoint.resolve().parent == _HERE:
        return Path("results") / PRETRAINED / name
    return checkpoint.parent / name
