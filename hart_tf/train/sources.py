"""Training batches from the dataset loaders in `hart_tf.data`.

Training batches are a pure function of the global step (synthetic data) or of a seeded
shuffle (KITTI, KTH), so a resumed run continues the same data stream. Batches are
`(x, y)` pairs: x = {frames (B, T, H, W, 3) uint8, box0 (B, 4)}, y = {boxes (B, T, 4),
presence (B, T)}.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import time
from collections.abc import Iterator

import keras
import numpy as np

from hart_tf.data import (
    clip_windows,
    clips,
    frame_store,
    kitti,
    kth,
    synthetic,
    synthetic_device,
)
from hart_tf.eval.sequences import predict
from hart_tf.eval.sets import (
    all_clips,
    kitti_sequences,
    kth_clips,
    synthetic_config,
)
from hart_tf.model import metrics


def to_xy(batch: dict[str, np.ndarray]) -> tuple[dict, dict]:
    x = {"frames": batch["frames"], "box0": batch["boxes"][:, 0]}
    y = {"boxes": batch["boxes"], "presence": batch["presence"]}
    return x, y


# First word of the real windows' seed: their stream is apart from the synthetic ones.
_CLIP_STREAM = 4
# First word of the curriculum's score batches' seed (`TrainSource.score_batches`).
_SCORE_STREAM = 5


def _clip_count(options) -> int:
    """Sequences of each training batch cut from the real clips (at least one)."""
    return max(1, round(options.optimizer.batch_size * options.data.train_clips_fraction))


def _train_clips(options) -> clip_windows.ClipWindows | None:
    """The real clips mixed into training (`--train_clips`), or None."""
    if not options.data.train_clips:
        return None
    if options.data.dataset != "synthetic":
        raise ValueError("--train_clips mixes real clips into the synthetic training stream: "
                         f"use it with --dataset=synthetic, got --dataset={options.data.dataset}")
    if not options.data.train_clips_dir:
        raise ValueError("--train_clips needs --train_clips_dir, the folder that holds them")
    names = list(options.data.train_clips)
    val = set(options.data.val_clips)
    if val:
        if all_clips(options):  # every clip but the validation ones
            names = [n for n in clips.find_sequences(options.data.train_clips_dir)
                     if n not in val]
        elif both := [n for n in names if n in val]:
            raise ValueError(f"--val_clips {clip_windows.short_list(both)} are in --train_clips "
                             "too: a clip validates or trains, not both")
    windows = clip_windows.ClipWindows(options.data.train_clips_dir, names,
                                       tuple(options.config.image_size),
                                       cache_mb=options.data.train_clips_cache_mb,
                                       colour_jitter=options.data.train_clips_colour_jitter)
    which = (f"all {len(windows.names)} real clips of {windows.root}" if all_clips(options)
             else f"real clips {clip_windows.short_list(windows.names)}")
    memory = ", decoded per window" if windows.lazy else ""  # else held in memory
    print(f"Training on {which} ({windows.num_frames} frames{memory}, "
          f"{_clip_count(options)} of every {options.optimizer.batch_size} sequences); held out: "
          f"{clip_windows.short_list(windows.held_out())}")
    if windows.skipped:
        print(f"Skipped {len(windows.skipped)} training clips without a frame showing their "
              f"target (e.g. {windows.skipped[0]})")
    return windows


def _frame_store(options, paths: list[str], sizes: list, size: tuple[int, int]
                 ) -> frame_store.FrameStore | None:
    """The training split's frames decoded once into host memory, or None (each window is
    then decoded from its files) where they would exceed `frame_store_mb`."""
    o = options.data
    need = frame_store.store_bytes(len(set(paths)), size)
    if need > o.frame_store_mb * 2**20:
        print(f"The {o.dataset} training frames ({need / 2**30:.1f} GiB) exceed "
              f"frame_store_mb={o.frame_store_mb:g} MiB: each window is decoded from its files")
        return None
    start = time.perf_counter()
    # PIL releases the GIL while decoding: a thread per core.
    store = frame_store.FrameStore(paths, size, sizes, threads=os.cpu_count() or 1)
    if options.run.progress:
        print(f"Holding the {len(store)} {o.dataset} training frames in memory "
              f"({store.nbytes / 2**30:.2f} GiB, decoded in {time.perf_counter() - start:.1f} s)")
    return store


DEVICE_DATASETS = ("synthetic", "kitti", "kth")  # the datasets --render_on=device can make


def render_on(options) -> str:
    """Where the training batches are made: "host" (synthetic: the NumPy renderer in
    `data_workers` threads; KITTI, KTH: windows cut from the frame store in host memory) or
    "device" (JAX: synthetic batches compiled by `synthetic_device` on the accelerator, so
    they never cross the host bus; KITTI, KTH: the frame store is copied there once and only
    each batch's rows and boxes cross). "auto" picks the device under JAX on a GPU or TPU
    without data parallelism for synthetic, KITTI and KTH data (on one H100 a KITTI batch of
    256 windows of 10 frames trains in 0.10 s from the device store against about 1.1 s
    cut on the host, BENCHMARKS.md), and the host elsewhere (the NumPy renderer is faster on
    a CPU; clip folders are cut on the host).

    Raises:
        ValueError: "device" asked for where it cannot run (one line naming the flag).
    """
    o = options
    want = o.data.render_on
    if want not in ("auto", "host", "device"):
        raise ValueError(f"--render_on must be auto, host or device, got {want!r}")
    if want == "host" or (want == "auto" and o.data.dataset not in DEVICE_DATASETS):
        return "host"
    if want == "device":
        if o.data.dataset not in DEVICE_DATASETS:
            raise ValueError("--render_on=device makes synthetic, KITTI or KTH batches, "
                             f"not --dataset={o.data.dataset}")
        if o.run.distribute != "none":
            raise ValueError("--render_on=device renders on one device: use it with "
                             "--distribute=none")
        if keras.backend.backend() != "jax":
            raise ValueError("--render_on=device compiles the renderer with JAX: run with "
                             f"KERAS_BACKEND=jax (the backend is {keras.backend.backend()})")
        return "device"
    if keras.backend.backend() != "jax" or o.run.distribute != "none":
        return "host"
    import jax

    return "host" if jax.default_backend() == "cpu" else "device"


def _device_name() -> str:
    import jax

    return str(jax.devices()[0])


def _render_chunk(batch_size: int) -> int | None:
    """Sequences the device renderer draws at a time: the largest divisor of the batch up to
    256, which bounds its float32 intermediates (about 1 GB per object layer at 1024)."""
    if batch_size <= 256:
        return None
    return max(c for c in range(1, 257) if batch_size % c == 0)


class TrainSource:
    """Endless training batches of a chosen length, resumable at a batch index."""

    def __init__(self, options, start_batch: int = 0, workers: int = 2):
        self.options = options
        self.index = start_batch
        self.workers = workers
        self.clips = _train_clips(options)
        self._kitti = kitti_sequences(options) if options.data.dataset == "kitti" else None
        self._kth = kth_clips(options, "train") if options.data.dataset == "kth" else None
        self.render_on = render_on(options)
        self.store, self._frames = self._hold_frames()
        synthetic_on_device = self.render_on == "device" and options.data.dataset == "synthetic"
        if synthetic_on_device and options.run.progress:
            print("Synthetic training batches are rendered on the device "
                  f"({keras.backend.backend()}, {_device_name()})")
        self._compiled: dict = {}  # (length, batch) -> the jitted device renderer
        self._bank = None  # the device renderer's background bank, on the device

    def _hold_frames(self):
        """(the KITTI or KTH training split's frame store, or None where there is none; its
        frames on the device with --render_on=device, else None)."""
        o = self.options
        if self._kitti is not None:
            store = _frame_store(o, *kitti.split_frames(self._kitti, "train"), kitti.FRAME_SIZE)
        elif self._kth is not None:
            kth.check_frames(self._kth, o.data.data_dir)  # names a missing frame's clip
            store = _frame_store(o, *kth.clip_frames(self._kth, o.data.data_dir), kth.FRAME_SIZE)
        else:
            return None, None
        if self.render_on != "device":
            return store, None
        if o.run.progress:
            where = "on the device" if store is not None else "on the host, from the files"
            print(f"The {o.data.dataset} training windows are cut {where} "
                  f"({keras.backend.backend()}, {_device_name()})")
        if store is None:
            return None, None
        import jax

        # Copied once; the host copy stays for `score_batches`.
        return store, jax.device_put(store.frames)  # (N, H, W, 3) uint8

    def _real(self, index: int, length: int) -> dict[str, np.ndarray]:
        """The real-clip windows of training batch `index`: a pure function of (seed,
        index), like the synthetic part."""
        o = self.options
        rng = np.random.default_rng([_CLIP_STREAM, o.run.seed, index])
        return clip_windows.window_batch(self.clips, rng, _clip_count(o), length)

    def _batch(self, index: int, length: int,
               cfg: synthetic.SyntheticConfig) -> dict[str, np.ndarray]:
        """Synthetic training batch `index`; with real clips, its first share from them."""
        o = self.options
        if self.clips is None:
            return synthetic.train_batch(index, o.optimizer.batch_size, length, o.run.seed, cfg)
        n_real = _clip_count(o)
        real = self._real(index, length)
        if n_real == o.optimizer.batch_size:
            return real
        synth = synthetic.train_batch(index, o.optimizer.batch_size - n_real, length, o.run.seed,
                                      cfg)
        return {k: np.concatenate([real[k], synth[k]]) for k in real}

    def _check_clips(self, length: int) -> None:
        if self.clips is not None:
            self.clips.check_length(length)  # before any worker renders a batch
            if unusable := self.clips.unusable(length):
                print(f"{unusable} of {self.clips.num_clips} training clips have no window of "
                      f"{length} frames that starts and ends with the target visible (too short, "
                      "or absent too often): not sampled at this length")

    def _device_renderer(self, length: int, batch_size: int):
        """The compiled render(bank, index) of `batch_size` sequences of `length` frames
        (compiled once per shape and kept for the run)."""
        import jax

        key = (length, batch_size)
        if key not in self._compiled:
            cfg = synthetic_config(self.options)
            render, bank = synthetic_device.device_batches(
                cfg, batch_size, length, seed=self.options.run.seed,
                chunk=_render_chunk(batch_size))
            self._compiled[key] = jax.jit(render)
            if self._bank is None:
                self._bank = bank
        return self._compiled[key]

    def _on_device(self, length: int) -> Iterator[tuple[dict, dict]]:
        """Batches rendered on the accelerator from the batch index: each call is dispatched
        asynchronously and runs on the device ahead of the train step that consumes it. With
        real clips, their windows are cut on the host (threads) and joined on the device."""
        self._check_clips(length)
        o = self.options
        n_real = _clip_count(o) if self.clips is not None else 0
        render = self._device_renderer(length, o.optimizer.batch_size - n_real)
        start = self.index
        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
            pending = {}
            for i in itertools.count(start):
                x, y = render(self._bank, np.int32(i))
                if n_real:
                    for j in range(i, i + self.workers + 1):
                        if j not in pending:
                            pending[j] = pool.submit(self._real, j, length)
                    rx, ry = to_xy(pending.pop(i).result())
                    x, y = keras.tree.map_structure(
                        lambda a, b: keras.ops.concatenate([a, b]), (rx, ry), (x, y))
                yield x, y

    def _synthetic(self, length: int) -> Iterator[tuple[dict, dict]]:
        self._check_clips(length)
        cfg = synthetic_config(self.options)
        start = self.index
        # A small thread pool renders upcoming batches while the model trains (NumPy
        # releases the GIL in the heavy array operations).
        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
            pending = {}
            for i in itertools.count(start):
                for j in range(i, i + self.workers + 1):
                    if j not in pending:
                        pending[j] = pool.submit(self._batch, j, length, cfg)
                yield to_xy(pending.pop(i).result())

    def _windows(self, length: int, seed: int, rows: bool = False):
        """Endless batches of the augmented training windows, shuffled by `seed`: pixels
        (from the frame store when there is one, else from the files) or, with `rows`, the
        store's rows for `cut_windows`."""
        o = self.options
        kwargs = {"seed": seed, "num_epochs": None, "store": self.store, "rows": rows}
        if self._kitti is not None:
            return kitti.kitti_batches(self._kitti, "train", length, o.optimizer.batch_size,
                                       **kwargs)
        return kth.kth_batches(self._kth, o.data.data_dir, length, o.optimizer.batch_size,
                               augment=True, **kwargs)

    def _loader(self, length: int) -> Iterator[tuple[dict, dict]]:
        seed = self.options.run.seed + self.index  # reseeded each time a new stream starts
        on_device = self._frames is not None
        if on_device:
            import jax

            cut = jax.jit(frame_store.cut_windows)
        for batch in self._windows(length, seed, rows=on_device):
            if on_device:  # only rows and boxes crossed the host bus: gather the pixels there
                batch["frames"] = cut(self._frames, batch["rows"], batch["mirror"],
                                      batch["presence"])  # (B, T, H, W, 3)
            yield to_xy(batch)

    def epoch_steps(self, length: int) -> int:
        """Batches in one pass over the augmented training windows of `length` frames (the
        original's epoch: its store's `n_batches_per_epoch`, 4x the windows on KITTI)."""
        o = self.options
        if self._kitti is not None:
            n = len(kitti.make_windows(self._kitti, "train", length, augment=True))
        elif self._kth is not None:
            n = len(kth.kth_windows(self._kth, length, augment=True))
        else:
            raise ValueError("--epoch_from_windows needs a dataset of windows (kitti, kth), "
                             f"got --dataset={o.data.dataset}")
        if n < o.optimizer.batch_size:
            raise ValueError(f"--epoch_from_windows: {n} training windows of {length} frames, "
                             f"fewer than --batch_size={o.optimizer.batch_size}")
        return n // o.optimizer.batch_size

    def score_batches(self, length: int, step: int) -> Iterator[tuple[dict, dict]]:
        """Training batches of `length` frames for the curriculum's test-mode score at
        `step`, from their own stream (the original drew them from its training queue,
        skipping them for training); the training stream does not depend on the checks."""
        o = self.options
        batch_size = o.optimizer.batch_size
        # Their own stream, apart from the training batches and from every other check's.
        seed = int(np.random.SeedSequence([_SCORE_STREAM, o.run.seed, step]).generate_state(1)[0])
        if self._kitti is not None or self._kth is not None:
            it = self._windows(length, seed)
        else:  # synthetic (without the real clips of --train_clips)
            cfg = synthetic_config(o)
            it = (synthetic.train_batch(i, batch_size, length, seed, cfg)
                  for i in itertools.count())
        for batch in it:
            yield to_xy(batch)

    def batches(self, length: int, start: int | None = None) -> Iterator[tuple[dict, dict]]:
        if start is not None:
            self.index = start
        if self.options.data.dataset == "synthetic":
            if self.render_on == "device":
                return self._on_device(length)
            return self._synthetic(length)
        return self._loader(length)


def train_source(options, start_batch: int = 0) -> TrainSource:
    return TrainSource(options, start_batch, workers=options.data.data_workers)


def promotion_iou(model, source: TrainSource, length: int, n_batches: int, step: int) -> float:
    """The original's curriculum score: the model's IoU with training=False (t >= 1, present
    objects, pooled within a batch) averaged over `n_batches` training batches of `length`
    frames (a quarter epoch in the original)."""
    scores = []
    batches = source.score_batches(length, step)
    try:
        for x, y in itertools.islice(batches, n_batches):
            data = {"frames": x["frames"], "boxes": y["boxes"], "presence": y["presence"]}
            pred = predict(model, data, len(x["frames"]))["boxes"]
            scores.append(float(np.asarray(metrics.mean_iou(pred, y["boxes"], y["presence"]))))
    finally:
        batches.close()
    return float(np.mean(scores))
