"""Time per training step of the character encoder alone vs. encoder + span head.

    python bench/char_head_overhead.py [--size tiny] [--batch 128] [--steps 20] [--head-kind gru]
    python bench/char_head_overhead.py --preset domains-tiny     # the preset's model and batch size

"Encoder alone" = forward + backward of the encoder with a trivial loss on the masked positions'
states; "with head" = the real training step (encoder + autoregressive span head + cross-entropy).
Both on the same masked batches of the bundled sample, after warm-up, interleaved to cancel drift
from other load on the machine. Prints characters/s and, as the last line, the overhead ratio
(with head / encoder alone); the goal is <= 1.30.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mlmkit.char_mlm.config import CharDataConfig, CharMaskingConfig, CharModelConfig
from mlmkit.char_mlm.task import CharMLMTask


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--encoder", default="scratch", choices=["scratch", "canine"])
    ap.add_argument("--rate", type=int, default=1, help="downsampling rate of the scratch encoder")
    ap.add_argument("--head", default="autoregressive", choices=["autoregressive", "parallel"])
    ap.add_argument("--head-kind", default="gru", choices=["gru", "transformer"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--preset", default=None,
                    help="take the model section and batch size of a char preset (e.g. domains-tiny, with its "
                         "n-gram tables and head memory); --size/--rate/--head/--head-kind/--batch are then ignored")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.preset:
        from mlmkit.config import load_preset
        from mlmkit.families import build_config

        cfg = build_config(load_preset(args.preset))
        model_cfg, args.batch = cfg.model, cfg.train.batch_size
        args.encoder, args.size, args.rate = model_cfg.arch, model_cfg.size, model_cfg.downsampling_rate
        args.head, args.head_kind = model_cfg.head, model_cfg.head_kind
    else:
        model_cfg = CharModelConfig(arch=args.encoder, size=args.size, downsampling_rate=args.rate,
                                    head=args.head, head_kind=args.head_kind, dropout=0.0)
    data = CharDataConfig(train=["mlmkit:samples/domains.txt"], max_eval_samples=0, validation_fraction=0.01)
    task = CharMLMTask(data, model_cfg, CharMaskingConfig(), batch_size=args.batch, seed=0)
    model = task.model.train()
    it = task.train_batches(0)
    batches = [next(it) for _ in range(args.steps)]

    def enc_step(b):
        h = model.encode(b["input_ids"], b["input_idx"], b["attention_mask"])
        m = (b["input_idx"] == 3).unsqueeze(-1)
        (h * m).sum().backward()

    def full_step(b):
        task.forward(model, b).loss.backward()

    for b in batches[:3]:
        enc_step(b)
        full_step(b)
    t_enc, t_full = [], []
    for b in batches:
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        enc_step(b)
        t1 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        full_step(b)
        t2 = time.perf_counter()
        t_enc.append(t1 - t0)
        t_full.append(t2 - t1)
    chars = statistics.mean(int(b["attention_mask"].sum()) for b in batches)
    e, f = statistics.median(t_enc), statistics.median(t_full)
    n_enc = sum(p.numel() for p in model.encoder.parameters())
    n_head = sum(p.numel() for p in model.head.parameters())
    print(f"encoder {args.encoder}/{args.size} r={args.rate} ({n_enc:,} params), head {args.head}/{args.head_kind} "
          f"({n_head:,} params), batch {args.batch}, threads {torch.get_num_threads()}"
          + (f", preset {args.preset}" if args.preset else ""))
    print(f"encoder fwd+bwd:        {e * 1000:8.1f} ms/step  {chars / e:10,.0f} chars/s")
    print(f"encoder + head fwd+bwd: {f * 1000:8.1f} ms/step  {chars / f:10,.0f} chars/s")
    print(f"head overhead ratio: {f / e:.3f}")


if __name__ == "__main__":
    main()
