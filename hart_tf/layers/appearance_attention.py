"""Appearance attention: ventral features masked by a dorsal location map."""

from __future__ import annotations

import keras
from keras import ops

from hart_tf.layers.dynamic_conv import DynamicConv
from hart_tf.layers.recurrent_batch_norm import RecurrentBatchNormalization


def cosine_match(features, template):
    """Cosine similarity of each cell (B, fh, fw, C) to a template (B, C) -> (B, fh, fw)."""
    f = features / ops.sqrt(ops.sum(features * features, axis=-1, keepdims=True) + 1e-6)
    t = template / ops.sqrt(ops.sum(template * template, axis=-1, keepdims=True) + 1e-6)
    return ops.sum(f * t[:, None, None, :], axis=-1)


@keras.saving.register_keras_serializable(package="hart_tf")
class AppearanceAttention(keras.layers.Layer):
    """Splits V1 features into a ventral ("what") and a dorsal ("where") stream.

    Ventral: `v = elu(bn(dropout(conv1x1(V1))))` with `appearance_maps` channels.
    Dorsal, conditioned on the previous hidden state h(t-1), as in the original where each
    dynamic filter network owns its parameter layer and both read h(t-1):
    `d1 = DynamicConv1x1(V1; elu(Dense(h)))`, `d2 = DynamicConv3x3(d1; elu(Dense'(h)))`,
    `logit = conv1x1(d2)`, `m = sigmoid(logit)`; output `v * m`.
    With `template="dfn"` both parameter layers read [h(t-1), τ], τ (B, Cv1) a template of
    the target's V1 features (the model passes the first glimpse's, averaged over its
    cells), so the dynamic filters can be specific to this target, not only to "an object".
    With `template="match"` the location logit also reads each cell's cosine similarity to
    the template, `cos(P v1_ij, P τ)` with P a learned 1x1 projection to `match_channels`:
    `logit = conv1x1([d2, sim])`.
    Randomness is injectable so the layer can run inside `jax.lax.scan`: a given
    `dropout_mask` is always used; without one, training samples it from the layer's seed
    generator. Batch statistics are returned, not assigned: the owner calls
    `update_moving_stats`.

    Args:
        appearance_maps: channels of both streams (5 in the paper).
        dorsal_units: width of each DFN's parameter layer.
        keep_prob: ventral dropout keep probability (1 disables dropout).
        seed: seed of the dropout seed generator.
        dorsal: build the dorsal stream (False: ventral features only, no location map).
        template: "none" (the paper), "dfn" or "match" (see above).
        match_channels: width of the projection P of the "match" template similarity.

    Call arguments:
        v1_features: (B, fh, fw, Cv1) V1 output.
        hidden: (B, U) hidden state h(t-1) of the recurrent core.
        training: apply dropout and batch statistics.
        dropout_mask: optional (B, fh, fw, appearance_maps) mask, already scaled by
            1 / keep_prob.
        use_dorsal: skip the dorsal stream for this call.
        template: (B, Cv1) target template; required unless `template="none"`.

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
        template: str = "none",
        match_channels: int = 16,
        centre_prior: float = 0.0,
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
        if template not in ("none", "dfn", "match"):
            raise ValueError(f"template must be 'none', 'dfn' or 'match', got {template!r}")
        if template != "none" and not self.dorsal:
            raise ValueError("a template conditions the dorsal stream: it needs dorsal=True")
        self.template = template
        self.match_channels = int(match_channels)
        self.centre_prior = float(centre_prior)
        self.seed_generator = keras.random.SeedGenerator(seed)
        maps, policy = self.appearance_maps, self.dtype_policy
        self.ventral_conv = keras.layers.Conv2D(maps, 1, name="ventral_conv", dtype=policy)
        self.ventral_bn = RecurrentBatchNormalization(
            momentum=0.95, epsilon=1e-3, name="ventral_bn", dtype=policy
        )
        if not self.dorsal:
            return
        self.dfn1_params = keras.layers.Dense(
            self.dorsal_units, activation="elu", name="dfn1_params", dtype=policy
        )
        self.dfn1 = DynamicConv(1, maps, activation="elu", name="dfn1", dtype=policy)
        self.dfn2_params = keras.layers.Dense(
            self.dorsal_units, activation="elu", name="dfn2_params", dtype=policy
        )
        self.dfn2 = DynamicConv(3, maps, activation="elu", name="dfn2", dtype=policy)
        self.location_conv = keras.layers.Conv2D(1, 1, name="location_conv", dtype=policy)
        if self.template == "match":
            self.match_projection = keras.layers.Dense(
                self.match_channels, use_bias=False, name="match_projection", dtype=policy
            )

    def build(self, v1_features_shape, hidden_shape, template_shape=None):
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
        cond_shape = (hidden_shape[0], hidden_shape[1] + self._template_width(v1_shape))
        self.dfn1_params.build(cond_shape)
        self.dfn1.build(v1_shape, params_shape)
        self.dfn2_params.build(cond_shape)
        self.dfn2.build(maps_shape, params_shape)
        if self.template == "match":
            self.match_projection.build(v1_shape)
            maps_shape = (*maps_shape[:3], self.appearance_maps + 1)
        self.location_conv.build(maps_shape)
        if self.centre_prior:
            self.prior_weight = self.add_weight(
                shape=(), initializer=keras.initializers.Constant(self.centre_prior),
                name="centre_prior",
            )

    def _template_width(self, v1_shape) -> int:
        return 0 if self.template == "none" else int(v1_shape[-1])

    def call(
        self,
        v1_features,
        hidden,
        training=False,
        dropout_mask=None,
        use_dorsal=True,
        template=None,
    ):
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

        cond = hidden  # (B, U)
        if self.template != "none":
            if template is None:
                raise ValueError(f"template={self.template!r} needs a template tensor in call")
            cond = ops.concatenate([hidden, template], axis=-1)  # (B, U + Cv1)
        dorsal, l2_1 = self.dfn1(v1_features, self.dfn1_params(cond))  # (B, fh, fw, maps)
        dorsal, l2_2 = self.dfn2(dorsal, self.dfn2_params(cond))  # (B, fh, fw, maps)
        if self.template == "match":
            sim = cosine_match(
                self.match_projection(v1_features), self.match_projection(template)
            )  # (B, fh, fw)
            dorsal = ops.concatenate([dorsal, sim[..., None]], axis=-1)
        logit = self.location_conv(dorsal)[..., 0]  # (B, fh, fw)
        if self.centre_prior:
            fh, fw = logit.shape[1], logit.shape[2]
            ry = (ops.arange(fh, dtype="float32") + 0.5) / fh - 0.5
            rx = (ops.arange(fw, dtype="float32") + 0.5) / fw - 0.5
            r2 = ry[:, None] ** 2 + rx[None, :] ** 2  # (fh, fw)
            logit = logit - self.prior_weight * r2[None]
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
            template=self.template,
            match_channels=self.match_channels,
            centre_prior=self.centre_prior,
            seed=self.seed,
        )
        return config
