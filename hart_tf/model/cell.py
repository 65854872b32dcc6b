"""HARTCell: one time step of HART as a Keras RNN cell."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from hart_tf.layers.appearance_attention import AppearanceAttention
from hart_tf.layers.spatial_attention import SpatialAttention, attention_to_box, box_to_attention
from hart_tf.layers.v1 import AlexNetV1, SmallV1
from hart_tf.model.config import HARTConfig

# Initial logit c of the attention-update gate sigmoid(c) (the original's att_gain).
ATT_GAIN = -2.5


def _small_init():
    # A new initializer per layer: one shared unseeded instance repeats the same values.
    return keras.initializers.RandomUniform(-1e-3, 1e-3)


@keras.saving.register_keras_serializable(package="hart_tf")
class CandidateIdentityOrthogonal(keras.initializers.Initializer):
    """LSTM recurrent kernel init of the original's IdentityLSTMCell.

    Orthogonal blocks for the input, forget and output gates and `scale * I` for the cell
    candidate, laid out in Keras' gate order (i, f, c, o).
    """

    def __init__(self, scale: float = 0.95, seed: int | None = None):
        self.scale = scale
        self.seed = seed

    def __call__(self, shape, dtype=None):
        units = shape[0]
        ortho = keras.initializers.Orthogonal(seed=self.seed)
        blocks = [ortho((units, units), dtype=dtype) for _ in range(4)]
        blocks[2] = self.scale * ops.eye(units, dtype=dtype)
        return ops.concatenate(blocks, axis=1)  # (U, 4U)

    def get_config(self):
        return {"scale": self.scale, "seed": self.seed}


def relative_box(reference, delta):
    """Move and rescale boxes in units of their own size.

    reference (B, 4) as (y, x, h, w) pixels; delta (B, 4): the centre moves by
    (delta_y * h, delta_x * w) and the size is multiplied by (exp(delta_h), exp(delta_w)).
    delta = 0 returns the reference box.
    """
    size = reference[:, 2:]  # (B, 2)
    centre = reference[:, :2] + 0.5 * size + delta[:, :2] * size
    new_size = size * ops.exp(delta[:, 2:])
    return ops.concatenate([centre - 0.5 * new_size, new_size], axis=-1)


def contrast_normalize(x):
    """Min-max normalise each example to [0, 1] (the original's normalize_contrast)."""
    lo = ops.min(x, axis=(1, 2, 3), keepdims=True)
    hi = ops.max(x, axis=(1, 2, 3), keepdims=True)
    return (x - lo) / (hi - lo + 1e-5)


@keras.saving.register_keras_serializable(package="hart_tf")
class HARTCell(keras.layers.Layer):
    """One step of Hierarchical Attentive Recurrent Tracking.

    With frame x_t, attention a_t, LSTM state (h_{t-1}, c_{t-1}) and the previous LSTM
    output o_{t-1} (the dorsal stream's conditioning vector):

        g_t        = SpatialAttention(x_t, a_t)                         glimpse
        v_t        = V1(contrast_normalize(g_t))                        V1 features
        s_t, m_t   = AppearanceAttention(v_t, o_{t-1})                  features, location map
        f_t        = elu(W_f [s_t, a_t])            (or the six glimpse parameters, below)
        o_t, (h, c)= LSTM(f_t, (h_{t-1}, c_{t-1})),  zoneout on (h, c)
        e_t        = elu(W_m m_t)                                       location-map features
        a_{t+1}    = a_t + sigmoid(gate) * tanh(W_a2 elu(W_a1 [o_t, e_t]))
        Δb_t       = tanh(W_b2 elu(W_b1 [o_t, e_t]))
        b_t        = box(a_t - bias) + Δb_t * [H, W, H, W]

    With `config.box_readout == "glimpse"` the correction is read in units of the reference
    box instead of the image, b_t = relative_box(box(a_t - bias), Δb_t): the centre moves
    by Δ * (h, w) and the size scales by exp(Δ), so what the location map shows (where the
    object sits in the glimpse, how much of it it fills) maps to the box without a
    multiplication by the glimpse's size. The default, "image", is the paper's. With
    `config.attention_input == "pixels"` (the KITTI and KTH presets, as the original)
    `W_f` reads the six glimpse parameters in pixels instead of a_t
    (`SpatialAttention.glimpse_parameters`: corner + offset, sigma, stride per axis).

    `gate` is a trainable 4-vector initialised to `ATT_GAIN` (-2.5); `bias` is the
    learnable init bias 0.25 * tanh(β) added to a_0. Zoneout keeps each state unit with a
    mask z: z ~ Bernoulli(1 - p) in training and z = 1 - p (its expectation) at inference:
    h = h_{t-1} + z * (h_new - h_{t-1}). Dropout and zoneout masks are inputs, so the cell is
    deterministic and can run inside a compiled scan on every backend.

    Keras 3 RNN cells take and emit one flat tensor per step, so the step input packs
    [frame (H*W*C), ventral dropout mask (fh*fw*maps), zoneout mask (2U)] and the step output
    packs the fields listed by `output_fields` (unpacked with `unpack_outputs`).

    Where the original code and the paper differ, this follows the code
    (github akosiorek/hart, `AttentionCell` and `HierarchicalAttentiveRecurrentTracker`):
    the box correction reads [o_t, e_t] through a hidden ELU layer, the first frame is seen
    twice (once to build the initial state, once as step 0), the initial feature/state
    transforms use ReLU (its AffineLayer default), the LSTM's candidate block starts as
    0.95 * I. One difference: zoneout is not applied in the initial-state step.

    With `mixed_precision` V1 and the LSTM compute in bfloat16 with float32 weights (V1 holds
    over 90% of the FLOPs); their outputs are cast back, so the glimpse, the appearance
    attention (its batch statistics, dynamic-filter L2 and location logits feed the losses),
    the recurrent state, the attention update and the boxes stay float32.

    Args:
        config: a `HARTConfig` (or its dict).
        mixed_precision: bfloat16 compute for V1 and the LSTM.

    Call arguments:
        inputs: `(B, D)` packed step input (see above).
        states: `[a (B, 4), h (B, U), c (B, U), o (B, U)]`.
        training: batch statistics for the ventral BatchNorm when True.

    Returns:
        `(outputs (B, output_size), new_states)`.

    Reference: Kosiorek et al., "Hierarchical Attentive Recurrent Tracking", NIPS 2017,
    sections 3-4, equations (1)-(6).
    """

    def __init__(self, config: HARTConfig | dict, mixed_precision: bool = False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = HARTConfig.from_dict(config)
        self.config = config
        self.mixed_precision = bool(mixed_precision)
        # Only the heavy, error-tolerant parts get a bf16 policy; the rest keeps the default.
        low = {"dtype": "mixed_bfloat16"} if self.mixed_precision else {}
        c = config
        units = c.rnn_units
        # TF1's default initialiser for the biases the original left unspecified.
        bias_init = "glorot_uniform" if c.original_init else "zeros"
        bias = {"bias_initializer": bias_init}
        self.units = units
        self.state_size = [4, units, units, units]
        fh, fw = c.feature_shape
        self.field_sizes = {
            "att": 4,
            "box": 4,
            "location_logits": fh * fw,
            "dfn_l2": 1,
            "bn_mean": c.appearance_maps,
            "bn_var": c.appearance_maps,
        }
        self.output_size = int(sum(self.field_sizes.values()))

        self.spatial_attention = SpatialAttention(
            c.glimpse_size, c.image_size, learned_sigma=c.learned_sigma, name="spatial_attention"
        )
        if c.v1 == "alexnet":
            self.v1 = AlexNetV1(name="v1", **low)
        else:
            self.v1 = SmallV1(channels=c.v1_channels, name="v1", **low)
        self.appearance = AppearanceAttention(
            appearance_maps=c.appearance_maps,
            dorsal_units=c.dorsal_units,
            keep_prob=c.keep_prob,
            dorsal=c.appearance_attention,
            bias_initializer=bias_init,
            name="appearance_attention",
        )
        self.fc_features = keras.layers.Dense(
            units, activation="elu", name="fc_after_conv", **bias
        )
        self.lstm = keras.layers.LSTMCell(
            units,
            kernel_initializer="orthogonal",
            recurrent_initializer=CandidateIdentityOrthogonal(0.95),
            unit_forget_bias=not c.original_init,
            name="lstm",
            **bias,
            **low,
        )
        if c.appearance_attention:
            self.mask_features = keras.layers.Dense(
                10, activation="elu", name="mask_features", **bias
            )
        self.att_hidden = keras.layers.Dense(units, activation="elu", name="att_readout_1", **bias)
        self.att_out = keras.layers.Dense(
            4, activation="tanh", kernel_initializer=_small_init(), name="att_readout"
        )
        self.box_hidden = keras.layers.Dense(units, activation="elu", name="box_readout_1", **bias)
        self.box_out = keras.layers.Dense(
            4, activation="tanh", kernel_initializer=_small_init(), name="box_readout"
        )
        if c.transform_init:
            self.init_features = keras.layers.Dense(
                units, activation="relu", name="init_features", **bias
            )
            self.init_h = keras.layers.Dense(units, activation="relu", name="init_h", **bias)
            self.init_c = keras.layers.Dense(units, activation="relu", name="init_c", **bias)

    def build(self, input_shape=None):
        c = self.config
        h, w = c.image_size
        fh, fw = c.feature_shape
        gh, gw = c.glimpse_size
        units = self.units
        self.att_gate = self.add_weight(
            shape=(4,), initializer=keras.initializers.Constant(ATT_GAIN), name="att_gate"
        )
        self.att_bias_raw = self.add_weight(shape=(4,), initializer=_small_init(), name="att_bias")
        self.spatial_attention.build((None, h, w, c.channels), (None, 4))
        self.v1.build((None, gh, gw, c.channels))
        self.appearance.build((None, fh, fw, c.v1_channels), (None, units))
        self.fc_features.build((None, fh * fw * c.appearance_maps + self.attention_input_size))
        self.lstm.build((None, units))
        readout_in = units
        if c.appearance_attention:
            self.mask_features.build((None, fh * fw))
            readout_in += 10
        self.att_hidden.build((None, readout_in))
        self.att_out.build((None, units))
        self.box_hidden.build((None, readout_in))
        self.box_out.build((None, units))
        if c.transform_init:
            for layer in (self.init_features, self.init_h, self.init_c):
                layer.build((None, units))
        self.built = True

    # ---- helpers ------------------------------------------------------------------------

    @property
    def att_bias(self):
        return 0.25 * ops.tanh(self.att_bias_raw)

    @property
    def attention_input_size(self) -> int:
        """Attention values `fc_after_conv` reads: 4 (a_t) or 6 (glimpse parameters)."""
        return 6 if self.config.attention_input == "pixels" else 4

    @property
    def frame_size(self) -> int:
        c = self.config
        return c.image_size[0] * c.image_size[1] * c.channels

    @property
    def dropout_size(self) -> int:
        fh, fw = self.config.feature_shape
        return fh * fw * self.config.appearance_maps

    @property
    def input_size(self) -> int:
        return self.frame_size + self.dropout_size + 2 * self.units

    def pack_inputs(self, frames, dropout_mask, zoneout_mask):
        """(B, T, H, W, C) pixels in [0, 255], (B, T, fh, fw, maps), (B, T, 2U) -> (B, T, D)."""
        lead = ops.shape(frames)[:-3]
        parts = [
            ops.cast(ops.reshape(frames, (*lead, self.frame_size)), "float32"),
            ops.reshape(ops.cast(dropout_mask, "float32"), (*lead, self.dropout_size)),
            ops.cast(zoneout_mask, "float32"),
        ]
        return ops.concatenate(parts, axis=-1)

    def unpack_outputs(self, outputs) -> dict:
        """(..., output_size) -> dict of named fields (location logits as (..., fh, fw))."""
        fields, start = {}, 0
        for name, size in self.field_sizes.items():
            fields[name] = outputs[..., start : start + size]
            start += size
        lead = ops.shape(outputs)[:-1]
        fields["location_logits"] = ops.reshape(
            fields["location_logits"], (*lead, *self.config.feature_shape)
        )
        fields["dfn_l2"] = fields["dfn_l2"][..., 0]
        return fields

    def _features(self, frame, att, appearance_vec, dropout_mask, training, dorsal=True):
        # frame: (B, H, W, C) pixels in [0, 255]; the glimpse is linear in the frame, so the
        # scaling to [0, 1] is applied to the (much smaller) glimpse.
        glimpse = self.spatial_attention(frame, att) * (1.0 / 255.0)  # (B, gh, gw, C)
        if self.config.normalize_glimpse:
            glimpse = contrast_normalize(glimpse)
        v1 = ops.cast(self.v1(glimpse), "float32")  # (B, fh, fw, Cv1); no-op unless bf16
        app = self.appearance(
            v1, appearance_vec, training=training, dropout_mask=dropout_mask, use_dorsal=dorsal
        )
        features = app["features"]  # (B, fh, fw, maps)
        batch = ops.shape(features)[0]
        flat = ops.reshape(features, (batch, -1))  # (B, fh*fw*maps)
        if self.config.attention_input == "pixels":
            att = self.spatial_attention.glimpse_parameters(att)  # (B, 6) pixels
        f = self.fc_features(ops.concatenate([flat, att], axis=-1))
        return f, app, glimpse

    def _lstm(self, f, states, training):
        o, (h, c) = self.lstm(f, states, training=training)
        # The recurrent state stays float32 (a loop carry keeps one dtype).
        return ops.cast(o, "float32"), (ops.cast(h, "float32"), ops.cast(c, "float32"))

    # ---- the recurrence -----------------------------------------------------------------

    def initial_state_from_frame(self, frame, box0, dropout_mask=None, training=False):
        """State for step 0 from the first frame and box (the original's zero_state).

        Args:
            frame: (B, H, W, C) frame 0, pixels in [0, 255] (uint8 or float).
            box0: (B, 4) first box (y, x, h, w) in pixels.
        Returns:
            (states, bn_stats) where states = [a0 + bias, h0, c0, o0].
        """
        att0 = box_to_attention(ops.cast(box0, "float32"), self.config.image_size)
        batch = ops.shape(att0)[0]
        zeros = ops.zeros((batch, self.units), dtype="float32")
        f, app, _ = self._features(frame, att0, zeros, dropout_mask, training, dorsal=False)
        if self.config.transform_init:
            f = self.init_features(f)
        o, (h, c) = self._lstm(f, [zeros, zeros], training)
        if self.config.transform_init:
            h, c = self.init_h(h), self.init_c(c)
        att = att0 + self.att_bias[None, :]
        return [att, h, c, o], (app["bn_mean"], app["bn_var"])

    def call(self, inputs, states, training=False):
        c = self.config
        batch = ops.shape(inputs)[0]
        fs, ds = self.frame_size, self.dropout_size
        frame = ops.reshape(inputs[:, :fs], (batch, *c.image_size, c.channels))
        dropout_mask = ops.reshape(
            inputs[:, fs : fs + ds], (batch, *c.feature_shape, c.appearance_maps)
        )
        zoneout = inputs[:, fs + ds :]  # (B, 2U)
        return self.step(frame, dropout_mask, zoneout, states, training=training)

    def step(self, frame, dropout_mask, zoneout, states, training=False):
        """`call` on unpacked inputs: frame (B, H, W, C) pixels in [0, 255] (any dtype),
        dropout mask (B, fh, fw, maps), zoneout mask (B, 2U). The model's unrolled loop
        calls this directly, which spares packing every frame into one float tensor."""
        c = self.config
        att, h_prev, c_prev, o_prev = states
        batch = ops.shape(frame)[0]
        f, app, _ = self._features(frame, att, o_prev, dropout_mask, training)
        o, (h_new, c_new) = self._lstm(f, [h_prev, c_prev], training)
        z_h, z_c = zoneout[:, : self.units], zoneout[:, self.units :]
        h = h_prev + z_h * (h_new - h_prev)
        c_state = c_prev + z_c * (c_new - c_prev)

        readout = o
        if self.config.appearance_attention:
            loc = ops.reshape(app["location_map"], (batch, -1))  # (B, fh*fw)
            readout = ops.concatenate([o, self.mask_features(loc)], axis=-1)
        att_delta = self.att_out(self.att_hidden(readout))  # (B, 4) in (-1, 1)
        new_att = att + ops.sigmoid(self.att_gate)[None, :] * att_delta
        box_delta = self.box_out(self.box_hidden(readout))  # (B, 4) in (-1, 1)
        reference = attention_to_box(att - self.att_bias[None, :], c.image_size)
        if c.box_readout == "image":
            hgt, wid = c.image_size
            scale = ops.convert_to_tensor(np.array([hgt, wid, hgt, wid], "float32"))
            box = reference + box_delta * scale
        else:
            box = relative_box(reference, box_delta)

        ones = ops.ones((batch, 1), dtype="float32")
        if self.config.appearance_attention:
            logits = ops.reshape(app["location_logit"], (batch, -1))  # (B, fh*fw)
            dfn_l2 = ops.reshape(app["dfn_l2"], (batch, 1))
        else:
            # No location map: a large logit reads as "everything is the object".
            logits = ops.full((batch, self.field_sizes["location_logits"]), 10.0, "float32")
            dfn_l2 = ops.zeros((batch, 1), "float32")
        outputs = ops.concatenate(
            [
                att,
                box,
                logits,
                dfn_l2,
                ones * app["bn_mean"][None, :],
                ones * app["bn_var"][None, :],
            ],
            axis=-1,
        )
        return outputs, [new_att, h, c_state, o]

    def get_config(self):
        config = super().get_config()
        config.update({"config": self.config.to_dict(), "mixed_precision": self.mixed_precision})
        return config
