"""Entity chunks and entity-level precision / recall / F1 by the rules of `seqeval`'s default
(CoNLL `conlleval`) mode, written out here so fine-tuning needs no extra dependency.

A tag is ``O`` or PREFIX-TYPE with PREFIX one of B, I, E, S (IOB1, IOB2/BIO and IOBES all
work). Scanning left to right (a virtual ``O`` after the last word):

* a chunk *ends* before the current tag if the previous tag was E or S; if the previous was B or I
  and the current is B, S or O; or if the type changes (``B-PER I-LOC`` is two chunks);
* a chunk *starts* at B or S; at I or E after O, E or S (a stray ``I-PER`` after ``O`` starts a
  chunk, as in conlleval); and wherever the type changes.

A predicted chunk counts as correct only if its type, first and last word all match a gold chunk.

Tag sets that are not BIO-style (POS tags, say) have no chunks: every word is its own "entity",
so micro precision = recall = F1 = word accuracy; `is_bio` tells which case applies."""

from __future__ import annotations

import re

import numpy as np

_BIO = re.compile(r"^[BIES]-.+$")


def is_bio(tags) -> bool:
    """True if every tag is O or PREFIX-TYPE (B/I/E/S), and at least one is not O."""
    tags = list(tags)
    return all(t == "O" or _BIO.match(t) for t in tags) and any(t != "O" for t in tags)


def _split(tag: str) -> tuple[str, str]:
    if tag == "O" or not _BIO.match(tag):
        return "O", ""
    return tag[0], tag[2:]


def _ends(prev: str, prev_type: str, cur: str, cur_type: str) -> bool:
    if prev in ("E", "S"):
        return True
    if prev in ("B", "I") and cur in ("B", "S", "O"):
        return True
    return prev != "O" and prev_type != cur_type


def _starts(prev: str, prev_type: str, cur: str, cur_type: str) -> bool:
    if cur in ("B", "S"):
        return True
    if cur in ("I", "E") and prev in ("O", "E", "S"):
        return True
    return cur != "O" and prev_type != cur_type


def chunks(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, first word, last word) of every chunk, in order."""
    out = []
    prev, prev_type, begin = "O", "", 0
    for i, tag in enumerate(list(tags) + ["O"]):
        cur, cur_type = _split(tag)
        if _ends(prev, prev_type, cur, cur_type):
            out.append((prev_type, begin, i - 1))
        if _starts(prev, prev_type, cur, cur_type):
            begin = i
        prev, prev_type = cur, cur_type
    return out


def chunk_counts(gold: list[str], pred: list[str], types: list[str]) -> np.ndarray:
    """Per entity type (rows, in `types` order): [true positives, predicted chunks, gold chunks]."""
    index = {t: i for i, t in enumerate(types)}
    counts = np.zeros((len(types), 3), dtype=np.int64)
    g, p = set(chunks(gold)), set(chunks(pred))
    for col, group in ((0, g & p), (1, p), (2, g)):
        for typ, _, _ in group:
            if typ in index:
                counts[index[typ], col] += 1
    return counts


def _prf(tp: float, n_pred: float, n_gold: float) -> tuple[float, float, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def entity_scores(counts: np.ndarray) -> dict[str, float]:
    """Micro precision / recall / F1 over all chunks, and macro-F1 (mean over the types that
    occur in the gold or the predictions), from summed `chunk_counts`."""
    counts = np.asarray(counts, dtype=np.float64).reshape(-1, 3)
    p, r, f = _prf(*counts.sum(0))
    per_type = [_prf(*row)[2] for row in counts if row[1] or row[2]]
    return {"precision": p, "recall": r, "f1": f, "macro_f1": float(np.mean(per_type)) if per_type else 0.0}


def entity_types(labels: list[str]) -> list[str]:
    """The entity types of a BIO tag set, sorted (``B-PER``, ``I-PER`` -> ``PER``)."""
    return sorted({_split(t)[1] for t in labels if _split(t)[0] != "O"})
