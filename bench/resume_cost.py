"""Resume cost does not grow with the step number.

    python bench/resume_cost.py [--sequences 200000] [--batch 8] [--repeats 5]

Two measurements, each at a shallow position (step 10) and a deep one (step 10,000, i.e. batch
10,000 of the epoch), on an in-memory token dataset large enough to hold both in one epoch:

1. task level: time until `TokenMLMTask.train_batches(0, start)` yields its first batch;
2. trainer level: `train(..., resume=True)` from a checkpoint claiming that step, until one
   more optimiser step is done (find + verify + load the checkpoint, reach the batch, train one
   step, save) -- what a preempted job pays to continue.

For contrast it also times the naive way to resume (iterate over the skipped batches), which is
what the O(1) design avoids. Prints a table and, last, one JSON line with the numbers.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from mlmkit.engine import checkpoint as ckpt_io
from mlmkit.engine.config import OptimConfig, TrainConfig
from mlmkit.token_mlm.data import Sequences
from mlmkit.token_mlm.masking import TokenMasker
from mlmkit.token_mlm.task import TokenMLMTask
from mlmkit.engine.loop import train
from mlmkit.engine.optim import make_optimizer

VOCAB = 1000


def make_task(n_sequences: int, batch: int) -> TokenMLMTask:
    from transformers import BertConfig, BertForMaskedLM

    rng = np.random.default_rng(0)
    lengths = rng.integers(8, 33, n_sequences)
    seqs = Sequences.from_lists([rng.integers(5, VOCAB, n) for n in lengths], None)
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=64, max_position_embeddings=64))
    masker = TokenMasker(vocab_size=VOCAB, mask_token_id=4, special_ids=[0, 1, 2, 3])
    return TokenMLMTask(model, SimpleNamespace(pad_token_id=0), seqs, None, masker, batch_size=batch, seed=0)


def first_batch_seconds(task: TokenMLMTask, start: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        task._plans.clear()  # include the epoch plan (O(dataset), the same at any step)
        t = time.perf_counter()
        next(task.train_batches(0, start))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def naive_skip_seconds(task: TokenMLMTask, start: int) -> float:
    t = time.perf_counter()
    next(itertools.islice(task.train_batches(0), start, None))
    return time.perf_counter() - t


def trainer_resume_seconds(task: TokenMLMTask, step: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            optimizer = make_optimizer(task.model, OptimConfig(), torch.device("cpu"))
            state = {"step": step, "epoch": 0, "batch_in_epoch": step, "tokens": 0, "targets": 0, "elapsed": 0.0,
                     "best_eval_loss": None, "evals_without_improvement": 0, "bad_steps_total": 0}
            ckpt_io.save_checkpoint(Path(out) / "checkpoints", step, task.model, optimizer, None, state)
            cfg = TrainConfig(output_dir=out, max_steps=step + 1, log_every=1, eval_every=10**9, eval_at_start=False,
                              save_every=0, progress=False, device="cpu", precision="fp32", show_samples=0)
            t = time.perf_counter()
            summary = train(task, cfg, OptimConfig(), resume=True, save_final=False, log=lambda s: None)
            times.append(time.perf_counter() - t)
            assert summary["step"] == step + 1
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sequences", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    task = make_task(args.sequences, args.batch)
    n = task.num_batches(0)
    steps = [10, 10_000]
    assert n > max(steps), f"need more than {max(steps)} batches per epoch, have {n}"
    print(f"{args.sequences:,} sequences, batch {args.batch}: {n:,} batches per epoch")
    res = {"sequences": args.sequences, "batches_per_epoch": n}
    print(f"{'resume at step':>15} {'first batch (s)':>16} {'trainer resume (s)':>19} {'naive skip (s)':>15}")
    for s in steps:
        fb = first_batch_seconds(task, s, args.repeats)
        tr = trainer_resume_seconds(task, s, args.repeats)
        nv = naive_skip_seconds(task, s)
        res[str(s)] = {"first_batch_s": round(fb, 4), "trainer_resume_s": round(tr, 4), "naive_skip_s": round(nv, 4)}
        print(f"{s:>15,} {fb:>16.4f} {tr:>19.4f} {nv:>15.4f}")
    ratio = res["10000"]["trainer_resume_s"] / res["10"]["trainer_resume_s"]
    res["trainer_ratio_10000_vs_10"] = round(ratio, 3)
    print(f"trainer resume at 10,000 / at 10: {ratio:.2f} (1.0 = the same cost)")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
