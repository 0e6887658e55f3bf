"""The contract between the trainer and what is being pre-trained.

The trainer (`training.py`) knows nothing about tokens or characters. A *task* owns the model,
turns data into batches (masking included) and computes the loss; token-level MLM
(`token_task.py`) and character-level MLM (`char_task.py`) are the two tasks mlmkit ships.

Determinism rule: batch number `index` of epoch `epoch` must be a pure function of
(seed, epoch, index) -- data order *and* mask -- so that resume can start at any batch in O(1)
and reproduce the uninterrupted run exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

import torch

Batch = dict[str, torch.Tensor]


@dataclass
class LossOutput:
    """What one forward pass reports.

    loss:      mean loss over the batch's targets (what is back-propagated).
    n_targets: number of predicted targets (masked tokens / masked characters).
    loss_sum:  loss * n_targets, detached, so losses can be token-weighted across batches/ranks.
    n_correct: number of targets whose arg-max prediction is right.
    n_tokens:  non-padding input positions processed (for throughput).
    """

    loss: torch.Tensor
    n_targets: int | torch.Tensor
    loss_sum: torch.Tensor
    n_correct: int | torch.Tensor
    n_tokens: int | torch.Tensor


class Task(Protocol):
    model: torch.nn.Module

    def num_batches(self, epoch: int) -> int | None:
        """Batches in one epoch (None for an endless stream)."""

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Batches of `epoch` from batch number `start` on; must reach `start` without reading
        the skipped data (O(1) resume)."""

    def eval_batches(self) -> Iterator[Batch]:
        """Validation batches with a fixed, seeded mask (same every call)."""

    def forward(self, model: torch.nn.Module, batch: Batch) -> LossOutput:
        """Loss of `model` on `batch` (batch already on the model's device)."""

    def save_pretrained(self, model: torch.nn.Module, path: Path) -> None:
        """Write a loadable model folder (weights in safetensors, config, tokenizer/alphabet)."""

    def describe(self) -> dict[str, Any]:
        """A few facts for the run summary (vocab size, examples, ...)."""
