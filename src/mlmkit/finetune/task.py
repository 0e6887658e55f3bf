"""Sequence classification as an engine `Task`: texts + labels -> padded batches -> cross-entropy.
Evaluation sums a confusion matrix over batches (and ranks), so accuracy and macro-F1 are exact
for the whole split."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch

from ..engine.task import Batch, LossOutput, TaskBase
from ..family import Classifier


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


def classification_metrics(y_true: list[int], y_pred: list[int], n_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 of predictions."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if len(t) == 0:
        return {}
    confusion = np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    return {"accuracy": float((t == p).mean()), "macro_f1": macro_f1(confusion), "n": int(len(t))}


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


class ClassificationTask(LabelledTask):
    def __init__(self, clf: Classifier, train: tuple[list, list[int]], evaluation: tuple[list, list[int]],
                 n_classes: int, *, batch_size: int = 16, eval_batch_size: int = 64, seed: int = 0):
        super().__init__(clf, train, evaluation, batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed)
        self.n_classes = n_classes

    def with_evaluation(self, evaluation: tuple[list, list[int]]) -> "ClassificationTask":
        """The same task scored on another split (e.g. the test split)."""
        return ClassificationTask(self.clf, (self.train_x, self.train_y), evaluation, self.n_classes,
                                  batch_size=self.batch_size, eval_batch_size=self.eval_batch_size, seed=self.seed)

    def _batch(self, x, y, rows) -> Batch:
        rows = [int(i) for i in rows]
        return {**self.clf.collate(x, rows), "labels": torch.tensor([y[i] for i in rows])}

    def counts(self, batch: Batch) -> tuple[int, int]:
        return int(batch["labels"].numel()), int(batch["attention_mask"].sum())

    def forward(self, model, batch: Batch) -> LossOutput:
        labels = batch["labels"]
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits.float()
        loss_sum = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
        n = labels.numel()
        pred = logits.detach().argmax(-1)
        extra = {}
        if not model.training:
            C = self.n_classes
            extra["confusion"] = torch.bincount(labels * C + pred, minlength=C * C).view(C, C)
        return LossOutput(loss=loss_sum / max(n, 1), n_targets=n, loss_sum=loss_sum.detach(),
                          n_correct=(pred == labels).sum(), n_tokens=batch["attention_mask"].sum(), extra=extra)

    def eval_metrics(self, totals: dict[str, Any]) -> dict[str, float]:
        n = totals["targets"]
        if n == 0:
            return {}
        return {"eval_loss": totals["loss_sum"] / n, "eval_accuracy": totals["correct"] / n,
                "eval_macro_f1": macro_f1(np.asarray(totals["confusion"])), "eval_targets": int(n)}
