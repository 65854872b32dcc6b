"""Shrink a real tracking dataset's frames once, so that training on it is not decode-bound.

Usage (from the repo root):
  python tools/shrink_clips.py --src=<GOT-10k>/train --dst=/data/got10k_480 --max_side=480
  python -m hart_tf.train --flagfile=flags/real_train.cfg --val_clips= \\
      --train_clips_dir=/data/got10k_480 --train_clips=all --data_workers=<cores>

Every sequence under `--src` (`hart_tf.data.clips.find_sequences`: GOT-10k's `<seq>/`,
LaSOT's `<category>/<seq>/`, our clips' and OTB's layouts) is written under `--dst` with the
same name and layout: each frame resized (PIL's antialiased bilinear filter, as training's
windows are cut) so that its longer side is at most `--max_side` pixels and saved as JPEG,
`groundtruth.txt` with the boxes scaled alike (`x,y,w,h`, a frame without a visible target
written `0,0,0,0`, which both readers take as absent), and the absence flag files
(`absence.txt`, `full_occlusion.txt`, `out_of_view.txt`) copied. Frames already small enough
are resized by 1 (re-encoded) so that every output is a JPEG. A sequence whose
`groundtruth.txt` already exists under `--dst` is skipped, so an interrupted run can be
rerun. Bad input stops with a one-line error naming the file.

The model sees 96x128 crops (the small config) and training crops zoom in at most until the
object's boxes fill the crop with a margin, so frames much larger than a few times 128 pixels
only cost decoding time (BENCHMARKS.md, "Real-clip training windows").
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import sys
from pathlib import Path

from PIL import Image

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:  # run as `python tools/shrink_clips.py` from a checkout
    sys.path.insert(0, str(_REPO))

from hart_tf.data import clip_windows, clips  # noqa: E402
from hart_tf.data.errors import DataError  # noqa: E402
from hart_tf.data.images import RESAMPLE, image_size  # noqa: E402

JPEG_QUALITY = 90


def shrink_sequence(src: Path, dst: Path, max_side: int) -> bool:
    """Writes sequence folder `src` shrunk into `dst`; False if `dst` was already done."""
    if (dst / clips.GROUNDTRUTH).is_file():
        return False
    boxes, present = clips.read_training_boxes(src)  # (N, 4) x y w h, (N,)
    paths = clips.sequence_frames(src, len(boxes))
    h, w = image_size(os.fspath(paths[0]))
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # PIL's (W, H)
    sx, sy = size[0] / w, size[1] / h
    frames_dir = dst / paths[0].parent.relative_to(src)
    frames_dir.mkdir(parents=True, exist_ok=True)
    for p in paths:
        frame = clip_windows.decode_frame(p, (h, w), draft=size)  # JPEG: at a DCT reduction
        Image.fromarray(frame).resize(size, RESAMPLE).save(frames_dir / f"{p.stem}.jpg",
                                                           quality=JPEG_QUALITY)
    for name in clips.ABSENCE_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
    lines = [f"{x * sx:.2f},{y * sy:.2f},{bw * sx:.2f},{bh * sy:.2f}" if ok else "0,0,0,0"
             for (x, y, bw, bh), ok in zip(boxes, present, strict=True)]
    tmp = dst / f".tmp-{clips.GROUNDTRUTH}"  # written last: its presence marks the sequence done
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, dst / clips.GROUNDTRUTH)
    return True


def shrink(src: Path, dst: Path, max_side: int, workers: int = 1) -> tuple[int, int]:
    """Shrinks every sequence under `src` into `dst`; (written, skipped as done)."""
    names = clips.find_sequences(src)
    if not names:
        raise DataError(f"{src}: no sequence folder with a {clips.GROUNDTRUTH}, nor one level "
                        "further down")
    if dst.resolve() == src.resolve():
        raise ValueError(f"--dst={dst} is --src: write the shrunk copy elsewhere")
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:  # PIL releases the GIL
        done = list(pool.map(lambda n: shrink_sequence(src / n, dst / n, max_side), names))
    return sum(done), len(done) - sum(done)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, required=True, help="dataset folder to read")
    parser.add_argument("--dst", type=Path, required=True, help="folder to write")
    parser.add_argument("--max_side", type=int, default=480,
                        help="longest frame side in pixels after shrinking (default 480)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="threads (default: one a CPU core)")
    args = parser.parse_args(argv)
    if args.max_side < 16:
        parser.error(f"--max_side must be at least 16, got {args.max_side}")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    try:
        written, skipped = shrink(args.src, args.dst, args.max_side, args.workers)
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"Shrunk {written} sequences into {args.dst} (longest side {args.max_side} px)"
          + (f"; {skipped} already there, skipped" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
