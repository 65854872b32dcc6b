"""HART building blocks: attention, V1 feature extractors, dynamic filters, normalisation."""

from hart_tf.layers.appearance_attention import AppearanceAttention
from hart_tf.layers.dynamic_conv import DynamicConv
from hart_tf.layers.local_response_normalization import LocalResponseNormalization
from hart_tf.layers.recurrent_batch_norm import RecurrentBatchNormalization
from hart_tf.layers.spatial_attention import (
    ATTENTION_OFFSET_BIAS,
    LEARNED_SIGMA_REFERENCE_STRIDE,
    STRIDE_TO_SIGMA_COEFFICIENTS,
    SpatialAttention,
    attention_to_box,
    box_to_attention,
    stride_to_sigma,
)
from hart_tf.layers.v1 import ALEXNET_SHAPES, AlexNetV1, SmallV1, load_alexnet_weights

__all__ = [
    "ALEXNET_SHAPES",
    "ATTENTION_OFFSET_BIAS",
    "LEARNED_SIGMA_REFERENCE_STRIDE",
    "STRIDE_TO_SIGMA_COEFFICIENTS",
    "AlexNetV1",
    "AppearanceAttention",
    "DynamicConv",
    "LocalResponseNormalization",
    "RecurrentBatchNormalization",
    "SmallV1",
    "SpatialAttention",
    "attention_to_box",
    "box_to_attention",
    "load_alexnet_weights",
    "stride_to_sigma",
]
