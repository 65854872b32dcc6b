"""HART's training loss (Kosiorek et al., NIPS 2017, section 3.4).

    L = lambda_t L_t + lambda_s L_s + lambda_a L_a - sum log lambda + l2_weight * R

L_t tracks (-log IoU of the predicted box), L_s trains the spatial attention to contain the
object tightly, L_a trains the appearance-attention location map, R is weight decay; the
lambdas are learned (`AdaptiveLossWeights`). The paper's KITTI run (train_hart_kitti.py of
the original) used exactly these terms: IoU tracking loss, 'tight_intersection' attention
loss with weight 1, location-map loss with weight 1, l2 1e-4 and adaptive weights.

Conventions: boxes are (y, x, h, w) in pixels, top-left corner, `[B, T, 4]`; presence is
`[B, T]`, 1 where the object is visible. Step 0 holds the given first box, so the tracking
and attention losses score t >= 1 only. All maths is float32 `keras.ops`.

Where the original code differs from the paper or from a plain reading, we follow the code:
    * Time weighting: the original is time-major and averages the per-object loss over the
      objects present at each step, then over the steps with at least one object (not per
      sequence first), so late steps of long sequences weigh as much as early ones.
    * The location-map loss also scores step 0 (the original masks it with the full
      presence, while the box losses start at t = 1).
    * -log x is taken of max(x, 1e-8); the original uses x + 1e-8 for x <= 1e-8, which has the
      same value at 0 but a gradient of 1e8 at touching boxes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from keras import ops

from hart_tf.layers.adaptive_loss_weights import AdaptiveLossWeights
from hart_tf.model.metrics import _safe_divide, intersection, iou, mean_iou

EPS = 1e-8  # the original's floor for probabilities inside -log

# Loss-term names (keys of hart_loss's terms; the first three can be learned-weight terms).
TRACKING, ATTENTION, APPEARANCE, L2 = "tracking", "attention", "appearance", "l2"


def adaptive_term_names(
    attention_loss: bool = True, appearance_loss: bool = True
) -> tuple[str, ...]:
    """The terms `hart_loss` weighs adaptively for these switches (names for the layer)."""
    names = [TRACKING]
    if attention_loss:
        names.append(ATTENTION)
    if appearance_loss:
        names.append(APPEARANCE)
    return tuple(names)


def _check(name: str, x, rank: int, last: int | None = None):
    shape = tuple(x.shape)
    if len(shape) != rank or (last is not None and shape[-1] != last):
        want = f"rank {rank}" + (f" with last axis {last}" if last is not None else "")
        raise ValueError(f"losses: {name} must have {want}, got shape {shape}")
    return ops.cast(x, "float32")


def _nll(prob):
    """-log(prob), with prob floored at EPS so it is finite at 0."""
    return -ops.log(ops.maximum(prob, EPS))


def time_weighted_mean(values, presence):
    """Mean over the present objects at each step, then over steps with any object present.

    Args:
        values: per-object losses, `[B, T]`.
        presence: `[B, T]`, 1 where the object is visible.

    Returns:
        Scalar; 0 when nothing is present.
    """
    presence = ops.cast(presence, "float32")
    masked = ops.where(presence > 0, values, 0.0)  # absent steps contribute nothing
    count = ops.sum(presence, axis=0)  # (T,)
    per_step = _safe_divide(ops.sum(masked, axis=0), count)  # (T,)
    steps = ops.cast(count > 0, "float32")
    return _safe_divide(ops.sum(per_step * steps), ops.sum(steps))


def tracking_loss(pred_boxes, gt_boxes, presence):
    """L_t: -log IoU(pred, gt) for t >= 1, time-weighted (`time_weighted_mean`).

    Args:
        pred_boxes: `[B, T, 4]`.
        gt_boxes: `[B, T, 4]`.
        presence: `[B, T]`.

    Returns:
        Scalar.
    """
    pred_boxes = _check("pred_boxes", pred_boxes, 3, 4)
    gt_boxes = _check("gt_boxes", gt_boxes, 3, 4)
    presence = _check("presence", presence, 2)
    pred, gt = pred_boxes[:, 1:], gt_boxes[:, 1:]
    per_step = _nll(iou(pred, gt))  # (B, T-1)
    return time_weighted_mean(per_step, presence[:, 1:])


def attention_loss(att_boxes, gt_boxes, presence, image_size: Sequence[int],
                   tightness: float = 1.0):
    """L_s, the original's 'tight_intersection': the attention box should hold the object
    and be small.

        L_s = E[-log(|a ∩ g| / |g|)] + k E[-w log(1 - r)],  r = |a| / |image|,

    with r clipped to [0, 1] inside the log and the weight w = clip(r, 1, 10) (so w = 1
    unless the box outgrows the image; then w pushes its area down) and k = `tightness`
    (1 in the original; larger k resists a glimpse that widens over time). Both parts are
    time-weighted over t >= 1. A zero-area ground-truth box scores |a ∩ g| / 1 = 0.

    Args:
        att_boxes: attention boxes in pixels, `[B, T, 4]`.
        gt_boxes: `[B, T, 4]`.
        presence: `[B, T]`.
        image_size: (H, W) of the frames.
        tightness: weight k of the area part.

    Returns:
        Scalar.
    """
    att_boxes = _check("att_boxes", att_boxes, 3, 4)[:, 1:]
    gt_boxes = _check("gt_boxes", gt_boxes, 3, 4)[:, 1:]
    presence = _check("presence", presence, 2)[:, 1:]
    gt_area = gt_boxes[..., 2] * gt_boxes[..., 3]
    # The original divides by 1 where the ground truth has no area.
    covered = intersection(att_boxes, gt_boxes) / ops.where(gt_area > 0, gt_area, 1.0)
    contain = time_weighted_mean(_nll(covered), presence)

    ratio = att_boxes[..., 2] * att_boxes[..., 3] / float(image_size[0] * image_size[1])
    weight = ops.clip(ratio, 1.0, 10.0)
    tight = time_weighted_mean(_nll(1.0 - ops.clip(ratio, 0.0, 1.0)) * weight, presence)
    return contain + tightness * tight


def appearance_target(gt_boxes, att_boxes, feature_shape: Sequence[int]):
    """Location-map target: the part of the gt box inside the attention box, on the V1 grid.

    The attention box is split into an fh x fw grid of cells (the location map's cells);
    each target value is the fraction of that cell covered by the ground-truth box. The
    original rasterises the clipped box at the attention box's pixel size (rounded) and
    resizes it bilinearly to (fh, fw) (`bbox_to_mask`), which gives 0/1 cells with blurred
    edges; the area fraction is that target without pixel rounding or resampling shift.
    No gradient flows into the target (none did in the original).

    Args:
        gt_boxes: `[B, T, 4]` in pixels.
        att_boxes: `[B, T, 4]` in pixels.
        feature_shape: (fh, fw) of the location map.

    Returns:
        `[B, T, fh, fw]` in [0, 1]; all 0 where the attention box has no area.
    """
    gt_boxes = ops.stop_gradient(_check("gt_boxes", gt_boxes, 3, 4))
    att_boxes = ops.stop_gradient(_check("att_boxes", att_boxes, 3, 4))
    fh, fw = (int(v) for v in feature_shape)

    def axis_cover(gt_start, gt_size, att_start, att_size, cells):
        # gt interval in cell units of the attention window, clipped to the window.
        lo = ops.clip(_safe_divide(gt_start - att_start, att_size), 0.0, 1.0) * cells
        hi = ops.clip(_safe_divide(gt_start + gt_size - att_start, att_size), 0.0, 1.0) * cells
        edges = ops.arange(cells, dtype="float32")  # (cells,)
        cover = ops.minimum(hi[..., None], edges + 1.0) - ops.maximum(lo[..., None], edges)
        return ops.clip(cover, 0.0, 1.0)  # (B, T, cells)

    rows = axis_cover(gt_boxes[..., 0], gt_boxes[..., 2], att_boxes[..., 0], att_boxes[..., 2], fh)
    cols = axis_cover(gt_boxes[..., 1], gt_boxes[..., 3], att_boxes[..., 1], att_boxes[..., 3], fw)
    return rows[..., :, None] * cols[..., None, :]  # (B, T, fh, fw)


def appearance_loss(location_logits, target_mask, presence):
    """L_a: class-balanced sigmoid cross-entropy between location map and target.

    Each cell's cross-entropy is weighted by 1 / frac_pos if its target is non-zero, else
    by 1 / frac_neg, where frac_pos is the mean of the target over the map (a weight of 0
    becomes 1). The mean is over all cells of the (object, step) pairs present; as in the
    original, every step given is scored, step 0 included.

    Args:
        location_logits: `[B, T, fh, fw]` logits of the location map.
        target_mask: `[B, T, fh, fw]` in [0, 1] (`appearance_target`).
        presence: `[B, T]`.

    Returns:
        Scalar; 0 when nothing is present.
    """
    logits = _check("location_logits", location_logits, 4)
    target = ops.stop_gradient(_check("target_mask", target_mask, 4))
    presence = _check("presence", presence, 2)
    if tuple(logits.shape[2:]) != tuple(target.shape[2:]):
        raise ValueError(
            f"losses: location_logits {tuple(logits.shape)} and target_mask "
            f"{tuple(target.shape)} must have the same map shape"
        )
    xe = ops.binary_crossentropy(target, logits, from_logits=True)  # (B, T, fh, fw)
    frac_pos = ops.mean(target, axis=(2, 3), keepdims=True)  # (B, T, 1, 1)
    frac = ops.where(target > 0, frac_pos, 1.0 - frac_pos)
    weight = 1.0 / ops.where(frac > 0, frac, 1.0)
    per_object = ops.mean(weight * xe, axis=(2, 3))  # (B, T)
    per_object = ops.where(presence > 0, per_object, 0.0)
    return _safe_divide(ops.sum(per_object), ops.sum(presence))


# hart_loss's switches share these functions' names.
_attention_loss, _appearance_loss = attention_loss, appearance_loss


def l2_loss(weights: Sequence, dfn_l2=None, l2_weight: float = 1e-4):
    """R: l2_weight * (sum_W ||W||^2 / 2 + mean(dfn_l2)).

    The sum is over the weight matrices the model passes (the original took variables named
    W_*, i.e. kernels, no biases); `dfn_l2` is the per-step penalty on the DFN's dynamic
    filters, `[B, T]`, averaged over all entries as in the original.
    """
    total = ops.zeros((), "float32")
    for w in weights:
        total = total + 0.5 * ops.sum(ops.square(ops.cast(w, "float32")))
    if dfn_l2 is not None:
        total = total + ops.mean(ops.cast(dfn_l2, "float32"))
    return l2_weight * total


def hart_loss(
    outputs: Mapping,
    targets: Mapping,
    *,
    image_size: Sequence[int],
    feature_shape: Sequence[int],
    adaptive_weights: AdaptiveLossWeights | None,
    attention_loss: bool = True,
    appearance_loss: bool = True,
    attention_tightness: float = 1.0,
    l2_weight: float,
    l2_terms: Sequence = (),
):
    """The whole HART loss.

    Args:
        outputs: model outputs: "boxes" `[B, T, 4]`, "att_boxes" `[B, T, 4]`,
            "location_logits" `[B, T, fh, fw]` (needed when `appearance_loss`), optional
            "dfn_l2" `[B, T]`.
        targets: "boxes" `[B, T, 4]` and "presence" `[B, T]`.
        image_size: (H, W) of the frames.
        feature_shape: (fh, fw) of the location map.
        adaptive_weights: an `AdaptiveLossWeights` over exactly
            `adaptive_term_names(attention_loss, appearance_loss)`, or None for fixed
            weights of 1 (then the -log lambda terms vanish).
        attention_loss: add L_s (off for the paper's Table 1 variants without it).
        appearance_loss: add L_a (off without appearance attention).
        attention_tightness: weight of L_s's area part (`attention_loss`'s `tightness`).
        l2_weight: weight decay factor; 0 drops R. Never adaptive (as the original).
        l2_terms: weight matrices for R.

    Returns:
        `(total, terms)`: the scalar to minimise and a dict of scalars: each loss
        ("tracking", "attention", "appearance", "l2" = l2_weight * R), each learned weight
        ("lambda/<name>") and "iou", the mean IoU over present objects at t >= 1.
    """
    for key, where in (("boxes", outputs), ("att_boxes", outputs)):
        if key not in where:
            raise ValueError(f"hart_loss: outputs has no {key!r} (keys: {sorted(where)})")
    for key in ("boxes", "presence"):
        if key not in targets:
            raise ValueError(f"hart_loss: targets has no {key!r} (keys: {sorted(targets)})")
    if appearance_loss and "location_logits" not in outputs:
        raise ValueError(
            "hart_loss: appearance_loss=True needs outputs['location_logits']; "
            "turn appearance_loss off when appearance attention is off"
        )
    gt, presence = targets["boxes"], targets["presence"]

    losses = {TRACKING: tracking_loss(outputs["boxes"], gt, presence)}
    if attention_loss:
        losses[ATTENTION] = _attention_loss(outputs["att_boxes"], gt, presence, image_size,
                                            attention_tightness)
    if appearance_loss:
        target = appearance_target(gt, outputs["att_boxes"], feature_shape)
        losses[APPEARANCE] = _appearance_loss(outputs["location_logits"], target, presence)

    terms = dict(losses)
    if adaptive_weights is None:
        total = sum(losses.values())
    else:
        if set(adaptive_weights.names) != set(losses):
            raise ValueError(
                f"hart_loss: adaptive_weights has terms {sorted(adaptive_weights.names)} but "
                f"the active losses are {sorted(losses)}; build it with adaptive_term_names()"
            )
        total = adaptive_weights(losses)
        for name, lam in adaptive_weights.lambdas().items():
            terms[f"lambda/{name}"] = lam

    if l2_weight > 0:
        terms[L2] = l2_loss(l2_terms, outputs.get("dfn_l2"), l2_weight)
        total = total + terms[L2]

    terms["iou"] = ops.stop_gradient(mean_iou(outputs["boxes"], gt, presence))
    return total, terms
