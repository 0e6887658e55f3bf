"""Hugging Face masked-LM models: build from scratch by architecture and size, load a checkpoint,
and compute logits on masked positions only.

Sparse prediction: the vocabulary projection is the single largest matmul of a small encoder
(hidden x vocab per position). Running it on the ~15% masked positions only, instead of every
position as `BertForMaskedLM(labels=...)` does, gives the same loss for a fraction of the FLOPs.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..errors import MlmkitError

# Named sizes: (layers, hidden, heads, feed-forward).
SIZES: dict[str, tuple[int, int, int, int]] = {
    "tiny": (2, 128, 2, 512),
    "mini": (4, 256, 4, 1024),
    "small": (4, 512, 8, 2048),
    "base": (12, 768, 12, 3072),
}

_ROBERTA_LIKE = {"roberta", "xlm-roberta", "camembert"}


def _size_kwargs(arch: str, size: str, max_positions: int) -> dict:
    layers, hidden, heads, ffn = SIZES[size]
    if arch == "distilbert":
        return dict(n_layers=layers, dim=hidden, n_heads=heads, hidden_dim=ffn,
                    max_position_embeddings=max_positions)
    kw = dict(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
              intermediate_size=ffn, max_position_embeddings=max_positions)
    if arch in _ROBERTA_LIKE:
        kw["max_position_embeddings"] = max_positions + 2  # RoBERTa offsets positions by pad+1
        kw["type_vocab_size"] = 1
    return kw


def build_model(arch: str, size: str, tokenizer, max_length: int = 512, overrides: dict | None = None):
    """A randomly initialised transformers masked-LM of `arch` (bert, roberta, distilbert,
    modernbert, ...) and named `size`, with the tokenizer's vocabulary and special ids."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    if size not in SIZES:
        raise MlmkitError(f"unknown model size '{size}' (choose from {', '.join(SIZES)})")
    kwargs = _size_kwargs(arch, size, max(512, max_length))
    kwargs["vocab_size"] = len(tokenizer)
    for name in ("pad", "bos", "eos", "cls", "sep", "mask"):
        tid = getattr(tokenizer, f"{name}_token_id", None)
        if tid is not None:
            kwargs[f"{name}_token_id"] = tid
    kwargs.update(overrides or {})
    try:
        config = AutoConfig.for_model(arch, **kwargs)
    except ValueError as e:
        raise MlmkitError(f"unknown model architecture '{arch}': {e}") from None
    try:
        model = AutoModelForMaskedLM.from_config(config, attn_implementation="sdpa")
    except (ValueError, ImportError):
        model = AutoModelForMaskedLM.from_config(config)
    return model


def load_model(name_or_path: str, *, trust_remote_code: bool = False):
    """Load a masked-LM checkpoint (hub name or local folder), preferring safetensors."""
    from transformers import AutoModelForMaskedLM

    try:
        return AutoModelForMaskedLM.from_pretrained(
            name_or_path, trust_remote_code=trust_remote_code, use_safetensors=None
        )
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MlmkitError(f"could not load masked-LM model '{name_or_path}': {first}") from None


def _sparse_head(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The function from hidden states to vocabulary logits, per architecture (None: unknown)."""
    mt = getattr(getattr(model, "config", None), "model_type", "")
    if mt == "distilbert":
        return lambda h: model.vocab_projector(model.vocab_layer_norm(model.activation(model.vocab_transform(h))))
    if mt == "modernbert":
        return lambda h: model.decoder(model.head(h))
    if hasattr(model, "cls") and isinstance(model.cls, nn.Module):  # BERT family
        return model.cls
    if hasattr(model, "lm_head") and isinstance(model.lm_head, nn.Module):  # RoBERTa family
        return model.lm_head
    return None


def masked_logits(model: nn.Module, input_ids, attention_mask, positions: torch.Tensor, sparse: bool = True):
    """Vocabulary logits (N, V) at flat `positions` of the (B, T) grid."""
    if hasattr(model, "masked_logits"):
        return model.masked_logits(input_ids, attention_mask, positions)
    head = _sparse_head(model) if sparse else None
    if head is None:  # unknown architecture: full projection, then pick (correct, slower)
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        return logits.reshape(-1, logits.shape[-1]).index_select(0, positions)
    hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    picked = hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions)
    return head(picked)
