"""Bidirectional character n-gram baseline for masked-character prediction on domain names.

    python bench/ngram_baseline.py [--data mlmkit:samples/domains.txt] [--orders 3,4,5,6,7,8] [--model-dir RUN/model]

Trains two interpolated Witten-Bell character n-gram models on the *training* split (every valid
name that is not held out by the hash split):

* left model   P_L(c | the k characters before c)
* right model  P_R(c | d, the k characters after the gap)   (d = distance from c to the first
  known character on the right, 1..max_span, so characters inside a span are handled too)

and predicts a masked character by the product of experts  P(c) ∝ P_L(c|left) P_R(c|right) / P(c).
It is scored on exactly the held-out names and masks that `mlmkit eval` uses (same
`CharDataConfig` split, same seeds, batch size 256), with the same information as the
autoregressive head: the gold characters earlier in the *same* span are known (teacher forcing),
characters of other masked spans are not (contexts stop at them). Prints masked-character
accuracy and bits per character for every order, then the best accuracy and the best bits/char
over the orders -- each order's best, so the baseline is never under-sold. `--model-dir` takes
the data/masking config of a saved run and prints that model's numbers beside the baseline.

Everything is reported twice: over all predicted characters (what `mlmkit eval` reports), and over
the characters of MASK-replaced spans only. CANINE-C leaves 10% of the spans unchanged; the model
sees those characters in its input and learns to copy them, the n-gram does not use them, so the
MASK-only numbers are the like-for-like comparison.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict

import torch

from mlmkit.char_mlm.config import CharDataConfig, CharMaskingConfig
from mlmkit.char_mlm.data import Alphabet, DomainFilter, DomainSource, is_validation
from mlmkit.char_mlm.evaluate import evaluate_char_model
from mlmkit.char_mlm.heads import span_loss
from mlmkit.char_mlm.model import load_char_model
from mlmkit.char_mlm.task import CharMLMTask

BOS, EOS = "\x02", "\x03"


class WittenBell:
    """Interpolated Witten-Bell estimates P(c | context) for contexts up to `order` - 1 chars."""

    def __init__(self, vocab: list[str]):
        self.vocab = vocab
        self.counts: dict = defaultdict(lambda: defaultdict(int))

    def add(self, contexts: list, c: str) -> None:
        for h in contexts:  # from the empty context to the longest
            self.counts[h][c] += 1

    def prob_all(self, contexts: list) -> dict[str, float]:
        V = len(self.vocab)
        p = {c: 1.0 / V for c in self.vocab}
        for h in contexts:
            cnt = self.counts.get(h)
            if not cnt:
                break
            total = sum(cnt.values())
            types = len(cnt)
            lam = total / (total + types)
            p = {c: lam * cnt.get(c, 0) / total + (1 - lam) * p[c] for c in self.vocab}
        return p


def left_contexts(known: str, order: int) -> list:
    return [("L", known[len(known) - k:] if k else "") for k in range(order)]


def right_contexts(known: str, d: int, order: int) -> list:
    return [("R", d, known[:k]) for k in range(order)]


def train(names, order: int, max_span: int, vocab: list[str]):
    L, R = WittenBell(vocab), WittenBell(vocab)
    for n in names:
        s = BOS * (order - 1) + n + EOS * (order - 1)
        off = order - 1
        for i in range(off, off + len(n)):
            c = s[i]
            L.add(left_contexts(s[i - order + 1: i], order), c)
            for d in range(1, max_span + 1):
                if i + d <= len(s):
                    R.add(right_contexts(s[i + d: i + d + order - 1], d, order), c)
    return L, R


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="mlmkit:samples/domains.txt", help="training data (when no --model-dir)")
    ap.add_argument("--orders", default="3,4,5,6,7,8",
                    help="n-gram orders to score (one model of the largest order is trained; lower "
                         "orders use its shorter contexts)")
    ap.add_argument("--model-dir", default=None, help="a saved char model: use its data/masking config")
    ap.add_argument("--eval-size", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--holdout-key", default=None, choices=["name", "domain"],
                    help="override data.holdout_key (default: the config's, 'name')")
    args = ap.parse_args()
    t0 = time.time()
    if args.model_dir:
        bundle = load_char_model(args.model_dir)
        dcfg, mcfg = bundle.data, bundle.masking
    else:
        bundle = None
        dcfg, mcfg = CharDataConfig(train=[args.data]), CharMaskingConfig()
    if args.eval_size:
        dcfg = dataclasses_replace(dcfg, max_eval_samples=args.eval_size)
    if args.holdout_key:
        dcfg = dataclasses_replace(dcfg, holdout_key=args.holdout_key)
    # the held-out names exactly as `mlmkit eval` picks them
    task = CharMLMTask(dataclasses_replace(dcfg, max_samples=None, alphabet=None), None, mcfg,
                       batch_size=256, seed=args.seed, build_model=False,
                       alphabet=bundle.alphabet if bundle else None)
    eval_names = task.eval_domains
    # training split
    src = DomainSource(dcfg.train, dataclasses_replace(dcfg, on_bad_record="skip"))
    ctx = src.ctx()
    train_names = []
    for d in DomainFilter(dcfg.idn, dcfg.max_length).filter(src.iter_records(ctx), ctx):
        if not is_validation(d, dcfg.validation_fraction, dcfg.holdout_key):
            train_names.append(d)
            if dcfg.max_samples and len(train_names) >= dcfg.max_samples:
                break
    alpha = task.alphabet
    vocab = list(alpha.chars)
    orders = sorted({int(o) for o in args.orders.split(",")})
    order = orders[-1]
    Lm, Rm = train(train_names, order, mcfg.max_span, vocab)
    uni = Lm.prob_all([("L", "")])
    t_train = time.time() - t0

    # every count is kept twice: over all predicted characters ("all") and over the characters of
    # MASK-replaced spans only ("mask"): the 10% of spans left unchanged show their characters
    # to the model, which copies them, while the n-gram treats them as unknown.
    n = {"all": 0, "mask": 0}
    correct = {k: {o: 0 for o in orders} for k in n}
    bits = {k: {o: 0.0 for o in orders} for k in n}
    model_stats = {k: [0, 0.0] for k in n}  # correct, bits
    bs = 256
    task.eval_batch_size = bs
    for i, b in zip(range(0, len(eval_names), bs), task.eval_batches()):  # the masks `mlmkit eval` scores
        names = eval_names[i: i + bs]
        replaced = (b["input_idx"][b["spans"][:, 0], b["spans"][:, 1]] == Alphabet.MASK).tolist()
        if bundle is not None:
            model_stats_add(bundle, b, replaced, model_stats)
        masked = torch.zeros_like(b["attention_mask"], dtype=torch.bool)
        for row, start, length in b["spans"].tolist():
            masked[row, start: start + length] = True
        for s_i, (row, start, length) in enumerate(b["spans"].tolist()):
            name = names[row]
            kinds = ("all", "mask") if replaced[s_i] else ("all",)
            known_mask = ~masked[row, 1: len(name) + 1]
            # right context: known characters after the span, up to the next masked one
            j = start - 1 + length
            right = ""
            while j < len(name) and known_mask[j] and len(right) < order - 1:
                right += name[j]
                j += 1
            if j >= len(name) and len(right) < order - 1:
                right += EOS * (order - 1 - len(right))
            for t in range(length):
                pos = start - 1 + t  # index in `name`
                # left context: same-span gold characters + known characters before the span
                k = pos
                left = ""
                while k > 0 and len(left) < order - 1 and (known_mask[k - 1] or k - 1 >= start - 1):
                    left = name[k - 1] + left
                    k -= 1
                if k == 0 and len(left) < order - 1:
                    left = BOS * (order - 1 - len(left)) + left
                d = length - t
                gold = name[pos]
                lc, rc = left_contexts(left, order), right_contexts(right, d, order)
                for o in orders:  # an order-o model uses contexts of at most o - 1 characters
                    pl = Lm.prob_all(lc[:o])
                    pr = Rm.prob_all(rc[:o])
                    score = {c: pl[c] * pr[c] / max(uni[c], 1e-12) for c in vocab}
                    z = sum(score.values())
                    p_gold = score.get(gold, 0.0) / z if z > 0 else 0.0
                    hit = int(max(score, key=score.get) == gold)
                    for k in kinds:
                        bits[k][o] += -math.log2(max(p_gold, 1e-12))
                        correct[k][o] += hit
                for k in kinds:
                    n[k] += 1
    print(f"train names {len(train_names):,}, held-out names {len(eval_names):,}, masked chars {n['all']:,} "
          f"({n['mask']:,} in MASK-replaced spans), split by {dcfg.holdout_key}, {time.time() - t0:.1f}s "
          f"(train {t_train:.1f}s)")
    for k, what in (("all", "all predicted characters"), ("mask", "MASK-replaced characters only")):
        N = max(n[k], 1)
        print(f"{what}:")
        for o in orders:
            print(f"  n-gram order {o}: accuracy {correct[k][o] / N:.4f}  bits/char {bits[k][o] / N:.3f}")
        if bundle is not None:
            print(f"  model ({args.model_dir}): accuracy {model_stats[k][0] / N:.4f}  bits/char {model_stats[k][1] / N:.3f}")
    if bundle is not None:
        m = evaluate_char_model(bundle, None, batch_size=256)
        print(f"model, `mlmkit eval` ({args.model_dir}): masked-char accuracy {m['eval_accuracy']:.4f}  "
              f"bits/char {m['eval_bits_per_char']:.3f}  span exact match {m['eval_span_exact_match']:.4f}  "
              f"(masked chars {m['eval_targets']:,})")
    for k in ("all", "mask"):
        best_bpc = min(orders, key=lambda o: bits[k][o])
        best_acc = max(orders, key=lambda o: correct[k][o])
        N = max(n[k], 1)
        line = (f"n-gram baseline, {'all' if k == 'all' else 'MASK-replaced'} characters (best bits/char: order "
                f"{best_bpc}; best accuracy: order {best_acc}): accuracy {correct[k][best_acc] / N:.4f}  "
                f"bits/char {bits[k][best_bpc] / N:.3f}")
        if bundle is not None:
            line += f"; model: accuracy {model_stats[k][0] / N:.4f}  bits/char {model_stats[k][1] / N:.3f}"
        print(line)


@torch.no_grad()
def model_stats_add(bundle, b, replaced: list, stats: dict) -> None:
    """Teacher-forced model accuracy and bits on batch `b` (the training loss, `span_loss`), split
    like the n-gram counts."""
    model = bundle.model.eval()
    hidden = model.encode(b["input_ids"], b["input_idx"], b["attention_mask"])
    logits = model.head(hidden, b["spans"], b["targets"], b["input_idx"])
    rep = torch.tensor(replaced, dtype=torch.bool)
    for k, sel in (("all", torch.ones_like(rep)), ("mask", rep)):
        _, _, loss_sum, correct = span_loss(logits[sel], b["targets"][sel])
        stats[k][0] += int(correct)
        stats[k][1] += float(loss_sum) / math.log(2)


def dataclasses_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


if __name__ == "__main__":
    main()
