"""Datasets. Each loader yields the same dict per sequence:

  frames:   uint8   [T, H, W, 3]   RGB, pixels of the (resized) frame
  boxes:    float32 [T, 4]         (y, x, h, w), top-left corner, pixels
  presence: float32 [T]            1 where the object is visible, 0 after it is lost

Batched: a leading batch axis B. This package never imports the model.
"""
