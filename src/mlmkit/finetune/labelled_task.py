"""What the two fine-tuning tasks share: the engine-task base (`LabelledTask`: the classifier, the
prepared splits, a seeded epoch order, evaluation batches, saving), macro-F1 over a confusion
matrix, and `Prepared`, a run ready to train."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from ..engine.task import Batch, TaskBase
from ..family_protocol import Classifier


@dataclass
class Prepared:
    """A fine-tuning run ready to train: what `finetune` needs from either task."""

    clf: Classifier
    task: Any  # the engine task (ClassificationTask, TokenClassificationTask); .with_evaluation(test)
    test: Optional[tuple]  # the test split as the task's evaluation data, or None
    labels: list[str]
    sizes: dict  # examples (sentences) per split
    best_metric: str  # what early stopping and the restored weights follow


def macro_f1(confusion: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes that occur (rows: true, columns: predicted)."""
    f1s = []
    for c in range(confusion.shape[0]):
        if confusion[c].sum() == 0:
            continue
        tp = confusion[c, c]
        fp = confusion[:, c].sum() - tp
        fn = confusion[c].sum() - tp
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


class LabelledTask(TaskBase):
    """What the fine-tuning tasks share: the classifier, the prepared splits, a seeded epoch order
    (a pure function of seed and epoch, so resume starts at any batch), length-sorted evaluation
    batches, and saving. Subclasses say what a batch's labels are and how they are scored."""

    def __init__(self, clf: Classifier, train: tuple[list, list], evaluation: tuple[list, list], *,
                 batch_size: int = 16, eval_batch_size: int = 64, seed: int = 0):
        self.clf, self.model = clf, clf.model
        self.train_x, self.train_y = train
        self.eval_x, self.eval_y = evaluation
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed

    def _batch(self, x, y, rows) -> Batch:  # pragma: no cover - abstract
        raise NotImplementedError

    def num_batches(self, epoch: int) -> int:
        return math.ceil(len(self.train_x) / self.batch_size)

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.train_x))
        for s in range(start * self.batch_size, len(order), self.batch_size):
            yield self._batch(self.train_x, self.train_y, order[s: s + self.batch_size])

    def eval_batches(self) -> Iterator[Batch]:
        order = np.argsort([len(e) for e in self.eval_x], kind="stable")  # similar lengths: little padding
        for s in range(0, len(order), self.eval_batch_size):
            yield self._batch(self.eval_x, self.eval_y, order[s: s + self.eval_batch_size])

    def param_groups(self, model) -> list:
        return self.clf.param_groups()

    def save_pretrained(self, model, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.clf.save(path)
