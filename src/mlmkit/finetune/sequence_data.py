"""Sequence classification data (`mlmkit finetune --task classification`): a label per text, from
CSV / TSV / JSON Lines with a text and a label column (read with mlmkit's record reader, so bad
records are reported by file and line), or a folder of label sub-folders, one document per file
(``bbc/business/001.txt`` ...). `splits.py` splits them into train / validation (/ test)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..data.records import ReadStats, iter_records, resolve_files
from ..errors import DataError, MlmkitError

_TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}


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
    """Texts through `data.records.iter_records` (its error messages name file and line), joined
    by line number with the labels of the same file."""
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
