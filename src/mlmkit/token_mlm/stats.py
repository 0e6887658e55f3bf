"""`mlmkit stats` for token data: what a corpus looks like to the run's tokenizer, before training.

One streaming pass over the records (the shared reader: files, folders, globs, hub data sets,
columns, the bad-record rule) with the run's tokenizer, in batches; every number is kept in
fixed-size counters and histograms (`report.stats`), so memory does not grow with the corpus.
The two packers of `data.py` are fed the same batches, so the `line_by_line` truncation and the
`group_texts` sequences are exactly what `prepare` would make (on all records, before the
validation split).

Bounded extras, on the first `sample` records only (said in the output):
* the tokenizer of a from-scratch run, when it is not cached yet, is trained on them (capped at
  `tokenizer.train_samples` as `train` does; when that reads the whole training side it is the
  run's own tokenizer and is cached for `train`);
* the vocabulary sweep: tokenizers of a few sizes trained on the sample, tokens per word measured
  on that same sample.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Optional

import numpy as np

from ..data.records import ReadStats, iter_records
from ..report.progress import progress_bar
from ..report.stats import LengthHistogram, key_values, length_panel, num, pct, table
from .data import Packer, encode_batch
from .prepare import tokenizer_folder
from .tokenizers import load_tokenizer, train_tokenizer

DEFAULT_SAMPLE = 10_000  # records the costly parts (tokenizer training, vocabulary sweep) read
SAMPLE_CHARS = 20_000_000  # and at most this many characters of them
DEFAULT_VOCAB_SIZES = (8192, 16384, 32768)
BATCH = 1000  # records per tokenizer call
BUCKET_WINDOW = 64  # batches sorted by length together (as TokenMLMTask._plan does)


def stats_tokenizer(cfg, sample: int, *, log: Callable[[str], None]):
    """The run's tokenizer and a line saying where it comes from: `tokenizer.name_or_path` or the
    `init_from` checkpoint's; else the one `train` cached for this data and settings; else one
    trained now on the first records of the training side (cached when that is the run's own)."""
    from .build import save_atomically, training_texts

    t, d = cfg.tokenizer, cfg.data
    name = t.name_or_path or cfg.model.init_from
    if name:
        return load_tokenizer(name, trust_remote_code=cfg.model.trust_remote_code), f"{name} (the run's)"
    cached = tokenizer_folder(cfg)
    if (cached / "tokenizer_config.json").is_file():
        return load_tokenizer(str(cached)), f"{cached} (the run's, cached)"
    cap = min(t.train_samples, sample)
    log(f"training a {t.kind} tokenizer (vocab {t.vocab_size}) on at most {cap:,} records")
    texts = list(itertools.islice(training_texts(d), cap)) or list(itertools.islice(
        training_texts(d, held_out_too=True), cap))
    tok = train_tokenizer(texts, kind=t.kind, vocab_size=t.vocab_size, min_frequency=t.min_frequency,
                          lowercase=t.lowercase, model_max_length=d.max_length, show_progress=False)
    if len(texts) < cap or cap == t.train_samples:  # what `train` would train: cache it for `train`
        save_atomically(tok, cached)
        return tok, f"{t.kind} {t.vocab_size} trained on {len(texts):,} records (the run's; cached)"
    return tok, (f"{t.kind} {t.vocab_size} trained on the first {cap:,} records (train uses up to "
                 f"{t.train_samples:,}: its counts can differ slightly)")


class PaddingWindow:
    """Padding of `line_by_line` batches under dynamic padding (a batch is padded to its longest
    row), on windows of `window` sequences in reading order: sorted by length within a window (as
    mlmkit's bucketing does) and in a seeded random order (no bucketing)."""

    def __init__(self, batch_size: int, window_batches: int = BUCKET_WINDOW, seed: int = 0):
        self.batch, self.window = batch_size, batch_size * window_batches
        self.buf = np.zeros(0, np.int64)
        self.rng = np.random.default_rng(seed)
        self.tokens = self.bucketed = self.random = 0

    def add(self, lengths: np.ndarray) -> None:
        self.buf = np.concatenate([self.buf, np.asarray(lengths, np.int64)])
        while len(self.buf) >= self.window:
            self._flush(self.buf[: self.window])
            self.buf = self.buf[self.window:]

    def finish(self) -> None:
        if len(self.buf):
            self._flush(self.buf)
            self.buf = self.buf[:0]

    def _positions(self, lengths: np.ndarray) -> int:
        n = len(lengths)
        starts = np.arange(0, n, self.batch)
        rows = np.diff(np.append(starts, n))
        return int((np.maximum.reduceat(lengths, starts) * rows).sum())

    def _flush(self, lengths: np.ndarray) -> None:
        self.tokens += int(lengths.sum())
        self.bucketed += self._positions(np.sort(lengths, kind="stable"))
        self.random += self._positions(self.rng.permutation(lengths))

    def shares(self) -> dict[str, float]:
        return {"bucketed": _share(self.bucketed - self.tokens, self.bucketed),
                "random": _share(self.random - self.tokens, self.random)}


def _share(part: float, whole: float) -> float:
    return round(part / whole, 6) if whole else 0.0


class TokenScan:
    """The one pass: counters, histograms and both packers, fed a batch of texts at a time."""

    def __init__(self, cfg, tokenizer, sample: int):
        d = cfg.data
        self.tok, self.max_length, self.sample_cap = tokenizer, d.max_length, sample
        self.hist = {k: LengthHistogram() for k in ("characters", "words", "tokens", "sequence")}
        self.records = self.chars = self.words = self.tokens = self.unk = self.empty = 0
        self.unk_id = tokenizer.unk_token_id
        self.lbl = Packer("line_by_line", tokenizer, d.max_length, False)
        self.grp = Packer("group_texts", tokenizer, d.max_length, False)
        self.truncated = self.grp_sequences = self.grp_positions = 0
        self.padding = PaddingWindow(cfg.train.batch_size)
        self.sample: list[str] = []
        self.sample_chars = 0

    def add(self, texts: list[str]) -> None:
        rb = encode_batch(texts, self.tok, False)
        self.empty += len(texts) - len(rb.lengths)
        self.records += len(texts)
        chars = np.fromiter((len(t) for t in texts), np.int64, len(texts))
        words = np.fromiter((len(t.split()) for t in texts), np.int64, len(texts))
        self.chars, self.words, self.tokens = self.chars + int(chars.sum()), self.words + int(words.sum()), \
            self.tokens + int(rb.lengths.sum())
        self.hist["characters"].add(chars)
        self.hist["words"].add(words)
        self.hist["tokens"].add(np.concatenate([rb.lengths, np.zeros(len(texts) - len(rb.lengths), np.int64)]))
        if self.unk_id is not None:
            self.unk += int((rb.ids == self.unk_id).sum())
        self.truncated += int(np.maximum(rb.lengths - self.lbl.room, 0).sum())
        seq_lengths = self.lbl.add(rb).lengths()
        self.hist["sequence"].add(seq_lengths)
        self.padding.add(seq_lengths)
        grouped = self.grp.add(rb)
        self.grp_sequences, self.grp_positions = self.grp_sequences + len(grouped), \
            self.grp_positions + grouped.num_tokens()
        for t in texts:
            if len(self.sample) < self.sample_cap and self.sample_chars < SAMPLE_CHARS:
                self.sample.append(t)
                self.sample_chars += len(t)

    def finish(self) -> dict[str, Any]:
        self.padding.finish()
        tail = len(self.grp.buf)
        last = self.grp.finish()
        self.grp_sequences += len(last)
        self.grp_positions += last.num_tokens()
        lbl_positions = self.hist["sequence"].total
        record_tokens_grouped = self.tokens - (0 if len(last) else tail)
        return {
            "line_by_line": {
                "sequences": self.hist["sequence"].count, "room": int(self.lbl.room),
                "records_longer": self.hist["tokens"].count_above(int(self.lbl.room)),
                "truncated_tokens": self.truncated, "truncated_share": _share(self.truncated, self.tokens),
                "padding_to_max_length": _share(self.hist["sequence"].count * self.max_length - lbl_positions,
                                                self.hist["sequence"].count * self.max_length),
                "padding_dynamic_bucketed": self.padding.shares()["bucketed"],
                "padding_dynamic_random": self.padding.shares()["random"]},
            "group_texts": {
                "sequences": self.grp_sequences, "positions": self.grp_positions,
                "special_share": _share(self.grp_positions - record_tokens_grouped, self.grp_positions),
                "tail_tokens": tail, "tail_kept": bool(len(last))},
        }


def vocab_sweep(sample: list[str], cfg, sizes, tokenizer) -> list[dict[str, Any]]:
    """Tokens per word on `sample` with the run's tokenizer and with tokenizers of each size in
    `sizes` trained on `sample` (the run's kind, lowercasing and min_frequency)."""
    t = cfg.tokenizer
    words = sum(len(s.split()) for s in sample)
    rows = [_measure(sample, tokenizer, words, "run's tokenizer")]
    for size in sizes:
        tok = train_tokenizer(sample, kind=t.kind, vocab_size=int(size), min_frequency=t.min_frequency,
                              lowercase=t.lowercase, show_progress=False)
        rows.append(_measure(sample, tok, words, f"{t.kind} {int(size)}"))
    return rows


def _measure(sample: list[str], tok, words: int, label: str) -> dict[str, Any]:
    tokens = unk = 0
    for s in range(0, len(sample), BATCH):
        rb = encode_batch(sample[s: s + BATCH], tok, False)
        tokens += int(rb.lengths.sum())
        if tok.unk_token_id is not None:
            unk += int((rb.ids == tok.unk_token_id).sum())
    return {"tokenizer": label, "vocab": len(tok), "tokens": tokens,
            "tokens_per_word": round(tokens / words, 4) if words else 0.0, "unk_rate": _share(unk, tokens)}


def token_stats(cfg, *, log: Callable[[str], None] = print, progress: bool = True,
                sample: Optional[int] = None, vocab_sizes=None) -> dict[str, Any]:
    """The statistics of `data.train` for the run `cfg` (a JSON-ready dict; `format_token_stats`
    prints it)."""
    from ..errors import ConfigError

    d = cfg.data
    if not d.train:
        raise ConfigError("config key 'data.train': no data given (mlmkit stats DATA)")
    sample = sample or DEFAULT_SAMPLE
    tokenizer, tok_source = stats_tokenizer(cfg, sample, log=log)
    scan, read = TokenScan(cfg, tokenizer, sample), ReadStats()
    records = iter_records(d.train, text_column=d.text_column, fmt=d.format, on_bad=d.on_bad_record, stats=read,
                           hf_split=d.hf_split, hf_config=d.hf_config, hf_data_files=d.hf_data_files)
    records = itertools.islice(records, d.max_samples)
    bar = progress_bar(desc="reading", unit="rec", unit_scale=True, disable=not progress, leave=False)
    batch: list[str] = []
    for rec in records:
        batch.append(rec.text)
        if len(batch) == BATCH:
            scan.add(batch)
            bar.update(len(batch))
            batch = []
    if batch:
        scan.add(batch)
        bar.update(len(batch))
    bar.close()
    packed = scan.finish()
    sizes = DEFAULT_VOCAB_SIZES if vocab_sizes is None else vocab_sizes
    sweep = vocab_sweep(scan.sample, cfg, sizes, tokenizer) if sizes else []
    return _result(cfg, scan, read, tokenizer, tok_source, packed, sweep, sample)


def _result(cfg, scan: TokenScan, read: ReadStats, tokenizer, tok_source, packed, sweep, sample) -> dict:
    d = cfg.data
    h = scan.hist
    panels = [length_panel(h["tokens"], "tokens per record", "tokens (without [CLS]/[SEP])",
                           marker=packed["line_by_line"]["room"],
                           marker_label=f"max_length {d.max_length} (minus specials)"),
              length_panel(h["words"], "words per record (whitespace-separated)", "words"),
              length_panel(h["characters"], "characters per record", "characters")]
    return {
        "family": "token", "data": list(d.train), "read": read.summary(), "skipped": read.bad_counts(),
        "records": scan.records, "records_without_tokens": scan.empty, "characters": scan.chars,
        "words": scan.words, "tokens": scan.tokens,
        "tokenizer": {"source": tok_source, "vocab": len(tokenizer), "unk_token": tokenizer.unk_token},
        "tokens_per_word": round(scan.tokens / scan.words, 4) if scan.words else 0.0,
        "unk_tokens": scan.unk, "unk_rate": _share(scan.unk, scan.tokens),
        "lengths": {k: h[k].summary() for k in ("tokens", "words", "characters")},
        "max_length": d.max_length, "mode": d.mode, "batch_size": cfg.train.batch_size, **packed,
        "min_frequency": cfg.tokenizer.min_frequency,
        "vocab_sweep": {"sample_records": len(scan.sample), "sample_cap": sample,
                        "sample_capped": len(scan.sample) < scan.records, "rows": sweep},
        "histograms": panels,
    }


def format_token_stats(r: dict[str, Any]) -> list[str]:
    """The report `mlmkit stats` prints (aligned text)."""
    lbl, grp = r["line_by_line"], r["group_texts"]
    out = [f"data: {', '.join(r['data'])}", f"  {r['read']}", f"tokenizer: {r['tokenizer']['source']}", ""]
    out += key_values([("records", r["records"]), ("characters", r["characters"]),
                       ("words", r["words"]), ("tokens", r["tokens"]),
                       ("tokens / word", r["tokens_per_word"]),
                       (f"UNK rate ({r['tokenizer']['unk_token']})", f"{pct(r['unk_tokens'], r['tokens'])} "
                        f"({num(r['unk_tokens'])} of {num(r['tokens'])})")])
    out += ["", "per record:"]
    out += table(["", "min", "mean", "median", "p90", "p99", "max"],
                 [[k] + list(r["lengths"][k].values()) for k in ("tokens", "words", "characters")])
    out += ["", f"max_length {r['max_length']} (mode {r['mode']}, batch_size {r['batch_size']}):"]
    out += key_values([
        ("records over max_length", f"{num(lbl['records_longer'])} ({pct(lbl['records_longer'], r['records'])}) "
                                    f"have more than {lbl['room']} tokens"),
        ("line_by_line truncates", f"{num(lbl['truncated_tokens'])} tokens ({pct(lbl['truncated_share'], 1)})"),
        ("line_by_line padding", f"{pct(lbl['padding_to_max_length'], 1)} of positions padded to max_length; "
                                 f"dynamic per batch: {pct(lbl['padding_dynamic_bucketed'], 1)} bucketed by "
                                 f"length (mlmkit), {pct(lbl['padding_dynamic_random'], 1)} unbucketed"),
        ("group_texts", f"{num(grp['sequences'])} sequences, no padding; {pct(grp['special_share'], 1)} "
                        f"special tokens; tail of {num(grp['tail_tokens'])} tokens "
                        f"{'kept' if grp['tail_kept'] else 'dropped'}")])
    sw = r["vocab_sweep"]
    if sw["rows"]:
        capped = (f"the first {num(sw['sample_records'])} records: at most --sample {num(sw['sample_cap'])} "
                  f"records and {num(SAMPLE_CHARS)} characters"
                  if sw["sample_capped"] else f"all {num(sw['sample_records'])} records")
        out += ["", f"vocabulary size (trained and measured on {capped}):"]
        out += table(["tokenizer", "vocab", "tokens", "tokens/word", "UNK"],
                     [[w["tokenizer"], w["vocab"], w["tokens"], w["tokens_per_word"], pct(w["unk_rate"], 1)]
                      for w in sw["rows"]])
        if any(w["vocab"] < int(w["tokenizer"].split()[-1]) for w in sw["rows"][1:]):
            out.append("  (a vocabulary smaller than asked: the sample has no more pieces of min_frequency "
                       f"{r['min_frequency']})")
    return out
