"""Appearance attention: ventral features masked by a dorsal location map."""

from __future__ import annotations

import keras
from keras import ops

from hart_tf.layers.dynamic_conv import DynamicConv
from hart_tf.layers.recurrent_batch_norm import RecurrentBatchNormalization


@keras.saving.register_keras_serializable(package="hart_tf")
class AppearanceAttention(keras.layers.Layer):
    """Splits V1 features into a ventral ("what") and a dorsal ("where") stream.

    Ventral: `v = elu(bn(dropout(conv1x1(V1))))` with `appearance_maps` channels.
    Dorsal, conditioned on the previous hidden state h(t-1), as in the original where each
    dynamic filter network owns its parameter layer and both read h(t-1):
    `d1 = DynamicConv1x1(V1; elu(Dense(h)))`, `d2 = DynamicConv3x3(d1; elu(Dense'(h)))`,
    `logit = conv1x1(d2)`, `m = sigmoid(logit)`; output `v * m`.
    Randomness is injectable so the layer can run inside `jax.lax.scan`: a given
    `dropout_mask` is always used; without one, training samples it from the layer's seed
    generator. Batch statistics are returned, not assigned: the caller calls
    `update_moving_stats`.

    Args:
        appearance_maps: channels of both streams (5 in the paper).
        dorsal_units: width of each DFN's parameter layer.
        keep_prob: ventral dropout keep probability (1 disables dropout).
        seed: seed of the dropout seed generator.
        dorsal: build the dorsal stream (False: ventral features only, no location map).
        bias_initializer: of the 1x1 convolutions and the DFNs' parameter layers ("zeros";
            "glorot_uniform" is TF1's default, which the original used).

    Call arguments:
        v1_features: (B, fh, fw, Cv1) V1 output.
        hidden: (B, U) hidden state h(t-1) of the recurrent core.
        training: apply dropout and batch statistics.
        dropout_mask: optional (B, fh, fw, appearance_maps) mask, already scaled by
            1 / keep_prob.
        use_dorsal: skip the dorsal stream for this call.

    Returns:
        A dict: `features` (B, fh, fw, maps) masked ventral features, `location_logit` and
        `location_map` (B, fh, fw), `dfn_l2` (B,) weight decay of the dynamic weights,
        `bn_mean` and `bn_var` (maps,) the batch-norm statistics used, and `ventral` the
        unmasked ventral features. With `dorsal=False` (the "Spatial Att" ablation) or
        `use_dorsal=False` (the initial-state step) only `features` (= `ventral`), `ventral`,
        `bn_mean` and `bn_var` are returned.

    Reference:
        Kosiorek et al., "Hierarchical Attentive Recurrent Tracking", NIPS 2017, section
        "Appearance Attention".
    """

    def __init__(
        self,
        appearance_maps: int = 5,
        dorsal_units: int = 100,
        keep_prob: float = 0.75,
        seed: int | None = None,
        dorsal: bool = True,
        bias_initializer: str = "zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0.0 < keep_prob <= 1.0:
            raise ValueError(f"keep_prob must be in (0, 1], got {keep_prob}")
        self.appearance_maps = int(appearance_maps)
        self.dorsal_units = int(dorsal_units)
        self.keep_prob = float(keep_prob)
        self.seed = seed
        self.dorsal = bool(dorsal)
        self.bias_initializer = bias_initializer
        bias = {"bias_initializer": bias_initializer}
        self.seed_generator = keras.random.SeedGenerator(seed)
        maps, policy = self.appearance_maps, self.dtype_policy
        self.ventral_conv = keras.layers.Conv2D(maps, 1, name="ventral_conv", dtype=policy, **bias)
        self.ventral_bn = RecurrentBatchNormalization(
            momentum=0.95, epsilon=1e-3, name="ventral_bn", dtype=policy
        )
        if not self.dorsal:
            return
        self.dfn1_params = keras.layers.Dense(
            self.dorsal_units, activation="elu", name="dfn1_params", dtype=policy, **bias
        )
        self.dfn1 = DynamicConv(1, maps, activation="elu", name="dfn1", dtype=policy)
        self.dfn2_params = keras.layers.Dense(
            self.dorsal_units, activation="elu", name="dfn2_params", dtype=policy, **bias
        )
        self.dfn2 = DynamicConv(3, maps, activation="elu", name="dfn2", dtype=policy)
        self.location_conv = keras.layers.Conv2D(
            1, 1, name="location_conv", dtype=policy, **bias
        )

    def build(self, v1_features_shape, hidden_shape):
        v1_shape, hidden_shape = tuple(v1_features_shape), tuple(hidden_shape)
        if len(v1_shape) != 4 or len(hidden_shape) != 2:
            raise ValueError(
                f"AppearanceAttention expects v1_features (B, fh, fw, C) and hidden (B, U), "
                f"got {v1_shape} and {hidden_shape}"
            )
        maps_shape = (*v1_shape[:3], self.appearance_maps)
        params_shape = (hidden_shape[0], self.dorsal_units)
        self.ventral_conv.build(v1_shape)
        self.ventral_bn.build(maps_shape)
        if not self.dorsal:
            return
        self.dfn1_params.build(hidden_shape)
        self.dfn1.build(v1_shape, params_shape)
        self.dfn2_params.build(hidden_shape)
        self.dfn2.build(maps_shape, params_shape)
        self.location_conv.build(maps_shape)

    def call(self, v1_features, hidden, training=False, dropout_mask=None, use_dorsal=True):
        ventral = self.ventral_conv(v1_features)  # (B, fh, fw, maps)
        if dropout_mask is not None:
            ventral = ventral * ops.cast(dropout_mask, ventral.dtype)
        elif training and self.keep_prob < 1.0:
            keep = keras.random.uniform(ops.shape(ventral), seed=self.seed_generator)
            keep = ops.cast(keep < self.keep_prob, ventral.dtype)
            ventral = ventral * keep / self.keep_prob
        ventral, bn_mean, bn_var = self.ventral_bn(ventral, training=training)
        ventral = ops.elu(ventral)
        if not (self.dorsal and use_dorsal):
            return {"features": ventral, "ventral": ventral, "bn_mean": bn_mean, "bn_var": bn_var}

        dorsal, l2_1 = self.dfn1(v1_features, self.dfn1_params(hidden))  # (B, fh, fw, maps)
        dorsal, l2_2 = self.dfn2(dorsal, self.dfn2_params(hidden))  # (B, fh, fw, maps)
        logit = self.location_conv(dorsal)[..., 0]  # (B, fh, fw)
        location_map = ops.sigmoid(logit)
        return {
            "features": ventral * location_map[..., None],
            "ventral": ventral,
            "location_logit": logit,
            "location_map": location_map,
            "dfn_l2": l2_1 + l2_2,
            "bn_mean": bn_mean,
            "bn_var": bn_var,
        }

    def update_moving_stats(self, mean, var) -> None:
        """Updates the ventral batch norm's moving averages; call outside any scan."""
        self.ventral_bn.update_moving_stats(mean, var)

    def get_config(self):
        config = super().get_config()
        config.update(
            appearance_maps=self.appearance_maps,
            dorsal_units=self.dorsal_units,
            keep_prob=self.keep_prob,
            dorsal=self.dorsal,
            seed=self.seed,
            bias_initializer=self.bias_initializer,
        )
        return config
