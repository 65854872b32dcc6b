"""Figure and table of a sample-budget sweep: validation IoU against training sequences seen.

Usage (from the repo root, after `experiments/sweep.py --out_dir=<dir>` has run the trials of
`experiments/sweeps/budget.txt`):
  python experiments/plot_budget.py --runs=<dir>/checkpoints --batch_size=256 \\
      --out=experiments/results/budget [--keep=experiments/results/budget/budget.jsonl]

`--keep` adds the records of an earlier `budget.jsonl` (trials run by other sweep calls, whose
run folders are gone) for every trial name not found under `--runs`, so that one figure holds
all the trials.

Reads each trial's `summary.json` (its per-epoch history and final test scores) and writes
`iou_vs_sequences.png` (one line per trial, grouped by data and model, validation mean IoU
at the longest curriculum length against updates x batch) and `budget.jsonl` (per trial:
updates, sequences, final test mean IoU, and the validation curve).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

GROUPS = {  # trial-name prefix -> (panel, label, colour)
    "hart": ("default data", "HART", "C0"),
    "spatial": ("default data", "Spatial Att", "C1"),
    "cross_sp": ("crossing data", "Spatial Att", "C1"),
    "cross": ("crossing data", "HART", "C0"),
    "long": ("default data", "HART, synthetic_long", "C2"),
}


def group(name: str) -> tuple[str, str, str]:
    for prefix, value in GROUPS.items():
        if name.startswith(prefix + "_"):
            return value
    return ("other", name, "C7")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="folder of run folders")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--keep", type=Path, help="an earlier budget.jsonl to merge")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    kept = ([json.loads(line) for line in args.keep.read_text().splitlines() if line.strip()]
            if args.keep else [])
    records = []
    for path in sorted(args.runs.glob("*/summary.json")):
        summary = json.loads(path.read_text())
        history = summary.get("history", [])
        test = summary.get("test") or {}
        records.append({
            "name": path.parent.name, "updates": summary.get("step"),
            "sequences": (summary.get("step") or 0) * args.batch_size,
            "length": summary.get("length"), "test_mean_iou": test.get("mean_iou"),
            "curve": [(h["step"] * args.batch_size, h.get("val_iou_final_length"))
                      for h in history]})
    names = {r["name"] for r in records}
    records = sorted(records + [r for r in kept if r["name"] not in names],
                     key=lambda r: r["name"])
    order = [where for where, _, _ in GROUPS.values()] + ["other"]
    panels = sorted({group(r["name"])[0] for r in records}, key=order.index)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        seen = set()
        for r in records:
            where, label, colour = group(r["name"])
            if where != panel:
                continue
            x, y = zip(*r["curve"], strict=True) if r["curve"] else ((), ())
            ax.plot([v / 1e6 for v in x], y, color=colour,
                    label=None if label in seen else label, alpha=0.85)
            seen.add(label)
        ax.set(title=panel, xlabel="training sequences seen (millions)",
               ylabel="validation mean IoU, longest length", ylim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(args.out / "iou_vs_sequences.png", dpi=110)
    with open(args.out / "budget.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    for r in records:
        print(f"{r['name']:12s} updates {r['updates']}  sequences {r['sequences']:,}  "
              f"length {r['length']}  test {r['test_mean_iou']}")


if __name__ == "__main__":
    main()
