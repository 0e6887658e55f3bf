"""`torchrun --nproc-per-node 1 ... --strategy fsdp` shards the model over its one rank (the code
a multi-GPU FSDP run takes: what `bench/gpu.sh` smoke-tests on one GPU); a process that torchrun
did not start, or ddp over one rank, stays a plain single process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from mlmkit.engine.distributed import init_distributed


def test_fsdp_under_torchrun_with_one_rank_shards_and_checkpoints_sharded(tmp_path, english_texts):
    data = tmp_path / "text.txt"
    data.write_text("\n".join(english_texts[:300]))
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1", "-m", "mlmkit",
           "train", "--preset", "scratch-tiny", "--data", str(data), "--output", str(run), "--max-steps", "2",
           "--strategy", "fsdp", "--set", "train.save_every=1", "--set", "train.progress=false",
           "--set", "tokenizer.vocab_size=500", "--set", "data.max_length=32", "--set", "train.batch_size=4",
           "--set", "data.max_eval_samples=8", "--set", "train.gradient_checkpointing=true"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((run / "summary.json").read_text())["step"] == 2
    ranks = [torch.load(f, weights_only=True) for f in sorted((run / "checkpoints").glob("step-*/rng.pt"))]
    assert len(ranks) == 2 and all(r["sharded"] for r in ranks)


def test_one_process_without_torchrun_ignores_the_strategy(monkeypatch):
    for key in ("RANK", "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    assert init_distributed("fsdp").strategy == "none"
    # torchrun's environment, one rank, ddp: nothing to replicate, so no process group either
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert init_distributed("ddp").strategy == "none"
    assert not torch.distributed.is_initialized()
