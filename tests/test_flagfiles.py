"""Every experiment flagfile in flags/ parses into training options (a mistyped flag or value
in one would otherwise surface only when somebody runs that experiment)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from absl import flags as absl_flags

from hart_tf.cli import common as cli
from hart_tf.cli.train import options_from_flags

REPO = Path(__file__).resolve().parents[1]
FLAGFILES = sorted(p.name for p in (REPO / "flags").glob("*.cfg"))


def _options(name: str):
    absl_flags.FLAGS.unparse_flags()
    cwd = os.getcwd()
    os.chdir(REPO)  # flagfiles name each other relative to the repo root
    try:
        cli.parse_flags(["train", f"--flagfile=flags/{name}"])
        return options_from_flags()
    finally:
        os.chdir(cwd)
        absl_flags.FLAGS.unparse_flags()


def test_there_are_flagfiles():
    assert {"synthetic.cfg", "synthetic_long.cfg", "synthetic_crossing.cfg", "kitti.cfg",
            "kth.cfg"} <= set(FLAGFILES)


@pytest.mark.parametrize("name", FLAGFILES)
def test_flagfile_parses(name, request):
    if name == "real_clips.cfg":
        request.getfixturevalue("shared_data")  # it names ../shared/data/real_clips
    options = _options(name)
    assert options.run_dir.name  # every experiment names its run


def test_crossing_flagfile_is_the_default_recipe_on_crossing_look_alikes():
    default, crossing = _options("synthetic.cfg"), _options("synthetic_crossing.cfg")
    assert crossing.data.distractor_cross_speed == 6.0
    assert default.data.distractor_cross_speed == 0.0
    assert crossing.run_dir.name == "hart_crossing"
    for group in ("optimizer", "schedule", "config"):
        assert getattr(crossing, group) == getattr(default, group), group
