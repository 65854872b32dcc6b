"""Environment of a benchmark run (backend, library versions, machine, peak memory) and the
timing primitives every benchmark shares (synchronising with and staging on the device)."""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def backend() -> str:
    """The Keras backend's name."""
    import keras

    return keras.backend.backend()


def versions() -> dict[str, str]:
    """Versions of Python, Keras, NumPy, the backend's libraries and OpenCV (if installed)."""
    import keras

    v = {"python": platform.python_version(), "keras": keras.__version__,
         "numpy": np.__version__}
    if backend() == "jax":
        import jax
        import jaxlib

        v.update(jax=jax.__version__, jaxlib=jaxlib.__version__)
    elif backend() == "tensorflow":
        import tensorflow as tf

        v["tensorflow"] = tf.__version__
    try:
        import cv2

        v["opencv"] = cv2.__version__
    except ImportError:
        pass
    return v


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def device() -> str:
    """The accelerator (if the backend sees one) and the CPU cores this process may use."""
    cpus = f"{len(os.sched_getaffinity(0))}-core CPU ({_cpu_name()})"
    if backend() == "jax":
        import jax

        d = jax.devices()[0]
        if d.platform != "cpu":
            return f"{d.device_kind} ({d.platform}) + {cpus}"
    elif backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
            return f"{name} + {cpus}"
    return cpus


def peak_memory_bytes() -> int | None:
    """Peak device memory of this process where the backend reports it, else None."""
    if backend() == "jax":
        import jax

        stats = jax.devices()[0].memory_stats()
        return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None
    if backend() == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
    return None


def host_peak_rss_bytes() -> int:
    """Peak resident host memory of this process."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB


def timed(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Seconds of each of `repeats` calls of fn (which must block)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def block(tree) -> None:
    """Waits for every array in `tree` (device work is asynchronous)."""
    if backend() == "jax":
        import jax

        jax.block_until_ready(tree)


def to_device(tree):
    """`tree` staged on the device (JAX); TF reads host arrays in place."""
    if backend() == "jax":
        import jax

        return jax.device_put(tree)
    return tree

