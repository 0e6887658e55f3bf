"""Character encoders: Hugging Face CANINE, or a small from-scratch encoder.

Both return per-character hidden states (B, L, D) for an input of L characters.

`CanineCharEncoder` wraps `transformers.CanineModel` (from a hub name such as ``google/canine-c``,
a local folder, or a `CanineConfig` for a fresh model). Its input is Unicode code points with
CANINE's specials: PAD 0, CLS U+E000, SEP U+E001, MASK U+E003.

`ScratchCharEncoder` embeds alphabet indices (see `char_mlm.data.Alphabet`) and runs
pre-norm transformer layers (`nn.TransformerEncoderLayer(norm_first=True)`, SDPA attention). With a
downsampling rate r in {2, 4} it follows CANINE: one character-level layer, a strided convolution
down to L/r "molecules", the deep stack over molecules, then upsampling back to characters
(repeat, concatenate with the character-level states, project) and one final character layer.
Domains are short (~16 characters), so r=1 is the default; r=4 leaves ~4 positions per name.

This file imports nothing from mlmkit: it travels with exported character models (`portable.py`).

Hashed n-gram embeddings (``ngram_buckets > 0``): each position also adds the embeddings of the
character n-grams (orders 2..``ngram_max``) of the *masked* input that end at it and that start
at it, hashed into ``ngram_buckets`` rows per order and side. They give a small encoder a large, cheap memory of frequent
substrings ("mail", "temp", "shop"), which is what a character n-gram model lives on, for a few
embedding look-ups per character instead of wider matmuls. A masked character enters the hash as
MASK, so nothing about it leaks into its own prediction.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def ngram_hash_step(h: torch.Tensor, c: torch.Tensor, salt: int) -> torch.Tensor:
    """Extend the rolling hash `h` of an n-gram by one more character id `c` (non-negative int64;
    the result stays below 2^31, so no step can overflow int64). Shared by the encoder's n-gram
    embeddings and the span head's n-gram memory."""
    return (h * 1_000_003 + c * 7_919 + salt) % 2_147_483_647


def ngram_tables(model: nn.Module) -> list[nn.Embedding]:
    """The hashed n-gram tables of a model (embeddings whose module name contains ``ngram``):
    memories with a row per hashed context, which the task declares to the engine as a parameter
    group of their own (`CharMLMTask.param_groups`)."""
    return [m for name, m in model.named_modules() if isinstance(m, nn.Embedding) and "ngram" in name]


def _stack(n: int, d: int, heads: int, ff: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(d, heads, ff, dropout, activation="gelu", batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, n, enable_nested_tensor=False)


def run_stack(stack: nn.TransformerEncoder, x: torch.Tensor, recompute: bool, mask=None,
              src_key_padding_mask=None, is_causal: Optional[bool] = None) -> torch.Tensor:
    """`stack(x, ...)`, or with `recompute` (gradient checkpointing, in training) its layers one by
    one, each in a non-reentrant checkpoint: only each layer's input is kept for the backward
    pass, the rest is recomputed there. The layers turn a boolean padding mask into the same
    additive one the stack would, so both give the same numbers."""
    if not (recompute and torch.is_grad_enabled()):
        return stack(x, mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=is_causal)
    for layer in stack.layers:
        x = checkpoint(layer, x, src_mask=mask, src_key_padding_mask=src_key_padding_mask,
                       is_causal=bool(is_causal), use_reentrant=False)
    return x if stack.norm is None else stack.norm(x)


class ScratchCharEncoder(nn.Module):
    uses_code_points = False

    def __init__(self, vocab_size: int, hidden_size: int = 128, num_layers: int = 3, num_heads: int = 4,
                 intermediate_size: int = 512, max_positions: int = 256, downsampling_rate: int = 1,
                 dropout: float = 0.1, ngram_buckets: int = 0, ngram_max: int = 5, ngram_dim: int = 0,
                 causal: bool = False):
        super().__init__()
        if downsampling_rate not in (1, 2, 4):
            raise ValueError("downsampling_rate must be 1, 2 or 4")
        if causal and downsampling_rate != 1:
            raise ValueError("a causal encoder needs downsampling_rate 1")
        self.config = dict(vocab_size=vocab_size, hidden_size=hidden_size, num_layers=num_layers,
                           num_heads=num_heads, intermediate_size=intermediate_size,
                           max_positions=max_positions, downsampling_rate=downsampling_rate, dropout=dropout,
                           ngram_buckets=ngram_buckets, ngram_max=ngram_max, ngram_dim=ngram_dim)
        if causal:  # absent otherwise: older configs stay as they were saved
            self.config["causal"] = True
        d = hidden_size
        self.hidden_size = d
        self.rate = downsampling_rate
        self.causal = causal  # position i sees only positions <= i (a tower of `ClozeCharEncoder`)
        self.max_positions = max_positions
        self.char_emb = nn.Embedding(vocab_size, d, padding_idx=0)
        self.pos_emb = nn.Embedding(max_positions, d)
        self.ngram_orders = list(range(2, ngram_max + 1)) if ngram_buckets else []
        if self.ngram_orders:
            # narrow rows + one projection: more buckets (fewer collisions) for the same memory
            # and optimiser traffic; 0 = rows as wide as the encoder, no projection
            e = ngram_dim or d
            sides = 1 if causal else 2  # causal: only the n-grams that end at a position
            self.ngram_emb = nn.Embedding(ngram_buckets * sides * len(self.ngram_orders), e)
            nn.init.zeros_(self.ngram_emb.weight)  # starts as a no-op; frequent n-grams grow first
            self.ngram_proj = nn.Linear(e, d, bias=False) if e != d else nn.Identity()
        self.emb_norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)
        if downsampling_rate == 1:
            self.deep = _stack(num_layers, d, num_heads, intermediate_size, dropout)
        else:
            self.char_layer = _stack(1, d, num_heads, intermediate_size, dropout)
            self.down = nn.Conv1d(d, d, kernel_size=downsampling_rate, stride=downsampling_rate)
            self.mol_pos = nn.Embedding(max_positions // downsampling_rate + 1, d)
            self.down_norm = nn.LayerNorm(d)
            self.deep = _stack(num_layers, d, num_heads, intermediate_size, dropout)
            self.up_proj = nn.Linear(2 * d, d)
            self.final_layer = _stack(1, d, num_heads, intermediate_size, dropout)
        self.final_norm = nn.LayerNorm(d)
        self.gradient_checkpointing = False  # a training setting, not part of the saved config

    def gradient_checkpointing_enable(self) -> None:
        """Recompute each transformer layer's activations in the backward pass (`run_stack`)."""
        self.gradient_checkpointing = True

    def _stack(self, stack: nn.TransformerEncoder, x: torch.Tensor, **kw) -> torch.Tensor:
        return run_stack(stack, x, self.gradient_checkpointing and self.training, **kw)

    def forward(self, input_idx: torch.Tensor, attention_mask: torch.Tensor, **_) -> torch.Tensor:
        B, L = input_idx.shape
        if L > self.max_positions:
            raise ValueError(f"input of {L} characters exceeds max_positions={self.max_positions}")
        pos = torch.arange(L, device=input_idx.device)
        x = self.char_emb(input_idx) + self.pos_emb(pos)[None]
        if self.ngram_orders:
            x = x + self.ngram_proj(self.ngram_emb(self.ngram_ids(input_idx)).sum(2))
        x = self.drop(self.emb_norm(x))
        pad = attention_mask == 0
        if self.causal:  # padding only follows a row: a real position never attends to it
            mask = nn.Transformer.generate_square_subsequent_mask(L, device=x.device, dtype=x.dtype)
            return self.final_norm(self._stack(self.deep, x, mask=mask, is_causal=True))
        if self.rate == 1:
            return self.final_norm(self._stack(self.deep, x, src_key_padding_mask=pad))
        r = self.rate
        h_char = self._stack(self.char_layer, x, src_key_padding_mask=pad)
        Lp = (L + r - 1) // r * r
        h_pad = F.pad(h_char, (0, 0, 0, Lp - L))
        m_pad = F.pad(attention_mask, (0, Lp - L))
        mol = self.down(h_pad.transpose(1, 2)).transpose(1, 2)  # (B, M, D)
        M = mol.shape[1]
        mol_mask = m_pad.view(B, M, r).amax(-1)
        mol = self.down_norm(mol + self.mol_pos(torch.arange(M, device=mol.device))[None])
        mol = self._stack(self.deep, mol, src_key_padding_mask=mol_mask == 0)
        up = mol.repeat_interleave(r, dim=1)[:, :L]
        h = self.up_proj(torch.cat([h_char, up], -1))
        return self.final_norm(self._stack(self.final_layer, h, src_key_padding_mask=pad))


    def ngram_ids(self, input_idx: torch.Tensor) -> torch.Tensor:
        """(B, L, 2 * n_orders) rows of `ngram_emb`: hashes of the n characters ending at each
        position (its left context) and of the n characters starting at it (its right context),
        for n = 2..ngram_max; positions outside the row count as PAD. One bucket range per
        (side, order)."""
        buckets = self.config["ngram_buckets"]
        x = input_idx.long()
        L = x.shape[1]
        out = []
        for side in range(1 if self.causal else 2):
            h = x  # never written in place: each step below makes a new tensor
            for n in range(2, self.ngram_orders[-1] + 1):
                if side == 0:  # the character n-1 places back
                    other = F.pad(x, (n - 1, 0))[:, :L]
                else:  # the character n-1 places ahead
                    other = F.pad(x, (0, n - 1))[:, n - 1:]
                h = ngram_hash_step(h, other, n)
                out.append(h % buckets + len(out) * buckets)
        return torch.stack(out, -1)


class ClozeCharEncoder(nn.Module):
    """Two causal towers, one reading each row left to right, one right to left: position i's
    state is ``[fwd(chars <= i), bwd(chars >= i)]``, (B, L, 2 * hidden_size).

    Why: a bidirectional encoder learns only from the ~15% of characters it was shown as MASK. Here
    a span (p, n) is predicted from fwd at p - 1 and bwd at p + n (`heads.ClozeContext`), which
    never saw the span, so a window at every character of every name is a target on the same
    forward pass (`masking.window_spans`): the statistic a character n-gram model counts, learned
    from all of it, for twice the encoder cost. The right-to-left tower runs the same causal code on each row reversed in place (padding stays
    at the end)."""

    uses_code_points = False
    # No state the head reads for a span depends on the span's own input characters, so a name's
    # every position can be scored from one pass over it unmasked (`portable.pseudo_log_likelihood`).
    reads_own_character = False

    def __init__(self, **config):
        super().__init__()
        config = {k: v for k, v in config.items() if k not in ("cloze", "causal")}
        self.config = {**config, "cloze": True}
        self.fwd = ScratchCharEncoder(**config, causal=True)
        self.bwd = ScratchCharEncoder(**config, causal=True)
        self.hidden_size = 2 * self.fwd.hidden_size
        self.max_positions = self.fwd.max_positions

    def gradient_checkpointing_enable(self) -> None:
        self.fwd.gradient_checkpointing_enable()
        self.bwd.gradient_checkpointing_enable()

    def forward(self, input_idx: torch.Tensor, attention_mask: torch.Tensor, **_) -> torch.Tensor:
        rev = reverse_index(attention_mask)
        bwd = self.bwd(input_idx.gather(1, rev), attention_mask)
        bwd = bwd.gather(1, rev[..., None].expand_as(bwd))  # reversing twice is the identity
        return torch.cat([self.fwd(input_idx, attention_mask), bwd], -1)


def reverse_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) positions that reverse each row's real part in place (padding stays where it is)."""
    n = attention_mask.sum(1, keepdim=True)
    j = torch.arange(attention_mask.shape[1], device=attention_mask.device)[None]
    return torch.where(j < n, n - 1 - j, j)


def build_scratch_encoder(**config) -> nn.Module:
    """The from-scratch encoder a saved config describes (``cloze: true``: `ClozeCharEncoder`)."""
    return ClozeCharEncoder(**config) if config.get("cloze") else ScratchCharEncoder(**config)


class CanineCharEncoder(nn.Module):
    """`transformers.CanineModel` returning character-level hidden states."""

    uses_code_points = True

    def __init__(self, pretrained: Optional[str] = None, config=None, **config_overrides):
        super().__init__()
        from transformers import CanineConfig, CanineModel

        # `pretrained`'s tensors that were not in the checkpoint (transformers only warns)
        self.missing: Optional[list[str]] = None
        if pretrained:
            self.canine, info = CanineModel.from_pretrained(pretrained, output_loading_info=True, **config_overrides)
            self.missing = list(info.get("missing_keys") or [])
        else:
            if config is None:
                config = CanineConfig(**config_overrides)
            elif isinstance(config, dict):
                config = CanineConfig(**config)
            self.canine = CanineModel(config)
        # The pooler is not used by the MLM: freeze it so DDP sees no unused trainable parameters,
        # while an exported folder still carries it (CanineForSequenceClassification uses it).
        if getattr(self.canine, "pooler", None) is not None:
            self.canine.pooler.requires_grad_(False)
        self.hidden_size = self.canine.config.hidden_size
        self.max_positions = self.canine.config.max_position_embeddings

    def gradient_checkpointing_enable(self) -> None:
        """transformers' own checkpointing of CANINE's layers (non-reentrant, as the scratch encoder's)."""
        if hasattr(self.canine, "activation_checkpointing_enable"):  # its name since transformers 5.x
            self.canine.activation_checkpointing_enable({"use_reentrant": False})
        else:
            self.canine.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_) -> torch.Tensor:
        out = self.canine(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state


def tiny_canine_config(**overrides):
    """A very small CanineConfig for tests and CPU demos."""
    from transformers import CanineConfig

    kw = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
              num_hash_functions=4, num_hash_buckets=512, local_transformer_stride=16,
              max_position_embeddings=256, downsampling_rate=4, upsampling_kernel_size=4)
    kw.update(overrides)
    return CanineConfig(**kw)
