"""The authors' trained KITTI model: their TF1 checkpoint loaded into a hart_tf `HART`.

The authors' repository (github akosiorek/hart) ships
`checkpoints/kitti/pretrained/model.ckpt-347346.{index,data-00000-of-00001,meta}`. Its 52
variables are listed in `ORIGINAL_VARIABLES` (name, shape, dtype, as the `.index` file gives
them): 49 trainable float32 tensors holding 1,701,712 values, the ventral batch norm's two
moving statistics and a boolean is-training flag. `read_checkpoint` reads them with
`tf.train.load_checkpoint` (no TF1 graph is built), `check_variables` refuses a checkpoint
with a missing, extra or mis-shaped variable, and `convert` assigns them to a `HART` of the
`kitti` preset, which has exactly those weights plus the three adaptive loss weights.

Layouts (`VARIABLE_MAP` names the hart_tf weight of each variable):
    * Dense and 1x1/3x3 convolution kernels are (inputs, outputs) and (kh, kw, cin, cout) in
      both, and are copied as they are. AlexNet's conv2 (2 groups) keeps Caffe's
      (5, 5, 48, 256) kernel: the original splits the input channels and the kernel's output
      channels in two halves and convolves half g with half g, which is what Keras' Conv2D
      with groups=2 does with the same kernel.
    * The dynamic filters (`DynamicFilterModel` pre_DFN 1x1 and the 3x3 one) predict a
      vector laid out as (k, k, cin, cout), as `DynamicConv`'s kernel head; the static
      `dfn_bias` (1, 1, 1, 5) becomes a (5,) vector, as do `att_bias` (1, 1, 1, 4) and
      `att_delta_scale` (1, 4) (the raw bias before 0.25 * tanh, and the gate logit).
    * The LSTM (`IdentityLSTMCell`) keeps separate input and recurrent kernels like Keras
      but orders the gate blocks (i, j, f, o), j the candidate; Keras' `LSTMCell` orders them
      (i, f, c, o), so blocks 1 and 2 swap in both kernels and the bias. Neither adds a
      forget-gate bias of its own (the kitti preset has `unit_forget_bias` off).
    * The LSTM's initial-state transforms `init_state_transform_0` and `_1` act on the
      cell's state tuple (c, h): they are `init_c` and `init_h`.
    * The box readout MLP `fc_h2bbox` (layer_0, layer_1) is `box_readout_1`, `box_readout`.
    * The batch norm's moving mean and variance are copied; the is-training flag is not a
      weight here (`training` is a call argument) and is skipped.
    * The adaptive loss weights are not in the checkpoint: they keep their initial value
      (lambda = 1), which matters only for training on.
"""

from __future__ import annotations

import os

import numpy as np

from hart_tf.model.config import HARTConfig
from hart_tf.model.hart import HART

_T = "HierarchicalAttentiveRecurrentTracker"
_C = f"{_T}/AttentionCell"
_V1 = f"{_C}/AlexNetModel"
CHECKPOINT_NAME = "model.ckpt-347346"

# (name, shape, dtype) of every variable in the released checkpoint's `.index`.
ORIGINAL_VARIABLES: tuple[tuple[str, tuple[int, ...], str], ...] = (
    (f"{_V1}/bn_batch_norm/BatchNorm/beta", (5,), "float32"),
    (f"{_V1}/bn_batch_norm/BatchNorm/gamma", (5,), "float32"),
    (f"{_V1}/bn_batch_norm/BatchNorm/moving_mean", (5,), "float32"),
    (f"{_V1}/bn_batch_norm/BatchNorm/moving_variance", (5,), "float32"),
    (f"{_V1}/conv1_W", (11, 11, 3, 96), "float32"),
    (f"{_V1}/conv1_b", (96,), "float32"),
    (f"{_V1}/conv2_W", (5, 5, 48, 256), "float32"),
    (f"{_V1}/conv2_b", (256,), "float32"),
    (f"{_V1}/conv3_W", (3, 3, 256, 384), "float32"),
    (f"{_V1}/conv3_b", (384,), "float32"),
    (f"{_V1}/readout/W_readout", (1, 1, 384, 5), "float32"),
    (f"{_V1}/readout/b_readout", (5,), "float32"),
    (f"{_C}/DynamicFilterModel/dfn_bias", (1, 1, 1, 5), "float32"),
    (f"{_C}/DynamicFilterModel/dynamic_bias/W_dynamic_bias", (100, 5), "float32"),
    (f"{_C}/DynamicFilterModel/dynamic_bias/b_dynamic_bias", (5,), "float32"),
    (f"{_C}/DynamicFilterModel/dynamic_weights/W_dynamic_weights", (100, 225), "float32"),
    (f"{_C}/DynamicFilterModel/dynamic_weights/b_dynamic_weights", (225,), "float32"),
    (f"{_C}/DynamicFilterModel/param_layer_1/W_param_layer_1", (100, 100), "float32"),
    (f"{_C}/DynamicFilterModel/param_layer_1/b_param_layer_1", (100,), "float32"),
    (f"{_C}/IdentityLSTMCell/W_hh", (100, 400), "float32"),
    (f"{_C}/IdentityLSTMCell/W_xh", (100, 400), "float32"),
    (f"{_C}/IdentityLSTMCell/bias", (400,), "float32"),
    (f"{_C}/att_readout/W_att_readout", (100, 4), "float32"),
    (f"{_C}/att_readout/b_att_readout", (4,), "float32"),
    (f"{_C}/att_readout_1/W_att_readout_1", (110, 100), "float32"),
    (f"{_C}/att_readout_1/b_att_readout_1", (100,), "float32"),
    (f"{_C}/fc_after_conv/W_fc_after_conv", (986, 100), "float32"),
    (f"{_C}/fc_after_conv/b_fc_after_conv", (100,), "float32"),
    (f"{_C}/init_feature_transform/W_init_feature_transform", (100, 100), "float32"),
    (f"{_C}/init_feature_transform/b_init_feature_transform", (100,), "float32"),
    (f"{_C}/init_state_transform_0/W_init_state_transform_0", (100, 100), "float32"),
    (f"{_C}/init_state_transform_0/b_init_state_transform_0", (100,), "float32"),
    (f"{_C}/init_state_transform_1/W_init_state_transform_1", (100, 100), "float32"),
    (f"{_C}/init_state_transform_1/b_init_state_transform_1", (100,), "float32"),
    (f"{_C}/mask_features/W_mask_features", (196, 10), "float32"),
    (f"{_C}/mask_features/b_mask_features", (10,), "float32"),
    (f"{_C}/obj_mask/W_obj_mask", (1, 1, 5, 1), "float32"),
    (f"{_C}/obj_mask/b_obj_mask", (1,), "float32"),
    (f"{_C}/pre_DFN/dfn_bias", (1, 1, 1, 5), "float32"),
    (f"{_C}/pre_DFN/dynamic_bias/W_dynamic_bias", (100, 5), "float32"),
    (f"{_C}/pre_DFN/dynamic_bias/b_dynamic_bias", (5,), "float32"),
    (f"{_C}/pre_DFN/dynamic_weights/W_dynamic_weights", (100, 1920), "float32"),
    (f"{_C}/pre_DFN/dynamic_weights/b_dynamic_weights", (1920,), "float32"),
    (f"{_C}/pre_DFN/param_layer_1/W_param_layer_1", (100, 100), "float32"),
    (f"{_C}/pre_DFN/param_layer_1/b_param_layer_1", (100,), "float32"),
    (f"{_T}/{_T}/while/AttentionCell/att_delta_scale", (1, 4), "float32"),
    (f"{_T}/att_bias", (1, 1, 1, 4), "float32"),
    (f"{_T}/fc_h2bbox/layer_0/W_layer_0", (110, 100), "float32"),
    (f"{_T}/fc_h2bbox/layer_0/b_layer_0", (100,), "float32"),
    (f"{_T}/fc_h2bbox/layer_1/W_layer_1", (100, 4), "float32"),
    (f"{_T}/fc_h2bbox/layer_1/b_layer_1", (4,), "float32"),
    ("IsTrainingLayer0/is_training_IsTrainingLayer0", (1,), "bool"),
)

# Variables that are not trained (the original's batch-norm statistics and mode flag).
NON_TRAINABLE = frozenset({
    f"{_V1}/bn_batch_norm/BatchNorm/moving_mean",
    f"{_V1}/bn_batch_norm/BatchNorm/moving_variance",
    "IsTrainingLayer0/is_training_IsTrainingLayer0",
})
# The mode flag has no weight in hart_tf (`training` is a call argument).
SKIPPED = frozenset({"IsTrainingLayer0/is_training_IsTrainingLayer0"})

# How the original's IdentityLSTMCell orders its gate blocks, and Keras' LSTMCell.
TF1_GATES = ("i", "j", "f", "o")  # j: the candidate
KERAS_GATES = ("i", "f", "j", "o")

_AA = "appearance_attention"
# Original variable -> (hart_tf weight path under the cell `hart_cell/`, layout transform).
# "copy": same values (a reshape where only size-1 axes differ); "lstm": gate blocks reordered.
VARIABLE_MAP: dict[str, tuple[str, str]] = {
    f"{_V1}/conv1_W": ("v1/conv1/kernel", "copy"),
    f"{_V1}/conv1_b": ("v1/conv1/bias", "copy"),
    f"{_V1}/conv2_W": ("v1/conv2/kernel", "copy"),
    f"{_V1}/conv2_b": ("v1/conv2/bias", "copy"),
    f"{_V1}/conv3_W": ("v1/conv3/kernel", "copy"),
    f"{_V1}/conv3_b": ("v1/conv3/bias", "copy"),
    f"{_V1}/readout/W_readout": (f"{_AA}/ventral_conv/kernel", "copy"),
    f"{_V1}/readout/b_readout": (f"{_AA}/ventral_conv/bias", "copy"),
    f"{_V1}/bn_batch_norm/BatchNorm/gamma": (f"{_AA}/ventral_bn/gamma", "copy"),
    f"{_V1}/bn_batch_norm/BatchNorm/beta": (f"{_AA}/ventral_bn/beta", "copy"),
    f"{_V1}/bn_batch_norm/BatchNorm/moving_mean": (f"{_AA}/ventral_bn/moving_mean", "copy"),
    f"{_V1}/bn_batch_norm/BatchNorm/moving_variance": (
        f"{_AA}/ventral_bn/moving_variance", "copy"),
    f"{_C}/obj_mask/W_obj_mask": (f"{_AA}/location_conv/kernel", "copy"),
    f"{_C}/obj_mask/b_obj_mask": (f"{_AA}/location_conv/bias", "copy"),
    f"{_C}/fc_after_conv/W_fc_after_conv": ("fc_after_conv/kernel", "copy"),
    f"{_C}/fc_after_conv/b_fc_after_conv": ("fc_after_conv/bias", "copy"),
    f"{_C}/IdentityLSTMCell/W_xh": ("lstm/kernel", "lstm"),
    f"{_C}/IdentityLSTMCell/W_hh": ("lstm/recurrent_kernel", "lstm"),
    f"{_C}/IdentityLSTMCell/bias": ("lstm/bias", "lstm"),
    f"{_C}/init_feature_transform/W_init_feature_transform": ("init_features/kernel", "copy"),
    f"{_C}/init_feature_transform/b_init_feature_transform": ("init_features/bias", "copy"),
    f"{_C}/init_state_transform_0/W_init_state_transform_0": ("init_c/kernel", "copy"),
    f"{_C}/init_state_transform_0/b_init_state_transform_0": ("init_c/bias", "copy"),
    f"{_C}/init_state_transform_1/W_init_state_transform_1": ("init_h/kernel", "copy"),
    f"{_C}/init_state_transform_1/b_init_state_transform_1": ("init_h/bias", "copy"),
    f"{_C}/mask_features/W_mask_features": ("mask_features/kernel", "copy"),
    f"{_C}/mask_features/b_mask_features": ("mask_features/bias", "copy"),
    f"{_C}/att_readout_1/W_att_readout_1": ("att_readout_1/kernel", "copy"),
    f"{_C}/att_readout_1/b_att_readout_1": ("att_readout_1/bias", "copy"),
    f"{_C}/att_readout/W_att_readout": ("att_readout/kernel", "copy"),
    f"{_C}/att_readout/b_att_readout": ("att_readout/bias", "copy"),
    f"{_T}/{_T}/while/AttentionCell/att_delta_scale": ("att_gate", "copy"),
    f"{_T}/att_bias": ("att_bias", "copy"),
    f"{_T}/fc_h2bbox/layer_0/W_layer_0": ("box_readout_1/kernel", "copy"),
    f"{_T}/fc_h2bbox/layer_0/b_layer_0": ("box_readout_1/bias", "copy"),
    f"{_T}/fc_h2bbox/layer_1/W_layer_1": ("box_readout/kernel", "copy"),
    f"{_T}/fc_h2bbox/layer_1/b_layer_1": ("box_readout/bias", "copy"),
}
# The two dynamic filter networks: the 1x1 one reads V1 (pre_DFN), the 3x3 one its output.
for _tf1, _ours in (("pre_DFN", "dfn1"), ("DynamicFilterModel", "dfn2")):
    VARIABLE_MAP.update({
        f"{_C}/{_tf1}/param_layer_1/W_param_layer_1": (f"{_AA}/{_ours}_params/kernel", "copy"),
        f"{_C}/{_tf1}/param_layer_1/b_param_layer_1": (f"{_AA}/{_ours}_params/bias", "copy"),
        f"{_C}/{_tf1}/dynamic_weights/W_dynamic_weights": (
            f"{_AA}/{_ours}/kernel_head/kernel", "copy"),
        f"{_C}/{_tf1}/dynamic_weights/b_dynamic_weights": (
            f"{_AA}/{_ours}/kernel_head/bias", "copy"),
        f"{_C}/{_tf1}/dynamic_bias/W_dynamic_bias": (f"{_AA}/{_ours}/bias_head/kernel", "copy"),
        f"{_C}/{_tf1}/dynamic_bias/b_dynamic_bias": (f"{_AA}/{_ours}/bias_head/bias", "copy"),
        f"{_C}/{_tf1}/dfn_bias": (f"{_AA}/{_ours}/static_bias", "copy"),
    })


class OriginalCheckpointError(ValueError):
    """The checkpoint cannot be read or is not the released one (a one-line message)."""


def lstm_to_keras(value: np.ndarray) -> np.ndarray:
    """TF1 gate blocks (i, j, f, o) along the last axis -> Keras' (i, f, c, o)."""
    blocks = np.split(np.asarray(value), 4, axis=-1)
    return np.concatenate([blocks[TF1_GATES.index(g)] for g in KERAS_GATES], axis=-1)


def to_hart(name: str, value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The original variable `name` laid out as its hart_tf weight of `shape`."""
    _, transform = VARIABLE_MAP[name]
    value = np.asarray(value)
    if transform == "lstm":
        value = lstm_to_keras(value)
    return value.reshape(shape)


def read_checkpoint(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], str]]:
    """(shape, dtype) by variable name of the TF1 checkpoint with prefix `path`.

    Raises:
        OriginalCheckpointError: the checkpoint cannot be read (one line naming it).
    """
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(os.fspath(path))
    except (tf.errors.OpError, ValueError) as e:
        message = " ".join(str(getattr(e, "message", e)).split())
        raise OriginalCheckpointError(
            f"{path}: cannot read the checkpoint ({message[:200]})") from None
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    return {n: (tuple(int(d) for d in shapes[n]), dtypes[n].name) for n in shapes}


def check_variables(found: dict[str, tuple[tuple[int, ...], str]], where: str = "") -> None:
    """Refuses anything but the released checkpoint's 52 variables, their shapes and dtypes.

    Raises:
        OriginalCheckpointError: one line naming every missing, extra and mis-shaped
            variable.
    """
    expected = {n: (s, d) for n, s, d in ORIGINAL_VARIABLES}
    problems = []
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if extra:
        problems.append(f"extra {', '.join(extra)}")
    wrong = [
        f"{n} is {list(found[n][0])} {found[n][1]}, expected {list(s)} {d}"
        for n, (s, d) in sorted(expected.items())
        if n in found and (tuple(found[n][0]), found[n][1]) != (s, d)
    ]
    if wrong:
        problems.append(f"wrong shape or dtype: {'; '.join(wrong)}")
    if problems:
        prefix = f"{where}: " if where else ""
        raise OriginalCheckpointError(
            f"{prefix}not the authors' KITTI checkpoint: {'; '.join(problems)}")


def hart_weights(model) -> dict[str, object]:
    """The model's weights by path under its cell (e.g. `lstm/kernel`)."""
    return {v.path.split("hart_cell/", 1)[1]: v for v in model.cell.weights}


def convert(values: dict[str, np.ndarray], config=None):
    """A built `HART` (the `kitti` preset unless `config`) holding the original's values.

    Args:
        values: array by original variable name (all of `ORIGINAL_VARIABLES`).
        config: a `HARTConfig` with the kitti preset's shapes, or None for the preset.
    Returns:
        The model; every weight mapped in `VARIABLE_MAP` assigned, the adaptive loss weights
        at their initial value.
    """
    config = HARTConfig.from_preset("kitti") if config is None else config
    model = HART(config)
    model.build()
    weights = hart_weights(model)
    for name, (path, _) in VARIABLE_MAP.items():
        weight = weights[path]
        shape = tuple(weight.shape)
        value = np.asarray(values[name])
        if value.size != int(np.prod(shape)):
            raise ValueError(f"{name} has shape {list(value.shape)}, but its hart_tf weight "
                             f"{path} is {list(shape)}")
        weight.assign(to_hart(name, value, shape).astype(weight.dtype))
    return model


def load_original_checkpoint(path: str | os.PathLike, config=None):
    """Reads, checks and converts the TF1 checkpoint with prefix `path` (see `convert`)."""
    import tensorflow as tf

    check_variables(read_checkpoint(path), os.fspath(path))
    reader = tf.train.load_checkpoint(os.fspath(path))
    values = {name: reader.get_tensor(name) for name in VARIABLE_MAP}
    return convert(values, config)
