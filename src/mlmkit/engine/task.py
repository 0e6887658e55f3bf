"""The contract between the engine and what is being trained.

The engine (`engine/loop.py`) knows nothing about tokens, characters or labels. A *task* owns the
model, turns data into batches (masking included), computes the loss and says how many real
targets a batch holds; the token-level MLM (`token_mlm`), the character-level MLM (`char_mlm`)
and sequence and token classification (`finetune`) are the tasks mlmkit ships. `Task` lists what
the engine asks for, required and optional; `TaskBase` gives the optional parts their defaults.

Determinism rule: batch number `index` of epoch `epoch` must be a pure function of
(seed, epoch, index) -- data order *and* mask -- so that resume can start at any batch in O(1)
and reproduce the uninterrupted run exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import torch

Batch = dict[str, torch.Tensor]

# A batch may carry, under this key, a small JSON-able dict saying where its data was read (e.g.
# a stream's position at the start of the batch's window), for data whose position cannot be
# computed from (seed, epoch, index) alone. The engine takes it off the batch, keeps the last one
# it trained on, saves every rank's in the checkpoint and, on resume, hands the list (rank order)
# to `task.load_data_state` before it asks for batches.
DATA_STATE = "_data_state"


@dataclass
class LossOutput:
    """What one forward pass reports.

    loss:      mean loss over the batch's targets (what is back-propagated).
    n_targets: number of predicted targets (masked tokens / masked characters / labels).
    loss_sum:  loss * n_targets, detached, so losses can be token-weighted across batches/ranks.
    n_correct: number of targets whose arg-max prediction is right.
    n_tokens:  non-padding input positions processed (for throughput).
    extra:     further counts that evaluation sums over batches and ranks (numbers or arrays,
               e.g. exactly matched spans, per-class true positives), read by `eval_metrics`.
    """

    loss: torch.Tensor
    n_targets: int | torch.Tensor
    loss_sum: torch.Tensor
    n_correct: int | torch.Tensor
    n_tokens: int | torch.Tensor
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParamGroup:
    """Parameters a task wants optimised apart from the rest, e.g. hashed n-gram tables: a
    memory whose rows are touched only when their context occurs gets its own LR multiplier and
    no weight decay (which would erase rare contexts between their occurrences)."""

    params: list[torch.nn.Parameter]
    lr_scale: float = 1.0
    weight_decay: float | None = None  # None: optim.weight_decay


@dataclass(frozen=True)
class WeightsCodec:
    """How a task's weights are written to a checkpoint and read back, when not as they are: a
    large table that is mostly zeros (a character model's counted memory: 822 MB, 2-3% set) is
    written as its set cells. Both must be exact, since a resume must continue bit for bit.

    pack(state)           the tensors to write, from the model's state dict
    unpack(state, model)  the model's state dict again, from the tensors read (`model` gives the
                          shapes; it may be wrapped for DDP, or FSDP-sharded)
    """

    pack: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
    unpack: Callable[[dict[str, torch.Tensor], torch.nn.Module], dict[str, torch.Tensor]]


class Task(Protocol):
    """What the engine asks of a task.

    Required: `model`, `num_batches`, `train_batches`, `eval_batches`, `counts`, `forward`,
    `save_pretrained` (a task that is only evaluated, `engine.evaluate`, needs `eval_batches`,
    `forward` and `eval_metrics`).

    Optional, with the defaults `TaskBase` gives (a task that subclasses it writes only what it
    changes; one that does not must define them all, since the engine calls them as they are):

    `batch_size`            None: the engine takes `train.batch_size` (rows per rank)
    `rank`, `world_size`    0 and 1: the task does not split its batches over ranks
    `saved_submodule`       "": the model itself is what is saved
    `param_groups(model)`   []: every parameter in the one default group
    `load_data_state(s)`    nothing: the task's data position is a function of the step
    `eval_metrics(totals)`  `standard_metrics(totals)`: loss, perplexity, accuracy
    `model_files(m, path)`  nothing: a checkpoint folder holds the weights only
    `weights_codec`         None: checkpoints hold the state dict as it is (read with `getattr`, so
                            a task written before it existed needs no change)
    `sample_text(m, n)`     None: nothing logged at evaluations
    `describe()`            {}: no facts to report
    """

    model: torch.nn.Module
    batch_size: int | None  # rows per rank of a training batch (the global batch is this x ranks)
    rank: int
    world_size: int  # ranks the task splits its batches over (the engine warns if it does not)
    saved_submodule: str  # the submodule of `model` whose weights make the saved model

    def num_batches(self, epoch: int) -> int | None:
        """Batches in one epoch (None for an endless stream)."""

    def train_batches(self, epoch: int, start: int = 0, stride: int = 1) -> Iterator[Batch]:
        """Batches start, start + stride, ... of `epoch`; must reach `start` without reading the
        skipped data (O(1) resume). `stride` (optional) lets DataLoader workers share an epoch."""

    def eval_batches(self) -> Iterator[Batch]:
        """Validation batches with a fixed, seeded mask (same every call)."""

    def counts(self, batch: Batch) -> tuple[int, int]:
        """(real targets, non-padding input positions) of `batch`, known before the forward
        pass: the engine divides a step's summed loss by the targets of all its micro-batches on
        all ranks, so padding in a target tensor must not count."""

    def forward(self, model: torch.nn.Module, batch: Batch) -> LossOutput:
        """Loss of `model` on `batch` (batch already on the model's device)."""

    def save_pretrained(self, model: torch.nn.Module, path: Path) -> None:
        """Write a loadable model folder (weights in safetensors, config, tokenizer/alphabet)."""

    def param_groups(self, model: torch.nn.Module) -> list[ParamGroup]:
        """Parameters to optimise apart (own LR multiplier / weight decay). Optional: []."""

    def load_data_state(self, states: list) -> None:
        """On resume, the `DATA_STATE` each rank saved (see `TaskBase`). Optional: nothing."""

    def eval_metrics(self, totals: dict[str, Any]) -> dict[str, float]:
        """Metrics from the summed evaluation counts. Optional: `standard_metrics`."""

    def model_files(self, model: torch.nn.Module, path: Path) -> None:
        """What makes a checkpoint folder a loadable model folder. Optional: nothing."""

    def sample_text(self, model: torch.nn.Module, n: int) -> str | None:
        """A few validation examples as text, logged at evaluations. Optional: None."""

    def describe(self) -> dict[str, Any]:
        """A few facts about the task (vocab size, examples, ...), for logs. Optional: {}."""


def standard_metrics(totals: dict[str, Any]) -> dict[str, float]:
    """Token-weighted loss, perplexity and accuracy over every target of the validation set."""
    n = totals["targets"]
    if n == 0:
        return {}
    loss = totals["loss_sum"] / n
    return {"eval_loss": loss, "eval_perplexity": math.exp(min(loss, 50.0)),
            "eval_accuracy": totals["correct"] / n, "eval_targets": int(n)}


class TaskBase:
    """Defaults for the optional parts of a task (the table in `Task`'s docstring)."""

    batch_size: int | None = None  # rows per rank; None: the engine's train.batch_size
    rank: int = 0
    world_size: int = 1  # ranks the task splits its batches over (the engine warns if it does not)
    # The submodule of `model` whose weights make the saved model (a wrapper such as token_mlm's
    # SparseMLM saves its inner transformers model): checkpoints store the weights under its
    # names, so a checkpoint folder loads with `from_pretrained`. "" for the model itself.
    saved_submodule: str = ""
    weights_codec: WeightsCodec | None = None

    def rows_of_rank(self, batch):
        """This rank's share of a global batch (a list or array of rows): every W-th row from its
        rank on. Batches are sorted by length (bucketing), so contiguous shares gave the last rank
        the longest rows and the others waited for it at every step (character preset, 60 steps:
        rank 1's forward 16.4 s against rank 0's 13.5 s)."""
        return batch[self.rank::self.world_size]

    def param_groups(self, model: torch.nn.Module) -> list[ParamGroup]:
        """Parameters to optimise apart (own LR multiplier / weight decay); [] for none."""
        return []

    def load_data_state(self, states: list) -> None:
        """On resume: the `DATA_STATE` each rank saved with the checkpoint (rank order; None where a
        rank had none). Raise an `MlmkitError` if they cannot continue on this run's ranks."""

    def eval_metrics(self, totals: dict[str, Any]) -> dict[str, float]:
        """Metrics from the summed evaluation counts (`loss_sum`, `targets`, `correct`, extras)."""
        return standard_metrics(totals)

    def model_files(self, model: torch.nn.Module, path: Path) -> None:
        """Write, beside a checkpoint's weights, what makes the checkpoint folder a loadable model
        folder (config, tokenizer or alphabet; not the weights), so that `from_pretrained` and
        `mlmkit eval` take any checkpoint. Nothing by default."""

    def sample_text(self, model: torch.nn.Module, n: int) -> str | None:
        """A few validation examples as text (Original / Masked / Predicted), logged at each
        evaluation; None if the task has nothing to show."""
        return None

    def describe(self) -> dict[str, Any]:
        """A few facts about the task (vocab size, examples, ...), for logs; none by default."""
        return {}
