"""Real photographs, available offline, as textures for the synthetic videos.

scikit-image ships a few real photographs inside its wheel (`skimage/data/*.png`, `*.jpg`:
an astronaut, a cat, coffee, a rocket, a motorcycle, a cameraman, bricks, grass, gravel,
coins, the moon, ...) and 200 small LFW crops (`lfw_subset.npy`, 100 faces). They need no
download, so `SyntheticConfig(texture_source="photos")` can cut its backgrounds and object
textures out of real images (GOTURN-style motion synthesis from still images) on any machine
with the `real` extra (`pip install -e '.[real]'`, i.e. scikit-image).

Both banks are built once per size from a fixed seed, so a dataset stays a pure function of
its seed. NumPy and PIL only; never imports TensorFlow or the model. The real tracking clips
in `../shared/data/real_clips` are never read here: they stay for validation.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

REAL_HINT = "pip install -e '.[real]' (scikit-image, whose wheel ships the photographs)"
# Natural photographs among the bundled images (RGB first, then grey): no drawings, charts,
# microscopy with flat black borders or synthetic test patterns.
PHOTO_FILES = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "ihc.png",
    "camera.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "coins.png",
    "moon.png",
    "clock_motion.png",
    "page.png",
)
FACES_FILE = "lfw_subset.npy"  # (200, 25, 25) float grey crops; the first 100 are faces
_BANK_SEED = 2017  # fixed: the banks are part of the dataset's definition
PATCH_SIZE = 48  # object texture patches are PATCH_SIZE x PATCH_SIZE pixels
_N_PATCHES = 96
_N_FACES = 32


def data_dir() -> Path:
    """The folder of scikit-image's bundled images; ValueError when it is not installed."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"texture_source='photos' needs scikit-image: {REAL_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    missing = [f for f in PHOTO_FILES + (FACES_FILE,) if not (folder / f).is_file()]
    if missing:
        raise ValueError(
            f"{folder}: scikit-image's bundled images {', '.join(missing)} are missing "
            f"(a trimmed install?): {REAL_HINT}"
        )
    return folder


@functools.lru_cache(maxsize=1)
def load_photos() -> tuple[np.ndarray, ...]:
    """The photographs of `PHOTO_FILES` as uint8 RGB (H, W, 3); grey ones repeated to RGB."""
    folder = data_dir()
    out = []
    for name in PHOTO_FILES:
        with Image.open(folder / name) as im:
            a = np.asarray(im.convert("RGB"))
        a.flags.writeable = False
        out.append(a)
    return tuple(out)


@functools.lru_cache(maxsize=1)
def load_faces() -> np.ndarray:
    """The 100 LFW face crops as uint8 RGB (100, 25, 25, 3)."""
    faces = np.load(data_dir() / FACES_FILE)[:100]  # (100, 25, 25) floats in [0, 1]
    faces = np.clip(faces * 255, 0, 255).astype(np.uint8)
    out = np.repeat(faces[..., None], 3, -1)  # (100, 25, 25, 3)
    out.flags.writeable = False
    return out


def _crop_resized(
    rng: np.random.Generator, photo: np.ndarray, out_h: int, out_w: int, zoom: float
) -> np.ndarray:
    """A random window of `photo` with the aspect of (out_h, out_w), resized to that size.

    `zoom` >= 1 is how many output pixels one photo pixel covers at most; the window is the
    largest that fits when zoom is small, so big outputs of small photos get upsampled.
    """
    ph, pw = photo.shape[:2]
    # Window size in photo pixels: out / zoom, shrunk to fit inside the photo.
    fit = min(ph / out_h, pw / out_w, 1.0 / zoom)
    wh, ww = max(2, int(out_h * fit)), max(2, int(out_w * fit))
    y = int(rng.integers(0, ph - wh + 1))
    x = int(rng.integers(0, pw - ww + 1))
    crop = Image.fromarray(np.ascontiguousarray(photo[y : y + wh, x : x + ww]))
    out = np.asarray(crop.resize((out_w, out_h), Image.Resampling.BILINEAR))
    return out[:, ::-1] if rng.random() < 0.5 else out


@functools.lru_cache(maxsize=4)
def background_bank(hgt: int, wid: int, n: int) -> np.ndarray:
    """(n, 2 hgt, 2 wid, 3) uint8 backgrounds cut from the photographs, from a fixed seed.

    Twice the frame size, like the procedural bank, so a sequence can pan across one.
    Each is a random window at a random zoom (0.3-1.5 output pixels per photo pixel, so
    some show a whole scene and some a close-up texture).
    """
    if hgt < 1 or wid < 1 or n < 1:
        raise ValueError(f"background_bank: sizes must be >= 1, got {hgt}x{wid}, n={n}")
    photos = load_photos()
    rng = np.random.default_rng([_BANK_SEED, hgt, wid])
    bank = np.empty((n, 2 * hgt, 2 * wid, 3), np.uint8)
    for k in range(n):
        photo = photos[k % len(photos)]
        bank[k] = _crop_resized(rng, photo, 2 * hgt, 2 * wid, float(rng.uniform(0.3, 1.5)))
    bank.flags.writeable = False
    return bank


@functools.lru_cache(maxsize=1)
def object_bank() -> np.ndarray:
    """(N, PATCH_SIZE, PATCH_SIZE, 3) uint8 object textures: photo windows, then faces."""
    photos = load_photos()
    rng = np.random.default_rng([_BANK_SEED, 1])
    patches = [
        # Close-ups (a window of 20-100 photo pixels): the detail of a real surface.
        _crop_resized(rng, photos[k % len(photos)], PATCH_SIZE, PATCH_SIZE,
                      PATCH_SIZE / rng.uniform(20, 100))
        for k in range(_N_PATCHES)
    ]
    faces = load_faces()
    for i in rng.choice(len(faces), _N_FACES, replace=False):
        face = Image.fromarray(faces[i]).resize((PATCH_SIZE, PATCH_SIZE),
                                                Image.Resampling.BILINEAR)
        patches.append(np.asarray(face))
    bank = np.stack(patches)  # (N, S, S, 3)
    bank.flags.writeable = False
    return bank
