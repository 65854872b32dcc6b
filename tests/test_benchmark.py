"""tools/benchmark.py and tools/flops.py: FLOP counts, spec parsing, and a --quick smoke run."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import flops  # noqa: E402

from hart_tf.model.config import HARTConfig  # noqa: E402

# XLA's cost analysis of each V1 convolution alone (jax.jit(...).cost_analysis()["flops"]),
# which counts only the kernel taps inside the input, as tools/flops.py does.
XLA_V1_FLOPS = {
    "small": [430_944, 409_600, 739_328],
    "kitti": [12_446_784, 100_663_296, 314_572_800],
}

RECORD_KEYS = {
    "env": {"backend", "machine", "versions", "date", "command"},
    "train": {"spec", "batch", "T", "frames_per_s", "step_ms", "flops_per_frame", "tflops", "mfu",
              "peak_memory_bytes", "loss", "loss_finite", "first_step_s"},
    "pipeline": {"gen_ms_per_batch_1core", "h2d_ms_per_batch", "staged_step_ms",
                 "host_fed_step_ms", "gen_cores_to_keep_up", "transfer_share_of_step"},
    "track": {"fps", "latency_ms_p50", "latency_ms_p90", "pipelined_fps", "peak_memory_bytes"},
    "objects": {"objects", "steps_per_s", "object_frames_per_s", "latency_ms_p50"},
    "tracker_api": {"objects", "object_frames_per_s", "latency_ms_p50",
                    "track_object_frames_per_s"},
    "opencv": {"tracker", "frames"},
}


@pytest.mark.parametrize("name", ["small", "kitti"])
def test_v1_flops_match_xla_cost_analysis(name):
    rows = flops.v1_layers(HARTConfig.from_preset(name))
    assert [int(r.flops) for r in rows] == XLA_V1_FLOPS[name]


def test_kitti_step_is_dominated_by_v1_and_attention():
    c = HARTConfig.from_preset("kitti")
    rows = {r.name: r.flops for r in flops.step_layers(c)}
    assert rows["spatial_attention/rows"] == 2 * 56 * 187 * 621 * 3
    assert rows["lstm"] == 2 * 200 * 400
    step = flops.total(flops.step_layers(c))
    assert sum(XLA_V1_FLOPS["kitti"]) / step > 0.85
    # The initial-state step has no dorsal stream and no readouts, but the init transforms.
    init = {r.name for r in flops.step_layers(c, initial=True)}
    assert "init_h" in init and "appearance/dfn1/conv" not in init and "box_readout" not in init


def test_flops_per_frame_shares_the_initial_step_and_triples_for_training():
    c = HARTConfig.from_preset("small")
    f = flops.flops_per_frame(c, 4)
    assert f["train_forward"] == pytest.approx((4 * f["track_step"] + f["init_step"]) / 4)
    assert f["train"] == pytest.approx(3 * f["train_forward"])
    assert flops.mfu(f["train"], 1e6, peak_tflops=1.0) == pytest.approx(f["train"] / 1e6)
    with pytest.raises(ValueError, match="seq_len"):
        flops.flops_per_frame(c, 0)


def test_flops_table_lists_every_layer():
    text = flops.table(HARTConfig.from_preset("kitti"), 10)
    assert "v1/conv3" in text and "trained frame, T=10, x3" in text


def _run(args, tmp_path, timeout=240):
    env = dict(os.environ, KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "tensorflow"),
               TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, str(REPO / "tools" / "benchmark.py"), *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_bad_train_specs_are_one_line_errors(tmp_path):
    # One process per case costs seconds on two cores: two cases, both exit before Keras.
    for spec, message in [("kitti:8:10:fp32", "CONFIG:BATCH:T:PRECISION:LOOP"),
                          ("kitti:0:10:fp16:scan", "PRECISION is fp32|bf16")]:
        proc = _run([f"--train={spec}", "--track="], tmp_path)
        assert proc.returncode == 2, proc.stderr[-500:]
        assert proc.stderr.strip().startswith("error:") and message in proc.stderr
        assert "Traceback" not in proc.stderr


def test_quick_run_writes_every_record_and_a_markdown_row(tmp_path):
    md = tmp_path / "BENCH.md"
    md.write_text("# Benchmarks\n\nhand-written intro\n")
    # XLA off for the TF tracking step keeps this smoke run short on two cores.
    proc = _run(["--quick", "--track_jit=false", "--opencv=kcf", "--out=out.jsonl",
                 "--markdown", f"--markdown_file={md}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert lines == [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    records = [json.loads(ln) for ln in lines]
    kinds = [r["bench"] for r in records]
    assert kinds[0] == "env" and set(kinds) == set(RECORD_KEYS)
    for r in records:
        missing = RECORD_KEYS[r["bench"]] - set(r)
        assert not missing, f"{r['bench']} lacks {missing}"
    env = records[0]
    assert env["backend"] == os.environ.get("KERAS_BACKEND", "tensorflow") and env["quick"]
    assert "keras" in env["versions"] and "--quick" in env["command"]
    train = next(r for r in records if r["bench"] == "train")
    assert train["loss_finite"] and train["frames_per_s"] > 0
    assert train["frames_per_s"] == pytest.approx(2 * 3 / (train["step_ms"] / 1e3))
    assert train["flops_per_frame"] == pytest.approx(
        flops.flops_per_frame(HARTConfig.from_preset("small", image_size=(48, 64),
                                                     glimpse_size=(16, 16)), 3)["train"])
    for r in records[1:]:
        for key in ("fps", "object_frames_per_s", "frames_per_s"):
            if key in r:
                assert math.isfinite(r[key]) and r[key] > 0, (r["bench"], key)
    cv = next(r for r in records if r["bench"] == "opencv")
    assert ("fps" in cv and cv["hart_over_tracker"] > 0) or "error" in cv

    text = md.read_text()
    assert text.startswith("# Benchmarks\n\nhand-written intro\n")  # kept as it was
    rows = [ln for ln in text.splitlines() if ln.startswith(f"| {env['date']} |")]
    assert len(rows) == len(records) - 1  # one row per measurement, none for env
    assert all(f"`{env['command']}`" in row and env["backend"] in row for row in rows)
    # A second run appends under the same heading instead of starting a new table (in a
    # fresh process: benchmark.py defines absl flags that hart_tf.cli.flags also defines).
    code = ("import json, sys; from pathlib import Path; from benchmark import append_markdown; "
            "r = [json.loads(x) for x in open('out.jsonl')]; "
            "append_markdown(Path(sys.argv[1]), r[0], r[1:2])")
    subprocess.run([sys.executable, "-c", code, str(md)], cwd=tmp_path, check=True,
                   env=dict(os.environ, PYTHONPATH=f"{REPO / 'tools'}:{REPO}"), timeout=60)
    again = md.read_text()
    assert again.count("## Log of benchmark runs") == 1
    assert len(again.splitlines()) == len(text.splitlines()) + 1
