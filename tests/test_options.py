"""The training options are the one source of defaults: the flags read them, and the nested
dataclasses take flat names the way the flags give them."""

from __future__ import annotations

import dataclasses

import pytest
from absl import flags as absl_flags

from hart_tf.cli import flags as hflags
from hart_tf.cli.train import options_from_flags
from hart_tf.train.options import FIELD_GROUP, GROUPS, TrainOptions, flat_defaults

MAX_FLAGS = 60


def _our_flags() -> dict[str, absl_flags.Flag]:
    return {name: flag for name, flag in hflags.FLAGS._flags().items()
            if hflags.FLAGS.find_module_defining_flag(name) == hflags.__name__}


def test_every_option_flag_defaults_to_the_options_default():
    ours = _our_flags()
    for name, default in flat_defaults().items():
        if name not in ours:
            continue  # a library-only option
        flag_default = ours[name].default
        if isinstance(default, tuple):
            default = [str(v) for v in default]
        elif isinstance(default, dict):
            default = [f"{k}:{v}" for k, v in default.items()]
        assert flag_default == default, name


def test_parsed_default_flags_build_the_default_options(run_cli):
    options = run_cli(lambda _: options_from_flags(), [], "train", code=0).value
    default = TrainOptions()
    for group in GROUPS:
        assert getattr(options, group) == getattr(default, group), group


def test_at_most_sixty_flags():
    assert len(_our_flags()) <= MAX_FLAGS


def test_field_names_are_unique_across_groups():
    names = [f.name for klass in GROUPS.values() for f in dataclasses.fields(klass)]
    assert len(names) == len(set(names)) == len(FIELD_GROUP)


def test_from_flat_routes_names_to_their_groups():
    options = TrainOptions.from_flat(batch_size=4, dataset="kth", curriculum_lengths=(2, 3),
                                     seed=7)
    assert options.optimizer.batch_size == 4
    assert options.data.dataset == "kth"
    assert options.schedule.curriculum().lengths == (2, 3)
    assert options.run.seed == 7
    changed = options.replace(seed=8)
    assert (changed.run.seed, options.run.seed) == (8, 7)
    with pytest.raises(TypeError, match="no field 'batch'"):
        TrainOptions.from_flat(batch=4)


def test_test_steps_follow_the_dataset():
    assert TrainOptions.from_flat(dataset="kitti").data.test_steps == 60
    assert TrainOptions().data.test_steps == 30
    assert TrainOptions.from_flat(eval_steps=7).data.test_steps == 7
