"""What a pre-trained character model knows that character n-grams do not: logistic regressions
(C chosen on validation, as `tfidf_baseline.py` chooses it) over frozen features of the model, over
the TF-IDF of character 1-5-grams, and over both, on a task of `char_tasks.py` with the same
splits and few-label samples as `char_downstream.py` and `tfidf_baseline.py`.

    python bench/char_probe.py --model-dir RUN/model [--task free-vs-disposable] [--sizes 300,1000,all]

Features: ``states``, the encoder's mean-pooled states (standardised); ``likelihood``, the model's
pseudo-log-likelihood of the name (`portable.pseudo_log_likelihood`: each character read with
only itself hidden), its sum and its mean per character; ``tfidf``. Needs scikit-learn (the
bench extra). Prints one markdown table of test accuracy, mean ± sd over the seeds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

COMBOS = ("tfidf", "states", "states+likelihood", "tfidf+states", "tfidf+likelihood", "tfidf+states+likelihood")


def model_features(model_dir: str, names: list[str], batch: int = 512) -> tuple[dict, dict]:
    """({name: pooled state}, {name: [mean, sum] pseudo-log-likelihood}) of the frozen model."""
    import numpy as np
    import torch

    from mlmkit.char_mlm.model import load_char_model
    from mlmkit.char_mlm.portable import _encode, pseudo_log_likelihood

    bundle = load_char_model(model_dir)
    model, chars, cut = bundle.model.eval(), "".join(bundle.alphabet.chars), bundle.data.max_length
    short = [n[:cut] for n in names]
    states = {}
    with torch.no_grad():
        for i in range(0, len(names), batch):
            group = short[i: i + batch]
            cps, idx, att, _ = _encode(group, [[False] * len(n) for n in group], chars)
            h, w = model.encode(cps, idx, att), att[..., None].float()
            for name, v in zip(names[i: i + batch], ((h * w).sum(1) / w.sum(1)).numpy()):
                states[name] = v
    pll = pseudo_log_likelihood(model, chars, short, [list(range(len(n))) for n in short])
    return states, {n: np.array([p / len(s), p]) for n, s, p in zip(names, short, pll)}


def probe(rows, states: dict, likelihood: dict, sizes, seeds, grid) -> dict:
    """{(combo, size): [test accuracy per seed]}."""
    import numpy as np
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    import char_tasks

    out: dict = {}
    for size in sizes:
        for seed in seeds:
            train, val, test = char_tasks.split(rows, seed, size)
            labels = sorted({e.label for e in train})
            y = {id(part): np.array([labels.index(e.label) for e in part]) for part in (train, val, test)}
            vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 5), lowercase=False).fit([e.text for e in train])
            scale_s = StandardScaler().fit(np.stack([states[e.text] for e in train]))
            scale_l = StandardScaler().fit(np.stack([likelihood[e.text] for e in train]))
            for combo in COMBOS:
                shrink = 0.1 if "tfidf" in combo else 1.0  # the states beside TF-IDF rows, whose norm is 1
                blocks = {"tfidf": lambda part: vec.transform([e.text for e in part]),
                          "states": lambda part: csr_matrix(scale_s.transform(np.stack([states[e.text] for e in part]))
                                                            * shrink),
                          "likelihood": lambda part: csr_matrix(
                              scale_l.transform(np.stack([likelihood[e.text] for e in part])))}
                feats = {id(part): hstack([blocks[b](part) for b in combo.split("+")]).tocsr() for part in (train, val, test)}
                best = max((LogisticRegression(C=C, max_iter=5000).fit(feats[id(train)], y[id(train)]) for C in grid),
                           key=lambda m: (m.predict(feats[id(val)]) == y[id(val)]).mean())
                out.setdefault((combo, size), []).append(float((best.predict(feats[id(test)]) == y[id(test)]).mean()))
    return out


def main(argv: list[str] | None = None) -> None:
    import char_tasks
    import tfidf_baseline as tb

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--task", default=char_tasks.DEFAULT_TASK, choices=sorted(char_tasks.TASKS))
    ap.add_argument("--sizes", default="300,1000,all")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    tb.require_sklearn()
    import torch

    torch.set_num_threads(args.threads)
    rows = char_tasks.labelled_names(args.task)
    states, likelihood = model_features(args.model_dir, [d for d, _ in rows])
    sizes, seeds = tb.parse_sizes(args.sizes), [int(s) for s in args.seeds.split(",")]
    res = probe(rows, states, likelihood, sizes, seeds, tb.GRID)
    print(f"\n{args.task}: test accuracy, mean ± sd over seeds {args.seeds}\n")
    print("| features | " + " | ".join(str(s or "all") for s in sizes) + " |\n|---|" + "---|" * len(sizes))
    for combo in COMBOS:
        print(f"| {combo} | " + " | ".join(f"{statistics.mean(res[(combo, s)]):.3f} ± "
                                           f"{statistics.stdev(res[(combo, s)]) if len(seeds) > 1 else 0.0:.3f}"
                                           for s in sizes) + " |")


if __name__ == "__main__":
    main()
