"""Every experiment flagfile in flags/ parses into training options (a mistyped flag or value
in one would otherwise surface only when somebody runs that experiment)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hart_tf.cli.train import options_from_flags

REPO = Path(__file__).resolve().parents[1]
FLAGFILES = sorted(p.name for p in (REPO / "flags").glob("*.cfg"))


@pytest.fixture
def options(run_cli, monkeypatch):
    """`options(name)`: the training options flags/<name> gives."""
    monkeypatch.chdir(REPO)  # flagfiles name each other relative to the repo root

    def parse(name: str):
        return run_cli(lambda _: options_from_flags(), [f"--flagfile=flags/{name}"], "train",
                       code=0).value

    return parse


def test_there_are_flagfiles():
    assert {"synthetic.cfg", "synthetic_long.cfg", "synthetic_crossing.cfg", "kitti.cfg",
            "kth.cfg", "real.cfg"} <= set(FLAGFILES)


@pytest.mark.parametrize("name", FLAGFILES)
def test_flagfile_parses(name, request, options):
    if name == "real_clips.cfg":
        request.getfixturevalue("shared_data")  # it names ../shared/data/real_clips
    assert options(name).run_dir.name  # every experiment names its run


def test_crossing_flagfile_is_the_default_recipe_on_crossing_look_alikes(options):
    default, crossing = options("synthetic.cfg"), options("synthetic_crossing.cfg")
    assert crossing.distractor_cross_speed == 6.0 and default.distractor_cross_speed == 0.0
    assert crossing.run_dir.name == "hart_crossing"
    for field in ("learning_rate", "batch_size", "curriculum", "max_minutes", "config"):
        assert getattr(crossing, field) == getattr(default, field), field
