"""Tracking with a trained model: `tracker` (the `Tracker` API: init(frame, box),
update(frame)), `baselines` (static box, OpenCV trackers) and `export` (SavedModel for TF
Serving).

`python -m hart_tf.track` runs `hart_tf.cli.track`.
"""
