"""Learned multi-task loss weights (Kendall et al. 2018) as used by HART."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="hart_tf")
class AdaptiveLossWeights(keras.layers.Layer):
    """Combines named scalar losses with learned weights.

    Each term n has one trainable scalar s_n and weight lambda_n = s_n^2 + epsilon; the
    combined loss is

        total = sum_n (lambda_n * L_n - log lambda_n),

    so a term's weight grows while its loss is small and the -log lambda penalty stops it
    collapsing to 0. As the original (`AdaptiveLoss` in hart/train_tools.py) s_n starts at
    sqrt(initial_weight) and epsilon is 1e-8; the paper's KITTI run used initial weight 1.

    Args:
        names: the loss terms, e.g. `("tracking", "attention", "appearance")`; each must be
            a Python identifier (it names a variable).
        initial_weight: lambda_n at initialisation (up to epsilon), the same for all terms.
        epsilon: added to s_n^2 so lambda_n > 0.
        **kwargs: passed to `keras.layers.Layer`.

    Call arguments:
        losses: dict mapping each name in `names` to a scalar loss.

    Returns:
        The scalar total above. `lambdas()` gives the current lambda_n by name.

    Reference:
        Kosiorek et al., "Hierarchical Attentive Recurrent Tracking", NIPS 2017, section 3.4;
        Kendall, Gal and Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses",
        CVPR 2018.
    """

    def __init__(
        self,
        names: Sequence[str],
        initial_weight: float = 1.0,
        epsilon: float = 1e-8,
        **kwargs,
    ):
        super().__init__(**kwargs)
        names = tuple(names)
        if not names:
            raise ValueError("AdaptiveLossWeights: names must not be empty")
        bad = [n for n in names if not (isinstance(n, str) and n.isidentifier())]
        if bad or len(set(names)) != len(names):
            raise ValueError(
                f"AdaptiveLossWeights: names must be distinct identifiers, got {list(names)}"
            )
        if initial_weight <= 0:
            raise ValueError(
                f"AdaptiveLossWeights: initial_weight must be > 0, got {initial_weight}"
            )
        self.names = names
        self.initial_weight = float(initial_weight)
        self.epsilon = float(epsilon)
        self.scales = {
            name: self.add_weight(
                name=f"s_{name}",
                shape=(),
                initializer=keras.initializers.Constant(math.sqrt(self.initial_weight)),
                dtype="float32",
                trainable=True,
            )
            for name in names
        }
        self.built = True

    def lambdas(self) -> dict:
        return {name: ops.square(s) + self.epsilon for name, s in self.scales.items()}

    def call(self, losses: Mapping):
        if set(losses) != set(self.names):
            raise ValueError(
                f"AdaptiveLossWeights: got losses {sorted(losses)}, expected {sorted(self.names)}"
            )
        total = 0.0
        for name, lam in self.lambdas().items():
            total = total + lam * ops.cast(losses[name], "float32") - ops.log(lam)
        return total

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "names": list(self.names),
                "initial_weight": self.initial_weight,
                "epsilon": self.epsilon,
            }
        )
        return config
