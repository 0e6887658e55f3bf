"""`mlmkit finetune MODEL --task classification --data FILE`: sequence classification on a
pre-trained encoder.

    mlmkit finetune runs/bbc/model --data bbc/ -o runs/bbc-cls          # <label>/*.txt folders
    mlmkit finetune runs/x/model --data reviews.csv --text-column review --label-column stars
    mlmkit finetune runs/bbc/model --data bbc/ --from-scratch -o runs/bbc-cls-random   # baseline

Data: CSV / TSV / JSON Lines with a text and a label column (read with mlmkit's readers, so bad
records are reported by file and line), or a folder of label sub-folders, one document per
file (``bbc/business/001.txt`` ...). Records are split into train / validation (/ test) by a hash
of the text -- the same text always lands on the same side, on every machine and run.

Training: `AutoModelForSequenceClassification` on the encoder's weights (a new, seeded
classification head), AdamW with warmup and linear decay, evaluation on the validation split
after every epoch (or every ``--eval-every`` steps), early stopping on validation accuracy, and
the best weights restored at the end. ``--from-scratch`` re-initialises every weight but keeps
the architecture and tokenizer: the baseline that shows what pre-training bought.

Character models (``task: char``) get a `CharClassifier` (the character encoder, mean pooling,
a linear layer); texts are domain names. Their folder is read by `load_char_classifier` /
`classify_domains` (transformers' pipeline does not know mlmkit's character encoders).

Output: a folder that ``pipeline("text-classification", model=OUT)`` loads with the label
names (token models), plus ``metrics.json`` (validation/test accuracy and macro-F1), ``metrics.jsonl`` (curves
for ``mlmkit plot``) and a ``README.md`` model card.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from .progress import progress_bar, write as progress_write

from .errors import DataError, MlmkitError

TASKS = ("classification",)
_TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}


@dataclass
class FinetuneConfig:
    task: str = "classification"
    text_column: str = "text"
    label_column: str = "label"
    validation_fraction: float = 0.1
    test_fraction: float = 0.0  # > 0: also report accuracy on a test split never used for stopping
    epochs: float = 3.0
    max_minutes: Optional[float] = None  # wall-clock budget (stops early; the LR schedule follows it)
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_length: int = 128
    patience: Optional[int] = 2  # evaluations without a better validation accuracy (None: never stop)
    eval_every: Optional[int] = None  # steps; None: once per epoch
    seed: int = 0
    from_scratch: bool = False
    max_samples: Optional[int] = None
    device: str = "auto"
    # CPU threads for torch. On a machine shared with other jobs, 1 thread can be several times
    # faster than 2 oversubscribed ones (measured 0.11 s vs 0.4-1.6 s per step, BERT tiny).
    threads: Optional[int] = None
    progress: bool = True

    def __post_init__(self):
        if self.task not in TASKS:
            raise MlmkitError(f"unknown fine-tuning task {self.task!r} (supported: {', '.join(TASKS)})")
        if not 0 < self.validation_fraction < 1 or not 0 <= self.test_fraction < 1 \
                or self.validation_fraction + self.test_fraction >= 1:
            raise MlmkitError("validation and test fractions must be in [0, 1) and leave some training data")
        if self.epochs <= 0 or self.batch_size < 1 or self.lr <= 0:
            raise MlmkitError("epochs, batch size and learning rate must be positive")


@dataclass
class Example:
    text: str
    label: str


# ------------------------------------------------------------------------------ data
def is_label_folder(path: Path) -> bool:
    """A folder whose sub-folders are the labels (``data/business/001.txt``), with no data
    files of its own at the top."""
    if not path.is_dir():
        return False
    subdirs = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    top_files = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _TABLE_SUFFIXES]
    return len(subdirs) >= 2 and not top_files


def read_label_folder(path: Path, log=print) -> list[Example]:
    """One example per file; the label is the sub-folder's name. Files that are not UTF-8 are
    read as Windows-1252 (real corpora have the odd Latin-1 file) and counted in the log."""
    examples, fallback, empty = [], 0, 0
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(p for p in sub.rglob("*") if p.is_file() and not p.name.startswith(".")):
            raw = f.read_bytes()
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                text = raw.decode("cp1252", errors="replace")
                fallback += 1
            if not text.strip():
                empty += 1
                continue
            examples.append(Example(text.strip(), sub.name))
    if not examples:
        raise DataError("no non-empty files in the label sub-folders", str(path))
    note = f"; {fallback} not UTF-8, read as Windows-1252" if fallback else ""
    note += f"; {empty} empty skipped" if empty else ""
    log(f"data {path}: {len(examples)} documents in {len({e.label for e in examples})} label folders{note}")
    return examples


def _jsonl_labels(path: Path, column: str) -> dict[int, object]:
    """line (or array element) number -> raw label value. JSON labels may be numbers or booleans,
    which mlmkit's text reader (strings only) rightly refuses as *text*."""
    raw = path.read_bytes().decode("utf-8-sig", errors="replace")
    if raw.lstrip().startswith("["):
        items = json.loads(raw)
        return {i: it.get(column) for i, it in enumerate(items, 1) if isinstance(it, dict) and column in it}
    out = {}
    for n, line in enumerate(raw.splitlines(), 1):
        if line.strip():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue  # the text pass has already reported (or skipped) this line
            if isinstance(obj, dict) and column in obj:
                out[n] = obj[column]
    return out


def read_table(path: Path, text_column: str, label_column: str, log=print) -> list[Example]:
    """Texts through `data.sources.iter_records` (its error messages name file and line), joined
    by line number with the labels of the same file."""
    from .data.sources import ReadStats, iter_records

    kind = _TABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError("fine-tuning data must be CSV, TSV, JSON Lines or a folder of label folders", str(path))
    stats = ReadStats()
    texts = {r.line: r.text for r in iter_records(str(path), text_column=text_column, stats=stats, on_bad="skip")}
    if kind == "jsonl":
        labels = _jsonl_labels(path, label_column)
    else:
        labels = {r.line: r.text for r in iter_records(str(path), text_column=label_column, skip_empty=False,
                                                       on_bad="skip")}
    if not labels:
        raise DataError(f"no label column {label_column!r} (use --label-column)", str(path))
    examples, unlabelled = [], 0
    for line, text in texts.items():
        label = labels.get(line)
        if label is None or not str(label).strip():
            unlabelled += 1
            continue
        examples.append(Example(text, str(label).strip()))
    note = f", {unlabelled} without a label skipped" if unlabelled else ""
    log(f"data {path}: {len(examples)} labelled records ({stats.summary()}{note})")
    return examples


def load_examples(specs: list[str], text_column: str = "text", label_column: str = "label",
                  max_samples: int | None = None, log=print) -> list[Example]:
    from .data.sources import resolve_files

    examples: list[Example] = []
    for spec in specs:
        p = Path(spec)
        if is_label_folder(p):
            examples += read_label_folder(p, log=log)
            continue
        files = [f for f in resolve_files(spec) if f.suffix.lower() in _TABLE_SUFFIXES]
        if not files:
            raise DataError("no CSV/TSV/JSONL files, and not a folder of label sub-folders", spec)
        for f in files:
            examples += read_table(f, text_column, label_column, log=log)
    if max_samples is not None:
        examples = examples[:max_samples]
    if len({e.label for e in examples}) < 2:
        raise MlmkitError(f"need at least two distinct labels, found {sorted({e.label for e in examples})}")
    return examples


def _unit_hash(text: str) -> float:
    h = hashlib.blake2b(text.encode("utf-8"), digest_size=8, person=b"mlmkit-ft").digest()
    return int.from_bytes(h, "big") / 2**64


def split_examples(examples: list[Example], validation_fraction: float, test_fraction: float = 0.0):
    """(train, validation, test) by a hash of the text: [0, test) test, [test, test+val) validation."""
    train, val, test = [], [], []
    for e in examples:
        u = _unit_hash(e.text)
        (test if u < test_fraction else val if u < test_fraction + validation_fraction else train).append(e)
    if not train or not val:
        raise MlmkitError(f"the split left {len(train)} training and {len(val)} validation examples; "
                          "give more data or change --validation-fraction")
    return train, val, test


# ------------------------------------------------------------------------------ metrics
def classification_metrics(y_true: list[int], y_pred: list[int], n_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 (unweighted mean of per-class F1 over the classes in y_true)."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if len(t) == 0:
        return {}
    f1s = []
    for c in range(n_classes):
        if not (t == c).any():
            continue
        tp = int(((p == c) & (t == c)).sum())
        fp = int(((p == c) & (t != c)).sum())
        fn = int(((p != c) & (t == c)).sum())
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float((t == p).mean()), "macro_f1": float(np.mean(f1s)), "n": int(len(t))}


# ------------------------------------------------------------------------------ models
def _load_classifier(path: str, labels: list[str], *, from_scratch: bool, seed: int):
    """A transformers sequence classifier on the token encoder at `path` (new, seeded head)."""
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
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MlmkitError(f"could not load a classification model from {path!r}: {first}") from None


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
    from .models.char_encoder import CanineCharEncoder, ScratchCharEncoder

    return CanineCharEncoder(config=config) if kind == "canine" else ScratchCharEncoder(**config)


def _load_char_classifier_from_mlm(path: str, labels: list[str], *, from_scratch: bool, seed: int):
    from .char_task import load_char_model

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

    from .data.domains import Alphabet

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


# ------------------------------------------------------------------------------ inputs
class _TokenInputs:
    """Texts -> token ids (cut at max_length) -> padded batches."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length

    def prepare(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]

    def collate(self, prepared, rows) -> dict[str, torch.Tensor]:
        width = max(len(prepared[i]) for i in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        att = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            ids[r, : len(prepared[i])] = torch.tensor(prepared[i])
            att[r, : len(prepared[i])] = 1
        return {"input_ids": ids, "attention_mask": att}


class _CharInputs:
    """Domain names -> normalised strings -> code points / alphabet indices (see char_task)."""

    def __init__(self, alphabet, max_length: int):
        self.alphabet, self.max_length = alphabet, max_length

    def prepare(self, texts: list[str]) -> list[str]:
        from .data.domains import normalize_domain

        return [normalize_domain(t)[: self.max_length] for t in texts]

    def collate(self, prepared, rows) -> dict[str, torch.Tensor]:
        from .char_task import encode_domains

        cps, idx, att, *_ = encode_domains([prepared[i] for i in rows], self.alphabet)
        return {"input_ids": cps, "input_idx": idx, "attention_mask": att}


def _batches(inputs, prepared, labels: list[int], order, batch_size: int):
    for s in range(0, len(order), batch_size):
        rows = [int(i) for i in order[s: s + batch_size]]
        yield inputs.collate(prepared, rows), torch.tensor([labels[i] for i in rows])


@torch.no_grad()
def predict_labels(model, inputs, prepared, labels, batch_size, device) -> tuple[list[int], float]:
    """Arg-max predictions (in order) and the mean cross-entropy."""
    was = model.training
    model.eval()
    loss_sum = 0.0
    order = np.argsort([len(e) for e in prepared], kind="stable")  # similar lengths: little padding
    out = np.empty(len(prepared), dtype=np.int64)
    for s, (x, y) in zip(range(0, len(order), batch_size), _batches(inputs, prepared, labels, order, batch_size)):
        logits = model(**{k: v.to(device) for k, v in x.items()}).logits.float()
        loss_sum += float(torch.nn.functional.cross_entropy(logits, y.to(device), reduction="sum"))
        out[order[s: s + batch_size]] = logits.argmax(-1).cpu().numpy()
    model.train(was)
    return out.tolist(), loss_sum / max(len(prepared), 1)


# ------------------------------------------------------------------------------ training
@dataclass
class FinetuneResult:
    labels: list[str]
    validation: dict = field(default_factory=dict)
    test: dict = field(default_factory=dict)
    best_step: int = 0
    steps: int = 0
    train_seconds: float = 0.0
    stopped: str = "finished"
    sizes: dict = field(default_factory=dict)


def finetune(model: str, data: list[str], out: str | Path, cfg: FinetuneConfig | None = None,
             log: Callable[[str], None] = print) -> FinetuneResult:
    """Fine-tune `model` (run folder, model folder, exported encoder, or character model) on
    `data`; save the classifier to `out`."""
    from .data.tokenizers import load_tokenizer
    from .evaluation import is_char_model, resolve_model_dir
    from .training import pick_device

    cfg = cfg or FinetuneConfig()
    path = resolve_model_dir(model)
    out = Path(out)
    examples = load_examples(list(data), cfg.text_column, cfg.label_column, cfg.max_samples, log=log)
    train_ex, val_ex, test_ex = split_examples(examples, cfg.validation_fraction, cfg.test_fraction)
    labels = sorted({e.label for e in examples})
    log(f"{len(labels)} labels ({', '.join(f'{k}: {v}' for k, v in sorted(Counter(e.label for e in examples).items()))}); "
        f"split {len(train_ex)} train / {len(val_ex)} validation / {len(test_ex)} test")

    if is_char_model(path):
        clf, alphabet = _load_char_classifier_from_mlm(path, labels, from_scratch=cfg.from_scratch, seed=cfg.seed)
        inputs, saver = _CharInputs(alphabet, clf.meta["max_length"]), _char_saver(alphabet)
    else:
        tokenizer = load_tokenizer(path)
        clf = _load_classifier(path, labels, from_scratch=cfg.from_scratch, seed=cfg.seed)
        inputs, saver = _TokenInputs(tokenizer, cfg.max_length), _token_saver(tokenizer)
    log(f"{'randomly initialised' if cfg.from_scratch else 'pre-trained'} {type(clf).__name__} "
        f"({sum(p.numel() for p in clf.parameters()) / 1e6:.2f}M parameters) from {path}")
    device = pick_device(cfg.device)
    clf.to(device)
    threads_before = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        result = _train(clf, inputs, cfg, device, out, labels, train_ex, val_ex, test_ex)
    finally:
        torch.set_num_threads(threads_before)  # a library call must not change the caller's torch
    saver(clf, out, cfg)
    _write_card(out, cfg, result, model, data, char=isinstance(clf, CharClassifier))
    log(f"best validation accuracy {result.validation['accuracy']:.4f} (step {result.best_step} of {result.steps}); "
        + (f"test accuracy {result.test['accuracy']:.4f}, macro-F1 {result.test['macro_f1']:.4f}; " if test_ex else "")
        + f"saved to {out}")
    return result


def _train(clf, inputs, cfg: FinetuneConfig, device, out: Path, labels, train_ex, val_ex, test_ex) -> FinetuneResult:
    from .config import OptimConfig
    from .training import lr_factor, make_optimizer

    lab_id = {l: i for i, l in enumerate(labels)}
    tr_x, tr_y = inputs.prepare([e.text for e in train_ex]), [lab_id[e.label] for e in train_ex]
    va_x, va_y = inputs.prepare([e.text for e in val_ex]), [lab_id[e.label] for e in val_ex]
    te_x, te_y = inputs.prepare([e.text for e in test_ex]), [lab_id[e.label] for e in test_ex]

    per_epoch = math.ceil(len(tr_x) / cfg.batch_size)
    total = max(1, int(math.ceil(per_epoch * cfg.epochs)))
    budget = cfg.max_minutes * 60 if cfg.max_minutes else None
    eval_every = cfg.eval_every or per_epoch
    optimizer = make_optimizer(clf, OptimConfig(lr=cfg.lr, weight_decay=cfg.weight_decay, betas=[0.9, 0.999],
                                                eps=1e-8), device)
    out.mkdir(parents=True, exist_ok=True)
    metrics_file = open(out / "metrics.jsonl", "w", encoding="utf-8")
    rng = np.random.default_rng(cfg.seed)

    def evaluate(step: int, elapsed: float) -> dict:
        preds, loss = predict_labels(clf, inputs, va_x, va_y, 64, device)
        m = classification_metrics(va_y, preds, len(labels))
        rec = {"step": step, "time_s": elapsed, "eval_loss": loss, "eval_accuracy": m["accuracy"],
               "eval_macro_f1": m["macro_f1"]}
        metrics_file.write(json.dumps(rec) + "\n")
        return rec

    result = FinetuneResult(labels=labels, sizes={"train": len(train_ex), "validation": len(val_ex),
                                                  "test": len(test_ex)})
    best, best_state, bad_evals = None, None, 0
    step, loss_acc, n_acc = 0, 0.0, 0
    t0 = time.perf_counter()
    clf.train()
    bar = progress_bar(total=total, disable=not cfg.progress, unit="step", desc="fine-tuning")
    try:
        epoch = 0
        while step < total and result.stopped == "finished":
            for x, y in _batches(inputs, tr_x, tr_y, rng.permutation(len(tr_x)), cfg.batch_size):
                elapsed = time.perf_counter() - t0
                if step >= total or (budget and elapsed >= budget):
                    result.stopped = "finished" if step >= total else "time budget reached"
                    break
                progress = max(step / total, elapsed / budget if budget else 0.0)
                lr = cfg.lr * lr_factor(progress, cfg.warmup_ratio, "linear", 0.0)
                for g in optimizer.param_groups:
                    g["lr"] = lr * g.get("lr_scale", 1.0)
                loss = clf(**{k: v.to(device) for k, v in x.items()}, labels=y.to(device)).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(clf.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                bar.update(1)
                loss_acc, n_acc = loss_acc + loss.item() * len(y), n_acc + len(y)
                if step % 10 == 0:
                    metrics_file.write(json.dumps({"step": step, "epoch": epoch, "loss": loss_acc / n_acc, "lr": lr,
                                                   "time_s": time.perf_counter() - t0}) + "\n")
                    bar.set_postfix(loss=f"{loss_acc / n_acc:.3f}")
                    loss_acc, n_acc = 0.0, 0
                if step % eval_every == 0 or step == total:
                    rec = evaluate(step, time.perf_counter() - t0)
                    if cfg.progress:
                        progress_write(f"step {step}: validation accuracy {rec['eval_accuracy']:.4f} "
                                   f"macro-F1 {rec['eval_macro_f1']:.4f} loss {rec['eval_loss']:.4f}")
                    key = (rec["eval_accuracy"], -rec["eval_loss"])
                    if best is None or key > best:
                        best, bad_evals, result.best_step = key, 0, step
                        best_state = {k: v.detach().clone() for k, v in clf.state_dict().items()}
                    else:
                        bad_evals += 1
                        if cfg.patience is not None and bad_evals >= cfg.patience:
                            result.stopped = f"early stopping (no better validation accuracy in {cfg.patience} evaluations)"
                            break
            epoch += 1
    finally:
        bar.close()
    result.steps = step
    result.train_seconds = round(time.perf_counter() - t0, 1)
    if best_state is None:  # stopped by the clock before the first evaluation
        evaluate(step, result.train_seconds)
        result.best_step = step
    elif result.best_step != step:
        clf.load_state_dict(best_state)  # keep the weights that did best on validation
    metrics_file.close()

    preds, loss = predict_labels(clf, inputs, va_x, va_y, 64, device)
    result.validation = dict(classification_metrics(va_y, preds, len(labels)), loss=loss)
    if test_ex:
        preds, loss = predict_labels(clf, inputs, te_x, te_y, 64, device)
        result.test = dict(classification_metrics(te_y, preds, len(labels)), loss=loss)
    return result


def _token_saver(tokenizer):
    def save(clf, out: Path, cfg: FinetuneConfig) -> None:
        clf.cpu().save_pretrained(out)
        # Long inputs are cut where training cut them, so `pipeline(..., truncation=True)` matches.
        tokenizer.model_max_length = cfg.max_length
        tokenizer.save_pretrained(out)
    return save


def _char_saver(alphabet):
    def save(clf, out: Path, cfg: FinetuneConfig) -> None:
        from safetensors.torch import save_model

        save_model(clf.cpu(), str(out / "model.safetensors"))
        (out / CHAR_CLASSIFIER_FILE).write_text(json.dumps(clf.meta, indent=1), encoding="utf-8")
        alphabet.save(out / "alphabet.json")
    return save


def _write_card(out: Path, cfg: FinetuneConfig, result: FinetuneResult, model: str, data, char: bool) -> None:
    summary = {"base_model": str(model), "data": list(map(str, data)), "config": asdict(cfg), **asdict(result)}
    (out / "metrics.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    rows = [("validation", result.validation)] + ([("test", result.test)] if result.test else [])
    table = "\n".join(f"| {name} | {m['n']} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} |" for name, m in rows)
    usage = (f'from mlmkit.finetune import classify_domains\nclassify_domains("{out}", ["example.com"])' if char else
             f'from transformers import pipeline\nclf = pipeline("text-classification", model="{out}")\n'
             f'clf("some text", truncation=True)')
    card = f"""---
library_name: {'mlmkit' if char else 'transformers'}
pipeline_tag: text-classification
tags:
- mlmkit
---

# Text classifier fine-tuned with mlmkit

- base model: `{model}`{' (weights re-initialised: --from-scratch baseline)' if cfg.from_scratch else ''}
- data: {', '.join(f'`{d}`' for d in data)} ({result.sizes['train']} train / {result.sizes['validation']} validation / {result.sizes['test']} test, split by a hash of the text)
- labels: {', '.join(result.labels)}
- {result.steps} steps, {cfg.epochs:g} epochs planned, batch {cfg.batch_size}, lr {cfg.lr:g}, max length {cfg.max_length}; best step {result.best_step}; {result.stopped}; {result.train_seconds:.0f} s

| split | examples | accuracy | macro-F1 |
|---|---|---|---|
{table}

```python
{usage}
```
"""
    (out / "README.md").write_text(card, encoding="utf-8")
