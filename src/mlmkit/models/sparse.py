"""`SparseMLM`: the module the trainer actually runs (and wraps with DDP, FSDP or torch.compile).

Why a module and not just the `masked_logits` function: DDP synchronises gradients from hooks
installed by `DistributedDataParallel.forward`, FSDP gathers parameters in hooks around each
sharded module's `forward`, and `torch.compile` compiles a module's `forward`. A function that
reaches into `model.base_model` and the head bypasses all three (under DDP the gradients would
silently stay per-rank). Wrapping the sparse computation in `SparseMLM.forward` makes it the
forward that every wrapper sees.
"""

from __future__ import annotations

import torch
from torch import nn

from .hf import masked_logits


class SparseMLM(nn.Module):
    """`forward(input_ids, attention_mask, positions)` -> vocabulary logits (N, V) at the flat
    `positions` of the (B, T) grid. `self.model` is the wrapped masked-LM (what gets saved)."""

    def __init__(self, model: nn.Module, sparse: bool = True, last_layer: bool = True):
        super().__init__()
        self.model = model
        self.sparse = sparse
        self.last_layer = last_layer  # BERT family: last layer on masked positions only (when sparse)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                positions: torch.Tensor) -> torch.Tensor:
        return self.masked_logits(input_ids, attention_mask, positions)

    def masked_logits(self, input_ids, attention_mask, positions):
        """So `models.masked_logits(SparseMLM(...), ...)` works too (used by inspection tools).
        Not for training under DDP/FSDP: call the (wrapped) module instead."""
        return masked_logits(self.model, input_ids, attention_mask, positions, sparse=self.sparse,
                             last_layer=self.last_layer)


def unwrap(module: nn.Module) -> nn.Module:
    """The module under DDP (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while True:
        if hasattr(module, "_orig_mod") and isinstance(module._orig_mod, nn.Module):
            module = module._orig_mod
        elif type(module).__name__ == "DistributedDataParallel":
            module = module.module
        else:
            return module
