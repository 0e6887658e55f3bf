"""The simple baseline a pre-trained character encoder must beat downstream: character n-gram
TF-IDF + logistic regression, on exactly the split and the few-label samples of `char_downstream.py`.

    python bench/tfidf_baseline.py [--task free-vs-disposable|academic-vs-free] [--seeds 0,1,2]
        [--train-sizes 300,1000,all] [--analyzers char_wb,char] [--grid 0.1,0.3,1,3,10,30,100,300,1000]

Names, labels and sets come from `char_tasks.py` (`labelled_names(task)`, `split(rows, seed, n)`:
`mlmkit.finetune`'s hash split and its seeded `max_train_samples` sample), so seed s with N labels
is the training set `char_downstream.py --train-size N` fine-tunes seed s on, and validation and
test are the same names. For each run: a `TfidfVectorizer` of character 1-5-grams fitted on the
labelled training names only (``char_wb``: n-grams inside the name padded with a space at each
end, so the start and the end of the name are marked; ``char``: no padding), a
`LogisticRegression` (L2, lbfgs) for each C of the grid, and the C of best validation accuracy
(ties: the smallest C). The analyzer is chosen once per task, by mean validation accuracy over
all runs (`--analyzers` with one name to fix it); the test split is scored only for the chosen
one. Accuracy and macro-F1 are `mlmkit.finetune`'s (`classification_metrics`). With all labels
every seed trains on the same names and the fit is deterministic, so its spread is 0. The last
column is a floor with no model: each TLD's majority label in the same training sample.

Needs scikit-learn (``pip install -e ".[bench]"``). Takes seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import char_tasks  # noqa: E402
from mlmkit.finetune.sequence_task import classification_metrics  # noqa: E402

try:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
except ImportError:  # pragma: no cover - depends on the environment
    TfidfVectorizer = LogisticRegression = None

ANALYZERS = ("char_wb", "char")
GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
NGRAMS = (1, 5)


def require_sklearn() -> None:
    if TfidfVectorizer is None:
        raise SystemExit('tfidf_baseline.py needs scikit-learn: pip install -e ".[bench]"')


@dataclass
class Fit:
    analyzer: str
    C: float
    val: dict  # classification_metrics on validation
    model: object = field(repr=False, default=None)
    vectorizer: object = field(repr=False, default=None)
    labels: list = field(repr=False, default_factory=list)

    def predict(self, texts: list[str]) -> list[str]:
        return [self.labels[i] for i in self.model.predict(self.vectorizer.transform(texts))]

    def score(self, examples) -> dict:
        lab = {l: i for i, l in enumerate(self.labels)}
        pred = self.predict([e.text for e in examples])
        return classification_metrics([lab[e.label] for e in examples], [lab[p] for p in pred], len(self.labels))


def fit(train, val, analyzer: str, grid=GRID, ngrams=NGRAMS) -> Fit:
    """TF-IDF fitted on the training names, one logistic regression per C, the best on validation
    accuracy (ties: the smallest C)."""
    require_sklearn()
    labels = sorted({e.label for e in train} | {e.label for e in val})
    lab = {l: i for i, l in enumerate(labels)}
    vec = TfidfVectorizer(analyzer=analyzer, ngram_range=ngrams, lowercase=False)
    x_train = vec.fit_transform([e.text for e in train])
    x_val = vec.transform([e.text for e in val])
    y_train, y_val = [lab[e.label] for e in train], [lab[e.label] for e in val]
    best = None
    for C in sorted(grid):
        model = LogisticRegression(C=C, max_iter=5000).fit(x_train, y_train)
        m = classification_metrics(y_val, model.predict(x_val).tolist(), len(labels))
        if best is None or m["accuracy"] > best.val["accuracy"]:
            best = Fit(analyzer, C, m, model, vec, labels)
    return best


def tld_rule(train, examples) -> float:
    """Accuracy of the last label alone: each TLD's majority label in `train` (the overall
    majority for a TLD not in it). A floor for both systems: much of the signal is the TLD."""
    from collections import Counter

    by_tld: dict[str, Counter] = {}
    for e in train:
        by_tld.setdefault(e.text.rsplit(".", 1)[-1], Counter())[e.label] += 1
    overall = Counter(e.label for e in train).most_common(1)[0][0]
    hits = sum((by_tld[t].most_common(1)[0][0] if (t := e.text.rsplit(".", 1)[-1]) in by_tld else overall) == e.label
               for e in examples)
    return hits / len(examples)


def parse_sizes(spec: str) -> list[int | None]:
    return [None if s.strip() == "all" else int(s) for s in spec.split(",")]


def run(rows, seeds: list[int], sizes: list[int | None], analyzers=ANALYZERS, grid=GRID, log=print) -> dict:
    """{(analyzer, size, seed): Fit} on `char_tasks.split(rows, seed, size)`; identical training
    sets (all labels, any seed) are fitted once."""
    fits, done = {}, {}
    for size in sizes:
        for seed in seeds:
            train, val, _ = char_tasks.split(rows, seed, size)
            key = tuple(e.text for e in train)
            for a in analyzers:
                if (a, key) not in done:
                    done[(a, key)] = fit(train, val, a, grid)
                fits[(a, size, seed)] = done[(a, key)]
    return fits


def choose_analyzer(fits: dict, analyzers) -> tuple[str, dict[str, float]]:
    """The analyzer of best mean validation accuracy over all runs (ties: the first listed)."""
    means = {a: statistics.mean(f.val["accuracy"] for (an, _, _), f in fits.items() if an == a) for a in analyzers}
    return max(analyzers, key=lambda a: (means[a], -analyzers.index(a))), means


def pm(vals: list[float]) -> str:
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.3f} ± {sd:.3f}"


def size_name(size, n_train: int) -> str:
    return f"{size:,}" if size is not None and size < n_train else f"{n_train:,} (all)"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default=char_tasks.DEFAULT_TASK, choices=sorted(char_tasks.TASKS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--train-sizes", default="300,1000,all", help="labelled training names per run; 'all': the whole training split")
    ap.add_argument("--analyzers", default=",".join(ANALYZERS))
    ap.add_argument("--grid", default=",".join(f"{c:g}" for c in GRID), help="values of C tried on validation")
    args = ap.parse_args(argv)
    require_sklearn()
    seeds = [int(s) for s in args.seeds.split(",")]
    sizes = parse_sizes(args.train_sizes)
    analyzers = tuple(a.strip() for a in args.analyzers.split(","))
    grid = tuple(float(c) for c in args.grid.split(","))

    rows = char_tasks.labelled_names(args.task)
    full_train, val, test = char_tasks.split(rows, 0, None)
    majority = max(sum(1 for e in test if e.label == l) for l in {e.label for e in test}) / len(test)
    print(f"{args.task}: {char_tasks.describe(rows)}, none in the pre-training lists; split {len(full_train):,} "
          f"train / {len(val):,} validation / {len(test):,} test (majority class: {majority:.3f} of test)")
    print(f"TF-IDF of character {NGRAMS[0]}-{NGRAMS[1]}-grams + logistic regression, C from "
          f"{{{', '.join(f'{c:g}' for c in grid)}}} on validation; seeds {args.seeds}")

    fits = run(rows, seeds, sizes, analyzers, grid)
    chosen, means = choose_analyzer(fits, analyzers)
    n_train = len(full_train)

    print("\nValidation accuracy (best C per run), to choose the analyzer:\n")
    print("| analyzer | labelled names | validation accuracy per seed | mean |\n|---|---|---|---|")
    for a in analyzers:
        for size in sizes:
            v = [fits[(a, size, s)].val["accuracy"] for s in seeds]
            print(f"| `{a}` | {size_name(size, n_train)} | {' / '.join(f'{x:.3f}' for x in v)} | {statistics.mean(v):.3f} |")
    print(f"\nMean over all runs: {', '.join(f'`{a}` {m:.4f}' for a, m in means.items())}: `{chosen}` is used below.")

    print(f"\nTest ({args.task}, `{chosen}`, C chosen on validation):\n")
    print("| labelled names | C per seed | test accuracy per seed | accuracy mean ± sd | macro-F1 per seed | "
          "macro-F1 mean ± sd | TLD alone, mean |")
    print("|---|---|---|---|---|---|---|")
    for size in sizes:
        fs = [fits[(chosen, size, s)] for s in seeds]
        tm = [f.score(test) for f in fs]
        acc, f1 = [m["accuracy"] for m in tm], [m["macro_f1"] for m in tm]
        tld = statistics.mean(tld_rule(char_tasks.split(rows, s, size)[0], test) for s in seeds)
        print(f"| {size_name(size, n_train)} | {' / '.join(f'{f.C:g}' for f in fs)} | "
              f"{' / '.join(f'{x:.3f}' for x in acc)} | {pm(acc)} | {' / '.join(f'{x:.3f}' for x in f1)} | {pm(f1)} | "
              f"{tld:.3f} |")
    print("\n(TLD alone: each TLD's majority label in the same training sample; no model.)")


if __name__ == "__main__":
    main()
