"""A very large domain list streams through the character preset with flat memory, and resumes
fast.

    python bench/large_domains.py [--rows 50000000] [--work /tmp/mlmkit-domains]

Generates a text file of `--rows` names synthesised from the real `isdisposable` list (fetched by
tests/assets.py): second-level labels recombined from real labels' pieces, plus digits, under real
TLDs (generated here, never committed). Then `mlmkit train --preset domains-tiny --max-steps 200`
on it, with the resident memory (VmRSS) read at steps 10 and 200, and a resume from the step-200
checkpoint: process start to the first resumed step, and the seconds the task needs to reach
batch 200 (`train_batches(0, 200)`, measured in-process).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_names(path: Path, rows: int, seed: int = 0) -> Path:
    if path.is_file() and sum(1 for _ in open(path, "rb")) >= rows:
        return path
    sys.path.insert(0, str(ROOT / "tests"))
    from assets import domains_json

    real = [d.strip().lower() for d in json.loads(Path(domains_json()).read_text()) if "." in d]
    labels = [d.rsplit(".", 1)[0].split(".")[-1] for d in real]
    tlds = [d.rsplit(".", 1)[1] for d in real]
    pieces = [p for lab in labels for p in (lab[: len(lab) // 2], lab[len(lab) // 2:]) if p]
    rng = random.Random(seed)
    with open(path, "w", encoding="ascii", errors="ignore") as f:
        for start in range(0, rows, 100_000):
            lines = []
            for _ in range(min(100_000, rows - start)):
                name = rng.choice(pieces) + rng.choice(pieces)
                if rng.random() < 0.2:
                    name += str(rng.randint(0, 999))
                lines.append(f"{name.strip('-') or 'x'}.{rng.choice(tlds)}\n")
            f.write("".join(lines))
    return path


def rss_mb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return -1


def logged_steps(run: Path) -> set[int]:
    f = run / "metrics.jsonl"
    if not f.is_file():
        return set()
    return {json.loads(l)["step"] for l in f.read_text().splitlines() if '"loss"' in l}


def train(cmd: list[str], run: Path, watch: tuple[int, ...]) -> tuple[dict[int, float], dict[int, int]]:
    """Run `cmd`; (seconds from process start to each watched step, VmRSS MB then)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen_t, seen_rss = {}, {}
    while proc.poll() is None:
        steps = logged_steps(run)
        for s in watch:
            if s not in seen_t and s in steps:
                seen_t[s], seen_rss[s] = time.perf_counter() - t0, rss_mb(proc.pid)
        time.sleep(0.02)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr.read()[-3000:])
    return seen_t, seen_rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000_000)
    ap.add_argument("--work", default="/tmp/mlmkit-domains")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    names = make_names(work / f"names-{args.rows}.txt", args.rows)
    print(f"{names}: {names.stat().st_size / 1e9:.2f} GB ({time.perf_counter() - t:.0f} s to generate)")
    run = work / "run"
    subprocess.run(["rm", "-rf", str(run)], check=True)
    base = [sys.executable, "-m", "mlmkit", "train", "--preset", "domains-tiny", "--data", str(names), "-o", str(run),
            "--set", "train.max_minutes=null", "--set", "train.log_every=1", "--set", "train.eval_at_start=false",
            "--set", "train.eval_every=100000", "--set", "train.save_every=200", "--set", "train.progress=false",
            "--set", "train.threads=2"]
    times, rss = train(base + ["--max-steps", "200"], run, (10, 200))
    print(f"train: step 10 at {times[10]:.1f} s, RSS {rss[10]} MB; step 200 at {times[200]:.1f} s, RSS {rss[200]} MB")
    times, rss = train(base + ["--max-steps", "201", "--resume"], run, (201,))
    print(f"resume at step 200: process start to step 201 {times[201]:.1f} s, RSS {rss[201]} MB")
    code = ("import time, sys; from mlmkit.families import resolve_config; from mlmkit.char_mlm.task import CharMLMTask\n"
            f"cfg = resolve_config('domains-tiny', overrides=['data.train={names}'])\n"
            "t = time.perf_counter(); task = CharMLMTask(cfg.data, cfg.model, cfg.masking, batch_size=256, build_model=False)\n"
            "t1 = time.perf_counter(); next(task.train_batches(0, 200)); t2 = time.perf_counter()\n"
            "print(f'task start-up (scan, plan) {t1 - t:.2f} s; reaching batch 200 {t2 - t1:.2f} s; '\n"
            "      f'{len(task.stream.chunks):,} chunks, {task.num_batches(0):,} batches per epoch')")
    print(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip())


if __name__ == "__main__":
    main()
