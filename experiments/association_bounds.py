"""What does tracking through the synthetic look-alikes take? Oracle trackers that know boxes.

Usage (from the repo root):
  python experiments/association_bounds.py [--eval_sequences=256 --eval_steps=30] [data flags]

On the fixed synthetic test set of `python -m hart_tf.evaluate` (the same data flags, e.g.
`--num_distractors_max=0`), an oracle tracker is handed, at every frame, the exact boxes of
the target and of each look-alike distractor, and only has to choose one. Two ways to choose:

- `nearest`: the box whose centre is nearest the centre of the previous choice (where the
  object was: no motion model);
- `velocity`: the box whose centre is nearest the previous choice's centre moved by its last
  displacement (where the object would be at constant velocity).

Prints each one's mean IoU over the test steps (scored as `evaluate` scores a model: step 0
not counted, steps without the target left out), success AUC and the fraction of sequences
whose choice is the target at the last step, beside the static first box, and how often the
target overlaps a look-alike. Localisation is
perfect by construction, so what the two lose is association alone: how much a tracker that
cannot use motion must lose to the look-alikes, and how much motion alone recovers.
`--position_noise=0,1,2` adds rows for oracles that know the true boxes but not exactly where
their own pick is (Gaussian error of that many pixels on its centre, from which the next
choice and the velocity are made; `--velocity_decay` smooths the velocity): how precise a
tracker's localisation must be for motion to help. With `--out=<file>.json` the numbers and
the IoU per step are written too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from absl import flags

from hart_tf.cli import common as cli
from hart_tf.cli.common import FLAGS

sys.path.insert(0, str(Path(__file__).resolve().parent))  # experiments/box_drift.py when imported
from box_drift import centre  # noqa: E402

flags.DEFINE_list("position_noise", ["0"], "Localisation errors (px, Gaussian per coordinate) "
                  "of the oracle's beliefs about where its picks are: a row pair for each.")
flags.DEFINE_float("velocity_decay", 0.0, "Exponential smoothing of the velocity rule's "
                   "estimate (0: the last displacement as it is).")


def _noises_ok(values) -> bool:
    try:
        return all(float(v) >= 0 for v in values)
    except ValueError:
        return False


flags.register_validator("position_noise", _noises_ok,
                         message="--position_noise: numbers expected, each >= 0 (pixels)")
flags.register_validator("velocity_decay", lambda v: 0 <= v < 1,
                         message="--velocity_decay must be in [0, 1)")

RULES = ("nearest", "velocity")


def overlap_fraction(gt: np.ndarray, distractors: np.ndarray, presence: np.ndarray) -> np.ndarray:
    """Per step, the fraction of present targets that overlap at least one look-alike (T,)."""
    from hart_tf.model.metrics import iou

    if not distractors.shape[2]:
        return np.zeros(gt.shape[1])
    touching = np.asarray(iou(gt[:, :, None], distractors)).max(-1) > 0  # (N, T)
    present = presence > 0
    return (touching & present).sum(0) / np.maximum(present.sum(0), 1)


def associate(gt: np.ndarray, distractors: np.ndarray, presence: np.ndarray, rule: str,
              noise: float = 0.0, decay: float = 0.0,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boxes an oracle tracker picks among the true ones, and whether each pick is the target.

    Args:
        gt: target boxes (N, T, 4) as (y, x, h, w); step 0's is the given box.
        distractors: look-alike boxes (N, T, K, 4); zero-size boxes pad.
        presence: (N, T); an absent target is no candidate.
        rule: "nearest" (nearest the previous pick) or "velocity" (nearest the previous pick
            moved by its last displacement).
        noise: the tracker's own localisation error: where it believes each pick's centre
            is, is the true centre plus Gaussian noise of this many pixels (per coordinate);
            choices are made from those beliefs, so the velocity is estimated from them too.
        decay: exponential smoothing of the estimated velocity, v = decay * v + (1 - decay)
            * (last displacement); 0 takes the last displacement as it is.
        seed: seed of the noise.

    Returns:
        picks (N, T, 4), the true boxes of the chosen objects (the noise costs association,
        not localisation), and on_target (N, T) bool. With no candidate at a step the
        previous pick is kept (and is not the target).
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if noise < 0 or not 0 <= decay < 1:
        raise ValueError(f"need noise >= 0 and 0 <= decay < 1, got {noise} and {decay}")
    rng = np.random.default_rng(seed)
    n, t_len = gt.shape[:2]
    cands = np.concatenate([gt[:, :, None], distractors], axis=2)  # (N, T, 1+K, 4)
    valid = cands[..., 2] > 0
    valid[:, :, 0] &= presence > 0
    picks = np.array(gt)
    on_target = np.zeros((n, t_len), bool)
    on_target[:, 0] = True
    velocity = np.zeros((n, 2))
    belief = centre(gt[:, 0])  # (N, 2): where the tracker believes its last pick is
    for t in range(1, t_len):
        guess = belief + (velocity if rule == "velocity" else 0.0)  # (N, 2)
        dist = np.linalg.norm(centre(cands[:, t]) - guess[:, None], axis=-1)  # (N, 1+K)
        dist = np.where(valid[:, t], dist, np.inf)
        choice = np.argmin(dist, axis=1)  # (N,)
        found = np.isfinite(dist[np.arange(n), choice])
        picks[:, t] = np.where(found[:, None], cands[np.arange(n), t, choice], picks[:, t - 1])
        on_target[:, t] = found & (choice == 0)
        seen = centre(picks[:, t]) + (rng.normal(0.0, noise, (n, 2)) if noise else 0.0)
        step = decay * velocity + (1.0 - decay) * (seen - belief)
        velocity = np.where(found[:, None], step, velocity)
        belief = np.where(found[:, None], seen, belief)
    return picks, on_target


@cli.one_line_errors
def main(argv):
    cli.reject_extra_args(argv)
    from hart_tf.cli.train import options_from_flags
    from hart_tf.eval import sequences as evaluation
    from hart_tf.eval import sets
    from hart_tf.model import metrics

    options = options_from_flags()
    if options.data.dataset != "synthetic":
        raise ValueError(f"--dataset={options.data.dataset}: the look-alikes' boxes exist only for "
                         "--dataset=synthetic")
    steps = FLAGS.eval_steps or 30
    data = sets.eval_set(options, "test", n=FLAGS.eval_sequences, length=steps + 1,
                             with_extras=True)
    gt, presence = data["boxes"], data["presence"]
    result = {"sequences": FLAGS.eval_sequences, "steps": steps}
    print(f"{FLAGS.eval_sequences} synthetic test sequences, {steps} steps, "
          f"up to {data['distractor_boxes'].shape[2]} look-alikes")
    overlap = overlap_fraction(gt, data["distractor_boxes"], presence)
    result["target_overlaps_look_alike"] = overlap.tolist()
    marks = sorted({1, steps // 2, steps})
    print("the target overlaps a look-alike in "
          f"{overlap[1:].mean():.2f} of the test steps ("
          + ", ".join(f"t = {t}: {overlap[t]:.2f}" for t in marks) + ")")
    print(" tracker       | mean IoU | success AUC | on the target at the last step")
    static = evaluation.score(metrics.static_baseline(gt[:, 0], steps + 1), gt, presence)
    result["static"] = static
    print(f" static        |    {static['mean_iou']:.3f} |       {static['success_auc']:.3f} |   -")
    result["oracles"] = []
    for noise in [float(v) for v in FLAGS.position_noise]:  # checked by the flag's validator
        for rule in RULES:
            picks, on_target = associate(gt, data["distractor_boxes"], presence, rule,
                                         noise=noise, decay=FLAGS.velocity_decay)
            s = {"rule": rule, "position_noise": noise, "velocity_decay": FLAGS.velocity_decay,
                 **evaluation.score(picks, gt, presence),
                 "on_target_last": float(on_target[:, -1].mean())}
            result["oracles"].append(s)
            name = rule + (f" ±{noise:g}px" if noise else "")
            print(f" {name:13s} |    {s['mean_iou']:.3f} |       {s['success_auc']:.3f} |   "
                  f"{s['on_target_last']:.2f}")
    if FLAGS.out:
        Path(FLAGS.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(cli.run(main))
