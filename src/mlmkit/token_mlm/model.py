"""Hugging Face masked-LM models: build from scratch by architecture and size, load a checkpoint,
and compute logits on masked positions only (`SparseMLM`, the module the engine trains).

Sparse prediction: the vocabulary projection is the single largest matmul of a small encoder
(hidden x vocab per position). Running it on the ~15% masked positions only, instead of every
position as `BertForMaskedLM(labels=...)` does, gives the same loss for a fraction of the FLOPs.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import MODEL_SIZES, check
from ..errors import ConfigError, MlmkitError
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


def build_model(arch: str, size: str, tokenizer, max_length: int = 512, overrides: dict | None = None,
                attn_implementation: str = "auto"):
    """A randomly initialised transformers masked-LM of `arch` (bert, roberta, distilbert,
    modernbert, ...) and named `size`, with the tokenizer's vocabulary and special ids, and the
    attention kernel `attn_implementation` (model.attn_implementation; "auto": sdpa if the
    architecture has it, else eager)."""
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
    if attn_implementation != "auto":
        with _attention_errors(arch, attn_implementation):
            return AutoModelForMaskedLM.from_config(config, attn_implementation=attn_implementation)
    try:
        return AutoModelForMaskedLM.from_config(config, attn_implementation="sdpa")
    except (ValueError, ImportError):
        # eager by name: the failed call left "sdpa" in `config`, which a call without it reuses
        return AutoModelForMaskedLM.from_config(config, attn_implementation="eager")


def check_attention(attn_implementation: str, device: str) -> None:
    """What can be known of model.attn_implementation before any work: flash_attention_2 needs a
    CUDA device (`device` as train.device names it) and the flash-attn package. Whether the
    architecture has the kernel is known when the model is built (`build_model`, `use_attention`)."""
    if attn_implementation != "flash_attention_2":
        return
    import importlib.util

    from ..engine.device import pick_device

    kind = pick_device(device).type
    check(kind == "cuda", "model.attn_implementation",
          f"flash_attention_2 runs on CUDA GPUs only, and this run's device is {kind} (use sdpa)")
    check(importlib.util.find_spec("flash_attn") is not None, "model.attn_implementation",
          "flash_attention_2 needs the flash-attn package, which is not installed (pip install flash-attn; or use sdpa)")


def use_attention(model: nn.Module, attn_implementation: str) -> None:
    """Switch a loaded transformers model to `attn_implementation` (no-op for "auto": the kernel
    transformers chose when loading, sdpa where the architecture has it)."""
    if attn_implementation == "auto":
        return
    if not hasattr(model, "set_attn_implementation"):
        raise ConfigError(f"config key 'model.attn_implementation': {type(model).__name__} cannot change its "
                          "attention after loading (a newer transformers can; or leave it at auto)")
    with _attention_errors(model.config.model_type, attn_implementation):
        model.set_attn_implementation(attn_implementation)


@contextmanager
def _attention_errors(arch: str, attn_implementation: str):
    """transformers' refusal of an attention kernel as one line naming the config key."""
    try:
        yield
    except ImportError:  # flash_attention_2 without the flash-attn package
        raise ConfigError(f"config key 'model.attn_implementation': {attn_implementation} needs the flash-attn "
                          "package, which is not installed (pip install flash-attn; or use sdpa)") from None
    except ValueError as e:  # the architecture lacks the kernel
        why = one_line(e).split(". ")[0]
        raise ConfigError(f"config key 'model.attn_implementation': {arch} cannot use {attn_implementation} "
                          f"({why}); use eager") from None


def load_model(name_or_path: str, *, trust_remote_code: bool = False, allow_pickle: bool = False,
               init: bool = False, allow_partial: bool = False, log: Callable[[str], None] | None = None):
    """Load a masked-LM checkpoint (hub name or local folder) as transformers loads it: its
    safetensors weights, else its pickled ones (`pytorch_model.bin`, what `save_pretrained`
    wrote before safetensors) through `torch.load(weights_only=True)` -- transformers 5's own
    default, whose unpickler builds tensors and plain containers only and refuses anything else,
    so a pickle that would run code is refused before any of it runs. `allow_pickle`
    (model.allow_pickle) is for a file the user trusts that this loader refuses: it is then
    unpickled in full (which can run code).

    Every tensor must load: transformers fills missing ones with random values and only warns.
    `init` (`--init-from`): the encoder must load whole (unless `allow_partial`), a missing MLM
    head is created fresh, and `log` is told how many tensors loaded. Otherwise (eval, predict)
    a missing head is an error too: its fills would be random."""
    import pickle
    from pathlib import Path

    from transformers import AutoModelForMaskedLM

    if not Path(name_or_path).exists() and is_path_spec(name_or_path):
        raise MlmkitError(f"no such model folder: {name_or_path}")
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(
            name_or_path, trust_remote_code=trust_remote_code, weights_only=not allow_pickle,
            output_loading_info=True)
    except pickle.UnpicklingError as e:  # the weights-only unpickler's refusal
        raise MlmkitError(f"could not load masked-LM model '{name_or_path}': its pickled weights (*.bin) hold more "
                          f"than tensors ({_refused_part(e)}), and unpickling that can run code; only if you trust "
                          "the file: model.allow_pickle=true (--set)") from None
    except (OSError, ValueError, KeyError, EnvironmentError) as e:
        where = "" if Path(name_or_path).exists() else " (no local folder of that name, nor a hub model)"
        raise MlmkitError(f"could not load masked-LM model '{name_or_path}'{where}: {one_line(e)}") from None
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


def _refused_part(error: Exception) -> str:
    """What torch's weights-only unpickler refused, from its long message (e.g. "Unsupported
    global: GLOBAL builtins.open")."""
    text = str(error)
    _, found, rest = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (rest if found else text).splitlines() if line.strip()]
    return lines[0].split(" was not ")[0][:200] if lines else type(error).__name__


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
    # transformers checkpoints a layer in its forward (GradientCheckpointingLayer), so the layers
    # called here recompute like the encoder's own loop; the last layer is run piecewise by
    # `_last_layer_at`, which nothing wraps, so it is checkpointed here.
    for layer in layers[:-1]:
        h = layer(h, mask)
    if _checkpointing(model) and model.training and torch.is_grad_enabled():
        return checkpoint(_last_layer_at, layers[-1], h, attention_mask, positions, use_reentrant=False)
    return _last_layer_at(layers[-1], h, attention_mask, positions)


def _checkpointing(model: nn.Module) -> bool:
    """Whether the transformers `model` recomputes activations (the property was renamed in 5.x)."""
    name = "is_activation_checkpointing" if hasattr(type(model), "is_activation_checkpointing") \
        else "is_gradient_checkpointing"
    return bool(getattr(model, name, False))


def _layers_checkpoint_themselves(layers: nn.ModuleList) -> bool:
    """Whether these transformers layers recompute themselves when called (GradientCheckpointingLayer,
    in recent transformers); in older ones the encoder's loop did it, which the sparse path skips."""
    try:
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:
        return False
    return all(isinstance(layer, GradientCheckpointingLayer) for layer in layers)


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
    if layers is not None and _checkpointing(model) and not _layers_checkpoint_themselves(layers):
        layers = None  # the whole-model path below, whose encoder loop checkpoints
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

    def gradient_checkpointing_enable(self) -> None:
        """`train.gradient_checkpointing`: the wrapped model's layers recompute their activations
        in the backward pass (non-reentrant checkpoints: they work under FSDP2 and compile)."""
        model = self.model
        try:  # (ValueError: transformers, for an architecture without it; EncoderForMaskedLM likewise)
            if hasattr(model, "activation_checkpointing_enable"):  # transformers 5.x: the old name warns
                model.activation_checkpointing_enable({"use_reentrant": False})
            elif hasattr(model, "supports_gradient_checkpointing"):  # older transformers
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            elif hasattr(model, "gradient_checkpointing_enable"):
                model.gradient_checkpointing_enable()
            else:
                raise ValueError(f"{type(model).__name__} has no gradient_checkpointing_enable() method")
        except ValueError as e:
            raise ConfigError(f"config key 'train.gradient_checkpointing': {one_line(e)}") from None
