"""Benchmark 1: training throughput, mlmkit vs transformers' Trainer (goal: >= 2x).

    python bench/throughput.py [--rounds 3] [--steps 20] [--warmup 3] [--compile] [--quick]

Tiny BERT (4 layers, hidden 256, 4 heads, FFN 1024, vocab 8192), sequence 128, batch 32,
`group_texts` on English text (BBC News; the bundled sample if the asset is unavailable).
Both sides start from the same weights, use the same data, batch, optimiser settings (AdamW,
lr 1e-3, linear schedule with warm-up, clip 1.0) and fp32, and run their own real training loop:
mlmkit's `train()` and `Trainer.train()` with `DataCollatorForLanguageModeling` defaults. They
alternate round by round in this process; the first `--warmup` steps of every run are excluded.
Tokens are non-padding input tokens. MFU: see bench/common.py for how FLOPs are counted.

Prints per-round numbers, medians, MFU, and as the last line the ratio of median tokens/s.

On a GPU (what `bench/gpu.sh` runs): `--device cuda --precision bf16 --size base --seq 512` and
`--variants` to pick the runs of one process (mlmkit, trainer, mlmkit_compile, trainer_compile);
MFU is then against a bf16 matmul peak measured on the GPU, and `--out FILE` writes the result
there instead of bench/results.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

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
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (both sides on the GPU)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="both sides (autocast)")
    ap.add_argument("--size", default=C.MODEL_SIZE, help="model size (mlmkit's tiny, mini, small, base)")
    ap.add_argument("--variants", default=None,
                    help="comma-separated runs: mlmkit, trainer, mlmkit_compile, trainer_compile "
                         "(default: mlmkit,trainer, plus mlmkit_compile with --compile)")
    ap.add_argument("--sample-data", action="store_true", help="the bundled English sample, without trying BBC News")
    ap.add_argument("--out", default=None, help="write the result JSON here (not bench/results.json)")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.steps, args.warmup, args.batch, args.seq = 1, 2, 1, 8, 64
        args.max_records = args.max_records or 1000
    C.setup(args.threads)
    if (args.compile or "compile" in (args.variants or "")) and not args.warm_compile_cache:
        import os
        import tempfile

        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-cold-")

    from mlmkit.token_mlm.config import TokenMaskingConfig as MaskingConfig
    from mlmkit.token_mlm.data import group_texts
    from mlmkit.token_mlm.build import make_masker
    from mlmkit.token_mlm.task import TokenMLMTask
    from mlmkit.engine.loop import train

    t0 = time.perf_counter()
    texts, data_name = C.english_texts(args.max_records, sample_only=args.sample_data)
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
    gpu = args.device.startswith("cuda")
    peak_dtype = torch.bfloat16 if args.precision == "bf16" and gpu else torch.float32
    peak = C.matmul_peak(args.threads, device=args.device, dtype=peak_dtype, n=8192 if gpu else 1024)
    print(f"measured {str(peak_dtype)[6:]} matmul peak: {peak:.0f} GFLOP/s "
          f"({torch.cuda.get_device_name() if gpu else f'{args.threads} threads'})")

    hp = C.Hparams()
    p = args.dropout
    n_steps = args.warmup + args.steps
    B, T = args.batch, args.seq
    dims = C.bert_dims(C.build_bert(tok, max_length=T, size=args.size))

    # Fraction of positions mlmkit predicts (the sparse head's share of the FLOPs), measured.
    probe = TokenMLMTask(C.build_bert(tok, max_length=T, size=args.size), tok, seqs, None, masker, batch_size=B, seed=0)
    it = probe.train_batches(0)
    got = [next(it) for _ in range(min(20, probe.num_batches(0)))]
    pred_frac = sum(int(b["targets"].numel()) for b in got) / sum(int(b["attention_mask"].sum()) for b in got)
    del probe, got

    flops_tok_ref = C.train_flops(dims, [T], T) / T
    flops_tok_mlm = C.train_flops(dims, [T], T * pred_frac, last_layer_sparse=not args.no_last_layer) / T

    def run_mlmkit(r: int, compile: bool = False) -> dict:
        model = C.build_bert(tok, max_length=T, dropout=p, size=args.size)
        task = TokenMLMTask(model, tok, seqs, None, masker, batch_size=B, seed=r)
        task.model.last_layer = not args.no_last_layer
        with C.tempdir("mlmkit-bench-") as d:
            tc, oc = C.mlmkit_configs(d, steps=n_steps, batch_size=B, hp=hp, compile=compile, seed=r,
                                      device=args.device, precision=args.precision)
            start = time.perf_counter()
            train(task, tc, oc, save_final=False, log=lambda s: None)
            wall = time.perf_counter() - start
            times, toks = C.mlmkit_step_times(d)
        mean_tps, sps = C.steady_rate(times, toks, args.warmup)
        rates = C.step_rates(times, toks, args.warmup)
        return {"tokens_per_s": C.med(rates), "step_rates": rates, "mean_tokens_per_s": mean_tps,
                "s_per_step": sps, "first_step_s": times[0], "wall_s": wall}

    def run_reference(r: int, compile: bool = False) -> dict:
        model = C.build_bert(tok, max_length=T, dropout=p, size=args.size)
        extra = {"bf16": True} if args.precision == "bf16" else {}
        if compile:
            extra["torch_compile"] = True
        with C.tempdir("hf-bench-") as d:
            start = time.perf_counter()
            _, clock = C.run_trainer(model, tok, ref_ds, steps=n_steps, batch_size=B, hp=hp, out_dir=d, seed=r,
                                     use_cpu=not gpu, **extra)
            wall = time.perf_counter() - start
        cum = [B * T * (i + 1) for i in range(len(clock.times))]  # group_texts: no padding
        rel = [t - clock.t0 for t in clock.times]
        mean_tps, sps = C.steady_rate(rel, cum, args.warmup)
        rates = C.step_rates(rel, cum, args.warmup)
        return {"tokens_per_s": C.med(rates), "step_rates": rates, "mean_tokens_per_s": mean_tps,
                "s_per_step": sps, "first_step_s": rel[0], "wall_s": wall}

    every = {"mlmkit": lambda r: run_mlmkit(r), "trainer": lambda r: run_reference(r),
             "mlmkit_compile": lambda r: run_mlmkit(r, compile=True),
             "trainer_compile": lambda r: run_reference(r, compile=True)}
    names = args.variants.split(",") if args.variants else ["mlmkit", "trainer"] + ["mlmkit_compile"] * args.compile
    fns = {k: every[k] for k in names}
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
        ft = flops_tok_ref if k.startswith("trainer") else flops_tok_mlm
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
    result = {
        "data": data_name, "model": dims, "batch": B, "seq": T, "threads": args.threads,
        "dropout": 0.1 if p is None else p, "last_layer_sparse": not args.no_last_layer,
        "rounds": args.rounds, "timed_steps": args.steps, "warmup_steps": args.warmup,
        "peak_gflops": peak, "predicted_fraction": pred_frac, "runs": summary, "quick": args.quick,
        "prep_s": {"mlmkit": t_mlm_prep, "reference": t_ref_prep},
        "device": torch.cuda.get_device_name() if gpu else "cpu", "precision": args.precision, "size": args.size,
        "peak_dtype": str(peak_dtype)[6:],
    }
    _report(args, runs, summary, result)


def _report(args, runs: dict, summary: dict, result: dict) -> None:
    """Ratios and compile times of the runs there are; the result JSON; the last lines."""
    for k in ("mlmkit_compile", "trainer_compile"):
        if k in summary:  # the first run's first step, less a steady step (later runs reuse the code)
            mc = summary[k]
            mc["compile_s"] = mc["first_step_s"][0] - args.batch * args.seq / mc["tokens_per_s"]
    per_round = None
    if "mlmkit" in summary and "trainer" in summary:
        result["ratio"] = summary["mlmkit"]["tokens_per_s"] / summary["trainer"]["tokens_per_s"]
        per_round = [a["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(runs["mlmkit"], runs["trainer"])]
        result["ratio_per_round"] = per_round
    if {"mlmkit", "trainer", "mlmkit_compile"} <= set(summary):
        mc = summary["mlmkit_compile"]
        result["ratio_compile"] = mc["tokens_per_s"] / summary["trainer"]["tokens_per_s"]
        # How long a run must be for compile to pay off: compile_s / (eager s/token - compiled s/token)
        gain = 1 / summary["mlmkit"]["tokens_per_s"] - 1 / mc["tokens_per_s"]
        mc["break_even_tokens"] = mc["compile_s"] / gain if gain > 0 else None
        be = mc["break_even_tokens"]
        print(f"mlmkit (train.compile=true) / Trainer: {result['ratio_compile']:.2f}x; compile time "
              f"{mc['compile_s']:.0f}s ({'cold' if not args.warm_compile_cache else 'warm'} cache); pays off after "
              + (f"{be:,.0f} tokens ({be / mc['tokens_per_s'] / 60:.1f} min)" if be else "never"))
    if args.out:
        import json
        from pathlib import Path

        Path(args.out).write_text(json.dumps({"machine": C.machine_info(), "command": C.command_line(), **result},
                                             indent=2, default=float) + "\n")
    elif not args.no_save:
        C.save_result("1_throughput", result)
    if per_round is not None:
        print(f"per-round ratios: {', '.join(f'{x:.2f}' for x in per_round)}")
        print(f"throughput ratio mlmkit/Trainer (median-step tokens/s, {args.rounds} rounds): {result['ratio']:.2f}x")


if __name__ == "__main__":
    main()
