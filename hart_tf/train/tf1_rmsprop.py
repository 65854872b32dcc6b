"""RMSProp with the semantics of TensorFlow 1's `tf.train.RMSPropOptimizer`.

The original trains with `tf.train.RMSPropOptimizer(lr, momentum=0.9)`, whose defaults and
update differ from `keras.optimizers.RMSprop` in two ways that matter at the start of
training and for tiny gradients:

| | TF1 | Keras 3 |
|---|---|---|
| mean-square slot at step 0 | ones | zeros |
| epsilon (inside the square root in both) | 1e-10 | 1e-7 |
| decay (rho) | 0.9 | 0.9 |

With the slot starting at 1 the first updates are about `lr * g` (no division by a tiny
running mean), which is what the original's learning rate of 3.3e-6 was tuned for.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="hart_tf")
class TF1RMSprop(keras.optimizers.Optimizer):
    """Non-centred RMSProp with momentum as TensorFlow 1 computes it.

    For each variable `v` with gradient `g`, mean-square slot `ms` (starting at 1) and
    momentum slot `mom` (starting at 0):

        ms  <- rho * ms + (1 - rho) * g^2
        mom <- momentum * mom + lr * g / sqrt(ms + epsilon)
        v   <- v - mom

    (TF1's `ApplyRMSProp` kernel; without momentum the same with `mom` not kept.)

    Args:
        learning_rate: float or schedule (the original: 3.3e-6).
        rho: decay of the mean square (TF1's `decay`, 0.9).
        momentum: 0.9 in the original.
        epsilon: 1e-10, TF1's default.
        **kwargs: `keras.optimizers.Optimizer` arguments (`global_clipnorm`, `name`, ...).

    Reference:
        TensorFlow 1.x `tf.train.RMSPropOptimizer`; the original's
        scripts/train_hart_kitti.py.
    """

    def __init__(self, learning_rate=3.3e-6, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-10, name: str = "tf1_rmsprop", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.rho = rho
        self.momentum = momentum
        self.epsilon = epsilon

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._mean_squares = [self.add_variable_from_reference(v, "mean_square", "ones")
                              for v in var_list]
        self._momentums = [self.add_variable_from_reference(v, "momentum", "zeros")
                           for v in var_list] if self.momentum > 0 else []

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        ms = self._mean_squares[index]
        self.assign(ms, self.rho * ms + (1.0 - self.rho) * ops.square(gradient))
        increment = lr * gradient / ops.sqrt(ms + self.epsilon)
        if self.momentum > 0:
            mom = self._momentums[index]
            self.assign(mom, self.momentum * mom + increment)
            self.assign_sub(variable, mom)
        else:
            self.assign_sub(variable, increment)

    def get_config(self):
        config = super().get_config()
        config.update({"rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon})
        return config
