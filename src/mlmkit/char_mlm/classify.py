"""A sequence classifier on a character encoder, for `mlmkit finetune`: `CharClassifier` (the
encoder, mean pooling, a linear layer); texts are domain names. Its folder is read by
`load_char_classifier` / `classify_domains` (transformers' pipeline does not know mlmkit's
character encoders)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..engine.task import ParamGroup
from ..family_protocol import Classifier
from .data import Alphabet, normalize_domain
from .encoders import CanineCharEncoder, build_scratch_encoder, ngram_tables
from .masking import encode_domains
from .model import load_char_model


class CharClassifier(torch.nn.Module):
    """A character encoder + mean pooling + linear layer.

    Mean pooling rather than a [CLS] vector: character MLM pre-training never trains the [CLS]
    position, while every character's state is trained, so their mean carries what was learnt."""

    def __init__(self, encoder: torch.nn.Module, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(encoder.hidden_size, num_labels)

    def forward(self, input_ids, input_idx, attention_mask, labels=None):
        from transformers.modeling_outputs import SequenceClassifierOutput

        if getattr(self.encoder, "uses_code_points", False):
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        else:
            h = self.encoder(input_idx, attention_mask)
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        logits = self.classifier(self.dropout(pooled))
        loss = None if labels is None else torch.nn.functional.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


CHAR_CLASSIFIER_FILE = "mlmkit_char_classifier.json"


def _char_encoder(kind: str, config: dict):
    return CanineCharEncoder(config=config) if kind == "canine" else build_scratch_encoder(**config)


def _classifier_from_mlm(path: str, labels: list[str], *, from_scratch: bool, seed: int):
    bundle = load_char_model(path)
    kind = "canine" if getattr(bundle.model.encoder, "uses_code_points", False) else "scratch"
    enc_cfg = bundle.model.encoder_config()
    torch.manual_seed(seed)
    # From scratch: the same constructor and config, fresh weights.
    encoder = _char_encoder(kind, enc_cfg) if from_scratch else bundle.model.encoder
    clf = CharClassifier(encoder, len(labels))
    clf.meta = {"encoder": kind, "encoder_config": enc_cfg, "labels": labels,
                "max_length": int(getattr(encoder, "max_positions", bundle.data.max_length + 2)) - 2}
    return clf, bundle.alphabet


def load_char_classifier(path: str | Path):
    """(model, alphabet, labels) of a folder written by `mlmkit finetune` on a character model."""
    from safetensors.torch import load_model

    path = Path(path)
    meta = json.loads((path / CHAR_CLASSIFIER_FILE).read_text(encoding="utf-8"))
    clf = CharClassifier(_char_encoder(meta["encoder"], meta["encoder_config"]), len(meta["labels"]))
    load_model(clf, str(path / "model.safetensors"))
    clf.meta = meta
    return clf.eval(), Alphabet.load(path / "alphabet.json"), meta["labels"]


@torch.no_grad()
def classify_domains(path: str | Path, names: list[str]) -> list[tuple[str, float]]:
    """(label, probability) for each name, with a saved character classifier."""
    clf, alphabet, labels = load_char_classifier(path)
    data = _CharInputs(alphabet, clf.meta["max_length"])
    prepared = data.prepare(names)
    probs = clf(**data.collate(prepared, list(range(len(prepared))))).logits.softmax(-1)
    return [(labels[int(i)], float(p)) for p, i in zip(*probs.max(-1))]


class _CharInputs:
    """Domain names -> normalised strings -> code points / alphabet indices (see masking.encode_domains)."""

    def __init__(self, alphabet, max_length: int):
        self.alphabet, self.max_length = alphabet, max_length

    def prepare(self, texts: list[str]) -> list[str]:
        return [normalize_domain(t)[: self.max_length] for t in texts]

    def collate(self, prepared, rows) -> dict[str, torch.Tensor]:
        cps, idx, att, *_ = encode_domains([prepared[i] for i in rows], self.alphabet)
        return {"input_ids": cps, "input_idx": idx, "attention_mask": att}


def char_classifier(path: str, labels: list[str], *, from_scratch: bool, seed: int, max_length: int) -> Classifier:
    clf, alphabet = _classifier_from_mlm(path, labels, from_scratch=from_scratch, seed=seed)
    inputs = _CharInputs(alphabet, clf.meta["max_length"])

    def save(out: Path) -> None:
        from safetensors.torch import save_model

        save_model(clf.cpu(), str(out / "model.safetensors"))
        (out / CHAR_CLASSIFIER_FILE).write_text(json.dumps(clf.meta, indent=1), encoding="utf-8")
        alphabet.save(out / "alphabet.json")

    def groups() -> list[ParamGroup]:
        # hashed n-gram tables: no weight decay (a row learns only when its context occurs)
        tables = [t.weight for t in ngram_tables(clf)]
        return [ParamGroup(tables, weight_decay=0.0)] if tables else []

    usage = 'from mlmkit.char_mlm.classify import classify_domains\nclassify_domains("{out}", ["example.com"])'
    return Classifier(clf, inputs.prepare, inputs.collate, save, "mlmkit", usage, groups)
