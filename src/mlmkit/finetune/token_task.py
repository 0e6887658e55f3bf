"""Token classification as an engine `Task`: tagged sentences -> sub-tokens with word labels ->
padded batches -> cross-entropy on the first sub-token of each word.

Labels are aligned with the fast tokenizer's `word_ids()`: the first sub-token of each word
carries the word's tag, every other sub-token and every special token gets -100 (ignored by the
loss and the metrics). Words cut off by the length limit are neither trained on nor scored.

Evaluation sums, over batches (and ranks), a word-level confusion matrix and, for BIO tag sets,
per-type entity chunk counts (`entity_f1.chunk_counts`), so every metric is exact for the split:
``eval_accuracy`` (words), ``eval_precision`` / ``eval_recall`` / ``eval_f1`` (entity chunks,
seqeval rules; for other tag sets micro over words, i.e. all three equal the accuracy) and
``eval_macro_f1`` (mean F1 over entity types; over tags for other tag sets)."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from ..engine.task import Batch, LossOutput
from ..family_protocol import Classifier
from .entity_f1 import chunk_counts, entity_scores, entity_types, is_bio
from .labelled_task import LabelledTask, macro_f1

IGNORE = -100


def align_labels(word_ids: list[Optional[int]], tag_ids: list[int]) -> list[int]:
    """One label per sub-token: the word's tag on its first sub-token, -100 elsewhere."""
    out, prev = [], None
    for w in word_ids:
        out.append(IGNORE if w is None or w == prev else tag_ids[w])
        prev = w
    return out


class TokenClassificationTask(LabelledTask):
    def __init__(self, clf: Classifier, train: tuple[list, list[list[int]]], evaluation: tuple[list, list[list[int]]],
                 labels: list[str], *, batch_size: int = 16, eval_batch_size: int = 64, seed: int = 0):
        """`train` / `evaluation`: (prepared inputs, aligned label lists) of each split."""
        super().__init__(clf, train, evaluation, batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed)
        self.labels = labels
        self.bio = is_bio(labels)
        self.types = entity_types(labels) if self.bio else []

    def with_evaluation(self, evaluation) -> "TokenClassificationTask":
        """The same task scored on another split (e.g. the test split)."""
        return TokenClassificationTask(self.clf, (self.train_x, self.train_y), evaluation, self.labels,
                                       batch_size=self.batch_size, eval_batch_size=self.eval_batch_size, seed=self.seed)

    def _batch(self, x, y, rows) -> Batch:
        rows = [int(i) for i in rows]
        batch = self.clf.collate(x, rows)
        labels = torch.full(batch["input_ids"].shape, IGNORE, dtype=torch.long)
        for r, i in enumerate(rows):
            labels[r, : len(y[i])] = torch.tensor(y[i], dtype=torch.long)
        return {**batch, "labels": labels}

    def counts(self, batch: Batch) -> tuple[int, int]:
        return int((batch["labels"] != IGNORE).sum()), int(batch["attention_mask"].sum())

    def _chunk_counts(self, labels: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        counts = np.zeros((len(self.types), 3), dtype=np.int64)
        for gold_row, pred_row in zip(labels.tolist(), pred.tolist()):
            words = [(g, p) for g, p in zip(gold_row, pred_row) if g != IGNORE]
            counts += chunk_counts([self.labels[g] for g, _ in words], [self.labels[p] for _, p in words], self.types)
        return torch.from_numpy(counts)

    def forward(self, model, batch: Batch) -> LossOutput:
        labels = batch["labels"]
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits.float()
        loss_sum = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE,
                                                     reduction="sum")
        scored = labels != IGNORE
        n = int(scored.sum())
        pred = logits.detach().argmax(-1)
        extra = {}
        if not model.training:
            C = len(self.labels)
            extra["confusion"] = torch.bincount(labels[scored] * C + pred[scored], minlength=C * C).view(C, C)
            if self.bio:
                extra["chunks"] = self._chunk_counts(labels.cpu(), pred.cpu())
        return LossOutput(loss=loss_sum / max(n, 1), n_targets=n, loss_sum=loss_sum.detach(),
                          n_correct=(pred[scored] == labels[scored]).sum(), n_tokens=batch["attention_mask"].sum(),
                          extra=extra)

    def eval_metrics(self, totals: dict[str, Any]) -> dict[str, float]:
        n = totals["targets"]
        if n == 0:
            return {}
        accuracy = totals["correct"] / n
        if self.bio:
            scores = entity_scores(totals.get("chunks", np.zeros((len(self.types), 3))))
        else:
            scores = {"precision": accuracy, "recall": accuracy, "f1": accuracy,
                      "macro_f1": macro_f1(np.asarray(totals["confusion"]))}
        return {"eval_loss": totals["loss_sum"] / n, "eval_accuracy": accuracy,
                **{f"eval_{k}": v for k, v in scores.items()}, "eval_targets": int(n)}
