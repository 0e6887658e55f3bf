"""What the model predicts under the mask: Original / Masked / Predicted, aligned token by token.

    Original : the  capital of  france is paris .
    Masked   : the  capital of  [MASK] is paris .
    Predicted: the  capital of  france is paris .

`mlmkit show MODEL --data FILE -n 8` prints this for sampled texts: coloured in a terminal
(masked positions highlighted, predictions green when right, red when wrong), plain text
otherwise (pipes, files, CI logs). The trainer logs the same block, for a few fixed validation
sequences, at every evaluation (`eval_samples_text`), so the logs show the model learning.

The Predicted row is the original text with the model's arg-max filled in at the masked
positions only; elsewhere the model is not asked anything.
"""

from __future__ import annotations

import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .errors import MlmkitError

LABELS = ("Original", "Masked", "Predicted")
_LABEL_WIDTH = max(map(len, LABELS)) + 2  # "Predicted: "


@dataclass
class MaskedExample:
    original: list[str]  # one display string per shown position
    masked: list[str]
    predicted: list[str]
    target: list[bool]  # was this position masked (asked of the model)?
    sep: str = " "  # between cells: a space between tokens, nothing between characters

    @property
    def n_targets(self) -> int:
        return sum(self.target)

    @property
    def n_correct(self) -> int:
        return sum(t and o == p for o, p, t in zip(self.original, self.predicted, self.target))


# ------------------------------------------------------------------------------ building
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
    from .models import masked_logits

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


# ------------------------------------------------------------------------------ rendering
def _column_groups(widths: list[int], line_width: int, sep: str = " ") -> list[range]:
    """Split the columns into lines that fit `line_width` (a long sequence wraps as blocks of
    three rows, so the columns stay aligned)."""
    room = max(20, line_width - _LABEL_WIDTH)
    groups, start, used = [], 0, 0
    for j, w in enumerate(widths):
        if j > start and used + w + len(sep) > room:
            groups.append(range(start, j))
            start, used = j, 0
        used += w + len(sep)
    groups.append(range(start, len(widths)))
    return groups


def render_plain(ex: MaskedExample, line_width: int = 100) -> str:
    widths = [max(len(a), len(b), len(c)) for a, b, c in zip(ex.original, ex.masked, ex.predicted)]
    lines = []
    for group in _column_groups(widths, line_width, ex.sep):
        for label, row in zip(LABELS, (ex.original, ex.masked, ex.predicted)):
            cells = ex.sep.join(row[j].ljust(widths[j]) for j in group)
            lines.append(f"{label + ':':<{_LABEL_WIDTH}}{cells}".rstrip())
    lines.append(f"{'':<{_LABEL_WIDTH}}({ex.n_correct}/{ex.n_targets} masked {_unit(ex)} predicted right)")
    return "\n".join(lines)


def render_rich(ex: MaskedExample, line_width: int = 100):
    """The same layout as `render_plain`, as a `rich.text.Text` with the masked columns coloured."""
    from rich.text import Text

    widths = [max(len(a), len(b), len(c)) for a, b, c in zip(ex.original, ex.masked, ex.predicted)]
    out = Text()
    for group in _column_groups(widths, line_width, ex.sep):
        for row_i, (label, row) in enumerate(zip(LABELS, (ex.original, ex.masked, ex.predicted))):
            out.append(f"{label + ':':<{_LABEL_WIDTH}}", style="bold dim")
            for j in group:
                style = None
                if ex.target[j]:
                    if row_i == 0:
                        style = "bold cyan"
                    elif row_i == 1:
                        style = "bold black on yellow"
                    else:
                        style = "bold green" if ex.predicted[j] == ex.original[j] else "bold red"
                out.append(row[j], style=style)  # pad outside the style: no coloured blanks
                out.append(" " * (widths[j] - len(row[j])) + ex.sep)
            out.append("\n")
    out.append(f"{'':<{_LABEL_WIDTH}}({ex.n_correct}/{ex.n_targets} masked {_unit(ex)} predicted right)\n",
               style="dim")
    return out


def _unit(ex: MaskedExample) -> str:
    return "characters" if ex.sep == "" else "tokens"


def render_examples(examples: list[MaskedExample], line_width: int = 100) -> str:
    """Plain text for logs: numbered examples separated by rules, and a total at the end."""
    rule = "-" * min(line_width, 80)
    parts = []
    for i, ex in enumerate(examples, 1):
        parts.append(f"Example {i}\n{render_plain(ex, line_width)}")
    total = sum(e.n_targets for e in examples)
    right = sum(e.n_correct for e in examples)
    parts.append(f"{right}/{total} masked {_unit(examples[0]) if examples else 'tokens'} predicted right")
    return f"\n{rule}\n".join(parts)


def print_examples(examples: list[MaskedExample], *, color: bool | None = None, file=None) -> None:
    """Print to `file` (stdout): coloured with rich when it is a terminal (or color=True)."""
    file = file or sys.stdout
    if color is None:
        color = file.isatty()
    width = shutil.get_terminal_size((100, 24)).columns if color else 100
    if not color:
        file.write(render_examples(examples, width) + "\n")
        return
    from rich.console import Console

    console = Console(file=file, force_terminal=True, width=width, highlight=False)
    for i, ex in enumerate(examples, 1):
        console.rule(f"Example {i}", style="dim")
        console.print(render_rich(ex, width), end="")
    total = sum(e.n_targets for e in examples)
    right = sum(e.n_correct for e in examples)
    console.print(f"[bold]{right}/{total}[/bold] masked {_unit(examples[0]) if examples else 'tokens'} predicted right")


# ------------------------------------------------------------------------------ masking
def mask_rows(tokenizer, ids: torch.Tensor, attention_mask: torch.Tensor, *, rate: float = 0.15,
              seed: int = 0):
    """BERT-style masking of padded rows, with at least one masked token per row (a short line
    at 15% often gets none, and an example with nothing masked shows nothing)."""
    from .masking import TokenMasker

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


def eval_samples_text(task, model, n: int = 4, max_tokens: int = 48) -> str | None:
    """The text sample the trainer logs at each evaluation: `n` validation sequences spread over
    the validation set, with the task's fixed evaluation mask (None if the task cannot show one).

    A task may provide its own `sample_predictions_text(model, n)`; character tasks
    (`char_task.CharMLMTask`) show their held-out domain names."""
    if hasattr(task, "sample_predictions_text"):
        return task.sample_predictions_text(model, n)
    if getattr(task, "eval_domains", None) and hasattr(task, "alphabet"):
        from .char_task import CharMLM

        names = task.eval_domains
        picks = [names[int(i)] for i in torch.linspace(0, len(names) - 1, steps=min(n, len(names))).round().long().unique()]
        bundle = CharMLM(model, task.alphabet, task.data_cfg, task.model_cfg, task.mask_cfg)
        return render_examples(char_examples(bundle, picks, seed=0))
    if not hasattr(task, "_eval_tensors") or getattr(task, "validation", None) is None \
            or len(task.validation) == 0:
        return None
    original, corrupted, att, selected = task._eval_tensors()
    rows = torch.linspace(0, len(original) - 1, steps=min(n, len(original))).round().long().unique()
    examples = predict_examples(model, task.tokenizer, original[rows], corrupted[rows], att[rows],
                                selected[rows], max_tokens=max_tokens)
    return render_examples(examples)


@torch.no_grad()
def char_examples(bundle, names: list[str], *, seed: int = 0) -> list[MaskedExample]:
    """Original / Masked / Predicted for domain names with a character model (`char_task.CharMLM`):
    spans masked as in pre-training (seeded), filled greedily by the span head."""
    from .char_task import make_batch
    from .data.domains import Alphabet, normalize_domain

    names = [normalize_domain(n)[: bundle.data.max_length] for n in names]
    names = [n for n in names if n]
    alphabet = bundle.alphabet
    batch = make_batch(names, alphabet, bundle.masking, seed)
    model = bundle.model
    was_training = model.training
    model.eval()
    try:
        dev = next(model.parameters()).device
        hidden = model.encode(batch["input_ids"].to(dev), batch["input_idx"].to(dev),
                              batch["attention_mask"].to(dev))
        seqs, _ = model.head.beam_search(hidden, batch["spans"].to(dev), beam=1,
                                         input_idx=batch["input_idx"].to(dev))
    finally:
        model.train(was_training)
    examples = [MaskedExample(list(n), list(n), list(n), [False] * len(n), sep="") for n in names]
    masked_idx = batch["input_idx"]
    for s, (row, start, length) in enumerate(batch["spans"].tolist()):
        ex = examples[row]
        for k in range(length):
            col = start - 1 + k  # column 0 of the batch is [CLS]
            shown = int(masked_idx[row, start + k])
            ex.masked[col] = "_" if shown == Alphabet.MASK else alphabet.char(shown)
            ex.predicted[col] = alphabet.char(int(seqs[s, 0, k])) or "?"
            ex.target[col] = True
    return examples


# ------------------------------------------------------------------------------ `mlmkit show`
def _texts_for(model_arg: str, data: list[str] | None, *, text_column: str, log) -> list[str]:
    """--data if given; else the held-out part of the run's own training data (from config.yaml),
    so a run folder can be inspected on text it did not train on."""
    from .config import DataConfig
    from .token_task import load_texts

    if data:
        return load_texts(DataConfig(text_column=text_column, on_bad_record="skip"), data, log=log)
    cfg_file = Path(model_arg) / "config.yaml"
    if not cfg_file.is_file() and Path(model_arg).name == "model":  # the run's model/ folder
        cfg_file = Path(model_arg).parent / "config.yaml"
    if not cfg_file.is_file():
        raise MlmkitError("no --data given and no config.yaml in the model folder to find the run's data")
    import yaml

    from .data.preprocessing import split_validation

    raw = (yaml.safe_load(cfg_file.read_text(encoding="utf-8")) or {}).get("data", {}) or {}
    dcfg = DataConfig(text_column=raw.get("text_column", "text"), on_bad_record="skip",
                      format=raw.get("format", "auto"))
    if raw.get("validation"):
        return load_texts(dcfg, raw["validation"], log=log)
    if not raw.get("train"):
        raise MlmkitError(f"{cfg_file} names no training data; pass --data")
    texts = load_texts(dcfg, raw["train"], max_samples=raw.get("max_samples"), log=log)
    _, held_out = split_validation(texts, float(raw.get("validation_fraction", 0.05)) or 0.05, seed=0)
    return held_out or texts


def show(model_arg: str, data: list[str] | None = None, *, n: int = 8, seed: int = 0, rate: float = 0.15,
         max_tokens: int = 64, text_column: str = "text", color: bool | None = None, log=print,
         file=None) -> list[MaskedExample]:
    """Sample `n` texts, mask them, print Original / Masked / Predicted; returns the examples."""
    from .data.tokenizers import load_tokenizer
    from .evaluation import is_char_model, resolve_model_dir
    from .models import load_model

    path = resolve_model_dir(model_arg)
    char = is_char_model(path)
    if char and not data:
        raise MlmkitError("give the domain names to show with --data FILE")
    texts = [t for t in _texts_for(model_arg, data, text_column=text_column, log=log) if t.strip()]
    if not texts:
        raise MlmkitError("no non-empty texts to show")
    picked = random.Random(seed).sample(texts, min(n, len(texts)))
    if char:
        from .char_task import load_char_model

        examples = char_examples(load_char_model(path), picked, seed=seed)
        print_examples(examples, color=color, file=file)
        return examples
    tokenizer = load_tokenizer(path)
    model = load_model(path)
    examples = examples_from_texts(model, tokenizer, picked, rate=rate, seed=seed, max_tokens=max_tokens)
    print_examples(examples, color=color, file=file)
    return examples
