"""Hugging Face masked-LM models: build from scratch by architecture and size, load a checkpoint,
and compute logits on masked positions only (`SparseMLM`, the module the engine trains).

Sparse prediction: the vocabulary projection is the single largest matmul of a small encoder
(hidden x vocab per position). Running it on the ~15% masked positions only, instead of every
position as `BertForMaskedLM(labels=...)` does, gives the same loss for a fraction of the FLOPs.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import MODEL_SIZES
from ..errors import MlmkitError
from ..util import check_loaded, is_path_spec, one_line


_ROBERTA_LIKE = {"roberta", "xlm-roberta", "camembert"}
_BERT_LIKE = {"bert", *_ROBERTA_LIKE}


def _size_kwargs(arch: str, size: str, max_positions: int) -> dict:
    size_ = MODEL_SIZES[size]
    layers, hidden, heads, ffn = (size_[k] for k in ("num_layers", "hidden_size", "num_heads", "intermediate_size"))
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

    if size not in MODEL_SIZES:
        raise MlmkitError(f"unknown model size '{size}' (choose from {', '.join(MODEL_SIZES)})")
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


def load_model(name_or_path: str, *, trust_remote_code: bool = False, allow_pickle: bool = False,
               init: bool = False, allow_partial: bool = False, log: Callable[[str], None] | None = None):
    """Load a masked-LM checkpoint (hub name or local folder). Weights are read from safetensors
    only: a pickle (`pytorch_model.bin`) can run code when it is loaded, so it is refused unless
    `allow_pickle` (model.allow_pickle) says the file is trusted.

    Every tensor must load: transformers fills missing ones with random values and only warns.
    `init` (`--init-from`): the encoder must load whole (unless `allow_partial`), a missing MLM
    head is created fresh, and `log` is told how many tensors loaded. Otherwise (eval, predict)
    a missing head is an error too: its fills would be random."""
    from pathlib import Path

    from transformers import AutoModelForMaskedLM

    if not Path(name_or_path).exists() and is_path_spec(name_or_path):
        raise MlmkitError(f"no such model folder: {name_or_path}")
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(
            name_or_path, trust_remote_code=trust_remote_code, use_safetensors=None if allow_pickle else True,
            output_loading_info=True)
    except (OSError, ValueError, KeyError, EnvironmentError) as e:
        where = "" if Path(name_or_path).exists() else " (no local folder of that name, nor a hub model)"
        hint = ""
        if Path(name_or_path).is_dir() and any(Path(name_or_path).glob("*.bin")) and not allow_pickle:
            hint = ("; it holds only pickled weights (*.bin), which mlmkit does not load unless you trust them: "
                    "--set model.allow_pickle=true")
        raise MlmkitError(f"could not load masked-LM model '{name_or_path}'{where}: {one_line(e)}{hint}") from None
    missing = list(info.get("missing_keys") or [])
    total = len(model.state_dict())
    fresh = check_loaded(name_or_path, missing, total, model.base_model_prefix + ".", allow_partial=allow_partial)
    if fresh and not init:
        raise MlmkitError(f"{name_or_path} has no masked-LM head ({len(fresh)} tensors missing, e.g. {fresh[0]}): "
                          "its fills would be random (an --encoder-only export keeps the full model in masked-lm/)")
    if init and log is not None:
        log(f"continuing pre-training from {name_or_path}: {total - len(missing)} of {total} tensors loaded "
            f"({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters)"
            + (f"; the MLM head ({len(fresh)} tensors) is not in it and starts fresh" if fresh else ""))
    return model


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


def _bert_like_layers(model: nn.Module) -> nn.ModuleList | None:
    """The encoder layers of a BERT-family model whose last layer `_last_layer_at` can run on
    selected positions (absolute positions, encoder-only, unchunked BertLayer-shaped modules)."""
    base = getattr(model, "base_model", None)
    cfg = getattr(model, "config", None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if cfg is None or not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        return None
    if cfg.model_type not in _BERT_LIKE or cfg.is_decoder or getattr(cfg, "chunk_size_feed_forward", 0):
        return None
    if getattr(cfg, "position_embedding_type", "absolute") != "absolute":
        return None
    last = layers[-1]
    if _is_fsdp(last) or _is_fsdp(model):
        # FSDP2 gathers a layer's parameters in hooks around its forward(); the fast path calls
        # the layer's submodules directly, so it would see sharded weights.
        return None
    sa = getattr(getattr(last, "attention", None), "self", None)
    if not all(hasattr(sa, a) for a in ("query", "key", "value", "dropout", "scaling", "num_attention_heads")):
        return None
    if not all(hasattr(last, a) for a in ("feed_forward_chunk", "intermediate", "output")):
        return None
    return layers


def _is_fsdp(module: nn.Module) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch built without distributed
        return False
    return isinstance(module, FSDPModule)


def _last_layer_at(layer: nn.Module, hidden: torch.Tensor, attention_mask, positions: torch.Tensor) -> torch.Tensor:
    """Output (N, D) of BERT `layer` at the flat `positions` only.

    Keys and values need every position, but queries, the attention output, the residuals and the
    feed-forward block are per position: computing them for the ~15% predicted positions removes
    ~3/4 of the last layer's FLOPs and gives the same numbers as running the whole layer."""
    B, T, D = hidden.shape
    sa = layer.attention.self
    H = sa.num_attention_heads
    dh = D // H
    rows = positions // T
    # slot of every position among its row's positions (any order of `positions` works)
    counts = torch.bincount(rows, minlength=B)
    order = torch.argsort(rows, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.empty_like(positions)
    slot[order] = torch.arange(positions.numel(), device=positions.device) - starts[rows[order]]
    M = int(counts.max()) if positions.numel() else 1
    h_sel = hidden.reshape(B * T, D).index_select(0, positions)  # (N, D)
    q_sel = sa.query(h_sel)  # under autocast its dtype differs from `hidden`'s
    q = q_sel.new_zeros(B, M, q_sel.shape[-1]).index_put((rows, slot), q_sel)
    q = q.view(B, M, H, dh).transpose(1, 2)
    k = sa.key(hidden).view(B, T, H, dh).transpose(1, 2)
    v = sa.value(hidden).view(B, T, H, dh).transpose(1, 2)
    # no mask when nothing is padded, so SDPA may take its fused kernel
    mask = None if attention_mask is None or bool(attention_mask.all()) else attention_mask.bool()[:, None, None, :]
    a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=sa.scaling,
                                       dropout_p=sa.dropout.p if sa.training else 0.0)
    a = a.transpose(1, 2)[rows, slot].reshape(-1, D)  # (N, D)
    return layer.feed_forward_chunk(layer.attention.output(a, h_sel))


def _hidden_at_positions(model: nn.Module, layers: nn.ModuleList, input_ids, attention_mask, positions):
    """BERT-family hidden states at `positions`, the last layer run on those positions only."""
    from transformers.masking_utils import create_bidirectional_mask

    base = model.base_model
    h = base.embeddings(input_ids=input_ids)
    mask = create_bidirectional_mask(config=base.config, inputs_embeds=h, attention_mask=attention_mask)
    for layer in layers[:-1]:
        h = layer(h, mask)
    return _last_layer_at(layers[-1], h, attention_mask, positions)


def masked_logits(model: nn.Module, input_ids, attention_mask, positions: torch.Tensor, sparse: bool = True,
                  last_layer: bool = True):
    """Vocabulary logits (N, V) at flat `positions` of the (B, T) grid.

    `sparse`: the vocabulary projection only at `positions`; `last_layer`: for BERT-family models
    also the last encoder layer's per-position work (see `_last_layer_at`)."""
    if hasattr(model, "masked_logits"):
        return model.masked_logits(input_ids, attention_mask, positions)
    head = _sparse_head(model) if sparse else None
    if head is None:  # unknown architecture: full projection, then pick (correct, slower)
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        return logits.reshape(-1, logits.shape[-1]).index_select(0, positions)
    layers = _bert_like_layers(model) if last_layer else None
    if layers is not None:
        return head(_hidden_at_positions(model, layers, input_ids, attention_mask, positions))
    hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    picked = hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions)
    return head(picked)


class SparseMLM(nn.Module):
    """`forward(input_ids, attention_mask, positions)` -> vocabulary logits (N, V) at the flat
    `positions` of the (B, T) grid. `self.model` is the wrapped masked-LM (what gets saved).

    Why a module and not just the `masked_logits` function: DDP synchronises gradients from hooks
    installed by `DistributedDataParallel.forward`, FSDP gathers parameters in hooks around each
    sharded module's `forward`, and `torch.compile` compiles a module's `forward`. A function that
    reaches into `model.base_model` and the head bypasses all three (under DDP the gradients would
    silently stay per-rank). Wrapping the sparse computation in `SparseMLM.forward` makes it the
    forward that every wrapper sees."""

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

    def save_pretrained(self, path) -> None:
        """The wrapped masked-LM's folder (a transformers model, or `EncoderForMaskedLM`)."""
        self.model.save_pretrained(path)
