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

    def tail(self, n: int) -> "Sequences":
        """The last `n` sequences (copies of the offsets, views of the tokens)."""
        first = len(self) - min(n, len(self))
        start = int(self.offsets[first])
        return Sequences(self.tokens[start:], np.asarray(self.offsets[first:]) - start,
                         None if self.word_ids is None else self.word_ids[start:])

    def head(self, n: int) -> "Sequences":
        """The first `n` sequences (views: nothing is copied, also of memory-mapped files)."""
        n = min(n, len(self))
        end = int(self.offsets[n])
        return Sequences(self.tokens[:end], self.offsets[: n + 1],
                         None if self.word_ids is None else self.word_ids[:end])

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


def boundary_ids(tokenizer) -> tuple[int | None, int | None]:
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    return start, end


@dataclass
class RecordBatch:
    """Tokenised records back to back (no special tokens); records with no token are left out."""

    ids: np.ndarray  # int32
    lengths: np.ndarray  # int64, tokens per record
    words: np.ndarray | None = None  # int32, the word index of each token within its record
    index: np.ndarray | None = None  # int64, each record's position among the texts encoded

    def select(self, keep: np.ndarray) -> "RecordBatch":
        """The records where `keep` (one bool per record) is true."""
        per_token = np.repeat(keep, self.lengths)
        return RecordBatch(self.ids[per_token], self.lengths[keep],
                           None if self.words is None else self.words[per_token])


def encode_batch(texts: Sequence[str], tokenizer, want_words: bool, with_index: bool = False) -> RecordBatch:
    enc = tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False,
                    return_token_type_ids=False)
    rows = [(i, ids) for i, ids in enumerate(enc["input_ids"]) if ids]
    lengths = np.fromiter((len(ids) for _, ids in rows), dtype=np.int64, count=len(rows))
    ids = np.fromiter((t for _, r in rows for t in r), dtype=np.int32, count=int(lengths.sum()))
    words = None
    if want_words:
        # Without special tokens every position belongs to a word, so no None here.
        words = np.fromiter((w for i, _ in rows for w in enc.word_ids(i)), dtype=np.int32, count=len(ids))
    index = np.fromiter((i for i, _ in rows), dtype=np.int64, count=len(rows)) if with_index else None
    return RecordBatch(ids, lengths, words, index)


class Packer:
    """Records -> training sequences, a batch of records at a time (vectorised, so the corpus can
    stream through it): `line_by_line` cuts each record to fit, `group_texts` concatenates them
    (an end token after each) and cuts full `max_length` chunks; `finish` keeps a last chunk of at
    least `min_tail` tokens. Word ids become unique across records (offset by the words before)."""

    def __init__(self, mode: str, tokenizer, max_length: int, with_words: bool, min_tail: int = 16):
        self.mode, self.with_words, self.min_tail = mode, with_words, min_tail
        self.start, self.end = boundary_ids(tokenizer)
        self.pre = np.array([] if self.start is None else [self.start], np.int32)
        self.post = np.array([] if self.end is None else [self.end], np.int32)
        self.room = max_length - len(self.pre) - len(self.post)
        self.buf = np.zeros(0, np.int32)
        self.buf_words = np.zeros(0, np.int32)
        self.word_base = 0

    def add(self, rb: RecordBatch) -> Sequences:
        if self.mode == "line_by_line":
            return self._line_by_line(rb)
        ids, words = self._stream(rb)
        self.buf = np.concatenate([self.buf, ids])
        if words is not None:
            self.buf_words = np.concatenate([self.buf_words, words])
        n = len(self.buf) // self.room
        out = self._chunks(self.buf[: n * self.room].reshape(n, self.room),
                           self.buf_words[: n * self.room].reshape(n, self.room) if self.with_words else None)
        self.buf = self.buf[n * self.room:]
        self.buf_words = self.buf_words[n * self.room:]
        return out

    def finish(self) -> Sequences:
        if self.mode == "line_by_line" or len(self.buf) < self.min_tail:
            return _empty(self.with_words)
        tail = _frame(self.buf[None], self.pre, self.post, 0)
        words = _frame(self.buf_words[None], self.pre, self.post, -1) if self.with_words else None
        self.buf = self.buf[:0]
        return Sequences(tail, np.array([0, len(tail)], np.int64), words)

    def _stream(self, rb: RecordBatch):
        """The records as one stream: an end token after each; word ids offset per record."""
        n = len(rb.lengths)
        ends = np.cumsum(rb.lengths + 1) - 1  # where each record's end token goes
        is_end = np.zeros(len(rb.ids) + n, dtype=bool)
        is_end[ends] = True
        ids = np.empty(len(is_end), np.int32)
        ids[is_end] = -1 if self.end is None else self.end
        ids[~is_end] = rb.ids
        words = None
        if self.with_words:
            first = np.cumsum(rb.lengths) - rb.lengths
            maxes = np.maximum.reduceat(rb.words, first) if n else np.zeros(0, np.int64)
            base = self.word_base + np.cumsum(maxes + 1) - (maxes + 1)
            self.word_base += int((maxes + 1).sum())
            words = np.full(len(is_end), -1, np.int32)
            words[~is_end] = rb.words + np.repeat(base, rb.lengths)
        if self.end is None:  # no separator token: nothing goes between records
            keep = ~is_end
            ids, words = ids[keep], (None if words is None else words[keep])
        return ids, words

    def _chunks(self, rows: np.ndarray, words: np.ndarray | None) -> Sequences:
        width = rows.shape[1] + len(self.pre) + len(self.post)
        tokens = _frame(rows, self.pre, self.post, 0)
        offsets = np.arange(len(rows) + 1, dtype=np.int64) * width
        return Sequences(tokens, offsets, None if words is None else _frame(words, self.pre, self.post, -1))

    def _line_by_line(self, rb: RecordBatch) -> Sequences:
        first = np.cumsum(rb.lengths) - rb.lengths
        pos = np.arange(len(rb.ids)) - np.repeat(first, rb.lengths)
        keep = pos < self.room
        kept = np.minimum(rb.lengths, self.room)
        seq_len = kept + len(self.pre) + len(self.post)
        offsets = np.zeros(len(kept) + 1, np.int64)
        np.cumsum(seq_len, out=offsets[1:])
        body = np.ones(int(offsets[-1]), dtype=bool)  # False at the start/end token slots
        if len(self.pre):
            body[offsets[:-1]] = False
        if len(self.post):
            body[offsets[1:] - 1] = False
        tokens = np.empty(len(body), np.int32)
        if len(self.pre):
            tokens[offsets[:-1]] = self.start
        if len(self.post):
            tokens[offsets[1:] - 1] = self.end
        tokens[body] = rb.ids[keep]
        words = None
        if self.with_words:
            words = np.full(len(body), -1, np.int32)
            words[body] = rb.words[keep]
        return Sequences(tokens, offsets, words)


def _frame(rows: np.ndarray, pre: np.ndarray, post: np.ndarray, special_word: int) -> np.ndarray:
    """[pre] row [post] for every row, flattened (for word ids the specials are `special_word`)."""
    n = len(rows)
    cols = [np.full((n, len(pre)), special_word if special_word < 0 else pre, np.int32)] if len(pre) else []
    cols.append(rows.astype(np.int32))
    if len(post):
        cols.append(np.full((n, len(post)), special_word if special_word < 0 else post, np.int32))
    return np.concatenate(cols, axis=1).reshape(-1)


def _empty(with_words: bool) -> Sequences:
    return Sequences(np.zeros(0, np.int32), np.zeros(1, np.int64), np.zeros(0, np.int32) if with_words else None)


def concat(parts: list[Sequences]) -> Sequences:
    """Sequences one after the other."""
    parts = [p for p in parts if len(p)] or parts[:1]
    if not parts:
        return _empty(False)
    offsets = [parts[0].offsets[:1]]
    base = 0
    for p in parts:
        offsets.append(p.offsets[1:] + base)
        base += int(p.offsets[-1])
    words = None if parts[0].word_ids is None else np.concatenate([p.word_ids for p in parts])
    return Sequences(np.concatenate([p.tokens for p in parts]), np.concatenate(offsets), words)


def pack(texts: Sequence[str], tokenizer, mode: str, max_length: int, *, word_ids: bool = False,
         progress: bool = True, chunk: int = 1000, min_tail: int = 16) -> Sequences:
    """Tokenise `texts` in batches and pack them into sequences, in memory."""
    packer = Packer(mode, tokenizer, max_length, word_ids, min_tail)
    parts = []
    bar = progress_bar(total=len(texts), desc="tokenising", unit="rec", disable=not progress, leave=False)
    for s in range(0, len(texts), chunk):
        parts.append(packer.add(encode_batch(texts[s: s + chunk], tokenizer, word_ids)))
        bar.update(min(chunk, len(texts) - s))
    bar.close()
    parts.append(packer.finish())
    return concat(parts)


def line_by_line(texts: Sequence[str], tokenizer, max_length: int, *, word_ids: bool = False,
                 progress: bool = True, chunk: int = 1000) -> Sequences:
    """One record -> `[CLS] tokens [SEP]`, truncated to `max_length`."""
    return pack(texts, tokenizer, "line_by_line", max_length, word_ids=word_ids, progress=progress, chunk=chunk)


def group_texts(texts: Sequence[str], tokenizer, max_length: int, *, word_ids: bool = False,
                progress: bool = True, chunk: int = 1000, min_tail: int = 16) -> Sequences:
    """Concatenate records (separated by [SEP]) and cut into chunks of `max_length`.

    The last chunk is kept if it has at least `min_tail` tokens (transformers drops it).
    """
    return pack(texts, tokenizer, "group_texts", max_length, word_ids=word_ids, progress=progress, chunk=chunk,
                min_tail=min_tail)


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
