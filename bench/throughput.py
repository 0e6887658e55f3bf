"""Benchmark 1: training throughput, mlmkit vs transformers' Trainer (issue 4).

    python bench/throughput.py [--rounds 3] [--steps 20] [--warmup 3] [--compile] [--quick]

Tiny BERT (4 layers, hidden 256, 4 heads, FFN 1024, vocab 8192), sequence 128, batch 32,
`group_texts` on English text (BBC News; the bundled sample if the asset is unavailable).
Both sides start from the same weights, use the same data, batch, optimiser settings (AdamW,
lr 1e-3, linear schedule with warm-up, clip 1.0) and fp32, and run their own real training loop:
mlmkit's `train()` and `Trainer.train()` with `DataCollatorForLanguageModeling` defaults. They
alternate round by round in this process; the first `--warmup` steps of every run are excluded.
Tokens are non-padding input tokens. MFU: see bench/common.py for how FLOPs are counted.

Prints per-round numbers, medians, MFU, and as the last line the ratio of median tokens/s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import common as C


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps at the start of every run")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="also run mlmkit with train.compile=true")
    ap.add_argument("--warm-compile-cache", action="store_true",
                    help="let torch.compile use its on-disk cache (default: a fresh one, so the "
                         "reported compile time is a first run's)")
    ap.add_argument("--dropout", type=float, default=None,
                    help="hidden and attention dropout of the model, on BOTH sides (default: BERT's 0.1)")
    ap.add_argument("--no-last-layer", action="store_true",
                    help="mlmkit without the masked-positions-only last layer (to measure what it brings)")
    ap.add_argument("--max-records", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny data, batch 8 x 64, 1 round, 3 steps")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results.json")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.steps, args.warmup, args.batch, args.seq = 1, 2, 1, 8, 64
        args.max_records = args.max_records or 1000
    C.setup(args.threads)
    if args.compile and not args.warm_compile_cache:
        import os
        import tempfile

        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-cold-")

    from mlmkit.token_mlm.config import TokenMaskingConfig as MaskingConfig
    from mlmkit.token_mlm.data import group_texts
    from mlmkit.token_mlm.task import TokenMLMTask, make_masker
    from mlmkit.engine.loop import train

    t0 = time.perf_counter()
    texts, data_name = C.english_texts(args.max_records)
    tok = C.get_tokenizer(texts, data_name)
    t_tok = time.perf_counter()
    seqs = group_texts(texts, tok, args.seq, progress=False)
    t_mlm_prep = time.perf_counter() - t_tok
    t1 = time.perf_counter()
    ref_ds = C.reference_dataset(texts, tok, args.seq, "group_texts")
    t_ref_prep = time.perf_counter() - t1
    masker = make_masker(tok, MaskingConfig())
    print(f"data: {data_name}, {len(texts):,} records; mlmkit {len(seqs):,} sequences "
          f"({seqs.num_tokens():,} tokens, prep {t_mlm_prep:.1f}s); reference {len(ref_ds):,} sequences "
          f"(prep {t_ref_prep:.1f}s); setup {time.perf_counter() - t0:.0f}s")
    peak = C.matmul_peak(args.threads)
    print(f"measured fp32 matmul peak: {peak:.0f} GFLOP/s ({args.threads} threads)")

    hp = C.Hparams()
    p = args.dropout
    n_steps = args.warmup + args.steps
    dims = C.bert_dims(C.build_bert(tok))
    B, T = args.batch, args.seq

    # Fraction of positions mlmkit predicts (the sparse head's share of the FLOPs), measured.
    probe = TokenMLMTask(C.build_bert(tok), tok, seqs, None, masker, batch_size=B, seed=0)
    it = probe.train_batches(0)
    got = [next(it) for _ in range(min(20, probe.num_batches(0)))]
    pred_frac = sum(int(b["targets"].numel()) for b in got) / sum(int(b["attention_mask"].sum()) for b in got)
    del probe, got

    flops_tok_ref = C.train_flops(dims, [T], T) / T
    flops_tok_mlm = C.train_flops(dims, [T], T * pred_frac, last_layer_sparse=not args.no_last_layer) / T

    def run_mlmkit(r: int, compile: bool = False) -> dict:
        model = C.build_bert(tok, dropout=p)
        task = TokenMLMTask(model, tok, seqs, None, masker, batch_size=B, seed=r)
        task.model.last_layer = not args.no_last_layer
        with C.tempdir("mlmkit-bench-") as d:
            tc, oc = C.mlmkit_configs(d, steps=n_steps, batch_size=B, hp=hp, compile=compile, seed=r)
            start = time.perf_counter()
            train(task, tc, oc, save_final=False, log=lambda s: None)
            wall = time.perf_counter() - start
            times, toks = C.mlmkit_step_times(d)
        mean_tps, sps = C.steady_rate(times, toks, args.warmup)
        rates = C.step_rates(times, toks, args.warmup)
        return {"tokens_per_s": C.med(rates), "step_rates": rates, "mean_tokens_per_s": mean_tps,
                "s_per_step": sps, "first_step_s": times[0], "wall_s": wall}

    def run_reference(r: int) -> dict:
        model = C.build_bert(tok, dropout=p)
        with C.tempdir("hf-bench-") as d:
            start = time.perf_counter()
            _, clock = C.run_trainer(model, tok, ref_ds, steps=n_steps, batch_size=B, hp=hp, out_dir=d, seed=r)
            wall = time.perf_counter() - start
        cum = [B * T * (i + 1) for i in range(len(clock.times))]  # group_texts: no padding
        rel = [t - clock.t0 for t in clock.times]
        mean_tps, sps = C.steady_rate(rel, cum, args.warmup)
        rates = C.step_rates(rel, cum, args.warmup)
        return {"tokens_per_s": C.med(rates), "step_rates": rates, "mean_tokens_per_s": mean_tps,
                "s_per_step": sps, "first_step_s": rel[0], "wall_s": wall}

    fns = {"mlmkit": lambda r: run_mlmkit(r), "trainer": run_reference}
    if args.compile:
        fns["mlmkit_compile"] = lambda r: run_mlmkit(r, compile=True)
    runs = C.rounds_alternating(args.rounds, fns)
    for r in range(args.rounds):
        print(f"round {r + 1}: " + "  ".join(
            f"{k} {runs[k][r]['tokens_per_s']:,.0f} tok/s ({runs[k][r]['s_per_step'] * 1000:.0f} ms/step, "
            f"first step {runs[k][r]['first_step_s']:.1f}s)" for k in fns))

    summary: dict = {}
    for k in fns:
        # Throughput = median over every timed step of every round of (tokens / step time): other
        # processes' load comes in bursts that hit some steps, and the median ignores them.
        all_rates = [x for run in runs[k] for x in run["step_rates"]]
        per_round = [x["tokens_per_s"] for x in runs[k]]
        ft = flops_tok_ref if k == "trainer" else flops_tok_mlm
        m = C.med(all_rates)
        summary[k] = {
            "tokens_per_s": m, "tokens_per_s_per_round": per_round,
            "tokens_per_s_best_step_quartile": float(np.percentile(all_rates, 75)),
            "mean_tokens_per_s_per_round": [x["mean_tokens_per_s"] for x in runs[k]],
            "s_per_step": C.med([x["s_per_step"] for x in runs[k]]),
            "first_step_s": [x["first_step_s"] for x in runs[k]],
            "flops_per_token": ft, "mfu": C.mfu(m * ft, peak),
            # mlmkit's tokens/s at the Trainer's FLOPs per token (what the speed-up is "worth")
            "mfu_dense_equivalent": C.mfu(m * flops_tok_ref, peak),
        }
        print(f"{k:15s} {m:,.0f} tok/s (median of {len(all_rates)} steps; per-round medians "
              f"{', '.join(f'{x:,.0f}' for x in per_round)})  MFU {summary[k]['mfu']:.1%} "
              f"({ft / 1e6:.1f} MFLOP/token counted; dense-equivalent MFU {summary[k]['mfu_dense_equivalent']:.1%})")
    ratio = summary["mlmkit"]["tokens_per_s"] / summary["trainer"]["tokens_per_s"]
    per_round = [a["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(runs["mlmkit"], runs["trainer"])]
    result = {
        "data": data_name, "model": dims, "batch": B, "seq": T, "threads": args.threads,
        "dropout": 0.1 if p is None else p, "last_layer_sparse": not args.no_last_layer,
        "rounds": args.rounds, "timed_steps": args.steps, "warmup_steps": args.warmup,
        "peak_gflops": peak, "predicted_fraction": pred_frac, "runs": summary,
        "ratio": ratio, "ratio_per_round": per_round, "quick": args.quick,
        "prep_s": {"mlmkit": t_mlm_prep, "reference": t_ref_prep},
    }
    if args.compile:
        mc = summary["mlmkit_compile"]
        result["ratio_compile"] = mc["tokens_per_s"] / summary["trainer"]["tokens_per_s"]
        # Compile time: the first run's first step, less a steady step (later runs in this process
        # reuse the compiled code).
        mc["compile_s"] = mc["first_step_s"][0] - args.batch * args.seq / mc["tokens_per_s"]
        # How long a run must be for compile to pay off: compile_s / (eager s/token - compiled s/token)
        gain = 1 / summary["mlmkit"]["tokens_per_s"] - 1 / mc["tokens_per_s"]
        mc["break_even_tokens"] = mc["compile_s"] / gain if gain > 0 else None
        be = mc["break_even_tokens"]
        print(f"mlmkit (train.compile=true) / Trainer: {result['ratio_compile']:.2f}x; compile time "
              f"{mc['compile_s']:.0f}s ({'cold' if not args.warm_compile_cache else 'warm'} cache); pays off after "
              + (f"{be:,.0f} tokens ({be / mc['tokens_per_s'] / 60:.1f} min)" if be else "never"))
    if not args.no_save:
        C.save_result("1_throughput", result)
    print(f"per-round ratios: {', '.join(f'{x:.2f}' for x in per_round)}")
    print(f"throughput ratio mlmkit/Trainer (median-step tokens/s, {args.rounds} rounds): {ratio:.2f}x")


if __name__ == "__main__":
    main()
