"""Reading, resizing and writing frames with PIL, shared by the real-data loaders."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from hart_tf.data.errors import DataError
from hart_tf.utils.files import write_atomic

# PIL's bilinear filter widens its support when shrinking, so a 2x reduction is antialiased.
RESAMPLE = Image.Resampling.BILINEAR


def frame_file(index: int) -> str:
    """The file name of frame `index` in a KITTI or KTH frame folder: `000042.png`."""
    return f"{int(index):06d}.png"


def image_size(path: str) -> tuple[int, int]:
    """(height, width) of an image, read from its header only (no pixel decoding)."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except FileNotFoundError as e:
        raise DataError(f"{path}: no such image file") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: unreadable image ({e})") from e
    return height, width


def read_image(
    path: str,
    size: tuple[int, int] | None = None,
    expected_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Decodes an image to uint8 RGB [H, W, 3], resized to `size` = (H, W) if given.

    `expected_size` (H, W) is the size the file must have before resizing (a sequence's first
    frame); a file of another size raises DataError naming it.
    """
    try:
        with Image.open(path) as img:
            img.load()  # decode now, inside the try, so a truncated file fails here
            img = img.convert("RGB")
    except FileNotFoundError as e:
        raise DataError(f"{path}: no such image file") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: unreadable or corrupt image ({e})") from e
    if expected_size is not None and (img.height, img.width) != tuple(expected_size):
        raise DataError(
            f"{path}: image is {img.width}x{img.height} but the sequence's first frame is "
            f"{expected_size[1]}x{expected_size[0]}"
        )
    if size is not None and (img.height, img.width) != tuple(size):
        img = img.resize((size[1], size[0]), RESAMPLE)
    return np.asarray(img, dtype=np.uint8)


def read_images(
    paths: Sequence[str],
    size: tuple[int, int],
    expected_size: tuple[int, int] | None = None,
    pool: ThreadPoolExecutor | None = None,
) -> np.ndarray:
    """Decodes `paths` into uint8 [N, H, W, 3] at `size`, in parallel when given a thread pool.

    Threads suffice because PIL releases the GIL while decoding and resizing.
    """
    out = np.empty((len(paths), size[0], size[1], 3), np.uint8)  # (N, H, W, 3)

    def read(i: int) -> None:
        out[i] = read_image(paths[i], size, expected_size)

    if pool is None:
        for i in range(len(paths)):
            read(i)
    else:
        list(pool.map(read, range(len(paths))))  # list() re-raises a worker's DataError
    return out


def write_png_atomic(image: np.ndarray, path: str) -> None:
    """Writes uint8 [H, W, 3] as PNG to a temporary name, then renames it onto `path`.

    A crash mid-write leaves no truncated `path`, so a resumed run may trust any file it finds.
    """
    write_atomic(path, lambda f: Image.fromarray(image).save(f, format="PNG"))


def print_progress(done: int, total: int, start: float, unit: str = "frames") -> None:
    """Redraws a one-line progress bar on stderr; `start` is the time.time() of the run."""
    filled = 40 * done // max(total, 1)
    rate = done / max(time.time() - start, 1e-9)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (40 - filled)}] {done}/{total} {rate:.1f} {unit}/s")
    sys.stderr.write("\n" if done == total else "")
    sys.stderr.flush()
