"""V1 feature extractors: AlexNet conv1-conv3 (the paper's) and a cheap one for synthetic data.

Preprocessing found in the original code: frames are read as RGB floats in [0, 255] (no BGR
swap, no ImageNet mean); with `normalize_glimpse` each glimpse is contrast-normalised to
[0, 1] by its own min and max over (H, W, C); the AlexNet function then subtracts each
glimpse's per-channel spatial mean. So the Caffe weights see RGB values in about [-1, 1]
rather than mean-subtracted BGR in [0, 255]; activations are smaller but the fine-tuned model
was trained that way. `subtract_mean=True` here reproduces the mean subtraction; contrast
normalisation is the model's job (`HARTConfig.normalize_glimpse`).
"""

from __future__ import annotations

import os

import keras
import numpy as np
from keras import ops

from hart_tf.layers.local_response_normalization import LocalResponseNormalization

# Caffe layout of bvlc_alexnet.npy: name -> (kernel (kh, kw, cin / groups, cout), bias (cout,)).
ALEXNET_SHAPES = {
    "conv1": ((11, 11, 3, 96), (96,)),
    "conv2": ((5, 5, 48, 256), (256,)),
    "conv3": ((3, 3, 256, 384), (384,)),
}


def _subtract_spatial_mean(x):
    return x - ops.mean(x, axis=(1, 2), keepdims=True)  # per image and channel


@keras.saving.register_keras_serializable(package="hart_tf")
class AlexNetV1(keras.layers.Layer):
    """AlexNet conv1-conv3 with SAME padding and no max-pooling (total stride 4).

    conv1 11x11/4 96 ReLU -> LRN -> conv2 5x5 256 in 2 groups ReLU -> LRN -> conv3 3x3 384
    ReLU; a 56x56x3 glimpse gives 14x14x384, 1,227,520 parameters. Pretrained weights come
    from `load_alexnet_weights`. See the module docstring for the input scaling the original
    used.

    Args:
        subtract_mean: subtract each image's per-channel spatial mean first (as the original).

    Call arguments:
        inputs: (B, gh, gw, 3) glimpses.

    Returns:
        (B, ceil(gh / 4), ceil(gw / 4), 384) ReLU features.

    Reference:
        Kosiorek et al., NIPS 2017, section "Appearance Attention" (V1); Krizhevsky et al.,
        NIPS 2012, section 3.5.
    """

    def __init__(self, subtract_mean: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.subtract_mean = bool(subtract_mean)
        conv = dict(padding="same", activation="relu", dtype=self.dtype_policy)
        self.conv1 = keras.layers.Conv2D(96, 11, strides=4, name="conv1", **conv)
        self.lrn1 = LocalResponseNormalization(name="lrn1", dtype=self.dtype_policy)
        # groups=2 keeps Caffe's kernel layout (5, 5, 48, 256): output half g reads input half g.
        self.conv2 = keras.layers.Conv2D(256, 5, groups=2, name="conv2", **conv)
        self.lrn2 = LocalResponseNormalization(name="lrn2", dtype=self.dtype_policy)
        self.conv3 = keras.layers.Conv2D(384, 3, name="conv3", **conv)

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in (self.conv1, self.lrn1, self.conv2, self.lrn2, self.conv3):
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def call(self, inputs):
        x = _subtract_spatial_mean(inputs) if self.subtract_mean else inputs
        x = self.lrn1(self.conv1(x))
        x = self.lrn2(self.conv2(x))
        return self.conv3(x)

    def compute_output_shape(self, input_shape):
        shape = self.conv1.compute_output_shape(tuple(input_shape))
        return (*shape[:3], 384)

    def get_config(self):
        config = super().get_config()
        config.update(subtract_mean=self.subtract_mean)
        return config


@keras.saving.register_keras_serializable(package="hart_tf")
class SmallV1(keras.layers.Layer):
    """A cheap V1 for small synthetic frames: three ReLU convolutions, total stride 4 (or 2).

    conv 5x5/2 16 -> conv 3x3/2 `channels` -> conv 3x3/1 `channels`, SAME padding
    (receptive field 17 px). A 28x28x3 glimpse gives 7x7x32 for 15,104 parameters and about
    0.9 M multiply-adds per glimpse. With `stride=2` conv2 keeps its input's resolution
    (14x14x32, same parameters, 3.4x the multiply-adds: tools/flops.py).

    Args:
        channels: output channels.
        subtract_mean: subtract each image's per-channel spatial mean first (as AlexNetV1).
        stride: total stride, 4 or 2.

    Call arguments:
        inputs: (B, gh, gw, C) glimpses.

    Returns:
        (B, ceil(gh / stride), ceil(gw / stride), channels) ReLU features.

    Reference:
        Kosiorek et al., NIPS 2017, section "Appearance Attention" (V1), scaled down.
    """

    def __init__(
        self, channels: int = 32, subtract_mean: bool = True, stride: int = 4, **kwargs
    ):
        super().__init__(**kwargs)
        if int(channels) < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        if int(stride) not in (2, 4):
            raise ValueError(f"SmallV1 stride must be 2 or 4, got {stride}")
        self.channels = int(channels)
        self.subtract_mean = bool(subtract_mean)
        self.stride = int(stride)
        conv = dict(padding="same", activation="relu", dtype=self.dtype_policy)
        self.conv1 = keras.layers.Conv2D(16, 5, strides=2, name="conv1", **conv)
        self.conv2 = keras.layers.Conv2D(
            self.channels, 3, strides=self.stride // 2, name="conv2", **conv
        )
        self.conv3 = keras.layers.Conv2D(self.channels, 3, name="conv3", **conv)

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in (self.conv1, self.conv2, self.conv3):
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def call(self, inputs):
        x = _subtract_spatial_mean(inputs) if self.subtract_mean else inputs
        return self.conv3(self.conv2(self.conv1(x)))

    def compute_output_shape(self, input_shape):
        shape = self.conv2.compute_output_shape(self.conv1.compute_output_shape(input_shape))
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            channels=self.channels, subtract_mean=self.subtract_mean, stride=self.stride
        )
        return config


def load_alexnet_weights(v1_layer: AlexNetV1, path: str | os.PathLike) -> None:
    """Assigns conv1-conv3 of `bvlc_alexnet.npy` (pickled dict name -> [W, b]) to `v1_layer`.

    Raises:
        ValueError: unreadable file, missing layer or wrongly shaped array (one line, naming
            the file and the layer).
    """
    if not isinstance(v1_layer, AlexNetV1):
        raise ValueError(f"load_alexnet_weights needs an AlexNetV1, got {type(v1_layer).__name__}")
    try:
        # The file was pickled by Python 2, hence latin1.
        weights = np.load(path, allow_pickle=True, encoding="latin1")
        weights = weights.item() if isinstance(weights, np.ndarray) else weights
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"cannot read AlexNet weights from {path}: {e}") from None
    if not isinstance(weights, dict):
        raise ValueError(f"{path}: expected a dict of layer -> [W, b], got {type(weights)}")
    if not v1_layer.built:
        v1_layer.build((None, None, None, ALEXNET_SHAPES["conv1"][0][2]))
    for name, shapes in ALEXNET_SHAPES.items():
        if name not in weights:
            raise ValueError(f"{path}: layer {name!r} missing (keys: {sorted(weights)})")
        try:
            arrays = [np.asarray(a) for a in weights[name]]
        except TypeError:
            arrays = []
        if len(arrays) != 2:
            raise ValueError(f"{path}: layer {name!r} must hold [W, b]")
        for what, array, shape in zip(("W", "b"), arrays, shapes, strict=True):
            if array.shape != shape:
                raise ValueError(
                    f"{path}: layer {name!r} {what} has shape {array.shape}, expected {shape}"
                )
        layer = getattr(v1_layer, name)
        layer.kernel.assign(arrays[0].astype(layer.kernel.dtype))
        layer.bias.assign(arrays[1].astype(layer.bias.dtype))
