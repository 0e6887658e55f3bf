"""Sequence classification as an engine `Task`: texts + labels -> padded batches -> cross-entropy.
Evaluation sums a confusion matrix over batches (and ranks), so accuracy and macro-F1 are exact
for the whole split."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..engine.task import Batch, LossOutput
from ..family_protocol import Classifier
from .labelled_task import LabelledTask, macro_f1


def classification_metrics(y_true: list[int], y_pred: list[int], n_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 of predictions."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if len(t) == 0:
        return {}
    confusion = np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    return {"accuracy": float((t == p).mean()), "macro_f1": macro_f1(confusion), "n": int(len(t))}


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
