"""Hyper-parameter sweep: train several variants of a recipe at once and compare them.

Usage (from the repo root):
  python experiments/sweep.py --trials=experiments/sweeps/recipe.txt --parallel=8 \\
      --out_dir=checkpoints/sweep -- --flagfile=flags/synthetic.cfg --max_minutes=0 --epochs=40

`--trials` is a text file with one trial a line: a name, then the flags that make this trial
differ from the common flags given after `--` (blank lines and `#` comments are skipped):

  base
  lr3e-4      --learning_rate=3e-4
  adam1e-3    --optimizer=adam --learning_rate=1e-3

Each trial is one `python -m hart_tf.train <common flags> <trial flags>` process with its own
run folder (`<out_dir>/checkpoints/<name>`) and TensorBoard folder (`<out_dir>/tb/<name>`);
`--parallel` of them run at once (on a GPU they share it: under JAX set
XLA_PYTHON_CLIENT_PREALLOCATE=false, which this tool does for its children unless it is set).
On a machine with several GPUs, `--devices=0,1,2,3` spreads the trials over them: each trial
starts on the listed GPU running the fewest trials (its CUDA_VISIBLE_DEVICES), so
`--parallel=16 --devices=0,1,2,3` runs four trials on each of four GPUs.
A trial's output goes to `<out_dir>/<name>.log`. When all have finished, `<out_dir>/sweep.jsonl`
holds one line per trial (its flags, test mean IoU, success AUC, precision@20, the steps and
sequence length it reached, minutes) and a Markdown table sorted by test IoU is printed.
A trial that fails is reported with its exit code and the last line of its log; the sweep
goes on and exits with 1 at the end.

To compare recipes for a wall-clock budget on another machine, fix the number of updates
(`--max_minutes=0 --epochs=N`), not the minutes.

Every trial starts from scratch (its run folder's checkpoints are ignored) unless `--resume`
is given: then each continues from the last checkpoint in its run folder, and its log is
appended to. On a machine that runs jobs for a limited time (a 10-minute job, a preemptible
node), rerun the same sweep command with `--resume` as often as needed; with
`--max_minutes=M` among the common flags each call trains every trial M more minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path


def parse_trials(path: Path) -> list[tuple[str, list[str]]]:
    """(name, flags) per line of a trials file; a bad line is a one-line error."""
    trials, seen = [], set()
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, *flags = shlex.split(line)
        if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ValueError(f"{path}:{number}: trial name {name!r} must be letters, digits, "
                             "'-', '_' or '.'")
        if name in seen:
            raise ValueError(f"{path}:{number}: trial name {name!r} is used twice")
        bad = [f for f in flags if not f.startswith("--")]
        if bad:
            raise ValueError(f"{path}:{number}: expected --flag=value after the name, got "
                             f"{bad[0]!r}")
        seen.add(name)
        trials.append((name, flags))
    if not trials:
        raise ValueError(f"{path}: no trials (one 'name --flag=value ...' a line)")
    return trials


def command(name: str, flags: list[str], common: list[str], out_dir: Path,
            resume: bool = False) -> list[str]:
    return [sys.executable, "-m", "hart_tf.train", *common, *flags, f"--run_name={name}",
            f"--checkpoint_dir={out_dir / 'checkpoints'}", f"--logdir={out_dir / 'tb' / name}",
            f"--resume={'true' if resume else 'false'}"]


def result(name: str, flags: list[str], out_dir: Path, code: int, seconds: float) -> dict:
    record = {"name": name, "flags": flags, "exit_code": code, "wall_s": round(seconds, 1)}
    summary = out_dir / "checkpoints" / name / "summary.json"
    if code != 0 or not summary.exists():
        lines = (out_dir / f"{name}.log").read_text(errors="replace").strip().splitlines()
        record["error"] = lines[-1] if lines else f"exit code {code}, no output"
        return record
    s = json.loads(summary.read_text())
    test = s["test"]
    record.update(
        mean_iou=test["mean_iou"], auc=test.get("success_auc"),
        precision_20=test.get("precision_20"), static_mean_iou=test.get("static_mean_iou"),
        steps=s["step"], length=s["length"], train_minutes=round(s["minutes"], 2),
        last_train_iou=(s["history"][-1].get("iou") if s["history"] else None),
    )
    return record


def markdown(records: list[dict]) -> str:
    rows = ["| trial | flags | test mean IoU | AUC | steps | T | train min |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    ok = sorted((r for r in records if "mean_iou" in r), key=lambda r: -r["mean_iou"])
    for r in ok:
        rows.append(f"| {r['name']} | `{' '.join(r['flags']) or '(common)'}` | "
                    f"{r['mean_iou']:.3f} | {r['auc']:.3f} | {r['steps']} | {r['length']} | "
                    f"{r['train_minutes']:.1f} |")
    for r in records:
        if "mean_iou" not in r:
            rows.append(f"| {r['name']} | `{' '.join(r['flags'])}` | failed: "
                        f"{r['error']} | | | | |")
    return "\n".join(rows)


def pick_device(devices: list[str], busy: list[str]) -> str | None:
    """The device of `devices` with the fewest running trials (`busy`: one entry per running
    trial), the first listed on a tie; None when no devices are given."""
    if not devices:
        return None
    return min(devices, key=lambda d: (busy.count(d), devices.index(d)))


def trial_env(base: dict[str, str], device: str | None) -> dict[str, str]:
    env = dict(base)
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    return env


def run_sweep(trials, common: list[str], out_dir: Path, parallel: int,
              devices: list[str] | None = None, resume: bool = False) -> list[dict]:
    out_dir.mkdir(parents=True, exist_ok=True)
    devices = list(devices or [])
    waiting = list(trials)
    running: dict[str, tuple] = {}
    records = []
    while waiting or running:
        while waiting and len(running) < parallel:
            name, flags = waiting.pop(0)
            device = pick_device(devices, [dev for *_, dev in running.values()])
            log = open(out_dir / f"{name}.log", "a" if resume else "w")  # noqa: SIM115
            proc = subprocess.Popen(command(name, flags, common, out_dir, resume), stdout=log,
                                    stderr=subprocess.STDOUT,
                                    env=trial_env(dict(os.environ), device))
            running[name] = (proc, flags, log, time.time(), device)
            where = f" on device {device}" if device is not None else ""
            print(f"started {name}{where}: {' '.join(flags) or '(common flags)'}", flush=True)
        time.sleep(1.0)
        for name in [n for n, (p, *_) in running.items() if p.poll() is not None]:
            proc, flags, log, start, device = running.pop(name)
            log.close()
            record = result(name, flags, out_dir, proc.returncode, time.time() - start)
            if device is not None:
                record["device"] = device
            records.append(record)
            with open(out_dir / "sweep.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            score = (f"test mean IoU {record['mean_iou']:.3f}" if "mean_iou" in record
                     else f"FAILED: {record['error']}")
            print(f"finished {name} in {record['wall_s']:.0f} s: {score}", flush=True)
    return records


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    common = []
    if "--" in argv:
        at = argv.index("--")
        argv, common = argv[:at], argv[at + 1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", required=True, type=Path, help="trials file")
    parser.add_argument("--parallel", type=int, default=1, help="trials run at once")
    parser.add_argument("--out_dir", type=Path, default=Path("checkpoints/sweep"))
    parser.add_argument("--devices", default="",
                        help="GPUs to spread the trials over, e.g. 0,1,2,3 (default: all "
                             "trials see the same devices)")
    parser.add_argument("--resume", action="store_true",
                        help="continue each trial from the last checkpoint in its run folder "
                             "(default: start every trial from scratch)")
    args = parser.parse_args(argv)
    if args.parallel < 1:
        parser.error("--parallel must be at least 1")
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    if any(not d.isdigit() for d in devices) or len(set(devices)) != len(devices):
        parser.error(f"--devices must be distinct GPU numbers like 0,1,2,3, got {args.devices!r}")
    try:
        trials = parse_trials(args.trials)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    (args.out_dir / "sweep.jsonl").unlink(missing_ok=True)
    records = run_sweep(trials, common, args.out_dir, args.parallel, devices, args.resume)
    print(markdown(records))
    return 0 if all("mean_iou" in r for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
