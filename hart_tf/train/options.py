"""What a training run does, as nested dataclasses: the one source of training defaults.

`hart_tf.cli.flags` reads its defaults from these classes (a test checks that they agree),
so `python -m hart_tf.train` and `hart_tf.train.trainer.train(TrainOptions())` train the
same recipe. A flag and the field it sets share a name; `TrainOptions.from_flat` builds the
nested options from such flat names.

Imports neither Keras nor TensorFlow: the command line builds its options before either.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from hart_tf.data.synthetic import SyntheticConfig
from hart_tf.model.config import HARTConfig
from hart_tf.train.curriculum import Curriculum

_SYNTHETIC = SyntheticConfig()


@dataclasses.dataclass
class DataOptions:
    """The training data and the fixed evaluation sets.

    Attributes:
        dataset: "synthetic" (embedded, no download), "kitti" or "kth".
        data_dir: the dataset's root folder (KITTI: the one holding training/).
        num_distractors_max: synthetic data: most look-alike distractors per video (0: none).
        distractor_jitter: synthetic data: how far a look-alike strays from the target.
        distractor_front_prob: synthetic data: chance a look-alike passes in front.
        distractor_cross_speed: synthetic data: > 0 makes each look-alike cross the target's
            path once at this relative speed (0: a random path).
        occlusion_prob: synthetic data: chance that an occluding bar passes the target.
        train_clips_dir: a folder of real clips to mix into the synthetic batches.
        train_clips: the clips of `train_clips_dir` to train on (names, or "all").
        train_clips_fraction: the share of each batch cut from those clips.
        train_clips_cache_mb: hold the clips' frames decoded when they fit in this many MiB.
        train_clips_colour_jitter: strength of the per-window brightness, contrast and
            saturation jitter of the real-clip windows (0: none).
        val_clips: clips of `train_clips_dir` that validate (choose the best checkpoint)
            instead of training; with real clips in training they replace the synthetic
            validation set.
        data_workers: threads rendering batches ahead of the model (host rendering).
        render_on: where training batches are made: "host" (synthetic: the NumPy renderer
            in `data_workers` threads; KITTI, KTH: windows cut from the frame store in host
            memory), "device" (JAX only, one device: synthetic batches compiled on the
            accelerator by `hart_tf.data.synthetic_device`; KITTI, KTH: the frame store
            copied to the accelerator once and each batch's windows gathered there) or
            "auto" (device for synthetic, KITTI and KTH data under JAX on a GPU or TPU
            with one device, else host). Validation and test sets are always made on the host.
        frame_store_mb: KITTI, KTH: the training split's frames are decoded once and held
            in memory (`hart_tf.data.frame_store`) when they fit in this many MiB, else
            each window is decoded from its files (0: always).
        eval_sequences: sequences in the validation and test sets.
        eval_steps: frames scored per test sequence (None: 60 for KITTI, else 30).
    """

    dataset: str = "synthetic"
    data_dir: str | None = None
    num_distractors_max: int = _SYNTHETIC.n_distractors[1]
    distractor_jitter: float = _SYNTHETIC.distractor_jitter
    distractor_front_prob: float = _SYNTHETIC.distractor_front_prob
    distractor_cross_speed: float = _SYNTHETIC.distractor_cross_speed
    occlusion_prob: float = _SYNTHETIC.occlusion_prob
    train_clips_dir: str | None = None
    train_clips: tuple[str, ...] = ()
    train_clips_fraction: float = 0.5
    train_clips_cache_mb: float = 2048.0
    train_clips_colour_jitter: float = 0.2
    val_clips: tuple[str, ...] = ()
    data_workers: int = 2
    render_on: str = "auto"
    frame_store_mb: float = 8192.0
    eval_sequences: int = 32
    eval_steps: int | None = None

    @property
    def test_steps(self) -> int:
        """Frames scored per test sequence."""
        return self.eval_steps or (60 if self.dataset == "kitti" else 30)


@dataclasses.dataclass
class OptimizerOptions:
    """The update rule.

    Attributes:
        batch_size: sequences per batch (the paper: 10).
        optimizer: "adam" or "rmsprop" (the paper's, with momentum).
        learning_rate: the rate at the first curriculum length.
        momentum: RMSProp's momentum, or Adam's beta_1.
        clip_norm: gradients are clipped to this global norm.
        clip_rms: > 0: instead, gradients are clipped on the root mean square of all their
            elements at this value, as the original (0.3: a global norm of 0.3 sqrt(N)).
        lr_decay: {length: factor}: the rate is multiplied by `factor` once the curriculum
            reaches `length` steps.
        warmup_steps: the rate rises linearly from rate / warmup_steps to the full rate over
            the first `warmup_steps` updates of the run (0: no warm-up); for large batches.
    """

    batch_size: int = 16
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    clip_norm: float = 1.0
    clip_rms: float = 0.0
    lr_decay: dict[int, float] = dataclasses.field(default_factory=lambda: {20: 0.3})
    warmup_steps: int = 0

    def rate_at(self, length: int, step: int | None = None) -> float:
        """The learning rate at curriculum length `length` (and, given, at update `step`,
        counted from 0, within the warm-up)."""
        rate = self.learning_rate
        for at, factor in sorted(self.lr_decay.items()):
            if length >= at:
                rate *= factor
        if step is not None and step < self.warmup_steps:
            rate *= (step + 1) / self.warmup_steps
        return rate


@dataclasses.dataclass
class ScheduleOptions:
    """How long to train and the sequence-length curriculum (`Curriculum`).

    Attributes:
        curriculum_lengths: sequence lengths to step through.
        curriculum_threshold: train IoU needed to leave the first length.
        curriculum_threshold_decrease: how much lower the threshold is at the last length.
        curriculum_min_epochs: least epochs at a length before growing.
        steps_per_epoch: updates per epoch (validation, checkpoint and curriculum check).
        epochs: epochs to train.
        max_minutes: stop after this many minutes of training (0: no limit).
        epoch_from_windows: an epoch is one pass over the augmented training windows (KITTI,
            KTH; the original's), not `steps_per_epoch` updates.
        curriculum_check_every: epochs between promotion checks (the original: 3).
        curriculum_score: "train", the epoch's running train-mode IoU (ours), or
            "test_mode", the IoU with training=False over a quarter epoch of training
            batches (the original's).
    """

    curriculum_lengths: tuple[int, ...] = (5, 10, 20)
    curriculum_threshold: float = 0.55
    curriculum_threshold_decrease: float = 0.0
    curriculum_min_epochs: int = 1
    steps_per_epoch: int = 50
    epochs: int = 200
    max_minutes: float = 8.5
    epoch_from_windows: bool = False
    curriculum_check_every: int = 1
    curriculum_score: str = "train"

    def curriculum(self) -> Curriculum:
        """A new curriculum at its first length."""
        return Curriculum(self.curriculum_lengths, threshold=self.curriculum_threshold,
                          threshold_decrease=self.curriculum_threshold_decrease,
                          min_epochs=self.curriculum_min_epochs,
                          check_every=self.curriculum_check_every)


@dataclasses.dataclass
class RunOptions:
    """Where a run writes, how it runs, and how it recovers.

    Attributes:
        run_name: checkpoints go to `<checkpoint_dir>/<run_name>`, logs to `runs/<run_name>`.
        checkpoint_dir: the parent folder of the run folders.
        logdir: the TensorBoard folder (None: `runs/<run_name>`).
        checkpoint_every: save a checkpoint every N updates (and at every epoch end).
        keep_checkpoints: step checkpoints kept (the best is kept apart).
        resume: continue from the run's newest good checkpoint, if any.
        init_from: start a new run from the weights of this checkpoint.
        image_every: TensorBoard images every N updates (0: none).
        image_frames: frames of each TensorBoard sequence strip (0: every frame).
        histogram_every: TensorBoard histograms (lambda, gradient norms, weights) every N
            updates (0: none).
        seed: seeds the weights, the data and the noise.
        jit_compile: "auto" (on for JAX, off for TensorFlow on the CPU), "true" or "false".
        unroll: unroll the recurrence (TensorFlow on the CPU: faster steps).
        run_eagerly: run the train step op by op (debugging).
        mixed_precision: bf16 compute with float32 losses and attention.
        max_bad_steps: stop after this many non-finite updates in a row (each is skipped).
        progress: 0 is quiet; 1 prints progress (Keras bars, epoch lines).
        distribute: "none" or "data_parallel" (every device of every host).
        num_hosts: hosts (one process each) of a data-parallel run.
        coordinator_address: JAX with several hosts: host 0's HOST:PORT.
        process_id: this host's index; 0 is the chief, which writes checkpoints.
    """

    run_name: str = "hart"
    checkpoint_dir: str = "checkpoints"
    logdir: str | None = None
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    resume: bool = True
    init_from: str | None = None
    image_every: int = 500
    image_frames: int = 6
    histogram_every: int = 100
    seed: int = 0
    jit_compile: str = "auto"
    unroll: bool = True
    run_eagerly: bool = False
    mixed_precision: bool = False
    max_bad_steps: int = 20
    progress: int = 1
    distribute: str = "none"
    num_hosts: int = 1
    coordinator_address: str | None = None
    process_id: int = 0


# `--curriculum_protocol` sets these three together.
CURRICULUM_PROTOCOLS = {
    "ours": {"epoch_from_windows": False, "curriculum_check_every": 1, "curriculum_score": "train"},
    "original": {"epoch_from_windows": True, "curriculum_check_every": 3,
                 "curriculum_score": "test_mode"},
}

GROUPS = {"data": DataOptions, "optimizer": OptimizerOptions, "schedule": ScheduleOptions,
          "run": RunOptions}


@dataclasses.dataclass
class TrainOptions:
    """Everything `hart_tf.train.trainer.train` needs: the model config and four groups."""

    config: HARTConfig = dataclasses.field(default_factory=HARTConfig)
    data: DataOptions = dataclasses.field(default_factory=DataOptions)
    optimizer: OptimizerOptions = dataclasses.field(default_factory=OptimizerOptions)
    schedule: ScheduleOptions = dataclasses.field(default_factory=ScheduleOptions)
    run: RunOptions = dataclasses.field(default_factory=RunOptions)

    @classmethod
    def from_flat(cls, config: HARTConfig | None = None, **values: Any) -> TrainOptions:
        """Options from flat field names (as the flags name them), e.g.
        `TrainOptions.from_flat(batch_size=8, dataset="kth")`; the rest keep their defaults.

        Raises:
            TypeError: for a name that no group has.
        """
        groups: dict[str, dict[str, Any]] = {name: {} for name in GROUPS}
        for key, value in values.items():
            group = FIELD_GROUP.get(key)
            if group is None:
                raise TypeError(f"TrainOptions has no field {key!r}")
            groups[group][key] = value
        built = {name: GROUPS[name](**kwargs) for name, kwargs in groups.items()}
        return cls(config=config or HARTConfig(), **built)

    def replace(self, **values: Any) -> TrainOptions:
        """A copy with some flat fields changed (`config=` replaces the model config)."""
        out = dataclasses.replace(self, config=values.pop("config", self.config))
        for key, value in values.items():
            group = FIELD_GROUP.get(key)
            if group is None:
                raise TypeError(f"TrainOptions has no field {key!r}")
            setattr(out, group, dataclasses.replace(getattr(out, group), **{key: value}))
        return out

    @property
    def run_dir(self) -> Path:
        return Path(self.run.checkpoint_dir) / self.run.run_name

    @property
    def log_dir(self) -> Path:
        return Path(self.run.logdir) if self.run.logdir else Path("runs") / self.run.run_name


# Flat field name -> its group (names are unique across the groups).
FIELD_GROUP = {f.name: group for group, klass in GROUPS.items()
               for f in dataclasses.fields(klass)}


def flat_defaults() -> dict[str, Any]:
    """Every flat field's default (what the flags must default to)."""
    return {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
            for klass in GROUPS.values() for f in dataclasses.fields(klass)}
