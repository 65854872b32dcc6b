"""Train HART: `python -m hart_tf.train [--flagfile=flags/<experiment>.cfg] [--flag=value]`.

With no flags it trains the `small` model on the embedded synthetic dataset (no download),
reports IoU on the fixed test set and leaves checkpoints in checkpoints/<run_name> and
TensorBoard logs in runs/<run_name>.
"""

from __future__ import annotations

import json

from hart_tf import cli
from hart_tf.cli import FLAGS
from hart_tf.curriculum import Curriculum
from hart_tf.training import TrainOptions, train


def _lr_decay() -> dict[int, float]:
    out = {}
    for item in FLAGS.lr_decay:
        try:
            at, factor = item.split(":")
            out[int(at)] = float(factor)
        except ValueError:
            raise ValueError(f"--lr_decay entries are LENGTH:FACTOR, got {item!r}") from None
    return out


def curriculum_from_flags() -> Curriculum:
    kwargs = dict(threshold=FLAGS.curriculum_threshold,
                  threshold_decrease=FLAGS.curriculum_threshold_decrease,
                  min_epochs=FLAGS.curriculum_min_epochs)
    if FLAGS.curriculum_lengths:
        try:
            lengths = tuple(int(v) for v in FLAGS.curriculum_lengths)
        except ValueError:
            raise ValueError("--curriculum_lengths must be integers, e.g. 5,10,20") from None
        return Curriculum(lengths, **kwargs)
    return Curriculum.from_range(FLAGS.curriculum_start, FLAGS.curriculum_max, **kwargs)


def options_from_flags() -> TrainOptions:
    eval_steps = FLAGS.eval_steps or (60 if FLAGS.dataset == "kitti" else 30)
    return TrainOptions(
        config=cli.config_from_flags(),
        dataset=FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        img_dir=FLAGS.img_dir,
        label_dir=FLAGS.label_dir,
        texture_source=FLAGS.texture_source,
        num_distractors_max=FLAGS.num_distractors_max,
        distractor_jitter=FLAGS.distractor_jitter,
        distractor_front_prob=FLAGS.distractor_front_prob,
        distractor_cross_speed=FLAGS.distractor_cross_speed,
        occlusion_prob=FLAGS.occlusion_prob,
        train_clips_dir=FLAGS.train_clips_dir,
        train_clips=tuple(FLAGS.train_clips or ()),
        train_clips_fraction=FLAGS.train_clips_fraction,
        train_clips_cache_mb=FLAGS.train_clips_cache_mb,
        train_clips_colour_jitter=FLAGS.train_clips_colour_jitter,
        val_clips=tuple(FLAGS.val_clips or ()),
        data_workers=FLAGS.data_workers,
        batch_size=FLAGS.batch_size,
        optimizer=FLAGS.optimizer,
        learning_rate=FLAGS.learning_rate,
        momentum=FLAGS.momentum,
        clip_norm=FLAGS.clip_norm,
        lr_decay=_lr_decay(),
        steps_per_epoch=FLAGS.steps_per_epoch,
        epochs=FLAGS.epochs,
        max_minutes=FLAGS.max_minutes,
        seed=FLAGS.seed,
        jit_compile=FLAGS.jit_compile,
        unroll=FLAGS.unroll,
        curriculum=curriculum_from_flags(),
        run_name=FLAGS.run_name,
        checkpoint_dir=FLAGS.checkpoint_dir,
        logdir=FLAGS.logdir,
        checkpoint_every=FLAGS.checkpoint_every,
        keep_checkpoints=FLAGS.keep_checkpoints,
        resume=FLAGS.resume,
        init_from=FLAGS.init_from,
        image_every=FLAGS.image_every,
        eval_sequences=FLAGS.eval_sequences,
        eval_steps=eval_steps,
        max_bad_steps=FLAGS.max_bad_steps,
        run_eagerly=FLAGS.run_eagerly,
        mixed_precision=FLAGS.mixed_precision,
        distribute=FLAGS.distribute,
        num_hosts=FLAGS.num_hosts,
        coordinator_address=FLAGS.coordinator_address,
        process_id=FLAGS.process_id,
    )


@cli.one_line_errors
def main(argv):
    cli.reject_extra_args(argv)
    options = options_from_flags()
    try:
        summary = train(options)
    except KeyboardInterrupt:
        raise cli.Stop("interrupted; rerun the same command to resume from the last "
                       f"checkpoint in {options.run_dir}", code=cli.EXIT_INTERRUPTED) from None
    if summary["stopped"]:
        raise cli.Stop(summary["stopped"])
    test = summary["test"]
    print(json.dumps({"test": test, "checkpoint": summary["checkpoint"],
                      "minutes": round(summary["minutes"], 2)}, indent=1, default=float))
    print(f"Test mean IoU over {test['steps']} steps: {test['mean_iou']:.3f} "
          f"(static baseline {test['static_mean_iou']:.3f})")


if __name__ == "__main__":
    cli.run(main)
