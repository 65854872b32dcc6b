"""The training state that `.keras` files do not keep: noise-stream seeds, batch-norm moving
statistics and running metrics, read and written as plain lists for the checkpoint's JSON."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hart_tf.model.saving import CheckpointError


def is_seed_state(variable) -> bool:
    # keras.random.SeedGenerator states: dropout and zoneout noise streams.
    return variable.path.endswith("seed_generator_state")


def seed_variables(model) -> list:
    return [v for v in model.variables if is_seed_state(v)]


def load_error(e: Exception) -> str:
    """The first line of what Keras raised for a file it cannot load (it raises many types;
    each means the same here)."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def guarded_variables(model) -> list:
    """What a forward pass changes besides the optimizer: batch-norm moving statistics and
    the running metrics (the seed states advance on every step, good or bad)."""
    seeds = {id(v) for v in seed_variables(model)}
    stats = [v for v in model.non_trainable_variables
             if id(v) not in seeds and "float" in str(v.dtype)]
    return stats + list(model.metrics_variables)


def running_metrics(model) -> list:
    """The epoch's running means (a mid-epoch checkpoint keeps them), not the last step's
    loss parts that HART keeps for TensorBoard (`HART.step_values`)."""
    return [v for v in model.metrics_variables if "step_values" not in v.path]


def values(variables) -> list:
    return [np.asarray(v.numpy()).tolist() for v in variables]


def assign(variables, values, what: str, where: Path) -> None:
    if len(variables) != len(values):
        raise CheckpointError(f"{where}: {len(values)} {what} saved but the model has "
                              f"{len(variables)}")
    for v, value in zip(variables, values, strict=True):
        v.assign(np.asarray(value, dtype=str(v.dtype)))
