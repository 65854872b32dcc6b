"""The HART model: HARTCell unrolled over a sequence, its losses and online stepping."""

from __future__ import annotations

import keras
from keras import ops

from hart_tf.layers.adaptive_loss_weights import AdaptiveLossWeights
from hart_tf.layers.spatial_attention import attention_to_box
from hart_tf.model import losses
from hart_tf.model.cell import HARTCell
from hart_tf.model.config import HARTConfig
from hart_tf.model.step_values import StepValues, loss_part_names, loss_parts

LOSS_TERMS = ("tracking", "attention", "appearance")


@keras.saving.register_keras_serializable(package="hart_tf")
class HART(keras.Model):
    """Hierarchical Attentive Recurrent Tracker.

    Frame 0 and its box build the initial state (the original's `zero_state`); every frame,
    frame 0 included, is then one step of `HARTCell` run by `keras.layers.RNN`.

    Args:
        config: a `HARTConfig` (or its dict).
        seed: seed of the dropout and zoneout noise.
        unroll: unroll the recurrence over time (a Python loop of T cell calls) instead of
            one compiled loop (`jax.lax.scan` / `tf.while_loop`); needs a static T.
        mixed_precision: run V1 and the LSTM in bfloat16 (float32 weights); the spatial
            attention, the appearance attention, the attention update, boxes and the losses
            stay float32 (see `HARTCell`).

    Call arguments:
        inputs: dict with `frames` (B, T, H, W, C) pixel values in [0, 255] (uint8 or float)
            and `box0` (B, 4) the first box (y, x, h, w) in pixels.
        training: sample dropout/zoneout noise and use batch statistics.

    Returns:
        dict with `boxes` (B, T, 4) predicted boxes (boxes[:, 0] == box0), `att_boxes`
        (B, T, 4) the spatial-attention boxes, `attention` (B, T, 4) the attention state
        a_t, `location_logits` and `location_maps` (B, T, fh, fw), `presence` (B, T) the
        location map's peak (a confidence that the object is in the glimpse) and `dfn_l2`
        (B, T) the dynamic filters' weight decay.

    Reference: Kosiorek et al., NIPS 2017, section 3 and Fig. 2.
    """

    def __init__(
        self,
        config: HARTConfig | dict,
        seed: int | None = None,
        unroll: bool = False,
        mixed_precision: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = HARTConfig.from_dict(config)
        self.config = config
        self.seed = seed
        self.unroll = bool(unroll)
        self.mixed_precision = bool(mixed_precision)
        self.cell = HARTCell(config, mixed_precision=self.mixed_precision, name="hart_cell")
        self.rnn = keras.layers.RNN(
            self.cell, return_sequences=True, unroll=self.unroll, name="recurrence"
        )
        terms = ["tracking"]
        if config.attention_loss:
            terms.append("attention")
        if config.appearance_attention and config.appearance_loss:
            terms.append("appearance")
        self.loss_terms = tuple(terms)
        self.loss_weights_layer = (
            AdaptiveLossWeights(terms, name="loss_weights") if config.adaptive_loss else None
        )
        self.noise_seed = keras.random.SeedGenerator(seed, name="noise_seed")
        self._trackers = {
            name: keras.metrics.Mean(name=name) for name in ("iou", *self.loss_terms)
        }
        # The last step's loss parts (for TensorBoard); not in the logs `fit` prints.
        self.step_metric = StepValues(loss_part_names(
            terms, config.adaptive_loss, config.l2_weight > 0), name="step_values")

    def build(self, input_shape=None):
        self.cell.build()
        self.rnn.build((None, None, self.cell.input_size))
        self.built = True

    @property
    def metrics(self):
        tracked = super().metrics
        mine = [*self._trackers.values(), self.step_metric]
        return tracked + [m for m in mine if m not in tracked]

    def get_metrics_result(self):
        results = super().get_metrics_result()
        results.pop(self.step_metric.name, None)
        return results

    def step_values(self) -> dict[str, float]:
        """The last training step's loss parts, lambdas and IoU by TensorBoard tag
        (`hart_tf.model.step_values`); `loss/total` is the sum of the parts."""
        return self.step_metric.values()

    # ---- noise --------------------------------------------------------------------------

    def _noise(self, batch, steps, training):
        """Dropout masks (B, steps, fh, fw, maps) and zoneout masks (B, steps, 2U)."""
        c = self.config
        dshape = (batch, steps, *c.feature_shape, c.appearance_maps)
        zshape = (batch, steps, 2 * c.rnn_units)
        if training:
            keep = keras.random.uniform(dshape, seed=self.noise_seed) < c.keep_prob
            dropout = ops.cast(keep, "float32") / c.keep_prob
            zone = keras.random.uniform(zshape, seed=self.noise_seed) >= c.zoneout
            zoneout = ops.cast(zone, "float32")
        else:
            dropout = ops.ones(dshape, "float32")
            zoneout = ops.full(zshape, 1.0 - c.zoneout, "float32")
        return dropout, zoneout

    # ---- forward ------------------------------------------------------------------------

    def call(self, inputs, training=False):
        frames = inputs["frames"]  # (B, T, H, W, C) pixels in [0, 255]
        box0 = ops.cast(inputs["box0"], "float32")  # (B, 4)
        batch, steps = ops.shape(frames)[0], ops.shape(frames)[1]
        dropout, zoneout = self._noise(batch, steps + 1, training)
        state0, (mean0, var0) = self.cell.initial_state_from_frame(
            frames[:, 0], box0, dropout[:, 0], training=training
        )
        if self.unroll:
            # A Python loop over the cell's `step`: the frames stay in their dtype (uint8
            # from the data pipeline) until each step casts its own, never packed with the
            # masks into one float tensor as keras.layers.RNN needs (measured: that pack,
            # cast and time-major transpose were ~10 % of a training step on the CPU).
            state, outputs = state0, []
            for t in range(frames.shape[1]):
                out, state = self.cell.step(
                    frames[:, t], dropout[:, t + 1], zoneout[:, t + 1], state, training=training
                )
                outputs.append(out)
            raw = ops.stack(outputs, axis=1)  # (B, T, out)
        else:
            packed = self.cell.pack_inputs(frames, dropout[:, 1:], zoneout[:, 1:])  # (B, T, D)
            raw = self.rnn(packed, initial_state=state0, training=training)  # (B, T, out)
        fields = self.cell.unpack_outputs(raw)
        if training:
            # BatchNorm statistics leave the loop and update the moving averages here.
            n = ops.cast(steps, "float32")
            mean = (ops.mean(fields["bn_mean"], axis=(0, 1)) * n + mean0) / (n + 1.0)
            var = (ops.mean(fields["bn_var"], axis=(0, 1)) * n + var0) / (n + 1.0)
            self.cell.appearance.update_moving_stats(mean, var)
        return self._outputs(fields, box0)

    def _outputs(self, fields, box0):
        boxes = fields["box"]
        # Step 0 reports the given box (its correction is not trained, as the original).
        first = ops.arange(ops.shape(boxes)[1]) == 0  # (T,)
        boxes = ops.where(first[None, :, None], box0[:, None, :], boxes)
        logits = fields["location_logits"]
        maps = ops.sigmoid(logits)
        return {
            "boxes": boxes,
            "att_boxes": attention_to_box(fields["att"], self.config.image_size),
            "attention": fields["att"],
            "location_logits": logits,
            "location_maps": maps,
            "presence": ops.max(maps, axis=(-2, -1)),
            "dfn_l2": fields["dfn_l2"],
        }

    # ---- online tracking ----------------------------------------------------------------

    def init_state(self, frame, box0):
        """State after seeing frame 0 with its box: call `step` on the next frames.

        Args:
            frame: (B, H, W, C) pixels in [0, 255]; box0: (B, 4) (y, x, h, w) pixels.
        Returns:
            list of state tensors [a, h, c, o].
        """
        state, _ = self.cell.initial_state_from_frame(frame, box0)
        _, state = self.step(frame, state)  # the sequence call also steps on frame 0
        return state

    def step(self, frame, state):
        """One online step at inference: (B, H, W, C) frame -> (outputs dict, new state).

        `outputs` holds `box`, `att_box`, `location_map` and `presence` for this frame.
        Stepping frames 1..T-1 from `init_state` equals `call(training=False)`.
        """
        batch = ops.shape(frame)[0]
        dropout, zoneout = self._noise(batch, 1, training=False)
        raw, new_state = self.cell.step(frame, dropout[:, 0], zoneout[:, 0], state)
        f = self.cell.unpack_outputs(raw)
        maps = ops.sigmoid(f["location_logits"])
        out = {
            "box": f["box"],
            "att_box": attention_to_box(f["att"], self.config.image_size),
            "location_map": maps,
            "presence": ops.max(maps, axis=(-2, -1)),
        }
        return out, new_state

    # ---- training -----------------------------------------------------------------------

    def l2_weights(self):
        """Weight matrices and kernels under the L2 penalty (no biases, norms, gates)."""
        return [
            w
            for w in self.trainable_weights
            if len(w.shape) >= 2 and "loss_weights" not in w.path
        ]

    def loss_and_terms(self, y, y_pred, with_weights: bool = True):
        """`(total, terms)` of `losses.hart_loss`; `with_weights=False` leaves out what reads
        model weights (the learned lambdas and the L2 penalty)."""
        c = self.config
        return losses.hart_loss(
            y_pred,
            y,
            image_size=c.image_size,
            feature_shape=c.feature_shape,
            adaptive_weights=self.loss_weights_layer if with_weights else None,
            attention_loss=c.attention_loss,
            appearance_loss=c.appearance_attention and c.appearance_loss,
            l2_weight=c.l2_weight if with_weights else 0.0,
            l2_terms=self.l2_weights() if with_weights else (),
        )

    def loss_weights(self) -> dict[str, float]:
        """Current learned loss weights lambda by term (empty without adaptive weights)."""
        if self.loss_weights_layer is None:
            return {}
        return {k: float(ops.convert_to_numpy(v))
                for k, v in self.loss_weights_layer.lambdas().items()}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        total, terms = self.loss_and_terms(y, y_pred)
        self.step_metric.update_state(loss_parts(total, terms, self.step_metric.names))
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        # Terms are recomputed here (cheap next to the forward pass): metric updates made
        # inside compute_loss are not carried out of the JAX trainer's stateless scope, and
        # model weights cannot be read here under JAX, so lambdas and L2 are logged apart.
        _, terms = self.loss_and_terms(y, y_pred, with_weights=False)
        for name, value in terms.items():
            if name in self._trackers:
                self._trackers[name].update_state(value)
        return self.get_metrics_result()

    def get_config(self):
        config = super().get_config()
        config.update({"config": self.config.to_dict(), "seed": self.seed,
                       "unroll": self.unroll, "mixed_precision": self.mixed_precision})
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def use_function_for_length(model, kind: str, length: int) -> None:
    """Gives `model` its own compiled train/predict function per sequence length.

    The TF trainer's tf.function relaxes a changing time axis to an unknown size after a
    retrace, which an unrolled recurrence cannot take; one function per length keeps every
    trace static (JAX compiles per shape anyway).
    """
    cache = model.__dict__.setdefault("_hart_functions", {})
    key = (kind, int(length))
    if key not in cache:
        setattr(model, f"{kind}_function", None)
        getattr(model, f"make_{kind}_function")()
        cache[key] = getattr(model, f"{kind}_function")
    setattr(model, f"{kind}_function", cache[key])
