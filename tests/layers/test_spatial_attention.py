import math

import keras
import numpy as np
import pytest
from layer_test_case import run_layer_test

from hart_tf.layers import (
    ATTENTION_OFFSET_BIAS,
    STRIDE_TO_SIGMA_COEFFICIENTS,
    SpatialAttention,
    attention_to_box,
    box_to_attention,
    stride_to_sigma,
)

IMAGE = (12, 16)
GLIMPSE = (4, 5)


def sigma_by_hand(sy, sx):
    """The polynomial written out term by term, in float64."""
    c = STRIDE_TO_SIGMA_COEFFICIENTS.astype("float64")
    terms = [1, sy, sy**2, sy**3, sy**4, sx, sx**2, sx**3, sx**4]
    terms += [sy * sx, sy * sx**2, sy**2 * sx, sy * sx**3, sy**2 * sx**2, sy**3 * sx]
    return tuple(sum(t * c[k, axis] for k, t in enumerate(terms)) for axis in (0, 1))


def glimpse_reference(frames, box, glimpse_size, sigma_fn=sigma_by_hand):
    """Loops over glimpse pixels and image pixels, summing Gaussian-weighted intensities."""
    batch, height, width, channels = frames.shape
    gh, gw = glimpse_size
    out = np.zeros((batch, gh, gw, channels))
    for b in range(batch):
        y, x, h, w = box[b]
        sy, sx = h / (gh - 1), w / (gw - 1)
        sig_y, sig_x = sigma_fn(sy, sx)
        y0, x0 = y + ATTENTION_OFFSET_BIAS[0], x + ATTENTION_OFFSET_BIAS[1]
        for r in range(gh):
            wy = [math.exp(-0.5 * ((i - y0 - r * sy) / sig_y) ** 2) for i in range(height)]
            ny = sum(wy) + 1e-8
            for c in range(gw):
                wx = [math.exp(-0.5 * ((j - x0 - c * sx) / sig_x) ** 2) for j in range(width)]
                nx = sum(wx) + 1e-8
                for i in range(height):
                    for j in range(width):
                        out[b, r, c] += wy[i] / ny * wx[j] / nx * frames[b, i, j]
    return out


def random_frames(batch=2, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(size=(batch, *IMAGE, channels)).astype("float32")


BOXES = np.array([[1.5, 2.0, 6.0, 9.0], [0.0, 3.3, 10.0, 4.0]], dtype="float32")


@pytest.mark.parametrize("learned_sigma, n_weights", [(False, 0), (True, 1)])
def test_layer_contract(learned_sigma, n_weights):
    run_layer_test(
        SpatialAttention,
        {"glimpse_size": GLIMPSE, "image_size": IMAGE, "learned_sigma": learned_sigma},
        [random_frames(), box_to_attention(BOXES, IMAGE)],
        expected_num_trainable_weights=n_weights,
        expected_output_shape=(2, *GLIMPSE, 3),
    )


def test_glimpse_matches_pixel_loop():
    frames = random_frames()
    layer = SpatialAttention(GLIMPSE, IMAGE)
    glimpse = keras.ops.convert_to_numpy(layer(frames, box_to_attention(BOXES, IMAGE)))
    expected = glimpse_reference(frames.astype("float64"), BOXES.astype("float64"), GLIMPSE)
    np.testing.assert_allclose(glimpse, expected, atol=1e-5)


@pytest.mark.parametrize("stride", [(0.0, 0.0), (0.5, 1.0), (1.0, 1.0), (2.0, 3.0), (7.5, 4.0)])
def test_stride_to_sigma_matches_hand_computation(stride):
    actual = keras.ops.convert_to_numpy(stride_to_sigma(np.array([stride], "float32")))[0]
    np.testing.assert_allclose(actual, sigma_by_hand(*stride), rtol=1e-5)


def test_stride_to_sigma_golden_values():
    # Pinned from the original's coefficients (float64); sigma(0) is the constant term.
    strides = np.array([[0.0, 0.0], [1.0, 1.0], [4.0, 8.0], [30.0, 10.0]])
    expected = [[0.61259844, 0.92561331], [0.60230013, 0.91159425]]
    expected += [[0.57356965, 0.82794968], [0.41035411, 0.76298414]]
    sigma = keras.ops.convert_to_numpy(stride_to_sigma(strides))
    np.testing.assert_allclose(sigma, expected, rtol=2e-6)
    np.testing.assert_allclose(ATTENTION_OFFSET_BIAS, [0.00809737, 0.50086582])


def test_box_attention_round_trip():
    box = np.array([[3.0, 4.0, 5.0, 6.0], [0.0, 0.0, 11.0, 15.0]], dtype="float32")
    att = box_to_attention(box, IMAGE)
    assert isinstance(att, np.ndarray)  # NumPy in, NumPy out
    np.testing.assert_allclose(att[1], [0.0, 0.0, 1.0, 1.0])  # whole image
    np.testing.assert_allclose(att[0], [3 / 12, 4 / 16, 5 / 11, 6 / 15], rtol=1e-6)
    np.testing.assert_allclose(attention_to_box(att, IMAGE), box, rtol=1e-6)
    tensor_box = attention_to_box(keras.ops.convert_to_tensor(att), IMAGE)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(tensor_box), box, rtol=1e-6)


def test_identity_sized_box_approximates_crop():
    height, width = 20, 24
    i, j = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    image = np.sin(0.15 * i) + np.cos(0.1 * j)  # gradient below 0.15 per pixel
    frames = np.stack([image, -image], axis=-1)[None].astype("float32")
    gh, gw, y, x = 8, 10, 5, 7
    box = np.array([[y, x, gh - 1, gw - 1]], "float32")  # stride 1: one pixel per pixel
    layer = SpatialAttention((gh, gw), (height, width))
    glimpse = keras.ops.convert_to_numpy(layer(frames, box_to_attention(box, (height, width))))
    crop = frames[:, y : y + gh, x : x + gw]
    # Close to the crop (the x offset bias shifts it by half a pixel) ...
    assert np.max(np.abs(glimpse - crop)) < 0.06
    # ... and closer still to the image sampled at the offset positions.
    shifted = np.sin(0.15 * (i[y : y + gh, x : x + gw] + ATTENTION_OFFSET_BIAS[0])) + np.cos(
        0.1 * (j[y : y + gh, x : x + gw] + ATTENTION_OFFSET_BIAS[1])
    )
    assert np.max(np.abs(glimpse[0, ..., 0] - shifted)) < 0.01


def test_learned_sigma_starts_at_polynomial_for_unit_stride():
    frames = random_frames(batch=1)
    unit = np.array([[2.0, 3.0, GLIMPSE[0] - 1.0, GLIMPSE[1] - 1.0]], "float32")
    wide = np.array([[0.0, 0.0, 11.0, 15.0]], "float32")  # strides 3.7 and 3.75
    fixed = SpatialAttention(GLIMPSE, IMAGE)
    learned = SpatialAttention(GLIMPSE, IMAGE, learned_sigma=True)
    for box, same in ((unit, True), (wide, False)):
        att = box_to_attention(box, IMAGE)
        a = keras.ops.convert_to_numpy(fixed(frames, att))
        b = keras.ops.convert_to_numpy(learned(frames, att))
        assert np.allclose(a, b, atol=1e-5) == same
    # The learned width is linear in the stride.
    stride = 3.75
    expected = glimpse_reference(
        frames.astype("float64"),
        wide.astype("float64"),
        GLIMPSE,
        sigma_fn=lambda sy, sx: (sy * sigma_by_hand(1, 1)[0], sx * sigma_by_hand(1, 1)[1]),
    )
    assert stride == wide[0, 3] / (GLIMPSE[1] - 1)
    b = keras.ops.convert_to_numpy(learned(frames, box_to_attention(wide, IMAGE)))
    np.testing.assert_allclose(b, expected, atol=1e-5)


def test_computes_in_float32():
    frames = random_frames(batch=1)
    att = box_to_attention(BOXES[:1], IMAGE)
    layer = SpatialAttention(GLIMPSE, IMAGE)
    out16 = layer(frames.astype("float16"), att.astype("float16"))
    assert keras.backend.standardize_dtype(out16.dtype) == "float32"
    out32 = keras.ops.convert_to_numpy(layer(frames, att))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out16), out32, atol=5e-3)


def test_rejects_wrong_frame_size():
    layer = SpatialAttention(GLIMPSE, IMAGE)
    with pytest.raises(ValueError, match="expects frames"):
        layer(np.zeros((1, 10, 16, 3), "float32"), np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match="glimpse_size"):
        SpatialAttention((1, 5), IMAGE)
