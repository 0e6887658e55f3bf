"""Fill-mask with a saved model: the same numbers `pipeline("fill-mask")` gives."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..errors import MlmkitError


@dataclass
class Fill:
    token: str  # the predicted token as text
    token_id: int
    score: float  # probability
    sequence: str  # the input with this token filled in (other masks left as they are)


def _normalise_masks(text: str, mask_token: str) -> str:
    # Accept the generic "[MASK]" for any model, and the model's own token (e.g. "<mask>").
    if mask_token != "[MASK]":
        text = text.replace("[MASK]", mask_token)
    return text


@torch.no_grad()
def fill_mask(model, tokenizer, text: str, top_k: int = 5) -> list[list[Fill]]:
    """Top-k fills for each mask token in `text`, in order."""
    if tokenizer.mask_token is None:
        raise MlmkitError("the tokenizer has no mask token")
    text = _normalise_masks(text, tokenizer.mask_token)
    enc = tokenizer(text, return_tensors="pt", truncation=True)
    ids = enc["input_ids"]
    where = (ids[0] == tokenizer.mask_token_id).nonzero().squeeze(1)
    if len(where) == 0 and tokenizer.mask_token in text:  # truncation cut every mask off
        raise MlmkitError(f"every mask is past the model's limit of {ids.shape[1]} tokens: shorten the text")
    if len(where) == 0:
        mask = "[MASK]" if tokenizer.mask_token == "[MASK]" else f"{tokenizer.mask_token} (or [MASK])"
        raise MlmkitError(f"no mask token in the text; write {mask} where a word is missing")
    model.eval()
    device = next(model.parameters()).device
    logits = model(**{k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}).logits[0]
    probs = logits[where].float().softmax(-1)
    results = []
    for row, pos in zip(probs, where.tolist()):
        values, indices = row.topk(min(top_k, row.numel()))  # a top_k over the vocabulary: all of it
        fills = []
        for p, tid in zip(values.tolist(), indices.tolist()):
            filled = ids[0].clone()
            filled[pos] = tid
            sequence = tokenizer.decode(filled, skip_special_tokens=False)
            for special in (tokenizer.cls_token, tokenizer.sep_token, tokenizer.bos_token,
                            tokenizer.eos_token, tokenizer.pad_token):
                if special and special != tokenizer.mask_token:
                    sequence = sequence.replace(special, "")
            fills.append(Fill(tokenizer.decode([tid]).strip(), tid, p, re.sub(r"\s+", " ", sequence).strip()))
        results.append(fills)
    return results


def predict_texts(model_path: str, texts: list[str], top_k: int = 5) -> list[dict]:
    """`mlmkit predict` for a token model: one JSON-ready result per text, in order; a text that
    cannot be filled (no mask, the masks cut off) gets {"input", "error"} instead of stopping the
    others."""
    from .model import load_model
    from .tokenizers import load_tokenizer

    tokenizer = load_tokenizer(model_path)  # one without a mask token is refused here, for every text
    model = load_model(model_path)
    results = []
    for text in texts:
        try:
            results.append({"input": text, "masks": [[f.__dict__ for f in row]
                                                     for row in fill_mask(model, tokenizer, text, top_k)]})
        except MlmkitError as e:
            results.append({"input": text, "error": str(e)})
    return results


def format_fills(result: dict) -> list[str]:
    lines = [result["input"]]
    masks = result["masks"]
    for i, row in enumerate(masks):
        if len(masks) > 1:
            lines.append(f"  mask {i + 1}:")
        lines += [f"  {f['score']:7.4f}  {f['token']:<15} {f['sequence']}" for f in row]
    return lines
