"""Export a trained HART for TF Serving: `python -m hart_tf.export --model=… --out=…`.

Writes a SavedModel (TensorFlow backend only) whose signatures need neither Python nor
hart_tf to run, plus the `.keras` file beside `saved_model.pb`:

- `track` (also `serving_default`): `frames` float32 (B, T, H, W, 3) pixels in [0, 255] and
  `box0` (B, 4) -> `boxes` (B, T, 4), `att_boxes` (B, T, 4), `presence` (B, T).
- `track_uint8`: the same with uint8 `frames` (a quarter of the bytes over gRPC).
- `init`: `frame` (B, H, W, 3) and `box0` (B, 4) -> the recurrent state after frame 0.
- `step`: `frame` (B, H, W, 3) and the state -> `box`, `att_box`, `presence`,
  `location_map` and the new state, for streaming one frame at a time.

Boxes are (y, x, h, w) in pixels of the model's H x W frames; B and T are dynamic. The state
is four tensors whose input and output names agree (`STATE_KEYS`), so a client feeds the
outputs of one `init`/`step` call back unchanged into the next `step`. Inputs are declared
with unknown rank and checked inside the graph, so a wrong shape fails with a message naming
the input and the shape expected. The model config (H, W among it) is written to
`assets.extra/hart_config.json` for clients.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import keras

from hart_tf.model.saving import load_model, resolve_checkpoint

STATE_KEYS = ("state_a", "state_h", "state_c", "state_o")
SIGNATURES = ("serving_default", "track", "track_uint8", "init", "step")
KERAS_FILE = "hart.keras"
# TF Serving's place for files beside a model; clients read the input size from here.
CONFIG_FILE = Path("assets.extra") / "hart_config.json"


def _require_tensorflow_backend() -> None:
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"export writes a TensorFlow SavedModel: run it with KERAS_BACKEND=tensorflow "
            f"(the backend is {keras.backend.backend()!r})"
        )


def _checked(x, expected: list[int | None], what: str):
    """`x` after a runtime check of its rank and fixed dimensions, with a message naming it.

    Signature inputs are declared with unknown rank: a loaded signature does not check
    shapes against its declaration, so this check is what stops a wrong tensor from
    failing deep inside the model.
    """
    import tensorflow as tf

    dims = ", ".join("?" if d is None else str(d) for d in expected)
    shape = tf.shape(x)
    idx = [i for i, d in enumerate(expected) if d is not None]
    fixed = tf.constant([expected[i] for i in idx], tf.int32)
    ok = tf.cond(
        tf.equal(tf.size(shape), len(expected)),
        lambda: tf.reduce_all(tf.equal(tf.gather(shape, idx), fixed)),
        lambda: tf.constant(False),
    )
    check = tf.debugging.Assert(ok, [f"{what} must have shape ({dims}); got", shape], summarize=8)
    with tf.control_dependencies([check]):
        return tf.ensure_shape(tf.identity(x), expected)


def _same_batch(where: str, named: dict):
    import tensorflow as tf

    names = list(named)
    batches = tf.stack([tf.shape(named[k])[0] for k in names])  # (n,)
    return tf.debugging.Assert(
        tf.reduce_all(tf.equal(batches, batches[0])),
        [f"{where}: {', '.join(names)} must have the same batch size B; got", batches],
        summarize=8,
    )


def _signature_functions(model) -> list[tuple[str, object, list]]:
    """(name, function, input signature) of every endpoint, `track` first (serving_default)."""
    import tensorflow as tf

    h, w = model.config.image_size
    ch, units = model.config.channels, model.config.rnn_units

    def spec(name, dtype=tf.float32):
        return tf.TensorSpec(None, dtype, name=name)  # unknown rank: see `_checked`

    def checked_box0(where, box0):
        box0 = _checked(box0, [None, 4], f"{where}: box0 (y, x, h, w)")
        positive = tf.debugging.Assert(
            tf.reduce_all(box0[:, 2:] > 0), [f"{where}: box0 must have h > 0 and w > 0"])
        with tf.control_dependencies([positive]):
            return tf.identity(box0)

    def track(frames, box0):
        frames = _checked(frames, [None, None, h, w, ch], "track: frames (B, T, H, W, C)")
        box0 = checked_box0("track", box0)
        checks = [
            _same_batch("track", {"frames": frames, "box0": box0}),
            tf.debugging.Assert(tf.shape(frames)[1] > 0, ["track: frames need T >= 1"]),
        ]
        with tf.control_dependencies(checks):
            out = model({"frames": frames, "box0": box0}, training=False)
        return {k: out[k] for k in ("boxes", "att_boxes", "presence")}

    def init(frame, box0):
        frame = _checked(frame, [None, h, w, ch], "init: frame (B, H, W, C)")
        box0 = checked_box0("init", box0)
        with tf.control_dependencies([_same_batch("init", {"frame": frame, "box0": box0})]):
            state = model.init_state(frame, box0)
        return dict(zip(STATE_KEYS, state, strict=True))

    def step(frame, state_a, state_h, state_c, state_o):
        frame = _checked(frame, [None, h, w, ch], "step: frame (B, H, W, C)")
        state = [
            _checked(s, [None, 4 if key == "state_a" else units], f"step: {key}")
            for key, s in zip(STATE_KEYS, (state_a, state_h, state_c, state_o), strict=True)
        ]
        named = {"frame": frame, **dict(zip(STATE_KEYS, state, strict=True))}
        with tf.control_dependencies([_same_batch("step", named)]):
            out, new_state = model.step(frame, state)
        return {**out, **dict(zip(STATE_KEYS, new_state, strict=True))}

    box0 = spec("box0")
    return [
        ("track", track, [spec("frames"), box0]),
        ("track_uint8", track, [spec("frames", tf.uint8), box0]),
        ("init", init, [spec("frame"), box0]),
        ("step", step, [spec("frame"), *(spec(k) for k in STATE_KEYS)]),
    ]


def _with_time_loop(model):
    """`model`, or a copy with its weights whose recurrence is one compiled loop: an
    unrolled recurrence (the TF training default) needs a static T, and serving takes any T."""
    if not getattr(model, "unroll", False):
        return model
    copy = type(model).from_config({**model.get_config(), "unroll": False})
    copy.build()
    copy.set_weights(model.get_weights())
    return copy


def export_model(model, export_dir: str | os.PathLike) -> Path:
    """Writes `model` as a SavedModel with the signatures above, and its `.keras` file.

    The folder appears whole or not at all (written under a temporary name, then renamed);
    an existing non-empty `export_dir` is refused, as TF Serving may be reading it.

    Returns:
        the export folder.
    """
    _require_tensorflow_backend()
    export_dir = Path(export_dir).absolute()
    if export_dir.exists() and (not export_dir.is_dir() or any(export_dir.iterdir())):
        raise ValueError(
            f"--out: {export_dir} already exists; choose a new folder (TF Serving "
            f"loads numbered versions: use the next number)"
        )
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = export_dir.parent / f".tmp-{export_dir.name}-{uuid.uuid4().hex[:8]}"
    model = _with_time_loop(model)
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        for name, fn, signature in _signature_functions(model):
            archive.add_endpoint(name, fn, signature)
        archive.write_out(str(tmp), verbose=False)
        model.save(tmp / KERAS_FILE)
        (tmp / CONFIG_FILE).parent.mkdir()
        (tmp / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=1))
        if export_dir.exists():
            export_dir.rmdir()  # empty, checked above; os.replace cannot replace a folder
        os.replace(tmp, export_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return export_dir


def read_export_config(export_dir: str | os.PathLike) -> dict:
    """The `HARTConfig` dict of an export (its `image_size` is what clients resize to)."""
    path = Path(export_dir) / CONFIG_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(
            f"{path}: missing; export the model with python -m hart_tf.export") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable export config ({e})") from None


def export_checkpoint(checkpoint: str | os.PathLike, export_dir: str | os.PathLike) -> Path:
    """Exports a `.keras` checkpoint (or a run folder's best/latest one)."""
    _require_tensorflow_backend()
    return export_model(load_model(resolve_checkpoint(checkpoint)), export_dir)
