"""The markdown table of `bench/gpu.sh`: one row per run, from the parts' result files and status
files in RESULTS; a part that failed, ran out of time or was skipped is a row that says so.

    python bench/gpu_report.py RESULTS [--dry-run]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROWS = [  # (part, run in its JSON, label, what it is)
    ("eager", "trainer", "Trainer", "`Trainer` + `DataCollatorForLanguageModeling` (logits at every position)"),
    ("eager", "mlmkit", "mlmkit", "sparse prediction, last layer on the masked positions"),
    ("trainer_compile", "trainer_compile", "Trainer, `torch_compile=True`", "whole model compiled"),
    ("mlmkit_compile", "mlmkit_compile", "mlmkit, `train.compile: true`", "layers compiled (regional)"),
]


def status(results: Path, part: str) -> str | None:
    """None if the part ran to the end, else why not (one line, from its status file and log)."""
    f = results / f"{part}.status"
    if not f.is_file():
        return "not run"
    rc, seconds, limit = (f.read_text().split() + ["0", "0"])[:3]
    if rc == "0":
        return None
    if rc == "skipped":
        return "skipped: the time budget was spent"
    if rc in ("124", "137"):
        return f"timed out after {limit}s"
    log = results / f"{part}.log"
    lines = [l.strip() for l in log.read_text(errors="replace").splitlines() if l.strip()] if log.is_file() else []
    return f"failed (exit {rc}): {lines[-1][:160] if lines else 'no output'}"


def load(results: Path, part: str) -> dict:
    f = results / f"{part}.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def throughput_rows(results: Path) -> tuple[list[str], dict]:
    eager = load(results, "eager")
    ref = eager.get("runs", {}).get("trainer", {}).get("tokens_per_s")
    rows, first = [], {}
    for part, run, label, what in ROWS:
        data = load(results, part)
        first = first or data
        r = data.get("runs", {}).get(run)
        why = status(results, part)
        if r is None:
            rows.append(f"| {label} | - | - | - | - | - | {why or 'no result'} |")
            continue
        ratio = f"{r['tokens_per_s'] / ref:.2f}x" if ref else "-"
        note = what + (f"; compile {r['compile_s']:.0f}s" if "compile_s" in r else "")
        rows.append(f"| {label} | {r['tokens_per_s']:,.0f} | {ratio} | {r['mfu']:.1%} | {r['s_per_step'] * 1e3:.0f} | "
                    f"{r['first_step_s'][0]:.1f} | {note} |")
    return rows, first


def fsdp_row(results: Path) -> str:
    why = status(results, "fsdp")
    run = results / "fsdp-run"
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else None
    if why or summary is None:
        return f"| FSDP smoke, 1 GPU | - | - | - | - | - | {why or 'no summary.json'} |"
    sharded = _sharded(run)
    seconds = (results / "fsdp.status").read_text().split()[1]
    return (f"| FSDP smoke, 1 GPU | - | - | - | - | - | `torchrun --nproc-per-node 1 -m mlmkit train --strategy fsdp` "
            f"(bert-base-gpu, gradient checkpointing): {summary['step']} steps, eval loss "
            f"{summary.get('eval_loss', float('nan')):.3f}, checkpoints {'sharded' if sharded else 'NOT sharded'}, "
            f"model saved; {seconds}s in all |")


def _sharded(run: Path) -> bool:
    """Whether every checkpoint of the run was written from an FSDP-sharded model."""
    import torch

    found = sorted((run / "checkpoints").glob("step-*/rng.pt"))
    return bool(found) and all(torch.load(f, weights_only=True).get("sharded") for f in found)


def _flops(gflops: float) -> str:
    return f"{gflops / 1e3:,.0f} TFLOP/s" if gflops >= 1e3 else f"{gflops:,.0f} GFLOP/s"


def main() -> None:
    results = Path(sys.argv[1])
    dry = "--dry-run" in sys.argv
    machine = (results / "machine.txt").read_text().strip() if (results / "machine.txt").is_file() else "?"
    rows, info = throughput_rows(results)
    title = "DRY RUN on a CPU, tiny shapes, compile disabled: the numbers mean nothing" if dry else machine
    print(f"### mlmkit vs transformers' Trainer on one GPU ({title})\n")
    if info:
        m = info["model"]
        print(f"{info['size']} BERT ({m['L']} layers, hidden {m['H']}, FFN {m['F']}, vocabulary {m['V']:,}), sequence "
              f"{info['seq']}, batch {info['batch']}, {info['precision']}, {info['data']} packed (group_texts), the "
              f"same data and initial weights on both sides; median tokens/s over {info['timed_steps']} timed steps "
              f"after {info['warmup_steps']} warm-up step(s); MFU against a measured {info.get('peak_dtype', '')} "
              f"matmul peak of {_flops(info['peak_gflops'])} ({machine}).\n")
    print("| run | tokens/s | vs Trainer | MFU | ms/step | first step (s) | notes |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for row in rows:
        print(row)
    print(fsdp_row(results))


if __name__ == "__main__":
    main()
