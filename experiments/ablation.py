"""Paper Table 1, Fig. 5 and Fig. 6: train the four ablation variants with one budget, compare.

Usage (from the repo root):
  python experiments/ablation.py --dataset=synthetic --seeds=0,1 --max_minutes=3
  python experiments/ablation.py --dataset=kitti --flagfile=flags/kitti.cfg \\
      --data_dir=<KITTI root> \\
      --max_minutes=600 --seeds=0,1,2
  python experiments/ablation.py --variants=spatial,hart --seeds=0 --max_minutes=1   # a quick look

Every variant of `--variants` (flags/ablation_<variant>.cfg: spatial_learned_sigma, spatial,
appearance, hart) is trained once per seed of `--seeds` with the same flags and the same
`--max_minutes`, in this process, as `python -m hart_tf.train <your flags>
--flagfile=flags/ablation_<variant>.cfg --seed=<seed>` would (run folders
`<checkpoint_dir>/ablation_<dataset>_<variant>_s<seed>`), and evaluated on the dataset's
fixed test set (`--eval_steps`: 30 synthetic, 60 KITTI). A run whose folder already holds
the results of the same command is reused, so an interrupted ablation picks up where it
stopped; `--retrain` starts every run afresh.

Writes to `--out_dir` (default experiments/results/ablation_<dataset>): `ablation.json`
(every run's test scores), `iou_per_step.png` (Fig. 5: mean IoU per time step, one curve per
variant, averaged over seeds, and the static box) and `location_maps.png` (Fig. 6: a few
test sequences tracked by each variant, with its glimpse (blue) and predicted (red) boxes
and location maps), and replaces this dataset's block in the "## Ablations (Table 1, Fig.
5)" section of `--results` (RESULTS.md): mean IoU ± s.d. across seeds, success AUC,
precision@20, parameters and training time per variant beside the paper's KITTI numbers, the
command, machine and date.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags

from hart_tf.cli import common as cli
from hart_tf.cli.common import FLAGS
from hart_tf.eval import sets

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("spatial_learned_sigma", "spatial", "appearance", "hart")
LABELS = {"spatial_learned_sigma": "Spatial Att, learned sigma", "spatial": "Spatial Att",
          "appearance": "App Att", "hart": "HART"}
# Paper Table 1: mean IoU on KITTI over 60 time steps.
# The learned-sigma variant is ours (RATM's widths, not RATM): the paper has no row for it.
PAPER_KITTI = {"spatial_learned_sigma": None, "spatial": 0.60, "appearance": 0.78, "hart": 0.81}
# The paper's claim: each module earns its place (better first).
# The last pair is HART's choice of fixed widths over learned ones (not a paper row).
ORDER = (("hart", "appearance"), ("appearance", "spatial"), ("spatial", "spatial_learned_sigma"))
SECTION = "## Ablations (Table 1, Fig. 5)"

flags.DEFINE_list("variants", list(VARIANTS), "Ablation variants to train (flags/ablation_*.cfg).")
flags.DEFINE_list("seeds", ["0", "1"], "Seeds: every variant is trained once per seed.")
flags.DEFINE_string("results", "RESULTS.md", "Markdown file whose ablation block is rewritten.")
flags.DEFINE_integer("fig_sequences", 2, "Test sequences drawn per variant in Fig. 6.")
flags.DEFINE_bool("retrain", False, "Train every run afresh even where results exist.")


def _variant_flagfile(variant: str) -> Path:
    if variant not in VARIANTS:
        raise ValueError(f"--variants: unknown variant {variant!r}; choose from {VARIANTS}")
    return REPO / "flags" / f"ablation_{variant}.cfg"


def _seeds() -> list[int]:
    try:
        seeds = [int(s) for s in FLAGS.seeds]
    except ValueError:
        raise ValueError(f"--seeds must be integers, got {','.join(FLAGS.seeds)}") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds must be distinct integers >= 0, got {','.join(FLAGS.seeds)}")
    return seeds


def _parse_for(base_argv: list[str], variant: str, seed: int):
    """Sets FLAGS as `<base flags> --flagfile=<variant> --seed=<seed> --run_name=...`."""
    FLAGS.unparse_flags()
    FLAGS(base_argv + [f"--flagfile={_variant_flagfile(variant)}", f"--seed={seed}"])
    FLAGS.run_name = f"ablation_{FLAGS.dataset}_{variant}_s{seed}"
    if FLAGS.logdir:  # one TensorBoard folder per run, as without --logdir
        FLAGS.logdir = os.path.join(FLAGS.logdir, FLAGS.run_name)
    from hart_tf.cli.train import options_from_flags

    return options_from_flags()


def _count_params(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def train_variant(base_argv: list[str], variant: str, seed: int, retrain: bool) -> dict:
    """Trains (or reuses) one run and returns its record: test scores, params, time."""
    import keras

    from hart_tf.model.saving import load_model, resolve_checkpoint
    from hart_tf.train.trainer import train

    options = _parse_for(base_argv, variant, seed)
    marker = options.run_dir / "ablation.json"
    # The reused run must come from the very same command (budget, data, model flags).
    key = {"argv": base_argv, "variant": variant, "seed": seed}
    record = None
    if not retrain and marker.is_file():
        old = json.loads(marker.read_text())
        if old.get("key") == key:
            record = old["record"]
            print(f"[ablation] reusing {options.run_dir} ({LABELS[variant]}, seed {seed})")
    if record is None:
        if options.run_dir.exists():
            print(f"[ablation] removing unfinished or stale run {options.run_dir}")
            shutil.rmtree(options.run_dir)
        print(f"[ablation] training {LABELS[variant]} seed {seed} -> {options.run_dir}")
        options.run.resume = False
        summary = train(options)
        model = load_model(resolve_checkpoint(options.run_dir))
        record = {
            "variant": variant,
            "seed": seed,
            "test": summary["test"],
            "params": _count_params(model),
            "minutes": summary["minutes"],
            "steps": summary["step"],
            "length": summary["length"],
            "checkpoint": summary["checkpoint"],
        }
        tmp = marker.with_name(".tmp-ablation.json")
        tmp.write_text(json.dumps({"key": key, "record": record}, indent=1, default=float))
        os.replace(tmp, marker)
        keras.backend.clear_session()  # graphs of one run are no use to the next
    record["options"] = options
    return record


# ---------------------------------------------------------------------------- reporting


def aggregate(records: list[dict]) -> dict[str, dict]:
    """Per variant: mean and s.d. across seeds of the test scores, params and time."""
    out = {}
    for variant in dict.fromkeys(r["variant"] for r in records):
        rs = [r for r in records if r["variant"] == variant]
        ious = np.array([r["test"]["mean_iou"] for r in rs])
        out[variant] = {
            "seeds": [r["seed"] for r in rs],
            "mean_iou": float(ious.mean()),
            "sd": float(ious.std(ddof=1)) if len(ious) > 1 else float("nan"),
            "per_seed": ious.tolist(),
            "success_auc": float(np.mean([r["test"]["success_auc"] for r in rs])),
            "precision_20": float(np.mean([r["test"]["precision_20"] for r in rs])),
            "iou_per_step": np.mean([r["test"]["iou_per_step"] for r in rs], 0).tolist(),
            "params": rs[0]["params"],
            "minutes": float(np.mean([r["minutes"] for r in rs])),
            "steps": float(np.mean([r["steps"] for r in rs])),
            "length": [r["length"] for r in rs],
            "static_mean_iou": rs[0]["test"]["static_mean_iou"],
            "static_success_auc": rs[0]["test"]["static_success_auc"],
            "static_precision_20": rs[0]["test"]["static_precision_20"],
            "static_iou_per_step": rs[0]["test"]["static_iou_per_step"],
        }
    return out


def ordering(agg: dict[str, dict]) -> list[str]:
    """One line per claim 'A > B' of the paper: holds beyond the seed spread when every seed
    of A beats every seed of B; reversed when every seed of B beats every seed of A."""
    lines = []
    for better, worse in ORDER:
        if better not in agg or worse not in agg:
            continue
        a, b = agg[better]["per_seed"], agg[worse]["per_seed"]
        claim = f"{LABELS[better]} > {LABELS[worse]}"
        diff = agg[better]["mean_iou"] - agg[worse]["mean_iou"]
        if min(len(a), len(b)) < 2:
            verdict = "one seed only: the spread across seeds is unknown"
        elif min(a) > max(b):
            verdict = "holds beyond the seed spread"
        elif min(b) > max(a):
            verdict = "reversed beyond the seed spread"
        else:
            verdict = "not resolved: the seeds overlap"
        lines.append(f"{claim}: {verdict} (difference of means {diff:+.3f}; "
                     f"{LABELS[better]} seeds {_fmt_list(a)}, {LABELS[worse]} seeds "
                     f"{_fmt_list(b)})")
    return lines


def _fmt_list(values) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


def markdown_table(agg: dict[str, dict], steps: int) -> str:
    rows = [
        f"| variant | paper, KITTI (60 steps) | mean IoU ({steps} steps) ± s.d. | per seed "
        "| success AUC | precision@20 | trainable params | train min | train steps | final T |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, a in agg.items():
        sd = "n/a" if np.isnan(a["sd"]) else f"{a['sd']:.3f}"
        lengths = ",".join(str(v) for v in a["length"])
        paper = "–" if PAPER_KITTI[variant] is None else f"{PAPER_KITTI[variant]:.2f}"
        rows.append(
            f"| {LABELS[variant]} | {paper} | {a['mean_iou']:.3f} ± {sd} "
            f"| {_fmt_list(a['per_seed'])} | {a['success_auc']:.3f} | {a['precision_20']:.3f} "
            f"| {a['params']:,} | {a['minutes']:.1f} | {a['steps']:.0f} | {lengths} |"
        )
    first = next(iter(agg.values()))
    rows.append(f"| static box (first box repeated) | – | {first['static_mean_iou']:.3f} | – "
                f"| {first['static_success_auc']:.3f} | {first['static_precision_20']:.3f} "
                "| 0 | – | – | – |")
    return "\n".join(rows)


def iou_figure(agg: dict[str, dict], path: Path, dataset: str) -> None:
    from hart_tf import viz

    # Scores start at t = 1 (frame 0 gives the box): a NaN at t = 0 puts each point at its t.
    curves = {f"{LABELS[v]} ({len(a['seeds'])} seeds)": np.r_[np.nan, a["iou_per_step"]]
              for v, a in agg.items()}
    curves["static box"] = np.r_[np.nan, next(iter(agg.values()))["static_iou_per_step"]]
    viz.iou_per_step_figure(curves, path=path,
                            title=f"Mean IoU per time step, {dataset} test set (Fig. 5)")


def _label_bar(text: str, width: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    bar = Image.new("RGB", (width, 18), (255, 255, 255))
    ImageDraw.Draw(bar).text((2, 9), text, fill=(0, 0, 0), anchor="lm")
    return np.asarray(bar)


def location_map_figure(records: list[dict], path: Path, n_sequences: int) -> None:
    """Fig. 6: the first test sequences tracked by each variant (its first seed's run)."""
    from hart_tf import viz
    from hart_tf.eval.sequences import predict
    from hart_tf.model.saving import load_model, resolve_checkpoint

    firsts = {}
    for r in records:
        firsts.setdefault(r["variant"], r)
    options = next(iter(firsts.values()))["options"]
    data = sets.eval_set(options, "test", n=options.data.eval_sequences,
                             length=options.data.eval_steps + 1)
    n = max(1, min(n_sequences, len(data["frames"])))
    data = {k: v[:n] for k, v in data.items()}
    blocks = []
    for variant, r in firsts.items():
        model = load_model(resolve_checkpoint(r["options"].run_dir))
        out = predict(model, data, batch_size=n)
        for i in range(n):
            strip = viz.sequence_strip(
                data["frames"][i],
                {"gt": data["boxes"][i], "pred": out["boxes"][i], "att": out["att_boxes"][i]},
                location_maps=out["location_maps"][i], max_frames=6, ncols=6)
            title = f"{LABELS[variant]} (seed {r['seed']}), test sequence {i}"
            blocks.append((title, strip))
    width = max(s.shape[1] for _, s in blocks)
    rows = []
    for title, strip in blocks:
        strip = np.pad(strip, ((0, 8), (0, width - strip.shape[1]), (0, 0)),
                       constant_values=255)
        rows += [_label_bar(title, width), strip]
    viz.save_png(np.concatenate(rows), path)


def _machine() -> str:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"{platform.machine()} CPU, {os.cpu_count()} cores, load average at the start "
            f"{load} (shared with other jobs), {platform.system()}")


def results_block(agg, records, out_dir: Path, results: Path, command: str, machine: str,
                  started: str, dataset: str) -> str:
    options = records[0]["options"]
    rel = os.path.relpath(out_dir, results.parent)
    lines = [
        f"<!-- ablation:{dataset} -->",
        f"### {dataset}",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine}; Keras backend {_backend()}; started {started}.  ",
        f"Budget per run: --max_minutes={FLAGS.max_minutes} of training, batch "
        f"{options.optimizer.batch_size}, learning rate {options.optimizer.learning_rate:g}, "
        f"curriculum {list(options.schedule.curriculum_lengths)} (next length at train IoU >= "
        f"{options.schedule.curriculum_threshold:g}); test set: "
        f"{records[0]['test']['sequences']} fixed sequences of {options.data.eval_steps} steps "
        "after the first frame. The paper's column is its KITTI result, given for reference.",
        "",
        markdown_table(agg, options.data.eval_steps),
        "",
        *[f"- {line}" for line in ordering(agg)],
        "",
        f"![IoU per time step]({rel}/iou_per_step.png)",
        f"![Location maps per variant]({rel}/location_maps.png)",
        f"<!-- /ablation:{dataset} -->",
    ]
    return "\n".join(lines)


def _backend() -> str:
    import keras

    return keras.backend.backend()


def update_results(path: Path, block: str, dataset: str) -> None:
    """Replaces this dataset's block in SECTION of `path` (creating either where absent)."""
    text = path.read_text() if path.exists() else "# Results\n"
    start, end = f"<!-- ablation:{dataset} -->", f"<!-- /ablation:{dataset} -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    elif SECTION in text:
        head, rest = text.split(SECTION, 1)
        # Append at the end of the section: before the next "## " heading, if any.
        cut = rest.find("\n## ")
        body, tail = (rest, "") if cut < 0 else (rest[:cut], rest[cut:])
        text = head + SECTION + body.rstrip("\n") + "\n\n" + block + "\n" + tail
    else:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n\n{block}\n"
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_ablation(base_argv: list[str]) -> dict:
    """Trains and evaluates every variant x seed; writes the JSON, figures and RESULTS.md."""
    variants = [v.strip() for v in FLAGS.variants]
    for v in variants:
        _variant_flagfile(v)
    seeds = _seeds()
    retrain, results, n_fig = FLAGS.retrain, Path(FLAGS.results), FLAGS.fig_sequences
    dataset = FLAGS.dataset
    out_dir = Path(FLAGS.out_dir or f"experiments/results/ablation_{dataset}")
    command = " ".join(["python", "experiments/ablation.py", *base_argv[1:]])
    machine = _machine()
    started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    t0 = time.time()
    records = [train_variant(base_argv, v, s, retrain) for v in variants for s in seeds]
    # Back to the command's own flags (the per-run parses changed seed and run_name).
    FLAGS.unparse_flags()
    FLAGS(base_argv)
    agg = aggregate(records)
    out_dir.mkdir(parents=True, exist_ok=True)
    iou_figure(agg, out_dir / "iou_per_step.png", dataset)
    location_map_figure(records, out_dir / "location_maps.png", n_fig)
    report = {
        "command": command, "machine": machine, "started": started,
        "total_minutes": (time.time() - t0) / 60, "variants": agg,
        "runs": [{k: v for k, v in r.items() if k != "options"} for r in records],
        "ordering": ordering(agg),
    }
    (out_dir / "ablation.json").write_text(json.dumps(report, indent=1, default=float))
    update_results(results, results_block(agg, records, out_dir, results, command, machine,
                                          started, dataset), dataset)
    print(markdown_table(agg, records[0]["options"].eval_steps))
    for line in report["ordering"]:
        print(line)
    print(f"Wrote {out_dir}/ablation.json, iou_per_step.png, location_maps.png and {results}")
    return report


@cli.one_line_errors
def main(argv):
    cli.reject_extra_args(argv)
    run_ablation(list(sys.argv))


if __name__ == "__main__":
    app.run(main)
