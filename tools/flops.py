"""Count HART's floating-point operations per tracked and per trained frame, layer by layer.

Usage:
  python tools/flops.py --config=kitti --seq_len=10
  python tools/flops.py --config=small --seq_len=20 --peak_tflops=800

How it counts: every matrix product and convolution as 2 FLOPs per multiply-add, from the
layer shapes of `HARTConfig`. Convolutions count only the kernel taps that land inside the
input (SAME padding's zeros are not model FLOPs; XLA's cost analysis counts the same way, and
agrees with this count to 0.1% for V1); grouped convolutions count Cin / groups; the
dynamic-filter convolution is an einsum over zero-padded patches, so it counts every tap.
Elementwise work (the Gaussian filter construction, LRN, batch norm, activations, the LSTM
gates, losses) is left out: it is memory-bound, not matrix work, and XLA's cost analysis of
one compiled step puts it at 0.4% (kitti) and 2.6% (small) of the total. A
sequence of T frames runs one initial-state step on frame 0 (no dorsal stream) and then T
recurrent steps (frame 0 again, as the original), so a trained frame costs
(T * step + init) / T forward FLOPs; training is counted as 3x forward (backward ~2x).
NumPy only: no Keras import.
"""

from __future__ import annotations

import dataclasses
import sys

from absl import app, flags

from hart_tf.model.config import HARTConfig

H100_BF16_TFLOPS = 800.0  # measured dense bf16 matmul peak on this workplace's H100 (KINDS.md)
TRAIN_FACTOR = 3.0  # forward + backward (~2x forward)


@dataclasses.dataclass(frozen=True)
class LayerFlops:
    """Forward FLOPs of one layer for one frame of one object."""

    name: str
    flops: float
    shape: str


def _taps(n: int, k: int, stride: int) -> int:
    """(output position, kernel tap) pairs of a SAME convolution that land inside the input."""
    out = -(-n // stride)
    pad = max((out - 1) * stride + k - n, 0) // 2
    return sum(0 <= o * stride - pad + j < n for o in range(out) for j in range(k))


def _conv(name: str, in_hw: tuple[int, int], k: int, cin: int, cout: int, stride: int = 1,
          groups: int = 1, padded_taps: bool = False) -> LayerFlops:
    h, w = in_hw
    oh, ow = -(-h // stride), -(-w // stride)
    taps = oh * ow * k * k if padded_taps else _taps(h, k, stride) * _taps(w, k, stride)
    return LayerFlops(name, 2.0 * taps * (cin // groups) * cout,
                      f"{oh}x{ow} out, {k}x{k}/{stride} x{cin // groups}->{cout}")


def _dense(name: str, n_in: int, n_out: int) -> LayerFlops:
    return LayerFlops(name, 2.0 * n_in * n_out, f"{n_in}->{n_out}")


def _same(size: int, stride: int) -> int:
    return -(-size // stride)  # SAME padding: ceil(size / stride)


def v1_layers(c: HARTConfig) -> list[LayerFlops]:
    g = tuple(c.glimpse_size)
    if c.v1 == "alexnet":
        hw = (_same(g[0], 4), _same(g[1], 4))
        return [
            _conv("v1/conv1", g, 11, c.channels, 96, stride=4),
            _conv("v1/conv2", hw, 5, 96, 256, groups=2),
            _conv("v1/conv3", hw, 3, 256, 384),
        ]
    hw1 = (_same(g[0], 2), _same(g[1], 2))
    hw2 = (_same(hw1[0], 2), _same(hw1[1], 2))
    return [
        _conv("v1/conv1", g, 5, c.channels, 16, stride=2),
        _conv("v1/conv2", hw1, 3, 16, c.v1_channels, stride=2),
        _conv("v1/conv3", hw2, 3, c.v1_channels, c.v1_channels),
    ]


def step_layers(c: HARTConfig, initial: bool = False) -> list[LayerFlops]:
    """Forward FLOPs of one cell step (or of the initial-state step) per object."""
    h, w = c.image_size
    gh, gw = c.glimpse_size
    fh, fw = c.feature_shape
    u, m, d, ch = c.rnn_units, c.appearance_maps, c.dorsal_units, c.channels
    cv1 = 384 if c.v1 == "alexnet" else c.v1_channels
    rows = [
        # glimpse = Fy @ frame @ Fx^T per channel: (gh, H) @ (H, W*C), then (gw, W) per row.
        LayerFlops("spatial_attention/rows", 2.0 * gh * h * w * ch, f"({gh}x{h}) @ ({h}x{w}x{ch})"),
        LayerFlops("spatial_attention/cols", 2.0 * gh * gw * w * ch, f"{gh}x({gw}x{w}) x{ch}"),
        *v1_layers(c),
        _conv("appearance/ventral_conv", (fh, fw), 1, cv1, m),
    ]
    dorsal = c.appearance_attention and not initial
    if dorsal:
        rows += [
            _dense("appearance/dfn1_params", u, d),
            _dense("appearance/dfn1/kernel_head", d, cv1 * m),
            _dense("appearance/dfn1/bias_head", d, m),
            _conv("appearance/dfn1/conv", (fh, fw), 1, cv1, m),
            _dense("appearance/dfn2_params", u, d),
            _dense("appearance/dfn2/kernel_head", d, 9 * m * m),
            _dense("appearance/dfn2/bias_head", d, m),
            _conv("appearance/dfn2/conv", (fh, fw), 3, m, m, padded_taps=True),
            _conv("appearance/location_conv", (fh, fw), 1, m, 1),
        ]
    att = 6 if c.attention_input == "pixels" else 4  # glimpse parameters or a_t
    rows.append(_dense("fc_after_conv", fh * fw * m + att, u))
    if initial and c.transform_init:
        rows.append(_dense("init_features", u, u))
    rows.append(_dense("lstm", 2 * u, 4 * u))
    if initial:
        if c.transform_init:
            rows += [_dense("init_h", u, u), _dense("init_c", u, u)]
        return rows
    readout = u + (10 if c.appearance_attention else 0)
    if c.appearance_attention:
        rows.append(_dense("mask_features", fh * fw, 10))
    rows += [
        _dense("att_readout_1", readout, u),
        _dense("att_readout", u, 4),
        _dense("box_readout_1", readout, u),
        _dense("box_readout", u, 4),
    ]
    return rows


def total(rows: list[LayerFlops]) -> float:
    return float(sum(r.flops for r in rows))


def flops_per_frame(c: HARTConfig, seq_len: int) -> dict[str, float]:
    """Forward FLOPs per tracked frame (one step), per trained frame of a length-T sequence
    (forward, with the initial step shared over T frames) and per trained frame x3."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    step, init = total(step_layers(c)), total(step_layers(c, initial=True))
    forward = (seq_len * step + init) / seq_len
    return {"track_step": step, "init_step": init, "train_forward": forward,
            "train": TRAIN_FACTOR * forward}


def mfu(flops_per_frame_train: float, frames_per_s: float,
        peak_tflops: float = H100_BF16_TFLOPS) -> float:
    """Model FLOPs utilisation: achieved FLOP/s over the peak."""
    return flops_per_frame_train * frames_per_s / (peak_tflops * 1e12)


def table(c: HARTConfig, seq_len: int) -> str:
    """A Markdown table of the per-layer forward FLOPs of one step."""
    rows = step_layers(c)
    step = total(rows)
    lines = [f"| layer ({c.name}) | shape | MFLOP fwd | share |", "|---|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.shape} | {r.flops / 1e6:.3f} | {r.flops / step:.1%} |")
    f = flops_per_frame(c, seq_len)
    lines.append(f"| **step total** | | {step / 1e6:.2f} | |")
    lines.append(f"| initial-state step | | {f['init_step'] / 1e6:.2f} | |")
    lines.append(f"| **trained frame, T={seq_len}, x3** | | {f['train'] / 1e6:.1f} | |")
    return "\n".join(lines)


FLAGS = flags.FLAGS


def _define_flags() -> None:
    # Defined only when run as a script, so importing this module adds no flags.
    flags.DEFINE_enum("config", "kitti", ["small", "kitti", "kth"], "Model preset.")
    flags.DEFINE_integer("seq_len", 10, "Training sequence length T.")


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        sys.exit(2)
    c = HARTConfig.from_preset(FLAGS.config)
    print(table(c, FLAGS.seq_len))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
