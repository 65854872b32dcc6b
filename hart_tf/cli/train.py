"""Train HART: `python -m hart_tf.train [--flagfile=flags/<experiment>.cfg] [--flag=value]`.

With no flags it trains the `small` model on the embedded synthetic dataset (no download),
reports IoU on the fixed test set and leaves checkpoints in checkpoints/<run_name> and
TensorBoard logs in runs/<run_name>.
"""

from __future__ import annotations

from pathlib import Path

from hart_tf.cli import common as cli
from hart_tf.cli.common import FLAGS
from hart_tf.train.options import CURRICULUM_PROTOCOLS, FIELD_GROUP, TrainOptions


def _lr_decay(items) -> dict[int, float]:
    out = {}
    for item in items:
        try:
            at, factor = item.split(":")
            out[int(at)] = float(factor)
        except ValueError:
            raise ValueError(f"--lr_decay entries are LENGTH:FACTOR, got {item!r}") from None
    return out


def _lengths(items) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in items)
    except ValueError:
        raise ValueError("--curriculum_lengths must be integers, e.g. 5,10,20") from None


def options_from_flags() -> TrainOptions:
    """The training options the flags choose (each flag sets the field of its name)."""
    values = {name: FLAGS[name].value for name in FIELD_GROUP if name in FLAGS}
    values.update(lr_decay=_lr_decay(FLAGS.lr_decay),
                  curriculum_lengths=_lengths(FLAGS.curriculum_lengths),
                  train_clips=tuple(FLAGS.train_clips or ()),
                  val_clips=tuple(FLAGS.val_clips or ()),
                  **CURRICULUM_PROTOCOLS[FLAGS.curriculum_protocol])
    return TrainOptions.from_flat(config=cli.config_from_flags(), **values)


def _shown(path) -> str:
    """A path as the user would type it: relative to the working folder when inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def _summary_lines(summary: dict, options: TrainOptions) -> list[str]:
    test = summary["test"]
    checkpoint = summary["checkpoint"]
    return [
        f"Test mean IoU over {test['steps']} steps: {test['mean_iou']:.3f} "
        f"(static baseline {test['static_mean_iou']:.3f}) after {summary['step']} updates "
        f"in {summary['minutes']:.1f} min",
        f"Checkpoint: {_shown(checkpoint)}   "
        f"full summary: {_shown(options.run_dir / 'summary.json')}",
        f"TensorBoard: tensorboard --logdir {options.log_dir}",
        f"Next: python -m hart_tf.evaluate --model={options.run_dir}   or   "
        f"python -m hart_tf.track --model={options.run_dir} --frames=<folder> "
        "--init=x,y,w,h --out=boxes.txt",
    ]


@cli.one_line_errors
def main(argv):
    cli.reject_extra_args(argv)
    options = options_from_flags()
    # Keras (and with it TensorFlow) is imported only now that the flags are known good.
    from hart_tf.train.trainer import train

    try:
        summary = train(options)
    except KeyboardInterrupt:
        raise cli.Stop("interrupted; rerun the same command to resume from the last "
                       f"checkpoint in {options.run_dir}", code=cli.EXIT_INTERRUPTED) from None
    if summary["stopped"]:
        raise cli.Stop(summary["stopped"])
    print("\n".join(_summary_lines(summary, options)))


def console_main() -> None:
    """The `hart-train` console script."""
    cli.run(main)
