"""Benchmark 2: quality per time: how long mlmkit needs to reach the held-out loss that
transformers' Trainer reaches in T minutes (the goal is stated for T = 10; `--minutes` sets it).

    python bench/quality_per_time.py [--minutes 3] [--fraction 0.5] [--quick]

Same setting as benchmark 1 (tiny BERT, seq 128, batch 32, group_texts on English text, same
initial weights and optimiser settings: AdamW lr 1e-3, 5% warm-up, linear decay, clip 1.0), with
5% of the records held out (mlmkit's hash split).

1. Trainer: a short probe measures its step time; it then trains for the number of steps that
   fills T minutes (its schedule planned for them, as a user with a T-minute budget would do).
   Its held-out loss at the end is the target; its actual training time is T_ref.
2. mlmkit: `train.max_minutes = fraction * T_ref` (mlmkit plans the schedule from the time
   budget), evaluating ~8 times on the way. The periodic evaluations count against its budget
   (conservative) but not in the reported times.

Both models are scored by the same evaluator: the held-out sequences masked once with a fixed
seed (mlmkit's evaluation), token-weighted mean cross-entropy on the masked tokens. The result is
the training time at the first evaluation whose loss is <= the target, divided by T_ref; the last
line prints it (">fraction" if the target was not reached within the budget).
"""

from __future__ import annotations

import argparse
import time

import torch

import common as C


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=3.0, help="T: the Trainer's time budget")
    ap.add_argument("--fraction", type=float, default=0.5, help="mlmkit's budget as a fraction of T_ref")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-seqs", type=int, default=256, help="held-out sequences scored")
    ap.add_argument("--evals", type=int, default=8, help="evaluations during the mlmkit run")
    ap.add_argument("--compile", action="store_true", help="mlmkit with train.compile=true")
    ap.add_argument("--mlmkit-dropout", type=float, default=None,
                    help="mlmkit's hidden and attention dropout (default: the Trainer's model config, 0.1); "
                         "0 = the dropout-free pre-training recipe (a recipe change: it is reported as such)")
    ap.add_argument("--recipe", choices=["same", "modern"], default="same",
                    help="mlmkit's side: 'same' = the Trainer's model and settings; 'modern' = the "
                         "scratch-modern preset's recipe (ModernBERT of the same size with its GLU FFN at 672: "
                         "pre-norm, no dropout, lr 2e-3); the Trainer keeps BERT and lr 1e-3")
    ap.add_argument("--lr", type=float, default=None, help="mlmkit's learning rate (default: the recipe's)")
    ap.add_argument("--model-set", action="append", default=[], metavar="KEY=INT",
                    help="--recipe modern: a transformers config value of mlmkit's model (model.overrides), "
                         "e.g. intermediate_size=672")
    ap.add_argument("--mlmkit-batch", type=int, default=None, help="mlmkit's batch size (default: --batch)")
    ap.add_argument("--reuse-trainer", action="store_true",
                    help="take the Trainer's target loss and T_ref from bench/results.json (the last run of "
                         "this row with the same minutes, batch and sequence length) instead of training it "
                         "again: for trying mlmkit settings; such runs are never saved")
    ap.add_argument("--max-records", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="smoke test: T = 0.1 min, tiny data")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.minutes, args.batch, args.seq, args.eval_seqs = 0.1, 8, 64, 32
        args.max_records = args.max_records or 2000
    C.setup(args.threads)

    from mlmkit.token_mlm.config import TokenMaskingConfig as MaskingConfig
    from mlmkit.token_mlm.data import group_texts, split_validation
    from mlmkit.token_mlm.build import make_masker
    from mlmkit.token_mlm.task import TokenMLMTask
    from mlmkit.engine.evaluation import evaluate
    from mlmkit.engine.loop import train

    texts, data_name = C.english_texts(args.max_records)
    tok = C.get_tokenizer(texts, data_name)
    train_texts, val_texts = split_validation(texts, 0.05, seed=0)
    B, T = args.batch, args.seq
    seqs = group_texts(train_texts, tok, T, progress=False)
    val = group_texts(val_texts, tok, T, progress=False)
    from mlmkit.token_mlm.data import subset

    val = subset(val, range(min(len(val), args.eval_seqs)))
    ref_ds = C.reference_dataset(train_texts, tok, T, "group_texts")
    masker = make_masker(tok, MaskingConfig())
    hp = C.Hparams()
    cpu = torch.device("cpu")
    print(f"data: {data_name}: {len(seqs):,} training sequences ({seqs.num_tokens():,} tokens), "
          f"{len(val)} held-out sequences; T = {args.minutes} min")

    def held_out_loss(model) -> float:
        task = TokenMLMTask(model, tok, None, val, masker, batch_size=B, eval_batch_size=64)
        return evaluate(task, task.model, cpu, "fp32")["eval_loss"]

    # ---- 1. the Trainer: probe its step time, then fill T minutes
    if args.reuse_trainer:
        args.no_save = True
        n_ref, t_ref, target, step_s = reused_trainer(args)
    else:
        with C.tempdir("hf-probe-") as d:
            _, clock = C.run_trainer(C.build_bert(tok), tok, ref_ds, steps=6, batch_size=B, hp=hp, out_dir=d)
        step_s = (clock.times[-1] - clock.times[1]) / (len(clock.times) - 2)
        n_ref = max(4, int(args.minutes * 60 / step_s))
        print(f"Trainer probe: {step_s:.3f} s/step -> {n_ref} steps for {args.minutes} min")
        ref_model = C.build_bert(tok)
        with C.tempdir("hf-quality-") as d:
            _, clock = C.run_trainer(ref_model, tok, ref_ds, steps=n_ref, batch_size=B, hp=hp, out_dir=d)
        t_ref = clock.times[-1] - clock.t0
        target = held_out_loss(ref_model)
    print(f"Trainer: {n_ref} steps in {t_ref:.1f}s, held-out loss {target:.4f} (the target)")

    # ---- 2. mlmkit with a time budget of fraction * T_ref
    p = args.mlmkit_dropout
    if args.recipe == "modern":
        from dataclasses import replace

        from mlmkit.families import resolve_config
        from mlmkit.token_mlm.model import build_model

        preset = resolve_config("scratch-modern")  # the recipe: architecture, its config values, lr
        torch.manual_seed(0)
        overrides = {**(preset.model.overrides or {}),
                     **{k: int(v) for k, v in (kv.split("=", 1) for kv in args.model_set)}}
        model = build_model(preset.model.arch, C.MODEL_SIZE, tok, T, overrides or None)
        hp = replace(hp, lr=preset.optim.lr)
        p = 0.0
    else:
        model = C.build_bert(tok, dropout=p)
    if args.lr is not None:
        from dataclasses import replace

        hp = replace(hp, lr=args.lr)
    mb = args.mlmkit_batch or B
    task = TokenMLMTask(model, tok, seqs, val, masker, batch_size=mb, seed=0, eval_batch_size=64)
    eval_time = [0.0]
    orig_eval = task.eval_batches

    def timed_eval():
        t0 = time.perf_counter()
        try:
            yield from orig_eval()
        finally:
            eval_time[0] += time.perf_counter() - t0

    task.eval_batches = timed_eval  # the evaluator's time is taken out of the reported times
    curve: list[dict] = []

    def on_eval(rec: dict) -> None:
        curve.append({"step": rec["step"], "train_s": rec["time_s"] - eval_time[0], "eval_loss": rec["eval_loss"]})

    budget_s = args.fraction * t_ref
    eval_every = max(1, int(n_ref * args.fraction * 2 * B / mb / args.evals))  # ~evals evaluations at ~2x speed
    with C.tempdir("mlmkit-quality-") as d:
        tc, oc = C.mlmkit_configs(d, steps=1, batch_size=mb, hp=hp, compile=args.compile, eval_every=eval_every)
        tc.max_steps, tc.max_minutes, tc.log_every = None, budget_s / 60, 10
        periodic = [0.0]

        def on_eval_wrap(rec):
            on_eval(rec)
            periodic[0] = eval_time[0]

        summary = train(task, tc, oc, save_final=False, log=lambda s: None, on_eval=on_eval_wrap)
    final = {"step": summary["step"], "train_s": summary["train_seconds"] - periodic[0],
             "eval_loss": summary["eval_loss"], "final": True}
    curve.append(final)
    for c in curve:
        print(f"  mlmkit step {c['step']:5d}  {c['train_s']:7.1f}s  held-out loss {c['eval_loss']:.4f}"
              + ("  <= target" if c["eval_loss"] <= target else ""))
    hit = next((c for c in curve if c["eval_loss"] <= target), None)
    ratio = None if hit is None else hit["train_s"] / t_ref
    if not args.no_save:
        # the recipe is its own row (goal <= 0.25x); the same-model row stays comparable over time
        C.save_result("2_quality_per_time" if args.recipe == "same" else "2b_quality_per_time_recipe", {
            "data": data_name, "minutes": args.minutes, "fraction": args.fraction, "batch": B, "seq": T,
            "trainer": {"steps": n_ref, "train_s": t_ref, "held_out_loss": target, "probe_s_per_step": step_s},
            "mlmkit": {"budget_s": budget_s, "steps": summary["step"], "curve": curve,
                       "compile": args.compile, "final_loss": final["eval_loss"],
                       "dropout": 0.1 if p is None else p, "recipe": args.recipe, "lr": hp.lr},
            "ratio": ratio, "reached": hit is not None, "quick": args.quick,
        })
    if hit is None:
        print(f"mlmkit did not reach the Trainer's loss {target:.4f} within {args.fraction:.2f} x T_ref "
              f"(final {final['eval_loss']:.4f})")
        print(f"quality-per-time ratio (mlmkit time to the Trainer's {args.minutes:g}-min loss / T_ref): "
              f">{args.fraction:.2f}x")
    else:
        print(f"quality-per-time ratio (mlmkit time to the Trainer's {args.minutes:g}-min loss / T_ref): "
              f"{ratio:.2f}x")


def reused_trainer(args) -> tuple[int, float, float, float]:
    """(steps, T_ref, target loss, s/step) of the last saved Trainer run with these settings."""
    import json

    key = "2_quality_per_time" if args.recipe == "same" else "2b_quality_per_time_recipe"
    rows = json.loads((C.ROOT / "bench" / "results.json").read_text())["benchmarks"]
    for k in (key, "2b_quality_per_time_recipe", "2_quality_per_time"):
        r = rows.get(k)
        if r and (r["minutes"], r["batch"], r["seq"]) == (args.minutes, args.batch, args.seq):
            t = r["trainer"]
            print(f"(the Trainer's run of {r['when']}, from bench/results.json)")
            return t["steps"], t["train_s"], t["held_out_loss"], t["probe_s_per_step"]
    raise SystemExit("no saved Trainer run with these --minutes/--batch/--seq: run without --reuse-trainer")


if __name__ == "__main__":
    main()
