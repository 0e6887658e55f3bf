"""Run the whole benchmark suite (mlmkit against transformers' Trainer) and print its table.

    python bench/run_all.py [--quick] [--minutes 3] [--only 1,3] [--no-compile]
    make bench                       # the same, full size (< 25 minutes on a 2-core CPU)

Each benchmark runs in its own process (fresh threads / compile caches), in this order:
1 throughput, 2 quality per time, 3 masking, 4 short sequences, 5 character-model head overhead
(`char_head_overhead.py`), 6 data pipeline. Each script prints its ratio as its last line and
merges its numbers into bench/results.json; this script then writes bench/results.md (the
markdown table of docs/results-token.md, with the commands that produced it) and prints it.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common as C  # noqa: E402


def bench_commands(args) -> list[tuple[str, str, list[str]]]:
    q = ["--quick"] if args.quick else []
    comp = ["--compile"] if args.compile and not args.quick else []
    char_args = ["--steps", "3", "--batch", "16"] if args.quick else []
    return [
        ("1", "throughput.py", q + comp),
        ("2", "quality_per_time.py", q + ["--minutes", str(args.minutes)]),
        ("3", "masking.py", q),
        ("4", "short_sequences.py", q),
        ("5", "char_head_overhead.py", char_args),
        ("6", "data_pipeline.py", q),
    ]


def run(script: str, extra: list[str], log) -> tuple[int, str, float]:
    cmd = [sys.executable, str(HERE / script), *extra]
    shown = " ".join(["python", f"bench/{script}", *extra])
    log(f"\n$ {shown}")
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=str(C.ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        log(line.rstrip("\n"))
    rc = proc.wait()
    last = next((l for l in reversed(lines) if l.strip()), "")
    return rc, last, time.perf_counter() - t


def _f(x, spec=",.0f"):
    return "n/a" if x is None else format(x, spec)


def table(results: dict, commands: dict[str, str]) -> str:
    b = results.get("benchmarks", {})
    rows = []

    def add(num, what, mlm, ref, ratio, goal, met):
        rows.append(f"| {num} | {what} | {mlm} | {ref} | {ratio} | {goal} | {met} |")

    def yes(ok):
        return "n/a" if ok is None else ("**yes**" if ok else "no")

    if (r := b.get("1_throughput")):
        m, h = r["runs"]["mlmkit"], r["runs"]["trainer"]
        add(1, "training throughput, tokens/s (MFU)",
            f"{m['tokens_per_s']:,.0f} ({m['mfu']:.0%})", f"{h['tokens_per_s']:,.0f} ({h['mfu']:.0%})",
            f"{r['ratio']:.2f}x", ">= 2.0x", yes(r["ratio"] >= 2.0))
        if "mlmkit_compile" in r["runs"]:
            mc = r["runs"]["mlmkit_compile"]
            add("1b", "... mlmkit with `train.compile=true` (steady state; compile time apart)",
                f"{mc['tokens_per_s']:,.0f} ({mc['mfu']:.0%}); compile {mc.get('compile_s', 0):.0f}s",
                f"{h['tokens_per_s']:,.0f}", f"{r['ratio_compile']:.2f}x",
                ">= 2.0x", yes(r["ratio_compile"] >= 2.0))
    def quality_per_time(num, what, r, goal, ratio_spec):
        """Rows 2 and 2b: mlmkit's time to the Trainer's held-out loss, against `goal`."""
        t = r["trainer"]
        hit = next((c for c in r["mlmkit"]["curve"] if c["eval_loss"] <= t["held_out_loss"]), None)
        mlm = (f"{hit['train_s']:.0f}s to loss {hit['eval_loss']:.3f}" if hit else
               f"not reached in {r['mlmkit']['budget_s']:.0f}s (loss {r['mlmkit']['final_loss']:.3f})")
        add(num, what, mlm, f"{t['train_s']:.0f}s to loss {t['held_out_loss']:.3f}",
            format(r["ratio"], ratio_spec) + "x" if r["ratio"] is not None else f">{r['fraction']:.2f}x",
            f"<= {goal:g}x", yes(r["ratio"] is not None and r["ratio"] <= goal))

    if (r := b.get("2_quality_per_time")):
        quality_per_time(2, f"time to the Trainer's {r['minutes']:g}-min held-out loss", r, 0.5, ".2f")
    if (r := b.get("2b_quality_per_time_recipe")):
        quality_per_time("2b", f"... with the `scratch-modern` recipe (ModernBERT, GLU FFN 672, no dropout, lr "
                         f"{r['mlmkit']['lr']:g}) vs the Trainer's BERT", r, 0.25, ".3f")
    if (r := b.get("3_masking")):
        tp = r["tokens_per_s"]
        ref_plain = max(tp["hf_plain_with_special_mask"], tp["hf_plain_trainer_fed"])
        add("3a", "masking + collation, tokens/s, 1 core", f"{tp['mlmkit_plain']:,.0f}", f"{ref_plain:,.0f}",
            f"{r['ratio_plain']:.1f}x", ">= 2x", yes(r["ratio_plain"] >= 2))
        add("3b", "whole-word masking + collation, tokens/s, 1 core", f"{tp['mlmkit_wwm']:,.0f}",
            f"{tp['hf_wwm']:,.0f}", f"{r['ratio_wwm']:.1f}x", ">= 10x", yes(r["ratio_wwm"] >= 10))
    if (r := b.get("4_short_sequences")):
        w = r["padding_waste"]
        add("4a", "short sequences (domains): padding waste", f"{w['mlmkit']:.1%}", f"{w['reference']:.1%}",
            "", "< 5%", yes(w["mlmkit"] < 0.05))
        m, h = r["runs"]["mlmkit"], r["runs"]["trainer"]
        add("4b", "short sequences: non-padding tokens/s (MFU)", f"{m['tokens_per_s']:,.0f} ({m['mfu']:.0%})",
            f"{h['tokens_per_s']:,.0f} ({h['mfu']:.0%})", f"{r['ratio']:.2f}x", "report", "")
    if (r := b.get("5_char_head")):
        add(5, "character model: encoder+head vs encoder alone (step time)",
            f"{_f(r.get('chars_per_s_full'))} chars/s", f"{_f(r.get('chars_per_s_encoder'))} chars/s (encoder)",
            f"{r['overhead']:.2f}x" if r.get("overhead") else "n/a", "<= 1.30x",
            yes(r["overhead"] <= 1.30) if r.get("overhead") else "n/a")
    if (r := b.get("6_data_pipeline")):
        s = r["settings"]
        ref = "/".join(f"{v['trainer']['share']:.1%}" for v in s.values() if "trainer" in v)
        add(6, "share of step time waiting for data (group_texts / line_by_line)",
            "/".join(f"{v['mlmkit']['share']:.2%}" for v in s.values()), ref or "n/a", "", "< 5%",
            yes(r["worst_share"] < 0.05))
    head = ("| # | benchmark | mlmkit | Trainer + DataCollatorForLanguageModeling | ratio | goal | met |\n"
            "|---|---|---|---|---|---|---|")
    machine = results.get("machine", {})
    peak = (b.get("1_throughput") or {}).get("peak_gflops")
    out = [head, *rows, ""]
    out.append(f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, torch {machine.get('torch', '?')}, "
               f"transformers {machine.get('transformers', '?')}"
               + (f"; measured fp32 matmul peak {peak:.0f} GFLOP/s (MFU is relative to it)." if peak else "."))
    if commands:
        out.append("")
        out.append("Commands:")
        out.append("")
        for k in sorted(commands):
            out.append(f"    {commands[k]}")
    return "\n".join(out)


def parse_char(lines_last: str, full_output: str) -> dict:
    res: dict = {}
    m = re.search(r"encoder fwd\+bwd:\s+([\d.]+) ms/step\s+([\d,]+) chars/s", full_output)
    if m:
        res["encoder_ms"], res["chars_per_s_encoder"] = float(m.group(1)), float(m.group(2).replace(",", ""))
    m = re.search(r"encoder \+ head fwd\+bwd:\s+([\d.]+) ms/step\s+([\d,]+) chars/s", full_output)
    if m:
        res["full_ms"], res["chars_per_s_full"] = float(m.group(1)), float(m.group(2).replace(",", ""))
    m = re.search(r"([\d.]+)\s*$", lines_last)
    res["overhead"] = float(m.group(1)) if m else None
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke-test every benchmark (about a minute each)")
    ap.add_argument("--minutes", type=float, default=10.0, help="T of benchmark 2 (its goal is stated for 10 minutes)")
    ap.add_argument("--no-compile", dest="compile", action="store_false",
                    help="skip benchmark 1's train.compile=true runs (they add a ~1-2 min compile)")
    ap.add_argument("--only", default="", help="comma-separated benchmark numbers, e.g. 1,3")
    ap.add_argument("--table-only", action="store_true", help="just print the table from results.json")
    args = ap.parse_args()

    commands: dict[str, str] = {}
    if not args.table_only:
        only = {s.strip() for s in args.only.split(",") if s.strip()}
        captured: list[str] = []

        def log(line: str) -> None:
            print(line, flush=True)
            captured.append(line)

        t0 = time.perf_counter()
        summary = []
        for num, script, extra in bench_commands(args):
            if only and num not in only:
                continue
            if not (HERE / script).is_file():
                log(f"\n(benchmark {num}: {script} is missing; skipped)")
                continue
            start = len(captured)
            rc, last, secs = run(script, extra, log)
            commands[num] = " ".join(["python", f"bench/{script}", *extra])
            summary.append((num, script, rc, last, secs))
            if num == "5" and rc == 0:
                res = parse_char(last, "\n".join(captured[start:]))
                C.save_result("5_char_head", {**res, "quick": args.quick, "command": commands[num]})
        print("\n== summary ==")
        for num, script, rc, last, secs in summary:
            status = "ok" if rc == 0 else f"FAILED (exit {rc})"
            print(f"{num} {script:24s} {secs:6.0f}s  {status}: {last}")
        print(f"total {time.perf_counter() - t0:.0f}s")
    path = C.results_path(args.quick)
    if not path.is_file():
        print(f"no {path.name} yet")
        return
    results = json.loads(path.read_text())
    if not commands:
        commands = {k.split("_")[0]: v.get("command", "") for k, v in results.get("benchmarks", {}).items()}
    md = table(results, commands)
    (HERE / ("results-quick.md" if args.quick else "results.md")).write_text(md + "\n")
    print("\n" + md)


if __name__ == "__main__":
    main()
