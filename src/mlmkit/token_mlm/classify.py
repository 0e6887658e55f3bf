"""A sequence classifier on a token encoder, for `mlmkit finetune`: transformers'
`AutoModelForSequenceClassification` with a new, seeded head; the saved folder is what
`pipeline("text-classification")` loads, with the label names."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import MlmkitError
from ..family import Classifier
from ..util import one_line
from .tokenizers import load_tokenizer


def load_classifier(path: str, labels: list[str], *, from_scratch: bool, seed: int):
    """A transformers sequence classifier on the token encoder at `path` (new, seeded head;
    `from_scratch`: every weight re-initialised, the baseline)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    id2label = dict(enumerate(labels))
    label2id = {l: i for i, l in id2label.items()}
    torch.manual_seed(seed)  # the same new head (and, from scratch, the same body) for every arm
    try:
        if from_scratch:
            config = AutoConfig.from_pretrained(path, num_labels=len(labels), id2label=id2label, label2id=label2id)
            return AutoModelForSequenceClassification.from_config(config)
        return AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(labels), id2label=id2label, label2id=label2id)
    except (OSError, ValueError, KeyError) as e:
        raise MlmkitError(f"could not load a classification model from {path!r}: {one_line(e)}") from None


def token_classifier(path: str, labels: list[str], *, from_scratch: bool, seed: int, max_length: int) -> Classifier:
    tokenizer = load_tokenizer(path)
    model = load_classifier(path, labels, from_scratch=from_scratch, seed=seed)

    def prepare(texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]

    def collate(prepared, rows) -> dict[str, torch.Tensor]:
        width = max(len(prepared[i]) for i in rows)
        ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
        att = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            ids[r, : len(prepared[i])] = torch.tensor(prepared[i])
            att[r, : len(prepared[i])] = 1
        return {"input_ids": ids, "attention_mask": att}

    def save(out: Path) -> None:
        model.cpu().save_pretrained(out)
        # Long inputs are cut where training cut them, so `pipeline(..., truncation=True)` matches.
        tokenizer.model_max_length = max_length
        tokenizer.save_pretrained(out)

    usage = ('from transformers import pipeline\nclf = pipeline("text-classification", model="{out}")\n'
             'clf("some text", truncation=True)')
    return Classifier(model, prepare, collate, save, "transformers", usage)
