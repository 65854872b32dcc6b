"""SavedModel export: round trip without hart_tf, saved_model_cli, clear input errors."""

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from absl import flags as absl_flags
from fixtures_tracking import CONFIG, exported_dir, untrained_checkpoint  # noqa: F401

from hart_tf.cli import export as export_cli
from hart_tf.model.saving import load_model
from hart_tf.track import export
from hart_tf.track.baselines import run_tracker
from hart_tf.track.files import load_tracker
from hart_tf.track.tracker import Tracker

H, W = CONFIG.image_size

# Runs in a fresh interpreter (-I: no PYTHONPATH, no cwd on sys.path) in which importing
# hart_tf fails, so the SavedModel must stand alone.
ROUND_TRIP = textwrap.dedent("""
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "hart_tf":
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)")

    sys.meta_path.insert(0, Block())
    try:
        import hart_tf
    except ModuleNotFoundError:
        pass
    else:
        sys.exit("hart_tf is importable in the round-trip process")

    import json

    import numpy as np
    import tensorflow as tf

    export_dir, inputs, outputs = sys.argv[1:]
    x = np.load(inputs)
    sig = tf.saved_model.load(export_dir).signatures
    out = {}
    for name, frames in (("serving_default", x["frames"]), ("track", x["frames"]),
                         ("track_uint8", x["frames"].astype(np.uint8))):
        r = sig[name](frames=tf.constant(frames), box0=tf.constant(x["box0"]))
        out.update({f"{name}/{k}": v.numpy() for k, v in r.items()})
    r = sig["track"](frames=tf.constant(x["frames"][:, :2]), box0=tf.constant(x["box0"]))
    out["short/boxes"] = r["boxes"].numpy()  # another T through the same signature
    keys = ("state_a", "state_h", "state_c", "state_o")
    state = sig["init"](frame=tf.constant(x["frames"][:, 0]), box0=tf.constant(x["box0"]))
    boxes = []
    for t in range(1, x["frames"].shape[1]):
        r = sig["step"](frame=tf.constant(x["frames"][:, t]), **{k: state[k] for k in keys})
        state = {k: r[k] for k in keys}
        boxes.append(r["box"].numpy())
    out["step/box"] = np.stack(boxes, 1)
    np.savez(outputs, **out)

    # What a client sees when it sends wrong inputs: the first line of each error.
    f, b = x["frames"], x["box0"]
    s0 = {k: state[k].numpy() for k in keys} | {"frame": f[:, 1]}
    cases = {
        "rank": ("track", dict(frames=f[:, 0], box0=b)),
        "size": ("track", dict(frames=f[..., :60, :], box0=b)),
        "box_shape": ("track", dict(frames=f, box0=b[:, :3])),
        "box_batch": ("track", dict(frames=f, box0=b[:1])),
        "box_size": ("track", dict(frames=f, box0=b * np.float32([1, 1, 1, 0]))),
        "dtype": ("track", dict(frames=f.astype(np.float64), box0=b)),
        "dtype_uint8": ("track_uint8", dict(frames=f, box0=b)),
        "init_rank": ("init", dict(frame=f, box0=b)),
        "state_batch": ("step", s0 | {"state_h": s0["state_h"][:1]}),
        "state_size": ("step", s0 | {"state_c": s0["state_c"][:, :5]}),
    }
    errors = {}
    for case, (name, kwargs) in cases.items():
        try:
            sig[name](**{k: tf.constant(v) for k, v in kwargs.items()})
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as e:
            lines = [line for line in str(e).splitlines() if "assertion failed" in line]
            errors[case] = (lines or str(e).splitlines())[0]
    with open("errors.json", "w") as fp:
        json.dump(errors, fp)
    print("hart_tf" in sys.modules)
""")


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 4, H, W, 3)).astype(np.float32)  # (B, T, H, W, 3)
    box0 = np.array([[10, 12, 14, 16], [20, 30, 12, 10]], np.float32)  # (B, 4) y, x, h, w
    return frames, box0


@pytest.fixture(scope="module")
def keras_outputs(untrained_checkpoint, inputs):  # noqa: F811
    """What the Keras model gives: the sequence call, and stepping frame by frame."""
    frames, box0 = inputs
    model = load_model(untrained_checkpoint)
    out = {k: np.asarray(v) for k, v in model({"frames": frames, "box0": box0}).items()}
    state = model.init_state(frames[:, 0], box0)
    boxes = []
    for t in range(1, frames.shape[1]):
        step, state = model.step(frames[:, t], state)
        boxes.append(np.asarray(step["box"]))
    out["step_box"] = np.stack(boxes, 1)
    return out


def test_folder_holds_savedmodel_keras_file_and_config(
    exported_dir, inputs, keras_outputs, processes  # noqa: F811
):
    # `processes` starts the subprocesses of the last two tests now, to run beside these.
    assert (exported_dir / "saved_model.pb").is_file()
    assert (exported_dir / "variables").is_dir()
    config = json.loads((exported_dir / export.CONFIG_FILE).read_text())
    assert config["image_size"] == [H, W]
    assert export.read_export_config(exported_dir) == CONFIG.to_dict()
    frames, box0 = inputs
    again = load_model(exported_dir / export.KERAS_FILE)({"frames": frames, "box0": box0})
    np.testing.assert_allclose(again["boxes"], keras_outputs["boxes"], atol=1e-6)


def _saved_model_cli() -> list[str]:
    found = shutil.which("saved_model_cli")
    return [found] if found else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


@pytest.fixture(scope="module")
def processes(exported_dir, inputs, tmp_path_factory):  # noqa: F811
    """The round trip and two saved_model_cli calls, started at once so that their
    TensorFlow start-ups overlap; each test waits for its own."""
    tmp = tmp_path_factory.mktemp("export_processes")
    frames, box0 = inputs
    np.savez(tmp / "in.npz", frames=frames, box0=box0)
    np.save(tmp / "frames.npy", frames)
    np.save(tmp / "box0.npy", box0)
    commands = {
        "round_trip": [sys.executable, "-I", "-c", ROUND_TRIP, str(exported_dir), "in.npz",
                       "out.npz"],
        "show": [*_saved_model_cli(), "show", "--dir", str(exported_dir), "--all"],
        "run": [*_saved_model_cli(), "run", "--dir", str(exported_dir), "--tag_set", "serve",
                "--signature_def", "track", "--inputs",
                f"frames={tmp / 'frames.npy'};box0={tmp / 'box0.npy'}", "--outdir",
                str(tmp / "cli_out")],
    }
    procs = {}
    for name, command in commands.items():
        with open(tmp / f"{name}.out", "w") as out, open(tmp / f"{name}.err", "w") as err:
            procs[name] = subprocess.Popen(command, cwd=tmp, stdout=out, stderr=err)

    def finish(name: str) -> str:
        code = procs[name].wait(timeout=300)
        assert code == 0, (tmp / f"{name}.err").read_text()[-3000:]
        return (tmp / f"{name}.out").read_text()

    yield tmp, finish
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_tracker_from_the_export_matches_the_checkpoint(exported_dir, untrained_checkpoint):  # noqa: F811
    frames = np.random.default_rng(1).integers(0, 256, (5, 60, 90, 3)).astype(np.uint8)
    box = np.array([20, 15, 24, 18], np.float32)  # x, y, w, h in the 90x60 frames
    results = []
    for tracker in (Tracker.from_checkpoint(untrained_checkpoint), load_tracker(exported_dir)):
        assert tracker.image_size == CONFIG.image_size
        results.append(run_tracker(tracker, frames, box)[0])
    assert hasattr(tracker, "_saved_model")  # the track CLI chose the SavedModel
    np.testing.assert_allclose(results[1], results[0], atol=1e-4)


def test_existing_export_dir_is_refused(untrained_checkpoint, tmp_path):  # noqa: F811
    target = tmp_path / "1"
    target.mkdir()
    (target / "old.txt").write_text("x")
    with pytest.raises(ValueError, match=r"^--out: .*/1 already exists; choose a new"):
        export.export_checkpoint(untrained_checkpoint, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1"]  # no temporary folder left


def _main_error(capsys, *args) -> str:
    absl_flags.FLAGS.unparse_flags()
    absl_flags.FLAGS(["export", *args])
    try:
        with pytest.raises(SystemExit) as info:
            export_cli.main(["export"])
    finally:
        absl_flags.FLAGS.unparse_flags()
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_cli_errors(capsys, tmp_path):
    assert _main_error(capsys, f"--out={tmp_path}/1") == (
        "error: --model is required (a .keras file or a run folder)")
    assert _main_error(capsys, f"--model={tmp_path}/a.keras") == (
        "error: --out is required: the SavedModel folder (e.g. models/hart/1 for TF Serving)")
    assert _main_error(capsys, f"--model={tmp_path}/a.keras",
                       f"--out={tmp_path}/1") == (
        f"error: --model: {tmp_path}/a.keras does not exist")


def test_round_trip_in_a_process_without_hart_tf(processes, keras_outputs):
    tmp, finish = processes
    assert finish("round_trip").strip().splitlines()[-1] == "False"  # hart_tf never loaded
    got = np.load(tmp / "out.npz")
    for name in ("serving_default", "track", "track_uint8"):
        assert sorted(k.split("/")[1] for k in got if k.startswith(name + "/")) == [
            "att_boxes", "boxes", "presence"]
        for key in ("boxes", "att_boxes", "presence"):
            np.testing.assert_allclose(got[f"{name}/{key}"], keras_outputs[key], atol=1e-5,
                                       err_msg=f"{name}/{key}")
    np.testing.assert_allclose(got["short/boxes"], keras_outputs["boxes"][:, :2], atol=1e-5)
    np.testing.assert_allclose(got["step/box"], keras_outputs["step_box"], atol=1e-5)
    # Streaming equals the sequence call (boxes[:, 0] is box0 itself in both).
    np.testing.assert_allclose(got["step/box"], keras_outputs["boxes"][:, 1:], atol=1e-4)


def test_saved_model_cli_show_and_run(processes, keras_outputs):
    tmp, finish = processes
    show = finish("show")
    for name in export.SIGNATURES:
        assert f"signature_def['{name}']" in show
    for key in ("frames", "box0", "frame", *export.STATE_KEYS):
        assert f"inputs['{key}']" in show
    for key in ("boxes", "att_boxes", "presence", "box", "location_map"):
        assert f"outputs['{key}']" in show
    finish("run")
    for key in ("boxes", "att_boxes", "presence"):
        np.testing.assert_allclose(np.load(tmp / "cli_out" / f"{key}.npy"), keras_outputs[key],
                                   atol=1e-5)


def test_wrong_inputs_fail_with_clear_messages(processes):
    tmp, finish = processes
    finish("round_trip")
    errors = json.loads((tmp / "errors.json").read_text())
    frames = "track: frames (B, T, H, W, C) must have shape (?, ?, 48, 64, 3); got"
    expected = {
        "rank": f"{frames}] [2 48 64 3]",
        "size": f"{frames}] [2 4 48 60 3]",
        "box_shape": "track: box0 (y, x, h, w) must have shape (?, 4); got] [2 3]",
        "box_batch": "track: frames, box0 must have the same batch size B; got] [2 1]",
        "box_size": "track: box0 must have h > 0 and w > 0]",
        "init_rank": "init: frame (B, H, W, C) must have shape (?, 48, 64, 3); got] "
                     "[2 4 48 64 3]",
        "state_batch": "step: frame, state_a, state_h, state_c, state_o must have the same "
                       "batch size B; got] [2 2 1 2 2]",
        "state_size": f"step: state_c must have shape (?, {CONFIG.rnn_units}); got] [2 5]",
    }
    for case, message in expected.items():
        assert errors[case] == f"assertion failed: [{message}", case
    # A wrong dtype is refused by TensorFlow itself, before the graph runs.
    assert "was expected to be a float tensor but is a double tensor" in errors["dtype"]
    assert "was expected to be a uint8 tensor but is a float tensor" in errors["dtype_uint8"]
