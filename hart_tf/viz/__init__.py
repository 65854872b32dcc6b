"""Pictures of tracking: boxes drawn on frames, panels and strips of sequences, the IoU-per-
step figure, PNG and GIF files. NumPy, Pillow and matplotlib only: training, evaluation and
tracking all draw with it, and it imports nothing else of hart_tf."""

from hart_tf.viz.draw import (
    draw_boxes,
    iou_per_step_figure,
    save_gif,
    save_png,
    sequence_strip,
    strip_steps,
    tracking_panel,
)

__all__ = ["draw_boxes", "iou_per_step_figure", "save_gif", "save_png", "sequence_strip",
           "strip_steps", "tracking_panel"]
