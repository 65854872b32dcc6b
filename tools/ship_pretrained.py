"""Copy a trained HART into the package as its shipped model (no optimizer state, < 10 MB).

Usage (from the repo root):
  python tools/ship_pretrained.py --checkpoint=checkpoints/real_train
  # then update hart_tf/pretrained/MODEL_CARD.md (command, data, scores) and commit both

`--checkpoint` is a `.keras` file or a run folder (its best checkpoint, else its latest). The
model is loaded without its optimizer and saved to `hart_tf/pretrained/<--name>.keras`
(weights and config only: what tracking needs), which `hart_tf.Tracker.from_pretrained()`,
`--model=pretrained` and `--init_from=pretrained` load. Refuses a file over `--max_mb`.
Works on either backend (a GPU run's JAX checkpoint too).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:  # run as `python tools/ship_pretrained.py` from a checkout
    sys.path.insert(0, str(_REPO))

from hart_tf import pretrained  # noqa: E402
from hart_tf.model.saving import CheckpointError, load_model, resolve_checkpoint  # noqa: E402


def ship(checkpoint: str, name: str = pretrained.DEFAULT, max_mb: float = 10.0) -> Path:
    """Saves `checkpoint`'s model without optimizer to the package; returns the file."""
    model = load_model(resolve_checkpoint(checkpoint))  # compile=False: no optimizer
    out = Path(pretrained.__file__).parent / f"{name}.keras"
    tmp = out.with_name(f".tmp-{out.name}")
    model.save(tmp)
    size_mb = tmp.stat().st_size / 2**20
    if size_mb > max_mb:
        tmp.unlink()
        raise ValueError(f"{checkpoint}: the model is {size_mb:.1f} MB, over --max_mb={max_mb}")
    os.replace(tmp, out)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help=".keras file or run folder")
    parser.add_argument("--name", default=pretrained.DEFAULT, help="shipped model name")
    parser.add_argument("--max_mb", type=float, default=10.0, help="largest file allowed")
    args = parser.parse_args(argv)
    try:
        out = ship(args.checkpoint, args.name, args.max_mb)
    except (ValueError, CheckpointError) as e:
        sys.exit(f"error: {e}")
    digest = hashlib.sha256(out.read_bytes()).hexdigest()[:16]
    print(f"wrote {out} ({out.stat().st_size / 2**20:.2f} MB, sha256 {digest}...)")


if __name__ == "__main__":
    main()
