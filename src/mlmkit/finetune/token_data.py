"""Token classification data (`mlmkit finetune --task token-classification`), a tag per word:

* CoNLL-style column files (``.conll``, ``.txt``, ``.tsv``, ``.iob``, ... anything not below): a
  token and its tag per line, separated by whitespace or tabs, the tag in the *last* column (so
  CoNLL-2003's four columns work as they are), a blank line between sentences, ``-DOCSTART-``
  lines ignored;
* CoNLL-U (``.conllu``): ten tab-separated columns; the tag is UPOS by default (``--label-column
  xpos`` or ``deprel`` pick another column), comment lines (``#``) are skipped, and so are
  multiword-token ranges (``3-4``) and empty nodes (``5.1``): the tags belong to the syntactic
  words;
* JSON Lines (``.jsonl``/``.json``/``.ndjson``): one object per line with a list of words and a
  list of tags of the same length (columns ``tokens`` and ``tags`` by default, ``--text-column`` /
  ``--label-column`` to rename);
* a Hugging Face data set (``hf:NAME`` or a ``save_to_disk`` folder) with the same two list
  columns; integer tags are mapped to their `ClassLabel` names.

A bad record stops the run with a one-line `DataError` naming the file and line (or row)."""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..data.hub import HubOptions, is_saved_dataset, load_hub
from ..errors import DataError, MlmkitError

JSONL_SUFFIXES = {".jsonl", ".json", ".ndjson"}
CONLLU_COLUMNS = {"upos": 3, "xpos": 4, "deprel": 7}
_FOLDER_SUFFIXES = {".conll", ".conllu", ".conllx", ".iob", ".iob2", ".bio", ".txt", ".tsv"} | JSONL_SUFFIXES


@dataclass
class TaggedSentence:
    words: list[str]
    tags: list[str]
    where: str = ""  # "file:line" of the sentence's first word (or "name:row")

    @property
    def text(self) -> str:
        """The words joined by spaces: what the train / validation / test hash split keys on."""
        return " ".join(self.words)


def _decode(path: Path) -> list[str]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"invalid UTF-8 at byte {e.start} (0x{raw[e.start]:02x})", str(path), line) from None
    return text.splitlines()


def read_conll(path: Path) -> Iterator[TaggedSentence]:
    """Column files: token ... tag per line, blank lines between sentences."""
    words: list[str] = []
    tags: list[str] = []
    start = 0
    for n, line in enumerate(_decode(path), 1):
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if words:
                yield TaggedSentence(words, tags, f"{path}:{start}")
                words, tags = [], []
            continue
        if len(parts) < 2:
            raise DataError(f"expected a token and a tag separated by whitespace, got {line.strip()[:60]!r}",
                            str(path), n)
        if not words:
            start = n
        words.append(parts[0])
        tags.append(parts[-1])
    if words:
        yield TaggedSentence(words, tags, f"{path}:{start}")


def read_conllu(path: Path, tag_column: str = "upos") -> Iterator[TaggedSentence]:
    """CoNLL-U: the syntactic words of each sentence and their UPOS (or XPOS / DEPREL) tags."""
    col = CONLLU_COLUMNS.get(tag_column)
    if col is None:
        raise MlmkitError(f"CoNLL-U tag column must be one of {', '.join(CONLLU_COLUMNS)}, not {tag_column!r}")
    words: list[str] = []
    tags: list[str] = []
    start = 0
    for n, line in enumerate(_decode(path), 1):
        if not line.strip():
            if words:
                yield TaggedSentence(words, tags, f"{path}:{start}")
                words, tags = [], []
            continue
        if line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 10:
            raise DataError(f"expected 10 tab-separated CoNLL-U columns, found {len(parts)}", str(path), n)
        if "-" in parts[0] or "." in parts[0]:
            continue  # a multiword-token range (3-4) or an empty node (5.1)
        if not parts[0].isdigit() or not parts[1] or parts[col] in ("", "_"):
            raise DataError(f"bad CoNLL-U word line (id {parts[0]!r}, form {parts[1]!r}, "
                            f"{tag_column} {parts[col]!r})", str(path), n)
        if not words:
            start = n
        words.append(parts[1])
        tags.append(parts[col])
    if words:
        yield TaggedSentence(words, tags, f"{path}:{start}")


def _check_pair(words: Any, tags: Any, where: str, line: int, word_col: str, tag_col: str,
                tag_names: list[str] | None = None) -> TaggedSentence:
    """One record's word and tag lists, checked: non-empty lists of strings, equal lengths."""
    if not isinstance(words, list) or not words or not all(isinstance(w, str) and w for w in words):
        raise DataError(f"column {word_col!r} must be a non-empty list of non-empty strings", where, line)
    if not isinstance(tags, list) or not all(isinstance(t, (str, int)) and not isinstance(t, bool) for t in tags):
        raise DataError(f"column {tag_col!r} must be a list of tags (strings or integers)", where, line)
    if len(words) != len(tags):
        raise DataError(f"{len(words)} words but {len(tags)} tags", where, line)
    if tag_names is not None:
        if any(isinstance(t, int) and not 0 <= t < len(tag_names) for t in tags):
            raise DataError(f"tag id out of range 0..{len(tag_names) - 1}", where, line)
        tags = [tag_names[t] if isinstance(t, int) else t for t in tags]
    return TaggedSentence(list(words), [str(t) for t in tags], f"{where}:{line}")


def read_jsonl(path: Path, word_col: str, tag_col: str) -> Iterator[TaggedSentence]:
    for n, line in enumerate(_decode(path), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON ({e.msg})", str(path), n) from None
        if not isinstance(obj, dict):
            raise DataError("expected a JSON object per line", str(path), n)
        for col in (word_col, tag_col):
            if col not in obj:
                raise DataError(f"no column {col!r} (available: {', '.join(map(repr, obj))}; "
                                "use --text-column / --label-column)", str(path), n)
        yield _check_pair(obj[word_col], obj[tag_col], str(path), n, word_col, tag_col)


def read_dataset(name: str, word_col: str, tag_col: str) -> Iterator[TaggedSentence]:
    """A Hugging Face data set's train split (rows numbered from 1)."""
    ds = load_hub(name, HubOptions(split="train", streaming=False))
    features = getattr(ds, "features", None) or {}
    for col in (word_col, tag_col):
        if col not in features:
            raise DataError(f"no column {col!r} (available: {', '.join(map(repr, features))}; "
                            "use --text-column / --label-column)", name)
    feature = getattr(features[tag_col], "feature", None)
    names = list(getattr(feature, "names", None) or []) or None
    for row, rec in enumerate(ds, 1):
        yield _check_pair(rec[word_col], rec[tag_col], name, row, word_col, tag_col, names)


def _files(spec: str) -> list[Path]:
    p = Path(os.path.expanduser(spec))
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in _FOLDER_SUFFIXES)
        if not files:
            raise DataError(f"no tagged files ({', '.join(sorted(_FOLDER_SUFFIXES))}) in the folder", spec)
        return files
    matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(spec)) if Path(m).is_file())
    if not matches:
        raise DataError("no such file, folder or glob match", spec)
    return matches


def read_tagged(spec: str, word_col: str = "tokens", tag_col: str = "tags") -> Iterator[TaggedSentence]:
    """Sentences from one spec: a file, a folder of files, a glob, ``hf:NAME`` or a saved data set."""
    if spec.startswith("hf:") or is_saved_dataset(Path(spec)):
        yield from read_dataset(spec[3:] if spec.startswith("hf:") else spec, word_col, tag_col)
        return
    for f in _files(spec):
        suffix = f.suffix.lower()
        if suffix == ".conllu":
            yield from read_conllu(f, "upos" if tag_col == "tags" else tag_col)
        elif suffix in JSONL_SUFFIXES:
            yield from read_jsonl(f, word_col, tag_col)
        else:
            yield from read_conll(f)


def load_tagged(specs: list[str], word_col: str = "tokens", tag_col: str = "tags",
                max_samples: int | None = None, log=print) -> list[TaggedSentence]:
    """Every spec's sentences (the first `max_samples`), with a line of counts per spec."""
    sentences: list[TaggedSentence] = []
    for spec in specs:
        got = list(read_tagged(spec, word_col, tag_col))
        if not got:
            raise DataError("no tagged sentences", spec)
        log(f"data {spec}: {len(got)} sentences, {sum(len(s.words) for s in got)} words")
        sentences += got
    if max_samples is not None:
        sentences = sentences[:max_samples]
    if len({t for s in sentences for t in s.tags}) < 2:
        raise MlmkitError(f"need at least two distinct tags, found {sorted({t for s in sentences for t in s.tags})}")
    return sentences
