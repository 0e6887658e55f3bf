"""Benchmark 4: short sequences (domain names, `line_by_line`): padding waste and tokens/s,
mlmkit vs transformers' Trainer padding to the batch maximum (goal: waste < 5%).

    python bench/short_sequences.py [--batch 128] [--rounds 3] [--steps 40] [--quick]

Data: the bundled 50,000 domain names (`src/mlmkit/samples/domains.txt`, avg ~16 characters),
a WordPiece tokenizer (vocab 8192) trained on them, one sequence per name (`[CLS] ... [SEP]`,
max_length 32). Model: the same tiny BERT as benchmark 1 (4 layers, hidden 256).

- mlmkit: `line_by_line` + `TokenMLMTask` with length bucketing (rows sorted by length within
  windows of 64 batches, batches shuffled), dynamic padding per batch.
- reference: `run_mlm.py --line_by_line` defaults: `Trainer`'s random sampler,
  `DataCollatorForLanguageModeling` padding to the batch maximum.

Padding waste = padding positions / all computed positions, over a full epoch of batches
(mlmkit: its batch plan; reference: batches of the Trainer's random order). Tokens/s counts
non-padding tokens; runs alternate. The last line is the tokens/s ratio; padding waste is
printed above it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import common as C


def waste_of(batches: list[np.ndarray], lengths: np.ndarray) -> float:
    real = sum(int(lengths[b].sum()) for b in batches)
    computed = sum(len(b) * int(lengths[b].max()) for b in batches)
    return 1.0 - real / computed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--max-length", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-records", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 round of 3 steps, 5,000 names")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.steps, args.warmup, args.batch = 1, 3, 1, 32
        args.max_records = args.max_records or 5000
    C.setup(args.threads)

    from mlmkit.token_mlm.config import TokenMaskingConfig as MaskingConfig
    from mlmkit.token_mlm.data import line_by_line
    from mlmkit.token_mlm.build import make_masker
    from mlmkit.token_mlm.task import TokenMLMTask
    from mlmkit.engine.loop import train

    texts = C.domain_texts(args.max_records)
    tok = C.get_tokenizer(texts, "domains")
    seqs = line_by_line(texts, tok, args.max_length, progress=False)
    ref_ds = C.reference_dataset(texts, tok, args.max_length, "line_by_line")
    lengths = seqs.lengths()
    ref_lengths = np.array([len(x) for x in ref_ds["input_ids"]])
    assert np.array_equal(np.sort(lengths), np.sort(ref_lengths)), "both sides must see the same sequences"
    B = args.batch
    masker = make_masker(tok, MaskingConfig())
    print(f"{len(texts):,} domain names, {len(seqs):,} sequences, mean {lengths.mean():.1f} tokens "
          f"(max {lengths.max()}), batch {B}")

    # ---- padding waste over one epoch
    task = TokenMLMTask(None, tok, seqs, None, masker, batch_size=B, seed=0)
    w_mlm = waste_of(task._plan(0), lengths)
    nobucket = TokenMLMTask(None, tok, seqs, None, masker, batch_size=B, seed=0, bucket=False)
    w_nobucket = waste_of(nobucket._plan(0), lengths)
    order = np.random.default_rng(42).permutation(len(ref_lengths))  # Trainer: RandomSampler
    w_ref = waste_of([order[s:s + B] for s in range(0, len(order), B)], ref_lengths)
    print(f"padding waste: mlmkit {w_mlm:.2%} (without bucketing {w_nobucket:.2%}), "
          f"reference (pad to batch max) {w_ref:.2%}")

    peak = C.matmul_peak(args.threads)
    dims = C.bert_dims(C.build_bert(tok, max_length=args.max_length))
    hp = C.Hparams()
    n_steps = args.warmup + args.steps
    # Counted FLOPs per non-padding token (attention with each row's own length).
    per_tok_enc = C.train_flops(dims, lengths, 0) / lengths.sum()
    head_tok = C.train_flops(dims, [0], 1)  # per predicted position
    probe_it = task.train_batches(0)
    got = [next(probe_it) for _ in range(min(20, task.num_batches(0)))]
    pred_frac = sum(int(b["targets"].numel()) for b in got) / sum(int(b["attention_mask"].sum()) for b in got)
    # mlmkit also runs the last layer's per-position work on the predicted positions only
    mlm_tok = C.train_flops(dims, lengths, lengths.sum() * pred_frac, last_layer_sparse=True) / lengths.sum()
    flops_tok = {"mlmkit": mlm_tok, "trainer": per_tok_enc + head_tok}

    def run_mlmkit(r: int) -> dict:
        model = C.build_bert(tok, max_length=args.max_length)
        t = TokenMLMTask(model, tok, seqs, None, masker, batch_size=B, seed=r)
        with C.tempdir("mlmkit-short-") as d:
            tc, oc = C.mlmkit_configs(d, steps=n_steps, batch_size=B, hp=hp, seed=r)
            train(t, tc, oc, save_final=False, log=lambda s: None)
            times, toks = C.mlmkit_step_times(d)
        _, sps = C.steady_rate(times, toks, args.warmup)
        return {"step_rates": C.step_rates(times, toks, args.warmup), "s_per_step": sps}

    def run_reference(r: int) -> dict:
        from transformers import DataCollatorForLanguageModeling

        inner = DataCollatorForLanguageModeling(tok, mlm_probability=0.15)
        counts: list[int] = []

        def collator(examples):
            batch = inner(examples)
            counts.append(int(batch["attention_mask"].sum()))
            return batch

        model = C.build_bert(tok, max_length=args.max_length)
        with C.tempdir("hf-short-") as d:
            _, clock = C.run_trainer(model, tok, ref_ds, steps=n_steps, batch_size=B, hp=hp, out_dir=d,
                                     collator=collator, seed=r)
        rel = [t - clock.t0 for t in clock.times]
        cum = np.cumsum(counts[: len(rel)]).tolist()  # step i trains on the i-th collated batch
        _, sps = C.steady_rate(rel, cum, args.warmup)
        return {"step_rates": C.step_rates(rel, cum, args.warmup), "s_per_step": sps}

    runs = C.rounds_alternating(args.rounds, {"mlmkit": run_mlmkit, "trainer": run_reference})
    summary = {}
    for k, v in runs.items():
        # median over all timed steps of (non-padding tokens / step time): robust to load bursts
        tps = [x for run in v for x in run["step_rates"]]
        m = C.med(tps)
        summary[k] = {"tokens_per_s": m, "tokens_per_s_per_round": [C.med(r["step_rates"]) for r in v],
                      "s_per_step": C.med([x["s_per_step"] for x in v]),
                      "flops_per_token": flops_tok[k], "mfu": C.mfu(m * flops_tok[k], peak)}
        print(f"{k:8s} {C.spread(tps)} tokens/s ({summary[k]['s_per_step'] * 1000:.0f} ms/step), "
              f"MFU {summary[k]['mfu']:.1%} of {peak:.0f} GFLOP/s")
    ratio = summary["mlmkit"]["tokens_per_s"] / summary["trainer"]["tokens_per_s"]
    if not args.no_save:
        C.save_result("4_short_sequences", {
            "data": "mlmkit samples/domains.txt", "records": len(texts), "mean_tokens": float(lengths.mean()),
            "batch": B, "max_length": args.max_length, "rounds": args.rounds, "timed_steps": args.steps,
            "padding_waste": {"mlmkit": w_mlm, "mlmkit_no_bucketing": w_nobucket, "reference": w_ref},
            "peak_gflops": peak, "runs": summary, "ratio": ratio, "quick": args.quick,
        })
    print(f"padding waste: mlmkit {w_mlm:.2%} vs reference {w_ref:.2%} (goal < 5%)")
    print(f"short-sequence throughput ratio mlmkit/Trainer (non-padding tokens/s): {ratio:.2f}x")


if __name__ == "__main__":
    main()
