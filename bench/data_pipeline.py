"""Benchmark 6: share of the training step spent waiting for data (goal < 5%).

    python bench/data_pipeline.py [--steps 30] [--quick]

mlmkit's loop pulls each batch from the task in the training process (rows from flat in-memory
token arrays, padding, vectorised masking); this measures the time spent inside that call
(`TimedTask`) against the loop's wall time, in two settings:

- `group_texts`: benchmark 1's setting (BBC News, seq 128, batch 32);
- `line_by_line`: benchmark 4's setting (domain names, batch 128, max_length 32), where steps are
  short and data work is relatively largest.

For reference, the same share for the Trainer (`DataLoader`, 0 workers: dataset row fetch from
Arrow + `DataCollatorForLanguageModeling`), timed by wrapping the dataset and the collator.
The first `--warmup` steps are excluded. The last line is mlmkit's worst share of the two.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import common as C


class TimedRows(torch.utils.data.Dataset):
    """A `datasets.Dataset` seen through a timer, with the columns the Trainer would drop removed."""

    def __init__(self, ds, columns):
        self.ds = ds.select_columns(columns)
        self.seconds: list[float] = []

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        t = time.perf_counter()
        row = self.ds[int(i)]
        self.seconds.append(time.perf_counter() - t)
        return row

    def __getitems__(self, idx):
        t = time.perf_counter()
        rows = self.ds.__getitems__([int(i) for i in idx])
        self.seconds.append(time.perf_counter() - t)
        return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="smoke test: 3 steps, small batches")
    ap.add_argument("--no-reference", action="store_true", help="skip the Trainer's share")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.warmup = 3, 1
    C.setup(args.threads)

    from transformers import DataCollatorForLanguageModeling

    from mlmkit.token_mlm.config import TokenMaskingConfig as MaskingConfig
    from mlmkit.token_mlm.data import group_texts, line_by_line
    from mlmkit.token_mlm.build import make_masker
    from mlmkit.token_mlm.task import TokenMLMTask
    from mlmkit.engine.loop import train

    settings = []
    texts, name = C.english_texts(2000 if args.quick else None)
    tok = C.get_tokenizer(texts, name)
    B1, T1 = (8, 64) if args.quick else (32, 128)
    settings.append(("group_texts", tok, group_texts(texts, tok, T1, progress=False),
                     lambda: C.reference_dataset(texts, tok, T1, "group_texts"), B1))
    dom = C.domain_texts(5000 if args.quick else None)
    dtok = C.get_tokenizer(dom, "domains")
    B2 = 32 if args.quick else 128
    settings.append(("line_by_line", dtok, line_by_line(dom, dtok, 32, progress=False),
                     lambda: C.reference_dataset(dom, dtok, 32, "line_by_line"), B2))

    hp = C.Hparams()
    n = args.warmup + args.steps
    results = {}
    for label, tk, seqs, ref_fn, B in settings:
        # mlmkit: time spent producing each batch inside the training loop
        task = C.TimedTask(TokenMLMTask(C.build_bert(tk), tk, seqs, None, make_masker(tk, MaskingConfig()),
                                        batch_size=B, seed=0))
        with C.tempdir("mlmkit-data-") as d:
            tc, oc = C.mlmkit_configs(d, steps=n, batch_size=B, hp=hp)
            train(task, tc, oc, save_final=False, log=lambda s: None)
            times, _ = C.mlmkit_step_times(d)
        w = args.warmup
        loop_s = times[-1] - times[w - 1]
        data_s = sum(task.seconds[w:n])  # batch i (0-based) is fetched at the start of step i+1
        share = data_s / loop_s
        res = {"mlmkit": {"share": share, "data_ms_per_step": 1000 * data_s / args.steps,
                          "step_ms": 1000 * loop_s / args.steps}}
        print(f"{label:13s} mlmkit: {res['mlmkit']['data_ms_per_step']:.1f} ms data of "
              f"{res['mlmkit']['step_ms']:.0f} ms/step = {share:.2%} waiting for data")

        if not args.no_reference:
            ds = ref_fn()
            rows = TimedRows(ds, ["input_ids", "attention_mask"])
            inner = DataCollatorForLanguageModeling(tk, mlm_probability=0.15)
            coll_s: list[float] = []

            def collator(ex, _inner=inner, _acc=coll_s):
                t = time.perf_counter()
                out = _inner(ex)
                _acc.append(time.perf_counter() - t)
                return out

            with C.tempdir("hf-data-") as d:
                _, clock = C.run_trainer(C.build_bert(tk), tk, rows, steps=n, batch_size=B, hp=hp, out_dir=d,
                                         collator=collator)
            loop = clock.times[-1] - clock.times[w - 1]
            fetch = rows.seconds if len(rows.seconds) <= len(coll_s) else rows.seconds[: len(coll_s)]
            # the DataLoader may fetch one batch ahead; take the batches of the timed steps
            d_s = sum(fetch[w:n]) + sum(coll_s[w:n])
            res["trainer"] = {"share": d_s / loop, "data_ms_per_step": 1000 * d_s / args.steps,
                              "step_ms": 1000 * loop / args.steps}
            print(f"{label:13s} Trainer: {res['trainer']['data_ms_per_step']:.1f} ms data of "
                  f"{res['trainer']['step_ms']:.0f} ms/step = {res['trainer']['share']:.2%} waiting for data")
        results[label] = res

    worst = max(r["mlmkit"]["share"] for r in results.values())
    if not args.no_save:
        C.save_result("6_data_pipeline", {"steps": args.steps, "settings": results, "worst_share": worst,
                                          "quick": args.quick})
    print(f"data-wait share of step time, mlmkit (worst setting; goal < 5%): {worst:.2%}")


if __name__ == "__main__":
    main()
