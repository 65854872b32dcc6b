"""Small helpers every role uses and that import nothing else of hart_tf: `boxes` (every box
convention and IoU in NumPy), `files` (atomic writes) and `quiet` (TensorFlow's start-up log)."""
