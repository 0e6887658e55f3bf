"""Original / Masked / Predicted for token models: what the model predicts under the mask, one
column per token (rendered by `mlmkit.report.masked_examples`)."""

from __future__ import annotations

from typing import Sequence

import torch

from ..report.masked_examples import MaskedExample, render_examples
from .masking import TokenMasker
from .model import masked_logits


def _display_tokens(tokenizer, ids: Sequence[int]) -> list[str]:
    """Readable token strings: WordPiece keeps its '##' (it shows where words were split);
    byte-level BPE's 'Ġ' marker and SentencePiece's '▁' become nothing."""
    out = []
    for tok in tokenizer.convert_ids_to_tokens([int(i) for i in ids]):
        tok = tok or "?"
        if tok.startswith("##") or tok in tokenizer.all_special_tokens:
            out.append(tok)
            continue
        text = tokenizer.convert_tokens_to_string([tok]).strip()
        out.append(text or tok)
    return out


@torch.no_grad()
def predict_examples(model, tokenizer, original: torch.Tensor, corrupted: torch.Tensor,
                     attention_mask: torch.Tensor, selected: torch.Tensor, *,
                     max_tokens: int | None = 64) -> list[MaskedExample]:
    """Run `model` on the corrupted rows and line the three views up, one column per token.

    All tensors are (B, T); `selected` marks the masked (target) positions. Padding and special
    tokens are left out of the display; at most `max_tokens` columns per example."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        positions = selected.reshape(-1).nonzero().squeeze(1)
        logits = masked_logits(model, corrupted.to(device), attention_mask.to(device), positions.to(device))
        predicted = original.clone()
        predicted.view(-1)[positions] = logits.argmax(-1).to(original.device, original.dtype)
    finally:
        model.train(was_training)
    special = set(tokenizer.all_special_ids) - {tokenizer.mask_token_id}
    examples = []
    for r in range(original.shape[0]):
        keep = [j for j in range(original.shape[1])
                if attention_mask[r, j] and int(original[r, j]) not in special]
        if max_tokens is not None:
            keep = keep[:max_tokens]
        examples.append(MaskedExample(
            original=_display_tokens(tokenizer, original[r, keep].tolist()),
            masked=_display_tokens(tokenizer, corrupted[r, keep].tolist()),
            predicted=_display_tokens(tokenizer, predicted[r, keep].tolist()),
            target=[bool(selected[r, j]) for j in keep]))
    return examples


def mask_rows(tokenizer, ids: torch.Tensor, attention_mask: torch.Tensor, *, rate: float = 0.15,
              seed: int = 0):
    """BERT-style masking of padded rows, with at least one masked token per row (a short line
    at 15% often gets none, and an example with nothing masked shows nothing)."""
    masker = TokenMasker.from_tokenizer(tokenizer, rate=rate)
    g = torch.Generator().manual_seed(seed)
    out = masker(ids, attention_mask, generator=g)
    selected = torch.zeros(ids.numel(), dtype=torch.bool)
    selected[out.positions] = True
    selected = selected.view_as(ids)
    corrupted = out.input_ids
    eligible = masker.eligible(ids, attention_mask)
    for r in range(ids.shape[0]):
        if not selected[r].any() and eligible[r].any():
            cols = eligible[r].nonzero().squeeze(1)
            j = int(cols[torch.randint(len(cols), (1,), generator=g)])
            selected[r, j] = True
            corrupted[r, j] = tokenizer.mask_token_id
    return corrupted, selected


def examples_from_texts(model, tokenizer, texts: list[str], *, rate: float = 0.15, seed: int = 0,
                        max_tokens: int = 64) -> list[MaskedExample]:
    """Tokenise `texts` (each cut to `max_tokens`), mask them with a seed, predict."""
    enc = tokenizer(texts, truncation=True, max_length=max_tokens + 2, padding=True, return_tensors="pt")
    ids, att = enc["input_ids"], enc["attention_mask"]
    corrupted, selected = mask_rows(tokenizer, ids, att, rate=rate, seed=seed)
    return predict_examples(model, tokenizer, ids, corrupted, att, selected, max_tokens=max_tokens)


def eval_examples_text(task, model, n: int = 4, max_tokens: int = 48) -> str | None:
    """The text the trainer logs at each evaluation: `n` validation sequences spread over the
    validation set, with the task's fixed evaluation mask (None without validation data)."""
    if task.validation is None or len(task.validation) == 0:
        return None
    original, corrupted, att, selected = task.eval_tensors()
    rows = torch.linspace(0, len(original) - 1, steps=min(n, len(original))).round().long().unique()
    examples = predict_examples(model, task.tokenizer, original[rows], corrupted[rows], att[rows],
                                selected[rows], max_tokens=max_tokens)
    return render_examples(examples)
