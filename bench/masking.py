"""Benchmark 3: masking / collation throughput on one core, mlmkit vs transformers.

    python bench/masking.py [--rounds 5] [--batches 50] [--quick]

Both sides turn stored examples into a padded, masked batch (batch 32 x 128, `group_texts` on
English text), single-threaded:

- mlmkit: `TokenMLMTask.collate` (rows out of the flat token array -> padded ids -> `TokenMasker`,
  which also returns the masked positions for the sparse loss).
- reference: `DataCollatorForLanguageModeling` (transformers 5: whole-word masking is the
  `whole_word_mask=True` argument; it needs the tokenizer's offset mapping in the examples), fed
  what `run_mlm.py` + `Trainer` feed it: lists of ids per example. For plain masking the Trainer
  drops the `special_tokens_mask` column (not an argument of the model's forward), so the collator
  recomputes it per row ("as Trainer feeds it"); we also time it with the column kept ("with
  special_tokens_mask"); the headline ratio uses whichever of the two is faster. Dataset row
  fetching is excluded on both sides (the reference rows are pre-extracted Python lists).

Tokens/s = non-padding tokens per second. Rounds alternate the variants. The last line is the
whole-word-masking ratio; the plain ratio is printed just above it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import common as C


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batches", type=int, default=50, help="batches per timed run")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--max-records", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 round of 3 batches")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.batches = 1, 3
        args.max_records = args.max_records or 1000
    C.setup(1)

    from transformers import DataCollatorForLanguageModeling

    from mlmkit.token_mlm.config import TokenMaskingConfig as MaskingConfig
    from mlmkit.token_mlm.data import group_texts
    from mlmkit.token_mlm.build import make_masker
    from mlmkit.token_mlm.task import TokenMLMTask

    texts, data_name = C.english_texts(args.max_records)
    tok = C.get_tokenizer(texts, data_name)
    B, T = args.batch, args.seq
    seqs = group_texts(texts, tok, T, word_ids=True, progress=False)
    ref = C.reference_dataset(texts, tok, T, "group_texts", offsets=True)
    n_rows = min(len(seqs) - 1, len(ref), 4096)  # (mlmkit's last chunk may be short: not used)
    rng = np.random.default_rng(0)
    batches = [rng.choice(n_rows, size=B, replace=False) for _ in range(args.batches)]
    rows = ref.select(range(n_rows)).to_list()
    trainer_fed = [{"input_ids": r["input_ids"], "attention_mask": r["attention_mask"]} for r in rows]
    best_case = [{"input_ids": r["input_ids"], "attention_mask": r["attention_mask"],
                  "special_tokens_mask": r["special_tokens_mask"]} for r in rows]
    wwm_fed = [{k: r[k] for k in ("input_ids", "attention_mask", "special_tokens_mask", "offset_mapping")}
               for r in rows]

    plain_task = TokenMLMTask(None, tok, seqs, None, make_masker(tok, MaskingConfig()), batch_size=B)
    wwm_task = TokenMLMTask(None, tok, seqs, None, make_masker(tok, MaskingConfig(whole_word=True)), batch_size=B)
    coll = DataCollatorForLanguageModeling(tok, mlm_probability=0.15, seed=0)
    coll_wwm = DataCollatorForLanguageModeling(tok, mlm_probability=0.15, whole_word_mask=True, seed=0)
    g = torch.Generator().manual_seed(0)

    def tokens_of(idx) -> int:
        return int(sum(seqs.offsets[i + 1] - seqs.offsets[i] for i in idx))

    total_tokens = sum(tokens_of(b) for b in batches)

    def timed(fn) -> float:
        t = time.perf_counter()
        for b in batches:
            fn(b)
        return total_tokens / (time.perf_counter() - t)

    def ref_tokens_check():
        # group_texts rows of both sides are full-length, so token counts agree
        return sum(sum(trainer_fed[i]["attention_mask"]) for i in batches[0])

    variants = {
        "mlmkit_plain": lambda: timed(lambda b: plain_task.collate(seqs, b, g)),
        "hf_plain_trainer_fed": lambda: timed(lambda b: coll([trainer_fed[i] for i in b])),
        "hf_plain_with_special_mask": lambda: timed(lambda b: coll([best_case[i] for i in b])),
        "mlmkit_wwm": lambda: timed(lambda b: wwm_task.collate(seqs, b, g)),
        "hf_wwm": lambda: timed(lambda b: coll_wwm([wwm_fed[i] for i in b])),
    }
    for fn in variants.values():  # warm-up
        fn()
    runs = C.rounds_alternating(args.rounds, {k: (lambda r, f=f: f()) for k, f in variants.items()})
    med = {k: C.med(v) for k, v in runs.items()}
    for k, v in runs.items():
        print(f"{k:22s} {C.spread(v)} tokens/s")
    # Headline: against the faster of the two ways of feeding the collator (conservative).
    plain = med["mlmkit_plain"] / max(med["hf_plain_with_special_mask"], med["hf_plain_trainer_fed"])
    plain_tf = med["mlmkit_plain"] / med["hf_plain_trainer_fed"]
    wwm = med["mlmkit_wwm"] / med["hf_wwm"]
    if not args.no_save:
        C.save_result("3_masking", {
            "data": data_name, "batch": B, "seq": T, "threads": 1, "rounds": args.rounds,
            "batches_per_run": args.batches, "tokens_per_s": med, "tokens_per_s_all": runs,
            "ratio_plain": plain, "ratio_plain_trainer_fed": plain_tf, "ratio_wwm": wwm, "quick": args.quick,
            "check_tokens_first_batch": int(ref_tokens_check()),
        })
    print(f"plain masking ratio mlmkit/DataCollatorForLanguageModeling: {plain:.1f}x "
          f"(vs the collator as Trainer feeds it: {plain_tf:.1f}x)")
    print(f"whole-word masking ratio mlmkit/DataCollatorForLanguageModeling(whole_word_mask=True): {wwm:.1f}x")


if __name__ == "__main__":
    main()
