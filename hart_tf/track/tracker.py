"""Online tracking with a trained HART, frame by frame, like an OpenCV or GOT-10k tracker.

    tracker = Tracker.from_checkpoint("checkpoints/hart")   # or Tracker.from_saved_model(dir)
    tracker = Tracker.from_pretrained()   # the model shipped in the package
    tracker.init(first_frame, (x, y, w, h))
    for frame in frames:
        x, y, w, h = tracker.update(frame)

Frames are uint8 RGB (H, W, 3) of any size: each is resized to the model's input size and
boxes are mapped back to that frame's pixels. Boxes are (x, y, w, h), the top-left corner
first. `init(frame, boxes)` with boxes (N, 4) follows N objects at once: `update` then runs
one batched step for all N and returns (N, 4); the frame goes to the device once, as uint8,
and is tiled N times there (a SavedModel's signatures take float32 frames, so for those it
is tiled on the host).

The step is compiled once per tracker (a `tf.function` with a dynamic batch on the
TensorFlow backend, `jax.jit` on JAX; a SavedModel's `step` signature is compiled already)
and warmed up when the tracker is made, so the first frames run as fast as the rest.
`last` holds the latest update's extra outputs (glimpse box, presence, location map), read
back from the device only when asked for. `track(frames, box)` runs a whole video with one
step in flight (host work overlaps the device's) and yields the same boxes as `update`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
from PIL import Image

from hart_tf import pretrained
from hart_tf.data.images import RESAMPLE
from hart_tf.model.saving import load_model, resolve_checkpoint
from hart_tf.track.export import STATE_KEYS, read_export_config
from hart_tf.utils.boxes import xywh_to_yxhw, yxhw_to_xywh

# (frame (1, H, W, C) uint8, boxes (N, 4) yxhw) -> state of N objects
InitFn = Callable[[np.ndarray, np.ndarray], Any]
# (frame (1, H, W, C) uint8, state) -> ({box, att_box, presence, location_map}, state)
StepFn = Callable[[np.ndarray, Any], tuple[dict[str, Any], Any]]


def _tiled(frame, n):
    """(1, H, W, C) -> (n, H, W, C) where it runs: on the device inside compiled code."""
    return keras.ops.broadcast_to(frame, (n, *frame.shape[1:]))


def _on_device_tiling(model) -> tuple[Callable, Callable]:
    """`init_state` and `step` taking one uint8 frame for all N objects: the frame crosses
    to the device once, as uint8, and is tiled and cast there (not N float32 copies)."""

    def init(frame, boxes):
        return model.init_state(_tiled(frame, keras.ops.shape(boxes)[0]), boxes)

    def step(frame, state):
        return model.step(_tiled(frame, keras.ops.shape(state[0])[0]), state)

    return init, step


def _model_functions(model) -> tuple[InitFn, StepFn]:
    """`init_state` and `step` of a Keras HART, compiled for the current backend."""
    backend = keras.backend.backend()
    init_fn, step_fn = _on_device_tiling(model)
    if backend == "tensorflow":
        import tensorflow as tf

        h, w = model.config.image_size
        frame = tf.TensorSpec([1, h, w, model.config.channels], tf.uint8)
        box = tf.TensorSpec([None, 4], tf.float32)
        units = model.config.rnn_units
        state = [tf.TensorSpec([None, 4], tf.float32)] + 3 * [
            tf.TensorSpec([None, units], tf.float32)
        ]
        # Input signatures with a dynamic batch: one trace serves any number of objects.
        init = tf.function(init_fn, input_signature=[frame, box], autograph=False)
        step = tf.function(step_fn, input_signature=[frame, state], autograph=False)
        return init, step
    if backend == "jax":
        import jax

        variables = model.variables

        def stateless(fn):
            # Weights are arguments, not constants baked into the compiled program.
            def run(values, *args):
                with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
                    return fn(*args)

            jitted = jax.jit(run)
            return lambda *args: jitted([v.value for v in variables], *args)

        return stateless(init_fn), stateless(step_fn)
    return init_fn, step_fn  # other backends: eager, uncompiled


def _host_tiled(frame: np.ndarray, n: int) -> np.ndarray:
    """(1, H, W, C) uint8 -> (n, H, W, C) float32 on the host (for SavedModel signatures,
    whose `frame` inputs are float32 of the objects' batch)."""
    return np.ascontiguousarray(np.broadcast_to(frame.astype(np.float32), (n, *frame.shape[1:])))


def _check_frame(frame, where: str) -> np.ndarray:
    a = np.asarray(frame)
    if a.ndim != 3 or a.shape[-1] != 3 or 0 in a.shape:
        raise ValueError(f"{where}: frame must be an RGB image (H, W, 3), got shape {a.shape}")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.number):
            raise ValueError(f"{where}: frame must be uint8 RGB, got dtype {a.dtype}")
        a = np.clip(np.nan_to_num(a.astype(np.float32)), 0, 255).round().astype(np.uint8)
    return a


def _to_frame_xywh(yxhw, scale: np.ndarray) -> np.ndarray:
    """(N, 4) boxes (y, x, h, w) in model pixels -> (x, y, w, h) in the frame's pixels."""
    return yxhw_to_xywh(yxhw) / yxhw_to_xywh(scale)


class _LazyOutputs(Mapping):
    """`Tracker.last`: the latest update's outputs, read back from the device on first access.

    `update` needs only the box now; the glimpse box, presence and location map stay where
    the step left them (on a GPU: device memory) until someone reads them, which spares three
    device-to-host copies per frame in a tracking loop that never looks at them.
    """

    _KEYS = ("box", "att_box", "presence", "location_map")

    def __init__(self, raw: Mapping[str, Any], box: np.ndarray, scale: np.ndarray,
                 single: bool):
        self._raw, self._scale, self._single = raw, scale, single
        self._done: dict[str, np.ndarray] = {"box": box}

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._done:
            if key not in self._KEYS:
                raise KeyError(key)
            raw = self._raw[key]
            value = _to_frame_xywh(raw, self._scale) if key == "att_box" else np.asarray(raw)
            self._done[key] = value[0] if self._single else value
        return self._done[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._KEYS)

    def __len__(self) -> int:
        return len(self._KEYS)


class Tracker:
    """A trained HART behind the OpenCV / GOT-10k `init` and `update` calls.

    Build one with `from_checkpoint`, `from_saved_model` or `from_model`.

    Args:
        init_fn: (frame (1, H, W, C) uint8, boxes (N, 4) (y, x, h, w)) -> state of N.
        step_fn: (frame (1, H, W, C) uint8, state) -> (outputs, state), outputs holding
            `box`, `att_box` (N, 4) (y, x, h, w), `presence` (N,) and `location_map`.
        image_size: (H, W) of the model's input frames.
    """

    def __init__(self, init_fn: InitFn, step_fn: StepFn, image_size: tuple[int, int]):
        self._init_fn = init_fn
        self._step_fn = step_fn
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self._state = None
        self._single = True
        self.last: Mapping[str, np.ndarray] = {}

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def from_model(cls, model) -> Tracker:
        """Tracks with a Keras `HART` in memory."""
        init, step = _model_functions(model)
        return cls(init, step, model.config.image_size)._warm_up()

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike) -> Tracker:
        """Tracks with a `.keras` checkpoint, or a run folder's best (else latest) one."""
        return cls.from_model(load_model(resolve_checkpoint(path)))

    @classmethod
    def from_pretrained(cls, name: str | None = None) -> Tracker:
        """Tracks with a model shipped in the package (`hart_tf.pretrained`; default
        `hart_real`, see its MODEL_CARD.md): no download, no path."""
        return cls.from_model(load_model(pretrained.path(name or pretrained.DEFAULT)))

    @classmethod
    def from_saved_model(cls, path: str | os.PathLike) -> Tracker:
        """Tracks with a SavedModel written by `hart_tf.track.export` (needs TensorFlow only)."""
        import tensorflow as tf

        path = Path(path)
        if not (path / "saved_model.pb").is_file():
            raise ValueError(f"{path}: not a SavedModel folder (no saved_model.pb)")
        loaded = tf.saved_model.load(str(path))
        missing = [k for k in ("init", "step") if k not in loaded.signatures]
        if missing:
            raise ValueError(f"{path}: SavedModel lacks the {' and '.join(missing)} signature "
                             "(export it with python -m hart_tf.track.export)")
        init_sig, step_sig = loaded.signatures["init"], loaded.signatures["step"]
        image_size = tuple(read_export_config(path)["image_size"])

        def init(frame, boxes):
            frames = _host_tiled(frame, len(boxes))
            out = init_sig(frame=tf.constant(frames), box0=tf.constant(boxes))
            return {k: out[k] for k in STATE_KEYS}

        def step(frame, state):
            frames = _host_tiled(frame, int(state[STATE_KEYS[0]].shape[0]))
            out = step_sig(frame=tf.constant(frames), **state)
            return out, {k: out[k] for k in STATE_KEYS}

        tracker = cls(init, step, image_size)
        tracker._saved_model = loaded  # signatures stop working once their object is freed
        return tracker._warm_up()

    def _warm_up(self) -> Tracker:
        """Runs init and one update on a blank frame: tracing and graph optimisation happen
        on a function's first call, and belong to loading, not to the first frames."""
        frame = np.zeros((*self.image_size, 3), np.uint8)
        self.init(frame, [0, 0, self.image_size[1] / 2, self.image_size[0] / 2])
        self.update(frame)
        self._state, self.last = None, {}
        return self

    # ---- the OpenCV / GOT-10k protocol --------------------------------------------------

    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        """Starts tracking the object(s) in `box`: (x, y, w, h), or (N, 4) for N objects."""
        b = np.asarray(box, np.float32)
        if not (b.shape == (4,) or (b.ndim == 2 and b.shape[1:] == (4,) and len(b) > 0)):
            raise ValueError(f"Tracker.init: box must be (x, y, w, h) or (N, 4), got shape "
                             f"{b.shape}")
        boxes = b.reshape(-1, 4)  # (N, 4)
        if not np.all(np.isfinite(boxes)) or np.any(boxes[:, 2:] <= 0):
            raise ValueError(f"Tracker.init: boxes must be finite (x, y, w, h) with w, h > 0, "
                             f"got {b.tolist()}")
        frames, scale = self._prepare(frame, "Tracker.init")
        yxhw = xywh_to_yxhw(boxes) * scale  # (N, 4) model pixels
        self._state = self._init_fn(frames, yxhw)
        self._single = b.ndim == 1
        self.last = {"box": b.copy()}

    def update(self, frame: np.ndarray) -> np.ndarray:
        """The object's box (x, y, w, h) in `frame` (or (N, 4) after a batched `init`).

        `last` then also holds `att_box` (the glimpse, as (x, y, w, h)), `presence` (how
        sure the model is that the object is in the glimpse, 0-1) and `location_map`.
        """
        if self._state is None:
            raise RuntimeError("Tracker.update: call init(frame, box) first")
        frames, scale = self._prepare(frame, "Tracker.update")
        out, self._state = self._step_fn(frames, self._state)
        return self._finish(out, scale)

    def track(self, frames: Iterable[np.ndarray], box: np.ndarray) -> Iterator[np.ndarray]:
        """Tracks through a video: `init` on the first frame with `box`, then yields the box
        of every later frame, as `update` would, in order.

        Unlike a loop of `update` calls it keeps one step in flight: the next frame is
        resized, sent and its step started before this frame's box is read back, so on an
        accelerator the host's work overlaps the device's (the same boxes, at the rate the
        device sustains). After the last frame `last` holds that frame's outputs.
        """
        it = iter(frames)
        try:
            first = next(it)
        except StopIteration:
            raise ValueError("Tracker.track: frames is empty") from None
        self.init(first, box)
        pending = None  # (outputs, scale) of the step whose box is not read yet
        for frame in it:
            frames_, scale = self._prepare(frame, "Tracker.track")
            out, self._state = self._step_fn(frames_, self._state)  # starts, does not wait
            if pending is not None:
                yield self._finish(*pending)
            pending = (out, scale)
        if pending is not None:
            yield self._finish(*pending)

    def _finish(self, out, scale: np.ndarray) -> np.ndarray:
        """Reads a step's box back to the host (this waits for the step) and sets `last`."""
        box = _to_frame_xywh(out["box"], scale)
        box = box[0] if self._single else box
        self.last = _LazyOutputs(out, box, scale, self._single)
        return box.copy()

    def _prepare(self, frame, where: str) -> tuple[np.ndarray, np.ndarray]:
        """Frame resized to the model, as (1, H, W, C) uint8 (the step functions tile it for
        the N objects); and the (y, x, h, w) scale from this frame to the model's."""
        img = _check_frame(frame, where)
        h, w = self.image_size
        fh, fw = img.shape[:2]
        if (fh, fw) != (h, w):
            img = np.asarray(Image.fromarray(img).resize((w, h), RESAMPLE))
        scale = np.array([h / fh, w / fw, h / fh, w / fw], np.float32)
        return np.ascontiguousarray(img[None]), scale
