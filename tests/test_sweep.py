"""experiments/sweep.py: the trials file, and a tiny two-trial sweep through real training runs."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))
import sweep  # noqa: E402

TINY = ["--image_size=64,64", "--glimpse_size=8,8", "--rnn_units=12", "--batch_size=2",
        "--steps_per_epoch=2", "--curriculum_lengths=2,3", "--curriculum_threshold=0",
        "--eval_sequences=2", "--eval_steps=2", "--image_every=0", "--run_eagerly",
        "--max_minutes=0", "--epochs=2"]


def test_trials_file_is_parsed_with_comments_and_blank_lines(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("# a comment\n\nbase\nadam  --optimizer=adam --learning_rate=1e-3  # x\n")
    assert sweep.parse_trials(path) == [
        ("base", []), ("adam", ["--optimizer=adam", "--learning_rate=1e-3"])]


@pytest.mark.parametrize("text, message", [
    ("a\na --seed=1\n", "{p}:2: trial name 'a' is used twice"),
    ("a seed=1\n", "{p}:1: expected --flag=value after the name, got 'seed=1'"),
    ("a/b\n", "{p}:1: trial name 'a/b' must be letters, digits, '-', '_' or '.'"),
    ("# nothing\n", "{p}: no trials (one 'name --flag=value ...' a line)"),
])
def test_bad_trials_files_give_one_line_errors(tmp_path, text, message):
    path = tmp_path / "t.txt"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        sweep.parse_trials(path)
    assert str(info.value) == message.format(p=path)


def test_trials_go_to_the_least_busy_device():
    assert sweep.pick_device([], []) is None
    assert sweep.pick_device(["0", "1"], []) == "0"
    assert sweep.pick_device(["0", "1"], ["0"]) == "1"
    assert sweep.pick_device(["0", "1", "2"], ["0", "1", "0", "2"]) == "1"
    env = sweep.trial_env({"PATH": "/bin"}, "3")
    assert env["CUDA_VISIBLE_DEVICES"] == "3" and env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert "CUDA_VISIBLE_DEVICES" not in sweep.trial_env({"PATH": "/bin"}, None)


@pytest.mark.parametrize("value", ["a,b", "0,0", "-1"])
def test_bad_devices_flag_is_a_one_line_error(tmp_path, capsys, value):
    trials = tmp_path / "t.txt"
    trials.write_text("base\n")
    with pytest.raises(SystemExit) as info:
        sweep.main([f"--trials={trials}", f"--devices={value}"])
    assert info.value.code == 2
    assert (f"--devices must be distinct GPU numbers like 0,1,2,3, got {value!r}"
            in capsys.readouterr().err)


def test_a_sweep_trains_every_trial_and_reports_failures(tmp_path, capsys):
    trials = tmp_path / "trials.txt"
    trials.write_text("base\nrms --optimizer=rmsprop --learning_rate=1e-4\n"
                      "broken --learning_rate=-1\n")
    out = tmp_path / "sweep"
    code = sweep.main([f"--trials={trials}", "--parallel=3", f"--out_dir={out}",
                       "--devices=0,1", "--", *TINY])
    assert code == 1  # one trial failed
    records = {r["name"]: r for r in map(json.loads, (out / "sweep.jsonl").read_text().split(
        "\n")[:-1])}
    assert set(records) == {"base", "rms", "broken"}
    # Spread over the two devices: the third trial goes to the one running fewer.
    assert [records[n]["device"] for n in ("base", "rms", "broken")] == ["0", "1", "0"]
    for name in ("base", "rms"):
        r = records[name]
        assert r["exit_code"] == 0 and 0.0 <= r["mean_iou"] <= 1.0, r
        assert (r["steps"], r["length"]) == (4, 3)
        summary = json.loads((out / "checkpoints" / name / "summary.json").read_text())
        assert r["mean_iou"] == summary["test"]["mean_iou"]
        assert (out / "tb" / name).is_dir()
    # Each trial's flags reached its run: the optimizer saved in its best checkpoint.
    for name, optimizer in (("base", "GuardedAdam"), ("rms", "GuardedRMSprop")):
        with zipfile.ZipFile(out / "checkpoints" / name / "best.keras") as z:
            config = json.loads(z.read("config.json"))
        assert config["compile_config"]["optimizer"]["class_name"] == optimizer
    broken = records["broken"]
    assert broken["exit_code"] != 0 and "mean_iou" not in broken
    message = "error: flag --learning_rate=-1.0: --learning_rate must be positive"
    assert broken["error"] == message
    table = capsys.readouterr().out
    assert f"| broken | `--learning_rate=-1` | failed: {message} |" in table


# About 14 s of CPU on 2 cores (two sweeps of tiny trainings in subprocesses).
@pytest.mark.slow
def test_resume_continues_every_trial_where_the_last_call_stopped(tmp_path):
    trials = tmp_path / "trials.txt"
    trials.write_text("a --learning_rate=1e-4\n")
    out = tmp_path / "sweep"

    def record():
        return json.loads((out / "sweep.jsonl").read_text())

    args = [f"--trials={trials}", f"--out_dir={out}", "--",
            *[a.replace("--epochs=2", "--epochs=1") for a in TINY]]
    assert sweep.main(args) == 0
    assert record()["steps"] == 2
    # With --resume the trial goes on from its checkpoint (epoch 2 of 2: 2 more updates,
    # not 4 from scratch) and its log keeps the first call's output.
    more = [a.replace("--epochs=1", "--epochs=2") for a in args]
    assert sweep.main(["--resume", *more]) == 0
    assert record()["steps"] == 4
    log = (out / "a.log").read_text()
    assert "Resumed" in log and log.count("Test mean IoU") == 2


def test_without_resume_every_trial_starts_from_scratch(tmp_path):
    base = sweep.command("a", ["--seed=1"], ["--epochs=2"], tmp_path)
    assert base[-1] == "--resume=false" and base[-4:-1] == [
        "--run_name=a", f"--checkpoint_dir={tmp_path / 'checkpoints'}",
        f"--logdir={tmp_path / 'tb' / 'a'}"]
    assert sweep.command("a", [], [], tmp_path, resume=True)[-1] == "--resume=true"


def test_plot_budget_draws_every_trial_and_counts_sequences(tmp_path, monkeypatch):
    import plot_budget

    for name, steps in (("hart_s0", (50, 100)), ("spatial_s0", (50, 100, 150))):
        run = tmp_path / "runs" / name
        run.mkdir(parents=True)
        history = [{"step": s, "val_iou_final_length": s / 1000} for s in steps]
        (run / "summary.json").write_text(json.dumps(
            {"step": steps[-1], "length": 20, "history": history, "test": {"mean_iou": 0.4}}))
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["plot_budget.py", f"--runs={tmp_path / 'runs'}",
                                      "--batch_size=256", f"--out={out}"])
    plot_budget.main()
    assert (out / "iou_vs_sequences.png").stat().st_size > 1000
    records = {r["name"]: r for r in map(json.loads, (out / "budget.jsonl").open())}
    assert records["spatial_s0"]["sequences"] == 150 * 256
    assert records["hart_s0"]["curve"] == [[50 * 256, 0.05], [100 * 256, 0.1]]
    assert records["hart_s0"]["test_mean_iou"] == 0.4


def test_plot_budget_keeps_earlier_records_that_no_run_folder_replaces(tmp_path, monkeypatch):
    import plot_budget

    run = tmp_path / "runs" / "cross_s0"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps(
        {"step": 100, "length": 20, "history": [{"step": 100, "val_iou_final_length": 0.7}],
         "test": {"mean_iou": 0.75}}))
    earlier = tmp_path / "earlier.jsonl"
    old = {"updates": 50, "sequences": 50 * 256, "length": 20, "test_mean_iou": 0.5,
           "curve": [[50 * 256, 0.5]]}
    earlier.write_text("".join(json.dumps({"name": n, **old}) + "\n"
                               for n in ("hart_s0", "cross_s0")))
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["plot_budget.py", f"--runs={tmp_path / 'runs'}",
                                      f"--out={out}", f"--keep={earlier}"])
    plot_budget.main()
    records = [json.loads(line) for line in (out / "budget.jsonl").open()]
    assert [r["name"] for r in records] == ["cross_s0", "hart_s0"]
    assert records[0]["test_mean_iou"] == 0.75  # the run folder wins over the earlier record
    assert records[1]["curve"] == [[50 * 256, 0.5]]


def test_e2e_throughput_times_a_run_from_its_checkpoint_records_without_a_summary(tmp_path):
    import e2e_throughput
    import keras

    from hart_tf.train.checkpoints import CheckpointManager

    history = [{"step": 30 * e, "unix_time": 100.0 + 3 * e} for e in (1, 2, 3)]
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    manager = CheckpointManager(tmp_path)
    for step, part in ((90, history[:2]), (120, history)):  # the newest: 120, not "90" > "120"
        manager.save(model, {"step": step, "config": {}, "history": part})
    assert e2e_throughput._records(tmp_path) == (None, history)
    summary = {"history": history[:1], "test": {"mean_iou": 0.5}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert e2e_throughput._records(tmp_path) == (summary, history[:1])
    assert e2e_throughput._records(tmp_path / "absent") == (None, [])
