"""Benchmark records as text: a one-line summary each and rows appended to the run log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MD_HEADER = "| date | machine | backend | versions | command | bench | result |"
MD_TITLE = "## Log of benchmark runs (appended by `tools/benchmark.py --markdown`)"


def summary(r: dict[str, Any]) -> str:
    b = r["bench"]
    if b == "train":
        mem = r["peak_memory_bytes"]
        mem = f", peak {mem / 2**30:.1f} GiB" if mem else ""
        return (f"train {r['spec']}: {r['frames_per_s']:,.0f} trained frames/s, step "
                f"{r['step_ms']:.1f} ms, {r['tflops']:.1f} TFLOP/s, MFU {r['mfu']:.1%}{mem}")
    if b == "pipeline":
        fed = r["host_fed_step_ms"]
        fed = f" / host-fed {fed:.1f} ms" if fed else " (NumPy in place)"
        return (f"pipeline {r['spec']}: gen {r['gen_ms_per_batch_1core']:.0f} ms/batch on "
                f"1 core ({r['gen_cores_to_keep_up']:.1f} cores to keep up), H2D "
                f"{r['h2d_ms_per_batch']:.1f} ms, step staged {r['staged_step_ms']:.1f}{fed}")
    if b in ("track", "track_baked"):
        how = "weights as constants" if b == "track_baked" else "weights as arguments"
        queued = r.get("pipelined_fps")  # absent in records of the first version
        queued = f", pipelined {queued:,.0f} fps" if queued else ""
        return (f"track {r['config']} batch 1 ({how}): {r['fps']:,.0f} fps, latency p50 "
                f"{r['latency_ms_p50']:.2f} ms{queued} ({r['source']})")
    if b == "objects":
        return (f"{r['objects']} objects {r['config']}: {r['object_frames_per_s']:,.0f} "
                f"object-frames/s ({r['latency_ms_p50']:.2f} ms/step)")
    if b == "profile":
        return (f"profile {r['spec']}: forward {r['forward_ms']:.1f} ms, forward+backward "
                f"{r['forward_backward_ms']:.1f} ms; V1 fwd+bwd at batch B x(T+1) "
                f"{r['v1_in_loop_ms']:.1f} ms, all glimpses at once "
                f"{r['v1_fwd_bwd_all_glimpses_ms']:.1f} ms; attention x(T+1) "
                f"{r['attention_in_loop_ms']:.1f} ms")
    if b == "tracker_api":
        if "error" in r:
            return f"tracker_api: unavailable ({r['error']})"
        return (f"Tracker API {r['config']}, {r['objects']} object(s): "
                f"{r['object_frames_per_s']:,.0f} object-frames/s "
                f"({r['latency_ms_p50']:.2f} ms/update); Tracker.track (one step in "
                f"flight) {r['track_object_frames_per_s']:,.0f} object-frames/s")
    if b == "windows":
        how = "decoded per window" if r["lazy"] else "held decoded"
        what = f"{r['sequences']} sequences" if "sequences" in r else f"{r['clips']} clips"
        return (f"windows {r['case']} ({what}, {r['frames']} frames, {how}; load "
                f"{r['load_s']:.1f} s): {r['windows_per_s']:.2f} windows/s of T={r['T']} with "
                f"{r.get('threads', 1)} thread(s) ({r['ms_per_window']:.0f} ms of wall time each)")
    if b == "opencv":
        if "error" in r:
            return f"opencv {r['tracker']}: unavailable ({r['error']})"
        return (f"opencv {r['tracker'].upper()} ({r['source']}): {r['fps']:,.0f} fps; "
                f"HART/{r['tracker'].upper()} = {r['hart_over_tracker']:.2f}x")
    return json.dumps(r)


def append_markdown(path: Path, env: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Appends one row per record under the run-log heading (created if missing)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if MD_TITLE not in text:
        text = text.rstrip("\n") + f"\n\n{MD_TITLE}\n\n{MD_HEADER}\n|---|---|---|---|---|---|---|\n"
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if k != "python")
    rows = [f"| {env['date']} | {env['machine']} | {env['backend']} | {versions} | "
            f"`{env['command']}` | {r['bench']} | {summary(r)} |" for r in records]
    path.write_text(text.rstrip("\n") + "\n" + "\n".join(rows) + "\n")
