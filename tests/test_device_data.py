"""Training batches rendered on the accelerator (`--render_on`) and the learning-rate warm-up.

Where the batches are rendered is decided by `sources.render_on`; the device path itself runs
under JAX, so its tests run `python -m hart_tf.train` and the batch stream in a subprocess
with KERAS_BACKEND=jax on the CPU (the suite's backend is TensorFlow).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from hart_tf.train import sources
from hart_tf.train.options import OptimizerOptions, TrainOptions

REPO = Path(__file__).resolve().parents[1]


def _jax(script: str, timeout: int = 600) -> dict:
    """Runs `script` under JAX on the CPU; it prints one JSON line last."""
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env,
                         capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_auto_renders_on_the_host_on_a_cpu_and_for_files():
    assert sources.render_on(TrainOptions()) == "host"  # TensorFlow, or JAX on a CPU
    assert sources.render_on(TrainOptions.from_flat(dataset="kth")) == "host"
    assert sources.render_on(TrainOptions.from_flat(render_on="host")) == "host"


def test_auto_renders_synthetic_kitti_and_kth_on_a_jax_gpu_and_clips_on_the_host():
    out = _jax("""
        import json, jax
        from hart_tf.train import sources
        from hart_tf.train.options import TrainOptions
        jax.default_backend = lambda: "gpu"  # as on a GPU machine
        pick = {d: sources.render_on(TrainOptions.from_flat(dataset=d))
                for d in ("synthetic", "kitti", "kth", "clips")}
        pick["parallel"] = sources.render_on(TrainOptions.from_flat(distribute="data_parallel"))
        print(json.dumps(pick))
    """)
    assert out == {"synthetic": "device", "kitti": "device", "kth": "device", "clips": "host",
                   "parallel": "host"}


def test_device_rendering_is_refused_where_it_cannot_run():
    with pytest.raises(ValueError, match="--render_on=device makes synthetic, KITTI or KTH "
                                         "batches, not --dataset=clips"):
        sources.render_on(TrainOptions.from_flat(dataset="clips", render_on="device"))
    with pytest.raises(ValueError, match="--distribute=none"):
        sources.render_on(TrainOptions.from_flat(render_on="device",
                                                 distribute="data_parallel"))
    if keras.backend.backend() != "jax":
        with pytest.raises(ValueError, match="KERAS_BACKEND=jax"):
            sources.render_on(TrainOptions.from_flat(render_on="device"))


def test_render_chunks_divide_the_batch_and_stay_at_most_256():
    assert sources._render_chunk(16) is None
    assert sources._render_chunk(256) is None
    assert sources._render_chunk(1024) == 256
    assert sources._render_chunk(600) == 200
    assert sources._render_chunk(257) == 1  # a prime: one at a time rather than all at once


def test_warmup_rises_linearly_then_holds_the_rate_of_the_length():
    o = OptimizerOptions(learning_rate=1e-3, warmup_steps=4, lr_decay={20: 0.5})
    assert [o.rate_at(5, s) for s in range(6)] == pytest.approx(
        [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    assert o.rate_at(20, 1) == pytest.approx(0.5e-3 * 2 / 4)
    assert o.rate_at(20) == pytest.approx(0.5e-3)
    assert OptimizerOptions(learning_rate=1e-3).rate_at(5, 0) == pytest.approx(1e-3)


def test_the_trainer_applies_the_warmup(tmp_path):
    from hart_tf.model.config import HARTConfig
    from hart_tf.train.trainer import _Trainer

    tiny = HARTConfig.from_preset("small", image_size=(64, 64), glimpse_size=(8, 8),
                                  v1_channels=8, rnn_units=12, dorsal_units=10)
    options = TrainOptions.from_flat(
        config=tiny, batch_size=2, steps_per_epoch=3, epochs=1, curriculum_lengths=(3,),
        learning_rate=1e-2, warmup_steps=10, checkpoint_dir=str(tmp_path / "ck"),
        logdir=str(tmp_path / "tb"), eval_sequences=1, eval_steps=2, image_every=0,
        run_eagerly=True, progress=0, max_minutes=0)
    trainer = _Trainer(options)
    trainer.run()
    # The third update (step 2) ran at 3/10 of the rate.
    assert float(trainer.model.optimizer.learning_rate.numpy()) == pytest.approx(3e-3)


_STREAM = """
    import json
    import numpy as np
    from hart_tf.train import sources
    from hart_tf.train.options import TrainOptions

    options = TrainOptions.from_flat(render_on="device", batch_size=3, {extra})
    source = sources.train_source(options)
    stream = source.batches(4, start=0)
    first = [next(stream) for _ in range(3)]
    again = next(source.batches(4, start=2))
    x, y = first[0]
    print(json.dumps({{
        "render_on": source.render_on,
        "shapes": [list(x["frames"].shape), list(x["box0"].shape), list(y["boxes"].shape),
                   list(y["presence"].shape)],
        "dtypes": [str(x["frames"].dtype), str(y["boxes"].dtype)],
        "resumes": bool(np.array_equal(np.asarray(first[2][0]["frames"]),
                                       np.asarray(again[0]["frames"]))),
        "differ": bool(not np.array_equal(np.asarray(first[0][0]["frames"]),
                                          np.asarray(first[1][0]["frames"]))),
        "box0_is_first_box": bool(np.allclose(np.asarray(x["box0"]),
                                              np.asarray(y["boxes"])[:, 0])),
        "mean_pixel": float(np.asarray(x["frames"]).mean()),
    }}))
"""


def test_device_batches_are_a_function_of_the_step_and_resume_there():
    r = _jax(_STREAM.format(extra=""))
    assert r["render_on"] == "device"
    assert r["shapes"] == [[3, 4, 96, 128, 3], [3, 4], [3, 4, 4], [3, 4]]
    assert r["dtypes"] == ["uint8", "float32"]
    assert r["resumes"] and r["differ"] and r["box0_is_first_box"]
    assert 20 < r["mean_pixel"] < 235  # a rendered scene, not an empty frame


def test_device_batches_join_the_real_clips_windows_cut_on_the_host(got_root):
    extra = (f"train_clips_dir={str(got_root)!r}, train_clips=('all',), "
             "train_clips_colour_jitter=0.0")
    r = _jax(_STREAM.format(extra=extra))
    assert r["render_on"] == "device"
    # round(3 * 0.5) = 2 real windows and 1 rendered sequence per batch, stream resumable.
    assert r["shapes"] == [[3, 4, 96, 128, 3], [3, 4], [3, 4, 4], [3, 4]]
    assert r["resumes"] and r["differ"] and r["box0_is_first_box"]


@pytest.mark.slow
def test_training_command_renders_on_the_device_under_jax(tmp_path):
    """`python -m hart_tf.train --render_on=device` trains and says where it renders."""
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-m", "hart_tf.train", "--render_on=device", "--batch_size=2",
         "--image_size=64,64", "--glimpse_size=8,8", "--rnn_units=12", "--steps_per_epoch=2",
         "--epochs=2", "--curriculum_lengths=3", "--eval_sequences=1", "--eval_steps=2",
         "--image_every=0", "--max_minutes=0", "--warmup_steps=2", "--run_name=r",
         f"--checkpoint_dir={tmp_path / 'ck'}", f"--logdir={tmp_path / 'tb'}"],
        env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Synthetic training batches are rendered on the device (jax, cpu:0)" in out.stdout
    summary = json.loads((tmp_path / "ck" / "r" / "summary.json").read_text())
    assert summary["step"] == 4
    assert np.isfinite(summary["test"]["mean_iou"])
