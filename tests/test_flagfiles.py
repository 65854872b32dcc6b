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
            "kth.cfg"} <= set(FLAGFILES)


@pytest.mark.parametrize("name", FLAGFILES)
def test_flagfile_parses(name, options):
    assert options(name).run_dir.name  # every experiment names its run


def test_crossing_flagfile_is_the_default_recipe_on_crossing_look_alikes(options):
    default, crossing = options("synthetic.cfg"), options("synthetic_crossing.cfg")
    assert crossing.data.distractor_cross_speed == 6.0
    assert default.data.distractor_cross_speed == 0.0
    assert crossing.run_dir.name == "hart_crossing"
    for group in ("optimizer", "schedule", "config"):
        assert getattr(crossing, group) == getattr(default, group), group



# The recipe of the authors' scripts/train_hart_kitti.py (TrainSchedule, RMSPropOptimizer,
# minimize_clipped(..., soft=True)); KTH has no script of theirs and takes the same recipe at
# the paper's KTH learning rate.
ORIGINAL = {"batch_size": 10, "optimizer": "rmsprop_tf1", "momentum": 0.9, "clip_rms": 0.3,
            "lr_decay": {}, "epoch_from_windows": True, "curriculum_score": "test_mode"}
ORIGINAL_CURRICULUM = {"lengths": tuple(range(5, 31)), "threshold": 0.70,
                       "threshold_decrease": 0.05, "min_epochs": 13, "check_every": 3}


@pytest.mark.parametrize(("name", "lr", "eval_steps"),
                         [("kitti.cfg", 3.3e-6, 60), ("kth.cfg", 3.33e-5, 30)])
def test_paper_flagfiles_are_the_original_recipe(name, lr, eval_steps, options):
    from hart_tf.train.optimizers import GuardedTF1RMSprop, make_optimizer

    options = options(name)
    flat = {**vars(options.data), **vars(options.optimizer), **vars(options.schedule)}
    for field, want in ORIGINAL.items():
        assert flat[field] == want, field
    assert flat["learning_rate"] == lr and flat["eval_steps"] == eval_steps
    curriculum = options.schedule.curriculum()
    for field, want in ORIGINAL_CURRICULUM.items():
        assert getattr(curriculum, field) == want, field
    o = options.optimizer
    optimizer = make_optimizer(o.optimizer, o.learning_rate, o.momentum, o.clip_norm, o.clip_rms)
    assert type(optimizer) is GuardedTF1RMSprop and optimizer.global_clipnorm is None
    assert (optimizer.epsilon, optimizer.rho, optimizer.clip_rms) == (1e-10, 0.9, 0.3)
