"""The loss of one training step split into the parts that add up to it, kept for logging.

Keras' own metrics (`keras.metrics.Mean`) average over the epoch so far; `StepValues` holds
the values of the last step only, so a chart of them shows each step. `loss_parts` names the
parts: with learned weights

    loss/total = sum_n loss/weighted/<n> + sum_n loss/neg_log_lambda/<n> + loss/l2,

where loss/weighted/<n> = lambda_n * loss/<n> (lambda_n = 1 without learned weights, and
then no loss/neg_log_lambda/<n>). keras.ops only: it runs inside the train step of every
backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
from keras import ops


def loss_part_names(terms: Sequence[str], adaptive: bool, l2: bool) -> tuple[str, ...]:
    """The names `loss_parts` gives for these loss terms, in its order."""
    names = ["loss/total", *(f"loss/{t}" for t in terms), *(f"loss/weighted/{t}" for t in terms)]
    if adaptive:
        names += [f"loss/neg_log_lambda/{t}" for t in terms]
    if l2:
        names.append("loss/l2")
    if adaptive:
        names += [f"lambda/{t}" for t in terms]
    return (*names, "metrics/iou")


def loss_parts(total, terms: Mapping, names: Sequence[str]) -> list:
    """The scalars named by `names` (`loss_part_names`) from `hart_loss`'s `(total, terms)`.

    Args:
        total: the scalar loss.
        terms: `hart_loss`'s terms: each loss, "lambda/<n>" for learned weights, "l2", "iou".
        names: what to return, from `loss_part_names`.

    Returns:
        A list of float32 scalars in the order of `names`.
    """
    out = []
    for name in names:
        group, _, rest = name.partition("/")
        if name == "loss/total":
            value = total
        elif name == "metrics/iou":
            value = terms["iou"]
        elif rest.startswith("weighted/"):
            term = rest.split("/", 1)[1]
            value = terms[term] * terms.get(f"lambda/{term}", 1.0)
        elif rest.startswith("neg_log_lambda/"):
            value = -ops.log(terms["lambda/" + rest.split("/", 1)[1]])
        elif group == "lambda":
            value = terms[name]
        else:  # loss/<term> and loss/l2
            value = terms[rest]
        out.append(ops.cast(value, "float32"))
    return out


@keras.saving.register_keras_serializable(package="hart_tf")
class StepValues(keras.metrics.Metric):
    """Named scalars of the last step (not a mean): `update_state` overwrites them.

    The values live in one float32 vector variable, so under JAX they leave the compiled
    train step with the other metric variables. `result()` is that vector; `values()` reads
    it by name. Under `tf.distribute` the replicas' values are averaged.

    Args:
        names: one name per value.
        **kwargs: passed to `keras.metrics.Metric` (e.g. `name`).

    Call arguments (`update_state`):
        values: a list of scalars, one per name.
    """

    def __init__(self, names: Sequence[str], **kwargs):
        super().__init__(**kwargs)
        self.names = tuple(names)
        self.values_variable = self.add_variable(
            (len(self.names),), initializer="zeros", dtype="float32", aggregation="mean",
            name="values")

    def update_state(self, values):
        if len(values) != len(self.names):
            raise ValueError(f"StepValues: {len(values)} values for {len(self.names)} names")
        stacked = ops.stack([ops.reshape(ops.cast(v, "float32"), ()) for v in values])
        self.values_variable.assign(ops.stop_gradient(stacked))

    def result(self):
        return ops.convert_to_tensor(self.values_variable.value)

    def values(self) -> dict[str, float]:
        """The last step's values by name (Python floats)."""
        array = ops.convert_to_numpy(self.values_variable.value)
        return {name: float(v) for name, v in zip(self.names, array, strict=True)}

    def get_config(self) -> dict:
        return {**super().get_config(), "names": list(self.names)}
