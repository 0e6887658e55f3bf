"""A masked-LM head for any encoder (the model-agnostic API).

Wrap an `nn.Module` that maps (input_ids, attention_mask) to hidden states -- a tensor
(B, T, H), a tuple whose first item is that, or an object with `.last_hidden_state` -- and
mlmkit's trainer can pre-train it like any transformers model.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..engine.compiling import repeated_layers


class MaskedLMHead(nn.Module):
    """dense -> GELU -> LayerNorm -> vocabulary projection, as in BERT's prediction head."""

    def __init__(self, hidden_size: int, vocab_size: int, layer_norm_eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.decoder = nn.Linear(hidden_size, vocab_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(F.gelu(self.dense(hidden))))


def _hidden_states(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "last_hidden_state"):
        return output.last_hidden_state
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(
        "the encoder must return hidden states: a (batch, seq, hidden) tensor, a tuple starting "
        f"with one, or an object with .last_hidden_state; got {type(output).__name__}"
    )


class EncoderForMaskedLM(nn.Module):
    """Any encoder + `MaskedLMHead`; optionally ties the decoder to the input embedding."""

    def __init__(
        self,
        encoder: nn.Module,
        hidden_size: int,
        vocab_size: int,
        tie_to: nn.Embedding | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.head = MaskedLMHead(hidden_size, vocab_size)
        self.vocab_size = vocab_size
        if tie_to is not None:
            if tie_to.weight.shape != self.head.decoder.weight.shape:
                raise ValueError("tied embedding must be (vocab_size, hidden_size)")
            self.head.decoder.weight = tie_to.weight

    def gradient_checkpointing_enable(self) -> None:
        """Recompute the encoder's activations in the backward pass (`train.gradient_checkpointing`):
        the encoder's own method if it has one (a transformers model, or yours), else each block of
        its layer stack (`repeated_layers`, the blocks compile finds) is wrapped in a non-reentrant
        checkpoint. ValueError if the encoder has neither."""
        enc = self.encoder
        if hasattr(enc, "activation_checkpointing_enable"):  # transformers 5.x's name
            enc.activation_checkpointing_enable({"use_reentrant": False})
            return
        if hasattr(enc, "gradient_checkpointing_enable"):
            enc.gradient_checkpointing_enable()
            return
        layers = repeated_layers(enc)
        if not layers:
            raise ValueError(f"the encoder {type(enc).__name__} has no gradient_checkpointing_enable() method and "
                             "no stack of layers (an nn.ModuleList of blocks) to checkpoint")
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (CheckpointImpl,
                                                                                 apply_activation_checkpointing,
                                                                                 checkpoint_wrapper)

        # The wrapper keeps the parameter names of saved weights: its state_dict hooks drop its prefix.
        ids = {id(layer) for layer in layers}
        apply_activation_checkpointing(enc, check_fn=lambda m: id(m) in ids, checkpoint_wrapper_fn=partial(
            checkpoint_wrapper, checkpoint_impl=CheckpointImpl.NO_REENTRANT))

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        return _hidden_states(self.encoder(input_ids, attention_mask=attention_mask))

    def masked_logits(self, input_ids, attention_mask, positions: torch.Tensor) -> torch.Tensor:
        hidden = self.hidden_states(input_ids, attention_mask)
        picked = hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions)
        return self.head(picked)

    def forward(self, input_ids, attention_mask=None, labels=None):
        logits = self.head(self.hidden_states(input_ids, attention_mask))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits.view(-1, logits.shape[-1]).float(), labels.view(-1))
        return out

    def save_pretrained(self, path: str | Path) -> None:
        """Weights (safetensors) and sizes; rebuild the encoder yourself, then `load_weights`."""
        from safetensors.torch import save_model

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_model(self, str(path / "model.safetensors"))
        meta = {"mlmkit_model": "EncoderForMaskedLM", "vocab_size": self.vocab_size,
                "encoder_class": type(self.encoder).__qualname__}
        (path / "mlmkit_model.json").write_text(json.dumps(meta, indent=2))

    def load_weights(self, path: str | Path) -> None:
        from safetensors.torch import load_model

        load_model(self, str(Path(path) / "model.safetensors"))
