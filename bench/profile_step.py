"""Where a training step's time goes: torch.profiler top ops for mlmkit's step and the Trainer's.

    python bench/profile_step.py [--steps 5] [--batch 32] [--seq 128] [--compile] [--quick]

Same model and data as benchmark 1. mlmkit's step is what `train()` does per step (masked batch
from the task, sparse forward through `SparseMLM`, loss, backward, clip, fused AdamW); the
reference step is what the Trainer does (collator batch, `BertForMaskedLM(labels=...)` with
logits at every position, backward, clip, fused AdamW). Prints the top ops by self CPU time and a
breakdown by kind (matmul, attention, dropout/RNG, elementwise, norm, loss, optimiser).
"""

from __future__ import annotations

import argparse
import re
import time
from collections import defaultdict

import torch

import common as C

KINDS = [
    ("matmul", r"aten::(mm|addmm|bmm|baddbmm|matmul|linear)$"),
    # before attention: the vocabulary log-softmax is the loss, not attention's softmax
    ("loss (log-softmax, NLL)", r"log_softmax|nll_loss|cross_entropy"),
    ("attention (SDPA)", r"scaled_dot_product|_softmax|softmax"),
    ("dropout / RNG", r"bernoulli|dropout|rand|uniform"),
    ("layer norm", r"layer_norm"),
    ("GELU", r"gelu"),
    ("optimiser (fused AdamW)", r"_fused_adam|_foreach|lerp|addcdiv|addcmul|sqrt"),
    ("embedding", r"embedding|index_select|index_add|scatter|gather"),
    ("elementwise / copies", r"aten::(mul|add|div|sub|copy_|fill_|where|clone|to|_to_copy|sum|zero_|mul_|add_|div_|masked_fill)"),
]


def breakdown(prof) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for e in prof.key_averages():
        if e.self_cpu_time_total <= 0:
            continue
        for kind, pat in KINDS:
            if re.search(pat, e.key):
                out[kind] += e.self_cpu_time_total
                break
        else:
            out["other"] += e.self_cpu_time_total
    return dict(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, default=20)
    ap.add_argument("--compile", action="store_true", help="profile mlmkit with torch.compile")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.batch, args.seq = 2, 8, 64
    C.setup(args.threads)

    from torch.profiler import ProfilerActivity, profile
    from transformers import DataCollatorForLanguageModeling

    from mlmkit.token_mlm.config import TokenMaskingConfig as MaskingConfig
    from mlmkit.token_mlm.data import group_texts
    from mlmkit.token_mlm.build import make_masker
    from mlmkit.token_mlm.task import TokenMLMTask
    from mlmkit.engine.optim import make_optimizer

    texts, name = C.english_texts(3000 if args.quick else None)
    tok = C.get_tokenizer(texts, name)
    seqs = group_texts(texts, tok, args.seq, progress=False)
    ref = C.reference_dataset(texts, tok, args.seq, "group_texts").select_columns(["input_ids", "attention_mask"])
    _, oc = C.mlmkit_configs("/tmp/unused", steps=1, batch_size=args.batch, hp=C.Hparams())

    task = TokenMLMTask(C.build_bert(tok), tok, seqs, None, make_masker(tok, MaskingConfig()), batch_size=args.batch)
    mlm = task.model.train()
    opt_m = make_optimizer(mlm, oc, torch.device("cpu"))
    run_m = torch.compile(mlm) if args.compile else mlm
    it = task.train_batches(0)

    def mlmkit_step():
        b = next(it)
        out = task.forward(run_m, b)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(mlm.parameters(), 1.0)
        opt_m.step()
        opt_m.zero_grad(set_to_none=True)

    hf = C.build_bert(tok).train()
    opt_h = torch.optim.AdamW(hf.parameters(), lr=1e-3, fused=True)  # the Trainer's default optimiser
    coll = DataCollatorForLanguageModeling(tok, mlm_probability=0.15)
    rows = ref.to_list()[: args.batch * (args.steps + 3)]
    hb = iter([rows[i:i + args.batch] for i in range(0, len(rows), args.batch)])

    def trainer_step():
        batch = coll(next(hb))
        hf(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        opt_h.step()
        opt_h.zero_grad(set_to_none=True)

    for name_, step in (("mlmkit" + (" (compiled)" if args.compile else ""), mlmkit_step),
                        ("Trainer-equivalent", trainer_step)):
        for _ in range(2):
            step()
        t = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                step()
        wall = (time.perf_counter() - t) / args.steps
        print(f"\n=== {name_}: {wall * 1000:.0f} ms/step under the profiler ===")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
        bd = breakdown(prof)
        total = sum(bd.values())
        print("by kind (share of self CPU time):")
        for k, v in sorted(bd.items(), key=lambda kv: -kv[1]):
            print(f"  {k:26s} {v / total:6.1%}  {v / 1000 / args.steps:8.1f} ms/step")


if __name__ == "__main__":
    main()
