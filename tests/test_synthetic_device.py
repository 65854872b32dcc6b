"""The device renderer (hart_tf.data.synthetic_device) against the NumPy reference renderer.

The device renderer draws different random numbers, so the two are compared as
distributions: per-sequence statistics of both go through a two-sample Kolmogorov-Smirnov
statistic (bound 0.15 with 600 and 250 sequences: about the 0.1 % critical value; the two
renderers measure 0.04-0.08, and each test also shows that a deliberately changed
distribution, e.g. max_speed 3 -> 2.4 or twice the acceleration, exceeds the bound) or
through means with stated tolerances. The device side runs under JAX on the CPU in one
subprocess (the suite's backend is TensorFlow), compiled with jax.jit.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from hart_tf.data import pipeline, synthetic
from hart_tf.data.synthetic import SyntheticConfig

REPO = Path(__file__).resolve().parents[1]
CFG = SyntheticConfig()
CROSS = SyntheticConfig(distractor_cross_speed=6.0)
T_LEN = 20
N_DEVICE = 600  # sequences sampled from the device renderer's scenes
N_NUMPY = 250  # and rendered by the NumPy renderer
KS_BOUND = 0.15

# Runs in a subprocess under KERAS_BACKEND=jax: samples the scenes (boxes, no pixels) of
# some configs, renders one batch of short sequences for pixel statistics and checks jit
# determinism with the same compiled function; writes one npz.
_DEVICE_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from hart_tf.data import synthetic_device as sd
    from hart_tf.data.synthetic import SyntheticConfig
    out, configs = sys.argv[1], json.loads(sys.argv[2])
    n, t_len = int(sys.argv[3]), int(sys.argv[4])
    arrays = {}
    for name, kwargs in configs.items():
        cfg = SyntheticConfig(**kwargs)
        scene = jax.jit(lambda cfg=cfg: sd.sample_scene(0, 0, n, t_len, cfg))()
        for key in ("pos", "size", "present", "occ_pos", "occ_size", "occ_on", "front"):
            arrays[f"{name}/{key}"] = np.asarray(scene[key])
        arrays[f"{name}/presence"] = np.asarray(sd.scene_boxes(scene, cfg)["presence"])
    if "default" in configs:
        cfg = SyntheticConfig()
        bank = sd.texture_bank(cfg)
        step = jax.jit(lambda seed, index, bank: sd.train_batch(seed, index, 96, 2, cfg, bank=bank))
        for tag, seed, index in (("a", 0, 5), ("b", 0, 5), ("c", 0, 6), ("d", 1, 5)):
            for key, value in step(seed, index, bank).items():
                arrays[f"jit_{tag}/{key}"] = np.asarray(value)
    if "cross" in configs:  # rendering in chunks of sequences changes nothing
        cfg = SyntheticConfig()
        for chunk in (None, 2):
            frames = jax.jit(lambda chunk=chunk: sd.train_batch(2, 9, 4, 3, cfg, chunk=chunk))()
            arrays[f"chunk_{chunk}/frames"] = np.asarray(frames["frames"])
    np.savez(out, **arrays)
""")


def _sample_device(tmp_path_factory, configs):
    out = tmp_path_factory.mktemp("device") / "samples.npz"
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-c", _DEVICE_SCRIPT, str(out), json.dumps(configs),
         str(N_DEVICE), str(T_LEN)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """The default config's scenes, one rendered batch and the jit determinism runs."""
    return _sample_device(tmp_path_factory, {"default": {}})


@pytest.fixture(scope="module")
def device_more(tmp_path_factory):
    """Scenes of the crossing variant and of a target that may leave (one compile each), and
    one small batch rendered whole and in chunks."""
    return _sample_device(tmp_path_factory, {
        "cross": {"distractor_cross_speed": 6.0},
        "leave": {"allow_leave": True, "max_speed": 6.0}})


def _device_config(device, name):
    """Per-sequence arrays of a sampled device config, in the NumPy renderer's layout."""
    pos, size = device[f"{name}/pos"], device[f"{name}/size"]  # (N, n, T, 2)
    boxes = np.concatenate([pos - size / 2, size], -1)  # (N, n, T, 4)
    present = device[f"{name}/present"] > 0  # (N, n)
    on = device[f"{name}/occ_on"] > 0
    occ = np.concatenate([device[f"{name}/occ_pos"] - device[f"{name}/occ_size"] / 2,
                          device[f"{name}/occ_size"]], -1)  # (N, T, 4)
    return [dict(boxes=boxes[i, 0], presence=device[f"{name}/presence"][i],
                 distractor_boxes=boxes[i, 1:][present[i, 1:]].transpose(1, 0, 2),
                 occluder_boxes=occ[i][:, None] if on[i] else np.zeros((T_LEN, 0, 4)))
            for i in range(len(pos))]


_NUMPY_CACHE = {}


def _numpy_config(cfg, n=N_NUMPY, t_len=T_LEN):
    """Per-sequence dicts of the NumPy renderer (with extras), cached per config."""
    if cfg not in _NUMPY_CACHE:
        _NUMPY_CACHE[cfg] = [
            synthetic.make_sequence(synthetic.sequence_rng("val", 7, i), t_len, cfg,
                                    with_extras=True) for i in range(n)]
    return _NUMPY_CACHE[cfg]


def ks(a, b) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: largest gap between the empirical CDFs."""
    a, b = np.sort(np.ravel(a)), np.sort(np.ravel(b))
    grid = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, grid, "right") / len(a)
                        - np.searchsorted(b, grid, "right") / len(b)).max())


def _centres(boxes):
    return boxes[..., :2] + boxes[..., 2:] / 2


def _size(boxes):
    return np.sqrt(boxes[..., 2] * boxes[..., 3])


# Per-sequence statistics: one number per sequence (or per look-alike), so samples are
# independent draws and the KS bound means what it says.
def _speed(seqs):
    return [np.linalg.norm(np.diff(_centres(s["boxes"]), axis=0), axis=-1).mean() for s in seqs]


def _accel(seqs):
    return [np.linalg.norm(np.diff(_centres(s["boxes"]), 2, axis=0), axis=-1).mean()
            for s in seqs]


def _turns(seqs):
    """Fraction of steps where an axis's velocity changes sign (bounces and turns)."""
    out = []
    for s in seqs:
        v = np.diff(_centres(s["boxes"]), axis=0)
        out.append(np.mean(np.sign(v[1:]) * np.sign(v[:-1]) < 0))
    return out


def _mean_size(seqs):
    return [_size(s["boxes"]).mean() for s in seqs]


def _aspect(seqs):
    return [np.log(s["boxes"][:, 2] / s["boxes"][:, 3]).mean() for s in seqs]


def _size_drift(seqs):
    return [np.ptp(np.log(_size(s["boxes"]))) for s in seqs]


def _gaps(seqs, how):
    """Per look-alike: centre distance to the target over target size (min or mean)."""
    out = []
    for s in seqs:
        dis = s["distractor_boxes"]  # (T, K, 4)
        gap = np.linalg.norm(_centres(dis) - _centres(s["boxes"])[:, None], axis=-1)
        out.extend(getattr(gap / _size(s["boxes"]).mean(), how)(0))
    return out


def _overlap(seqs):
    """Per look-alike: fraction of frames its box intersects the target's."""
    out = []
    for s in seqs:
        for d in s["distractor_boxes"].transpose(1, 0, 2):
            apart = np.abs(_centres(d) - _centres(s["boxes"])) >= (d[:, 2:] + s["boxes"][:, 2:]) / 2
            out.append(np.mean(~apart.any(-1)))
    return out


def _occluded(seqs):
    """Per sequence: fraction of frames the occluder covers > 5 % of the target's box."""
    out = []
    for s in seqs:
        if s["occluder_boxes"].shape[1] == 0:
            out.append(0.0)
            continue
        occ, box = s["occluder_boxes"][:, 0], s["boxes"]
        lo = np.maximum(occ[:, :2], box[:, :2])
        hi = np.minimum(occ[:, :2] + occ[:, 2:], box[:, :2] + box[:, 2:])
        covered = np.prod(np.maximum(hi - lo, 0), -1) / (box[:, 2] * box[:, 3])
        out.append(np.mean(covered > 0.05))
    return out


STATS = {"speed": _speed, "accel": _accel, "turns": _turns, "size": _mean_size,
         "aspect": _aspect, "size_drift": _size_drift}
# A changed NumPy config that the same bound must tell apart from the device default: the
# tests would fail a device renderer that was off by as much.
# (The turn rate is mostly bounces, which no single flag moves far: it is compared only.)
MISMATCH = {"speed": SyntheticConfig(max_speed=2.4), "accel": SyntheticConfig(accel=0.8),
            "turns": None, "size": SyntheticConfig(target_size=(11, 26)),
            "aspect": SyntheticConfig(aspect=(0.6, 1.2)),
            "size_drift": SyntheticConfig(scale_rate=0.02)}
N_MISMATCH = 150


@pytest.mark.parametrize("stat", sorted(STATS))
def test_target_motion_and_size_match(device, stat):
    fn = STATS[stat]
    dev = fn(_device_config(device, "default"))
    assert ks(dev, fn(_numpy_config(CFG))) < KS_BOUND
    if MISMATCH[stat] is not None:
        assert ks(dev, fn(_numpy_config(MISMATCH[stat], N_MISMATCH))) > KS_BOUND


def _path_stats(seqs):
    return {"min_gap": _gaps(seqs, "min"), "mean_gap": _gaps(seqs, "mean"),
            "overlap": _overlap(seqs)}


def test_look_alike_paths_match(device):
    dev, ref = _path_stats(_device_config(device, "default")), _path_stats(_numpy_config(CFG))
    cross = _path_stats(_numpy_config(CROSS, N_MISMATCH))
    for key in dev:
        assert ks(dev[key], ref[key]) < KS_BOUND, key
    # The crossing variant's paths differ enough for the same bound to see them.
    assert ks(dev["overlap"], cross["overlap"]) > KS_BOUND
    assert ks(dev["mean_gap"], cross["mean_gap"]) > KS_BOUND


@pytest.mark.slow
def test_crossing_look_alike_paths_match(device_more):
    seqs = _device_config(device_more, "cross")
    dev, ref = _path_stats(seqs), _path_stats(_numpy_config(CROSS))
    default = _path_stats(_numpy_config(CFG, N_MISMATCH))
    for key in dev:
        assert ks(dev[key], ref[key]) < KS_BOUND, key
    assert ks(dev["overlap"], default["overlap"]) > KS_BOUND
    for s in seqs[:50]:  # each crosses in a straight line
        step = np.diff(_centres(s["distractor_boxes"]), axis=0)  # (T - 1, K, 2)
        np.testing.assert_allclose(step, np.broadcast_to(step[:1], step.shape), atol=1e-3)


def _count_freq(seqs):
    counts = np.array([s["distractor_boxes"].shape[1] for s in seqs])
    return np.array([np.mean(counts == k) for k in range(4)])


def test_look_alike_counts_match(device):
    dev = _count_freq(_device_config(device, "default"))
    # Each count's frequency within 0.08 (binomial sd of the difference at 250 and 600
    # draws: ~0.035); one look-alike fewer at most moves them by ~0.33.
    np.testing.assert_allclose(dev, _count_freq(_numpy_config(CFG)), atol=0.08)
    fewer = SyntheticConfig(n_distractors=(1, 2))
    assert np.abs(dev - _count_freq(_numpy_config(fewer, N_MISMATCH))).max() > 0.08


def test_occlusion_rate_matches(device):
    dev, ref = _device_config(device, "default"), _numpy_config(CFG)
    with_occ = [np.mean([s["occluder_boxes"].shape[1] for s in x]) for x in (dev, ref)]
    assert abs(with_occ[0] - with_occ[1]) < 0.1  # both near occlusion_prob = 0.5
    rate_dev, rate_ref = np.mean(_occluded(dev)), np.mean(_occluded(ref))
    # Within 25 % of the NumPy rate (which is ~0.15 of frames: 0.5 of sequences times the
    # frames the bar spends over the target); 0.3 instead of 0.5 would be 40 % off.
    assert abs(rate_dev - rate_ref) < 0.25 * rate_ref, (rate_dev, rate_ref)
    assert ks(_occluded(dev), _occluded(ref)) < KS_BOUND
    rarer = np.mean(_occluded(_numpy_config(SyntheticConfig(occlusion_prob=0.3), N_MISMATCH)))
    assert abs(rate_dev - rarer) > 0.25 * rarer


def test_boxes_inside_frame(device):
    for s in _device_config(device, "default"):
        b = s["boxes"]
        assert (b[:, :2] >= -1e-3).all() and (b[:, 0] + b[:, 2] <= CFG.image_size[0] + 1e-3).all()
        assert (b[:, 1] + b[:, 3] <= CFG.image_size[1] + 1e-3).all()
        np.testing.assert_array_equal(s["presence"], 1.0)


@pytest.mark.slow
def test_chunks_render_the_same_frames(device_more):
    np.testing.assert_array_equal(device_more["chunk_None/frames"], device_more["chunk_2/frames"])


@pytest.mark.slow
def test_leaving_target_loses_presence(device_more):
    left = 0
    for s in _device_config(device_more, "leave"):
        c = _centres(s["boxes"])
        inside = (c >= 0).all(-1) & (c < CFG.image_size).all(-1)
        np.testing.assert_array_equal(s["presence"], np.cumprod(inside))
        left += int(s["presence"][-1] == 0)
    assert left > 0


def test_pixel_statistics_match(device):
    frames = device["jit_a/frames"].astype(np.float64)  # (B, 2, H, W, 3)
    ref = synthetic.fixed_set("val", 200, 2, CFG)
    ref_frames = ref["frames"].astype(np.float64)

    def stats(f, boxes):
        inner = []  # mean colour in the middle of the target's box (object colours)
        for seq, box in zip(f, boxes, strict=True):
            y, x, h, w = box[0]
            inner.append(seq[0, int(y + h / 3): int(y + 2 * h / 3) + 1,
                             int(x + w / 3): int(x + 2 * w / 3) + 1].mean())
        return f.mean((1, 2, 3, 4)), f.std((2, 3, 4)).mean(1), np.array(inner)

    dev = stats(frames, device["jit_a/boxes"])
    npy = stats(ref_frames, ref["boxes"])
    # Sequence means spread by ~35 grey levels (the bank's tints): 96 vs 200 sequences put
    # the difference of means' sd near 4.3; tolerances ~3 sd.
    for d, r, tol in zip(dev, npy, (13.0, 4.0, 18.0), strict=True):
        assert abs(d.mean() - r.mean()) < tol, (d.mean(), r.mean())
        assert ks(d, r) < 0.25


def test_jit_deterministic_with_numpy_shapes(device):
    a = {k.split("/")[1]: v for k, v in device.items() if k.startswith("jit_a/")}
    ref = synthetic.train_batch(0, 2, 2, 0, CFG)
    assert {k: (v.shape[2:], v.dtype) for k, v in a.items()} == {
        k: (v.shape[2:], v.dtype) for k, v in ref.items()}
    pipeline.check_batch(a, 96, CFG.image_size)
    for key in a:
        np.testing.assert_array_equal(a[key], device[f"jit_b/{key}"])
    for other in ("jit_c", "jit_d"):  # another index, another seed
        assert not np.array_equal(a["boxes"], device[f"{other}/boxes"])
        assert not np.array_equal(a["frames"], device[f"{other}/frames"])


@pytest.mark.slow
def test_tensorflow_backend_deterministic():
    import keras

    from hart_tf.data import synthetic_device

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the suite runs on another backend")
    a, b, c = (synthetic_device.train_batch(0, i, 2, 3, CFG) for i in (5, 5, 6))
    batch = {k: np.asarray(v) for k, v in a.items()}
    pipeline.check_batch(batch, 2, CFG.image_size)
    for key in a:
        np.testing.assert_array_equal(batch[key], np.asarray(b[key]))
    assert not np.array_equal(batch["boxes"], np.asarray(c["boxes"]))
