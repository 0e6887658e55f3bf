"""A sequence classifier and a word tagger on a token encoder, for `mlmkit finetune`:
transformers' `AutoModelForSequenceClassification` / `AutoModelForTokenClassification` with a
new, seeded head; the saved folder is what `pipeline("text-classification")` /
`pipeline("token-classification")` loads, with the label names."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import MlmkitError
from ..family_protocol import Classifier
from ..util import one_line
from .tokenizers import load_tokenizer


def load_classifier(path: str, labels: list[str], *, from_scratch: bool, seed: int, per_token: bool = False):
    """A transformers sequence classifier (`per_token`: token classifier) on the token encoder at
    `path` (new, seeded head; `from_scratch`: every weight re-initialised, the baseline)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification

    id2label = dict(enumerate(labels))
    label2id = {l: i for i, l in id2label.items()}
    auto = AutoModelForTokenClassification if per_token else AutoModelForSequenceClassification
    torch.manual_seed(seed)  # the same new head (and, from scratch, the same body) for every arm
    try:
        if from_scratch:
            config = AutoConfig.from_pretrained(path, num_labels=len(labels), id2label=id2label, label2id=label2id)
            return auto.from_config(config)
        return auto.from_pretrained(path, num_labels=len(labels), id2label=id2label, label2id=label2id)
    except (OSError, ValueError, KeyError) as e:
        kind = "token classification" if per_token else "classification"
        raise MlmkitError(f"could not load a {kind} model from {path!r}: {one_line(e)}") from None


def token_classifier(path: str, labels: list[str], *, from_scratch: bool, seed: int, max_length: int) -> Classifier:
    tokenizer = load_tokenizer(path)
    model = load_classifier(path, labels, from_scratch=from_scratch, seed=seed)

    def prepare(texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]

    usage = ('from transformers import pipeline\nclf = pipeline("text-classification", model="{out}")\n'
             'clf("some text", truncation=True)')
    return Classifier(model, prepare, _collate(tokenizer), _saver(model, tokenizer, max_length), "transformers", usage)


def _collate(tokenizer):
    """Prepared id lists (or (ids, word_ids) pairs), rows -> padded input_ids and attention_mask."""
    def collate(prepared, rows) -> dict[str, torch.Tensor]:
        seqs = [prepared[i][0] if isinstance(prepared[i], tuple) else prepared[i] for i in rows]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
        att = torch.zeros((len(rows), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.tensor(s)
            att[r, : len(s)] = 1
        return {"input_ids": ids, "attention_mask": att}

    return collate


def _saver(model, tokenizer, max_length: int):
    def save(out: Path) -> None:
        model.cpu().save_pretrained(out)
        # Long inputs are cut where training cut them, so `pipeline(..., truncation=True)` matches.
        tokenizer.model_max_length = max_length
        tokenizer.save_pretrained(out)

    return save


def _split_word_tokenizer(path: str, tokenizer):
    """A tokenizer that accepts pre-split words: byte-level BPE (RoBERTa, GPT-2 style) needs
    ``add_prefix_space=True`` for that, so such a tokenizer is loaded again with it."""
    try:
        tokenizer(["a", "b"], is_split_into_words=True)
        return tokenizer
    except (ValueError, AssertionError):
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(path, use_fast=True, add_prefix_space=True)
        except Exception as e:  # noqa: BLE001 -- any failure means the same thing to the user
            raise MlmkitError(f"tokenizer of {path!r} cannot encode pre-split words: {one_line(e)}") from None


def word_tagger(path: str, labels: list[str], *, from_scratch: bool, seed: int, max_length: int) -> Classifier:
    """A token classifier whose `prepare` encodes word lists into (input_ids, word_ids) pairs."""
    tokenizer = _split_word_tokenizer(path, load_tokenizer(path))
    model = load_classifier(path, labels, from_scratch=from_scratch, seed=seed, per_token=True)

    def prepare(sentences: list[list[str]]) -> list[tuple[list[int], list]]:
        if not sentences:
            return []
        enc = tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=max_length)
        return [(ids, enc.word_ids(i)) for i, ids in enumerate(enc["input_ids"])]

    usage = ('from transformers import pipeline\ntagger = pipeline("token-classification", model="{out}", '
             'aggregation_strategy="first")\ntagger("Some text to tag")')
    return Classifier(model, prepare, _collate(tokenizer), _saver(model, tokenizer, max_length), "transformers", usage)
