"""`SyntheticConfig`: the distribution of the embedded synthetic videos."""

from __future__ import annotations

import dataclasses

import numpy as np

SHAPES = ("ellipse", "rectangle", "triangle", "diamond")
TEXTURES = ("stripes", "checker", "rings")
_MIN_COLOUR = 40.0  # object colours stay above this so a debug render is non-zero everywhere



@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Distribution of the synthetic sequences.

    Attributes:
        image_size: (H, W) of the frames in pixels.
        target_size: range of the target's size sqrt(h * w) in pixels.
        aspect: range of the target's aspect ratio h / w.
        max_speed: cap on the speed of the target and distractors, pixels per frame.
        accel: scale of the smooth random acceleration, pixels per frame^2.
        scale_rate: scale of the per-frame change of log size and log aspect.
        n_distractors: (min, max) number of distractors, inclusive.
        distractor_jitter: relative perturbation of a distractor's size, colour and texture.
        distractor_front_prob: probability that a distractor is drawn in front of the target
            (hiding it while they cross) rather than behind it.
        distractor_cross_speed: 0 (the default): each distractor moves on its own smooth
            random path, like the target's, that passes close to the target at a random
            middle frame and bounces off the borders; their relative speed is whatever the two
            velocities give, often slow, so a look-alike tends to travel beside the target for
            much of the video. > 0: each distractor crosses the target's path once instead: a
            straight line through the same meeting point, at this speed relative to the
            target's velocity there (pixels per frame, in a random direction), leaving the
            frame at the borders rather than bouncing back.
        occlusion_prob: probability that an occluder passes in front of the target.
        pan_speed: maximum background pan, pixels per frame (integer steps).
        allow_leave: let the target leave the frame (presence 0 from its centre's first
            frame outside); off keeps it inside by reflecting at the borders.
    """

    image_size: tuple[int, int] = (96, 128)
    target_size: tuple[float, float] = (12.0, 30.0)
    aspect: tuple[float, float] = (0.6, 1.6)
    max_speed: float = 3.0
    accel: float = 0.4
    scale_rate: float = 0.03
    n_distractors: tuple[int, int] = (1, 3)
    distractor_jitter: float = 0.15
    distractor_front_prob: float = 0.5
    distractor_cross_speed: float = 0.0
    occlusion_prob: float = 0.5
    pan_speed: float = 0.5
    allow_leave: bool = False

    def __post_init__(self):
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "target_size", tuple(float(v) for v in self.target_size))
        object.__setattr__(self, "aspect", tuple(float(v) for v in self.aspect))
        object.__setattr__(self, "n_distractors", tuple(int(v) for v in self.n_distractors))
        h, w = self.image_size
        lo, hi = self.target_size
        if not 0 < lo <= hi:
            raise ValueError(
                f"SyntheticConfig.target_size must be 0 < min <= max, got {self.target_size}"
            )
        if not 0 < self.aspect[0] <= self.aspect[1]:
            raise ValueError(f"SyntheticConfig.aspect must be 0 < min <= max, got {self.aspect}")
        if not 0 <= self.n_distractors[0] <= self.n_distractors[1]:
            raise ValueError(
                f"SyntheticConfig.n_distractors must be 0 <= min <= max, got {self.n_distractors}"
            )
        if not 0.0 <= self.distractor_front_prob <= 1.0:
            raise ValueError(
                "SyntheticConfig.distractor_front_prob must be in [0, 1], "
                f"got {self.distractor_front_prob}"
            )
        if not 0.0 <= self.occlusion_prob <= 1.0:
            raise ValueError(
                f"SyntheticConfig.occlusion_prob must be in [0, 1], got {self.occlusion_prob}"
            )
        # Largest extent of any object (the occluder is up to twice the target's size): each
        # must fit in the frame to be drawn from one crop.
        biggest = max(2.0 * hi, hi * np.sqrt(max(self.aspect[1], 1 / self.aspect[0])))
        if biggest + 4 > min(h, w):
            raise ValueError(
                f"SyntheticConfig.target_size {self.target_size} is too big for "
                f"image_size {self.image_size}"
            )
        for name in ("max_speed", "accel", "scale_rate", "distractor_jitter", "pan_speed",
                     "distractor_cross_speed"):
            if getattr(self, name) < 0:
                raise ValueError(f"SyntheticConfig.{name} must be >= 0, got {getattr(self, name)}")
