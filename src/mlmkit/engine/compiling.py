"""`train.compile`: torch.compile for training, regional by default.

A transformer encoder is the same block repeated L times. Compiling the block (each layer in
place, `nn.Module.compile`) instead of the whole model gives nearly all of the speed-up -- the
fusions inductor finds (dropout with its RNG, GELU, bias adds, residual + LayerNorm, the
attention softmax) are inside the block -- for a fraction of the compile time: the L layers share
one compiled graph, and the embeddings, the sparse head and the loss (whose number of masked
positions changes every batch) stay eager, so nothing is recompiled when shapes change there.
This is PyTorch's "regional compilation" recipe.

Works under DDP (the wrapper's forward runs the compiled layers) and FSDP2 (compile after
sharding). Models without a recognisable stack of layers are compiled whole.
"""

from __future__ import annotations

import torch
from torch import nn


def repeated_layers(model: nn.Module) -> list[nn.Module]:
    """The blocks of the largest `ModuleList` whose items all have the same type (the encoder's
    layers), or [] if there is none."""
    best: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) > len(best):
            items = list(module)
            if items and all(type(m) is type(items[0]) for m in items):
                best = items
    return best


def compile_for_training(model: nn.Module, mode: str = "regional") -> nn.Module:
    """Return the module to train with: `model` with its layers compiled in place ("regional"),
    or `torch.compile(model)` ("full", or when no layer stack is found)."""
    if mode == "regional":
        layers = repeated_layers(model)
        if len(layers) >= 2:
            for layer in layers:
                layer.compile()
            return model
    return torch.compile(model)
