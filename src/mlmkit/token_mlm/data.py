"""Records -> texts -> token sequences, stored flat (one int32 array + offsets) so a corpus of
millions of sequences costs two numpy arrays, not millions of Python lists.

Texts come from the shared record reader (`mlmkit.data.records`: files, folders, globs,
`mlmkit:` samples, hub data sets; file:line errors or skip-and-count).

Two modes, as in transformers' `run_mlm.py`:
- `line_by_line`: one record -> one sequence `[CLS] tokens [SEP]`, truncated to `max_length`;
  batches are padded dynamically (and bucketed by length, so little is spent on padding).
- `group_texts`: records are concatenated with a separator and cut into full `max_length`
  chunks, so no position is padding. Word ids are carried through (offset per record) so that
  whole-word masking still knows where words start and end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..data.records import ReadStats, read_texts
from ..report.progress import progress_bar
from ..util import stable_hash


@dataclass
class Sequences:
    tokens: np.ndarray  # int32, all sequences back to back
    offsets: np.ndarray  # int64, len = n + 1
    word_ids: np.ndarray | None = None  # int32 aligned with tokens; -1 for special tokens

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.tokens[a:b], (None if self.word_ids is None else self.word_ids[a:b])

    def num_tokens(self) -> int:
        return int(self.offsets[-1])

    @classmethod
    def from_lists(cls, seqs: Sequence[np.ndarray], words: Sequence[np.ndarray] | None) -> "Sequences":
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        tokens = np.concatenate(seqs).astype(np.int32) if seqs else np.zeros(0, np.int32)
        wids = None
        if words is not None:
            wids = np.concatenate(words).astype(np.int32) if words else np.zeros(0, np.int32)
        return cls(tokens, offsets, wids)


def _boundary_ids(tokenizer) -> tuple[int | None, int | None]:
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    return start, end


def _encode(texts: Sequence[str], tokenizer, want_words: bool, chunk: int, desc: str, progress: bool):
    """Yield (ids, word_ids) per text, tokenised in batches by the fast tokenizer."""
    bar = progress_bar(total=len(texts), desc=desc, unit="rec", disable=not progress, leave=False)
    for start in range(0, len(texts), chunk):
        batch = list(texts[start : start + chunk])
        enc = tokenizer(batch, add_special_tokens=False, return_attention_mask=False,
                        return_token_type_ids=False)
        for i, ids in enumerate(enc["input_ids"]):
            words = None
            if want_words:
                # Without special tokens every position belongs to a word, so no None here.
                words = np.asarray(enc.word_ids(i), dtype=np.int64) if ids else np.zeros(0, np.int64)
            yield np.asarray(ids, dtype=np.int32), words
        bar.update(len(batch))
    bar.close()


def line_by_line(texts: Sequence[str], tokenizer, max_length: int, *, word_ids: bool = False,
                 progress: bool = True, chunk: int = 1000) -> Sequences:
    start, end = _boundary_ids(tokenizer)
    n_special = (start is not None) + (end is not None)
    room = max_length - n_special
    seqs, words = [], ([] if word_ids else None)
    for ids, wids in _encode(texts, tokenizer, word_ids, chunk, "tokenising", progress):
        if len(ids) == 0:
            continue
        ids = ids[:room]
        parts = ([np.array([start], np.int32)] if start is not None else []) + [ids] + (
            [np.array([end], np.int32)] if end is not None else [])
        seqs.append(np.concatenate(parts))
        if words is not None:
            w = wids[: len(ids)]
            wparts = ([np.array([-1])] if start is not None else []) + [w] + (
                [np.array([-1])] if end is not None else [])
            words.append(np.concatenate(wparts))
    return Sequences.from_lists(seqs, words)


def group_texts(texts: Sequence[str], tokenizer, max_length: int, *, word_ids: bool = False,
                progress: bool = True, chunk: int = 1000, min_tail: int = 16) -> Sequences:
    """Concatenate records (separated by [SEP]) and cut into chunks of `max_length`.

    The last chunk is kept if it has at least `min_tail` tokens (transformers drops it).
    """
    start, end = _boundary_ids(tokenizer)
    n_special = (start is not None) + (end is not None)
    room = max_length - n_special
    stream_ids: list[np.ndarray] = []
    stream_words: list[np.ndarray] = []
    word_offset = 0
    for ids, wids in _encode(texts, tokenizer, word_ids, chunk, "tokenising", progress):
        if len(ids) == 0:
            continue
        if end is not None:
            ids = np.concatenate([ids, np.array([end], np.int32)])
        stream_ids.append(ids)
        if word_ids:
            # Offset word ids so words of different records never share an id.
            w = wids + word_offset
            word_offset = int(w.max()) + 1 if len(w) else word_offset
            if end is not None:
                w = np.concatenate([w, np.array([-1])])
            stream_words.append(w)
    if not stream_ids:
        return Sequences.from_lists([], [] if word_ids else None)
    flat = np.concatenate(stream_ids)
    flat_w = np.concatenate(stream_words) if word_ids else None
    n_full = len(flat) // room
    cuts = [(i * room, (i + 1) * room) for i in range(n_full)]
    if len(flat) - n_full * room >= min_tail:
        cuts.append((n_full * room, len(flat)))
    # Vectorised assembly: every chunk is [start] + flat[a:b] + [end].
    seqs, words = [], ([] if word_ids else None)
    pre = np.array([start], np.int32) if start is not None else np.zeros(0, np.int32)
    post = np.array([end], np.int32) if end is not None else np.zeros(0, np.int32)
    wpre, wpost = -np.ones(len(pre), np.int64), -np.ones(len(post), np.int64)
    for a, b in cuts:
        seqs.append(np.concatenate([pre, flat[a:b], post]))
        if words is not None:
            words.append(np.concatenate([wpre, flat_w[a:b], wpost]))
    return Sequences.from_lists(seqs, words)


def tokenize(texts: Sequence[str], tokenizer, mode: str, max_length: int, *, word_ids: bool = False,
             progress: bool = True) -> Sequences:
    fn = group_texts if mode == "group_texts" else line_by_line
    return fn(texts, tokenizer, max_length, word_ids=word_ids, progress=progress)


def split_validation(texts: Iterable[str], fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Deterministic held-out split by a hash of the text: the same record always lands on the
    same side (also across runs and machines), and duplicates never straddle the split."""
    train, val = [], []
    threshold = int(fraction * 2**32)
    salt = str(seed).encode()
    for t in texts:
        (val if stable_hash(t, 4, salt=salt) < threshold else train).append(t)
    return train, val


def subset(seqs: Sequences, indices) -> Sequences:
    items = [seqs.get(i) for i in indices]
    return Sequences.from_lists([t for t, _ in items],
                                None if seqs.word_ids is None else [w for _, w in items])


def load_texts(data_cfg, specs, *, max_samples=None, log=print) -> list[str]:
    """The texts of `specs` read with the `data` section's column, format and bad-record rule."""
    stats = ReadStats()
    texts = read_texts(specs, max_samples=max_samples, text_column=data_cfg.text_column,
                       fmt=data_cfg.format, on_bad=data_cfg.on_bad_record, stats=stats,
                       hf_split=data_cfg.hf_split, hf_config=data_cfg.hf_config,
                       hf_data_files=data_cfg.hf_data_files)
    log(f"data {', '.join(map(str, specs))}: {stats.summary()}")
    return texts
