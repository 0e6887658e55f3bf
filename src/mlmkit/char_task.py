"""Character-level, tokenizer-free MLM for internet domain names (CANINE-C style).

Configuration (nested as ``data`` / ``model`` / ``masking`` when ``task: char``):
`CharDataConfig`, `CharModelConfig`, `SpanMaskConfig`. `CharMLMTask` implements the `Task`
protocol of `mlmkit.task`; `save_pretrained` / `load_char_model` / `export_encoder` handle model
folders; `char_evaluate` and `char_predict` back ``mlmkit eval`` and ``mlmkit predict``.

Prediction pattern syntax (``char_predict``)
--------------------------------------------
A pattern is a domain name with holes; the literal parts are lowercased, holes are filled:

* ``[MASK]``  -- exactly one unknown character (repeat it: ``goo[MASK][MASK][MASK].com``);
* ``[n]``     -- exactly ``n`` unknown characters: ``goo[3].com`` is the same as the line above;
* ``[?]``     -- an unknown number of characters, 1 to ``masking.max_span`` (every length is tried).

Holes next to each other form one span (``[2][MASK]`` == ``[3]``). Several holes may be used
(``[4]-shop.[2]``); they are filled jointly (beam search per span, then the best combinations).
Scores are natural-log probabilities of the filled characters (summed over the holes). For a
``[?]`` hole the log-probability of its length under the masking's span-length distribution
(geometric with mean ``masking.mean_span``, truncated to ``1..max_span``) is added, so candidates of
different lengths are compared as log P(length) + log P(characters | length). Candidates that are
not valid domain names (e.g. a label ending in ``-``) or whose last label is not a plausible TLD
(one character, or digits only) are dropped.

Streaming and O(1) resume
-------------------------
Local files are cut into chunks (64 KiB byte ranges of text/CSV files; Parquet row groups). In
epoch ``e`` the chunks are put in a seeded random order and grouped into *windows* of about
``shuffle_buffer`` rows; a window's training rows are shuffled (seed, epoch, window) and cut into
a fixed number of batches computed from the window's size (bytes or Parquet rows) and the valid-row
rate measured at start-up. A window with more rows than that drops the surplus for this epoch, one
with fewer reuses rows, so batch ``i`` of epoch ``e`` is a pure function of (seed, e, i) and
``train_batches(e, start)`` reads only the window that holds ``start``: O(window), never the rows
before it. Hub streams (``datasets.load_dataset(..., streaming=True)``) cannot seek: windows are
consecutive groups of ``shuffle_buffer`` rows of the seeded stream shuffle, and resuming at window
``w`` skips ``w * shuffle_buffer`` rows with ``IterableDataset.skip`` (O(rows skipped); documented
limitation). Their epoch length is unknown (`num_batches` returns None) unless ``max_samples`` is
set.

Within a window, names are sorted by length in groups of ``data.length_group`` batches (batch order
then shuffled) so batches carry little padding (~50% of positions otherwise).

Validation rows are chosen by a hash of the normalised domain (`is_validation`; by default of the
domain without its TLD, ``data.holdout_key: name``, so ``foo.cf`` and ``foo.ga`` stay together):
the same name is always on the same side and never leaks into training. The evaluation set is the
first ``eval_size`` held-out names in source order, masked with a fixed seed.

Throughput note: on a small CPU shared with other processes, PyTorch's default intra-op threads
can make these small models several times slower (spinning threads fight for cores);
``torch.set_num_threads(1)`` was 4x faster for the tiny encoder on the 2-core development box.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch
import torch.nn as nn

from mlmkit.data.domains import (
    IDN_MODES,
    Alphabet,
    DomainFilter,
    DomainSource,
    Chunk,
    check_domain,
    derive_alphabet,
    is_validation,
)
from mlmkit.errors import ConfigError, DataError, MlmkitError
from mlmkit.models.char_encoder import ENCODER_SIZES, CanineCharEncoder, ScratchCharEncoder, ngram_tables
from mlmkit.models.span_head import build_head, span_loss
from mlmkit.span_masking import _spans_from_mask, mask_spans, span_targets
from mlmkit.task import Batch, LossOutput

FORMAT_VERSION = 1
CONFIG_NAME = "mlmkit_char.json"
WEIGHTS_NAME = "model.safetensors"
ALPHABET_NAME = "alphabet.json"


def _need(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}': {why}")


# =============================================================================== configs
@dataclass
class CharDataConfig:
    source: str = "sample"  # "sample" or "mlmkit:samples/domains.txt" (bundled), a file / folder / glob, or a hub data set
    format: str = "auto"  # auto | text | csv | parquet | hub
    column: str = "domain"  # CSV / Parquet / hub column holding the names
    split: str = "train"  # hub split
    hub_config: Optional[str] = None  # hub data set config name
    hub_data_files: Optional[list[str]] = None  # data_files= for load_dataset (e.g. "text" builder)
    idn: str = "keep"  # keep | to_ascii (Unicode -> xn--) | to_unicode (xn-- -> Unicode)
    on_invalid: str = "skip"  # skip (count by reason) | error (stop with file:line)
    max_length: int = 64  # longest domain (characters) used; longer ones are counted and skipped
    valid_fraction: float = 0.02  # share of names (by hash) held out for validation
    holdout_key: str = "name"  # hash of: name (domain without its TLD: twins stay together) | domain
    eval_size: int = 2000  # held-out names in the evaluation set
    max_samples: Optional[int] = None  # use only the first N valid names of the source
    shuffle_buffer: int = 65536  # rows shuffled together (window size)
    chunk_bytes: int = 65536  # local text/CSV files are read in chunks of this many bytes
    length_group: int = 32  # batches whose names are sorted by length together (1: no grouping)
    alphabet: Optional[str] = None  # characters of the output softmax; None: derived from the data
    alphabet_sample: int = 50000  # names read to derive the alphabet

    def __post_init__(self):
        _need(self.format in ("auto", "text", "csv", "parquet", "hub"), "data.format",
              "must be auto|text|csv|parquet|hub")
        _need(self.idn in IDN_MODES, "data.idn", f"must be one of {'|'.join(IDN_MODES)}")
        _need(self.on_invalid in ("skip", "error"), "data.on_invalid", "must be skip|error")
        _need(4 <= self.max_length <= 253, "data.max_length", "must be in [4, 253]")
        _need(0.0 <= self.valid_fraction < 1.0, "data.valid_fraction", "must be in [0, 1)")
        _need(self.eval_size >= 0, "data.eval_size", "must be >= 0")
        _need(self.holdout_key in ("name", "domain"), "data.holdout_key", "must be name|domain")
        _need(self.max_samples is None or self.max_samples >= 1, "data.max_samples", "must be >= 1")
        _need(self.shuffle_buffer >= 1, "data.shuffle_buffer", "must be >= 1")
        _need(self.chunk_bytes >= 1024, "data.chunk_bytes", "must be >= 1024")
        _need(self.alphabet_sample >= 1, "data.alphabet_sample", "must be >= 1")
        _need(self.length_group >= 1, "data.length_group", "must be >= 1")
        _need(bool(self.source), "data.source", "must name a file, folder, glob, hub data set or 'sample'")


@dataclass
class CharModelConfig:
    encoder: str = "scratch"  # scratch | canine
    size: str = "tiny"  # scratch encoder size: tiny | mini | small
    pretrained: Optional[str] = None  # canine: hub name or local folder (e.g. google/canine-c)
    downsampling_rate: int = 1  # scratch encoder: 1, 2 or 4
    hidden_size: Optional[int] = None  # scratch: override the size's width
    num_layers: Optional[int] = None  # scratch: override the size's depth
    num_heads: Optional[int] = None
    intermediate_size: Optional[int] = None
    dropout: float = 0.1
    ngram_buckets: int = 0  # scratch: hashed n-gram input embeddings, rows per order (0: off; e.g. 32768)
    ngram_max: int = 5  # scratch: longest hashed n-gram (orders 2..ngram_max)
    ngram_dim: int = 0  # scratch: width of the n-gram rows, projected to the encoder width (0: encoder width)
    canine_overrides: dict[str, Any] = field(default_factory=dict)  # CanineConfig kwargs (fresh canine)
    head: str = "autoregressive"  # autoregressive | parallel
    head_kind: str = "gru"  # autoregressive head: gru | transformer
    head_size: Optional[int] = None  # head width (default: encoder width)
    head_ngram_buckets: int = 0  # autoregressive head: hashed n-gram memory, rows per order and side (0: off)
    head_ngram_max: int = 6  # longest n-gram of the head's memory (orders 1..head_ngram_max, each side)
    head_ngram_dropout: float = 0.0  # training: drop each memory look-up with this probability
    head_ngram_dim: int = 0  # width of the memory rows, projected to the head width (0: head width)
    sparse_ngram: bool = False  # n-gram tables: sparse gradients, updated by SparseAdam (dense under DDP/FSDP)

    def __post_init__(self):
        _need(self.encoder in ("scratch", "canine"), "model.encoder", "must be scratch|canine")
        _need(self.size in ENCODER_SIZES, "model.size", f"must be one of {'|'.join(ENCODER_SIZES)}")
        _need(self.downsampling_rate in (1, 2, 4), "model.downsampling_rate", "must be 1, 2 or 4")
        _need(self.head in ("autoregressive", "parallel"), "model.head", "must be autoregressive|parallel")
        _need(self.head_kind in ("gru", "transformer"), "model.head_kind", "must be gru|transformer")
        _need(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")
        _need(self.ngram_buckets >= 0, "model.ngram_buckets", "must be >= 0")
        _need(2 <= self.ngram_max <= 8, "model.ngram_max", "must be in [2, 8]")
        _need(self.ngram_dim >= 0, "model.ngram_dim", "must be >= 0")
        _need(self.head_ngram_buckets >= 0, "model.head_ngram_buckets", "must be >= 0")
        _need(self.head_ngram_buckets == 0 or self.head == "autoregressive", "model.head_ngram_buckets",
              "needs model.head: autoregressive")
        _need(1 <= self.head_ngram_max <= 8, "model.head_ngram_max", "must be in [1, 8]")
        _need(0.0 <= self.head_ngram_dropout < 1.0, "model.head_ngram_dropout", "must be in [0, 1)")
        _need(self.head_ngram_dim >= 0, "model.head_ngram_dim", "must be >= 0")
        for k in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "head_size"):
            v = getattr(self, k)
            _need(v is None or v >= 1, f"model.{k}", "must be >= 1")
        h = self.hidden_size or ENCODER_SIZES[self.size]["hidden_size"]
        nh = self.num_heads or ENCODER_SIZES[self.size]["num_heads"]
        _need(h % nh == 0, "model.num_heads", f"must divide hidden_size {h}")


@dataclass
class SpanMaskConfig:
    rate: float = 0.15  # expected share of characters predicted (evaluation, and training unless train_rate)
    train_rate: Optional[float] = None  # training batches only: a higher rate gives more targets per encoder pass
    mean_span: float = 3.0  # mean of the geometric span length
    max_span: int = 8  # longest span
    mask_prob: float = 0.9  # share of spans replaced by MASK; the rest are left unchanged (CANINE-C)
    align: str = "none"  # none | labels (whole labels) | parts (labels and hyphen-separated parts)
    ensure_one_span: bool = True  # every name gets at least one span (short names)

    def __post_init__(self):
        _need(0.0 < self.rate <= 0.5, "masking.rate", "must be in (0, 0.5]")
        _need(self.train_rate is None or 0.0 < self.train_rate <= 0.5, "masking.train_rate", "must be in (0, 0.5]")
        _need(self.mean_span >= 1.0, "masking.mean_span", "must be >= 1")
        _need(1 <= self.max_span <= 64, "masking.max_span", "must be in [1, 64]")
        _need(0.0 <= self.mask_prob <= 1.0, "masking.mask_prob", "must be in [0, 1]")
        _need(self.align in ("none", "labels", "parts"), "masking.align", "must be none|labels|parts")


def _from_dict(cls, d: dict):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in (d or {}).items() if k in names})


# =============================================================================== model
class CharMLMModel(nn.Module):
    """Character encoder + span head. Inputs: code points (CANINE) or alphabet indices (scratch)."""

    def __init__(self, cfg: CharModelConfig, alphabet_size: int, max_positions: int, max_span: int,
                 encoder_config: Optional[dict] = None):
        super().__init__()
        self.cfg = cfg
        if cfg.encoder == "canine":
            if encoder_config is not None:  # reload: never download
                self.encoder = CanineCharEncoder(config=encoder_config)
            elif cfg.pretrained:
                self.encoder = CanineCharEncoder(pretrained=cfg.pretrained)
            else:
                from mlmkit.models.char_encoder import tiny_canine_config

                self.encoder = CanineCharEncoder(config=tiny_canine_config(**cfg.canine_overrides))
        else:
            if encoder_config is None:
                size = dict(ENCODER_SIZES[cfg.size])
                for k in ("hidden_size", "num_layers", "num_heads", "intermediate_size"):
                    if getattr(cfg, k) is not None:
                        size[k] = getattr(cfg, k)
                encoder_config = dict(vocab_size=alphabet_size, max_positions=max_positions,
                                      downsampling_rate=cfg.downsampling_rate, dropout=cfg.dropout,
                                      ngram_buckets=cfg.ngram_buckets, ngram_max=cfg.ngram_max,
                                      ngram_dim=cfg.ngram_dim, **size)
            self.encoder = ScratchCharEncoder(**encoder_config)
        self.head = build_head(cfg.head, self.encoder.hidden_size, alphabet_size, kind=cfg.head_kind,
                               head_size=cfg.head_size, max_span=max(max_span, 64),
                               dropout=cfg.dropout if cfg.head == "autoregressive" else 0.0,
                               ngram_buckets=cfg.head_ngram_buckets, ngram_max=cfg.head_ngram_max,
                               ngram_dropout=cfg.head_ngram_dropout, ngram_dim=cfg.head_ngram_dim)

        if cfg.sparse_ngram:  # the trainer pairs these tables with SparseAdam (training.SplitOptimizer)
            for table in ngram_tables(self):
                table.sparse = True

    def encoder_config(self) -> dict:
        if isinstance(self.encoder, CanineCharEncoder):
            return self.encoder.canine.config.to_dict()
        return dict(self.encoder.config)

    def encode(self, input_ids, input_idx, attention_mask):
        if self.encoder.uses_code_points:
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        return self.encoder(input_idx, attention_mask)

    def forward(self, input_ids, input_idx, attention_mask, spans, targets):
        hidden = self.encode(input_ids, input_idx, attention_mask)
        return self.head(hidden, spans, targets, input_idx)


def _unwrap(model: nn.Module) -> nn.Module:
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


# =============================================================================== batching
def _seed_of(*parts) -> int:
    h = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") & ((1 << 62) - 1)


def encode_domains(domains: Sequence[str], alphabet: Alphabet, masks: Optional[list[list[bool]]] = None):
    """Tensors for a list of names: [CLS] chars [SEP] PAD...

    Returns code points, alphabet indices, attention mask, maskable and separator flags."""
    B = len(domains)
    L = max((len(d) for d in domains), default=0) + 2
    cps = torch.zeros((B, L), dtype=torch.long)
    idx = torch.zeros((B, L), dtype=torch.long)
    att = torch.zeros((B, L), dtype=torch.long)
    flat_cp: list[int] = []
    flat_ix: list[int] = []
    rows: list[int] = []
    cols: list[int] = []
    for i, d in enumerate(domains):
        n = len(d)
        flat_cp.extend(map(ord, d))
        flat_ix.extend(alphabet.encode(d))
        rows.extend([i] * n)
        cols.extend(range(1, n + 1))
        att[i, : n + 2] = 1
        cps[i, 0], cps[i, n + 1] = Alphabet.SPECIAL_CPS[Alphabet.CLS], Alphabet.SPECIAL_CPS[Alphabet.SEP]
        idx[i, 0], idx[i, n + 1] = Alphabet.CLS, Alphabet.SEP
    if rows:
        r, c = torch.tensor(rows), torch.tensor(cols)
        cps[r, c] = torch.tensor(flat_cp)
        idx[r, c] = torch.tensor(flat_ix)
    maskable = (att == 1) & (idx != Alphabet.CLS) & (idx != Alphabet.SEP)
    dot = ord(".")
    hyphen = ord("-")
    return cps, idx, att, maskable, (cps == dot), (cps == hyphen)


def make_batch(domains: Sequence[str], alphabet: Alphabet, mcfg: SpanMaskConfig, seed: int) -> Batch:
    cps, idx, att, maskable, dots, hyph = encode_domains(domains, alphabet)
    g = torch.Generator().manual_seed(seed)
    seps = dots if mcfg.align == "labels" else (dots | hyph)
    res = mask_spans(idx, maskable, Alphabet.MASK, rate=mcfg.rate, mean_span=mcfg.mean_span,
                     max_span=mcfg.max_span, mask_prob=mcfg.mask_prob, align=mcfg.align,
                     separators=seps, ensure_one_span=mcfg.ensure_one_span, generator=g,
                     extra_ids=[(cps, Alphabet.SPECIAL_CPS[Alphabet.MASK])])
    return {
        "input_ids": res.extra[0],
        "input_idx": res.masked_ids,
        "attention_mask": att,
        "spans": res.spans,
        "targets": span_targets(idx, res.spans),
    }


# =============================================================================== the task
@dataclass
class _Window:
    chunks: list  # Chunk list (local) or (skip, n) for hub
    n_batches: int


class CharMLMTask:
    """Character MLM on domain names (the `Task` protocol of `mlmkit.task`)."""

    def __init__(self, data: CharDataConfig | None = None, model: CharModelConfig | None = None,
                 masking: SpanMaskConfig | None = None, *, batch_size: int = 128, seed: int = 0,
                 eval_batch_size: Optional[int] = None, alphabet: Optional[Alphabet] = None,
                 model_instance: Optional[CharMLMModel] = None, build_model: bool = True):
        self.data_cfg = data or CharDataConfig()
        self.model_cfg = model or CharModelConfig()
        self.mask_cfg = masking or SpanMaskConfig()
        # evaluation always masks at `rate`, so runs trained at different rates stay comparable
        self.train_mask_cfg = (dataclasses.replace(self.mask_cfg, rate=self.mask_cfg.train_rate)
                               if self.mask_cfg.train_rate else self.mask_cfg)
        if batch_size < 1:
            raise ConfigError("config key 'train.batch_size': must be >= 1")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.seed = seed
        d = self.data_cfg
        self.source = DomainSource(d.source, d.format, d.column, d.split, d.chunk_bytes,
                                   d.hub_config, d.hub_data_files)
        self.filter = DomainFilter(d.idn, d.on_invalid, d.max_length)
        self._scan(alphabet)
        self.model: nn.Module
        if model_instance is not None:
            self.model = model_instance
        elif build_model:
            self.model = CharMLMModel(self.model_cfg, len(self.alphabet), d.max_length + 2, self.mask_cfg.max_span)
        self._eval_cache: Optional[list[Batch]] = None
        self._window_cache: dict = {}

    # ------------------------------------------------------------------ start-up scan
    def _scan(self, alphabet: Optional[Alphabet]) -> None:
        """One pass over a prefix: alphabet, valid-row rate, eval names, max_samples cut-off."""
        d = self.data_cfg
        need_alpha = alphabet is None and d.alphabet is None
        alpha_rows: list[str] = []
        self.eval_domains: list[str] = []
        n_records = n_train = n_valid_rows = 0
        scanned_units = 0.0  # bytes (text/csv), rows (parquet/hub)
        limit: Optional[dict[str, int]] = None
        reached_max = False
        f = self.filter

        def done() -> bool:
            if d.max_samples is not None:
                return reached_max
            alpha_ok = (not need_alpha) or len(alpha_rows) >= d.alphabet_sample
            eval_ok = len(self.eval_domains) >= d.eval_size or d.valid_fraction == 0
            return alpha_ok and eval_ok and n_records >= min(d.alphabet_sample, 10000)

        def count(dom: str) -> None:
            """Tally one valid name: alphabet sample, held-out or training, max_samples."""
            nonlocal n_valid_rows, n_train, reached_max
            n_valid_rows += 1
            if need_alpha and len(alpha_rows) < d.alphabet_sample:
                alpha_rows.append(dom)
            if is_validation(dom, d.valid_fraction, d.holdout_key):
                if len(self.eval_domains) < d.eval_size:
                    self.eval_domains.append(dom)
            else:
                n_train += 1
            if d.max_samples is not None and n_valid_rows >= d.max_samples:
                reached_max = True

        self._invalid_by_key: dict = {}
        if self.source.is_hub:
            it = self.source.iter_hub()
            for rec in it:
                n_records += 1
                dom = f(rec)
                scanned_units += 1
                if dom is not None:
                    count(dom)
                if done():
                    break
            self._invalid_by_key["scan"] = Counter(f.invalid)
            self.hub_rows_limit = n_records if reached_max else None
            self.chunks: list[Chunk] = []
            self.train_per_unit = n_train / max(scanned_units, 1)
        else:
            chunks = self.source.chunks()
            stop = False
            for ci, ch in enumerate(chunks):
                in_chunk = 0.0
                before = Counter(f.invalid)
                for rec in self.source.read_chunk(ch):
                    n_records += 1
                    in_chunk = (rec.byte_offset - ch.start + 1) if ch.kind != "parquet" else in_chunk + 1
                    dom = f(rec)
                    if dom is not None:
                        count(dom)
                        if reached_max and limit is None:
                            # text/CSV: keep the lines starting before `cut`; Parquet: whole groups
                            cut = ch.end if ch.kind == "parquet" else rec.byte_offset + 1
                            limit = {c.path: 0 for c in chunks[ci + 1:]}
                            limit[ch.path] = cut
                    if reached_max or done():
                        stop = True
                        break
                self._invalid_by_key[ch] = Counter(f.invalid) - before
                if stop:
                    scanned_units += in_chunk
                    break
                scanned_units += self._units(ch)
            if limit is not None:
                # text/CSV: a chunk boundary inside [start, cut) keeps lines starting before cut
                self.chunks = self.source.chunks(limit)
            else:
                self.chunks = chunks
            self.hub_rows_limit = None
            self.train_per_unit = n_train / max(scanned_units, 1)
        self.scan_summary = {"records_scanned": n_records, "valid": n_valid_rows, "train": n_train}
        if n_valid_rows == 0:
            inv = ", ".join(f"{k}: {v}" for k, v in sorted(f.invalid.items())) or "no records"
            raise DataError(f"no valid domain names found ({inv})", d.source)
        if n_train == 0:
            raise DataError("no training names left after holding out the validation split "
                            "(lower data.valid_fraction)", d.source)
        if alphabet is not None:
            self.alphabet = alphabet
        elif d.alphabet is not None:
            self.alphabet = Alphabet(list(d.alphabet))
        else:
            self.alphabet = derive_alphabet(alpha_rows)
        self.scan_invalid = dict(f.invalid)

    # ------------------------------------------------------------------ epochs and windows
    def _units(self, ch: Chunk) -> float:
        return (ch.end - ch.start) if ch.kind != "parquet" else ch.rows_hint

    def _windows(self, epoch: int) -> list[_Window]:
        if epoch in self._window_cache:
            return self._window_cache[epoch]
        B = self.batch_size
        order = list(range(len(self.chunks)))
        random.Random(_seed_of(self.seed, "chunks", epoch)).shuffle(order)
        windows: list[_Window] = []
        cur: list[Chunk] = []
        cur_rows = 0.0
        for i in order:
            ch = self.chunks[i]
            cur.append(ch)
            cur_rows += self._units(ch) * self.train_per_unit
            if cur_rows >= self.data_cfg.shuffle_buffer:
                windows.append(_Window(cur, max(1, round(cur_rows / B))))
                cur, cur_rows = [], 0.0
        if cur:
            windows.append(_Window(cur, max(1, round(cur_rows / B))))
        self._window_cache = {epoch: windows}
        return windows

    def num_batches(self, epoch: int) -> Optional[int]:
        if self.source.is_hub:
            if self.hub_rows_limit is None:
                return None
            W = self.data_cfg.shuffle_buffer
            n_win, rest = divmod(self.hub_rows_limit, W)
            per = max(1, round(W * self.train_per_unit / self.batch_size))
            return n_win * per + (max(1, round(rest * self.train_per_unit / self.batch_size)) if rest else 0)
        return sum(w.n_batches for w in self._windows(epoch))

    def _train_rows(self, records, key=None) -> list[str]:
        vf = self.data_cfg.valid_fraction
        out = []
        before = Counter(self.filter.invalid)
        for rec in records:
            dom = self.filter(rec)
            if dom is not None and not is_validation(dom, vf, self.data_cfg.holdout_key):
                out.append(dom)
        if key is not None:  # count each chunk / hub window once, however often it is read
            self._invalid_by_key[key] = Counter(self.filter.invalid) - before
        return out

    def invalid_counts(self) -> dict[str, int]:
        """Invalid rows by reason, each stored row counted once (over the rows read so far)."""
        total: Counter = Counter()
        for k, c in self._invalid_by_key.items():
            if k != "scan":
                total.update(c)
        # hub streams: the start-up scan and the first windows overlap; take the larger count
        for reason, n in self._invalid_by_key.get("scan", Counter()).items():
            total[reason] = max(total[reason], n)
        return dict(sorted(total.items()))

    def _window_batches(self, rows: list[str], n_batches: int, epoch: int, w: int, j0: int) -> Iterator[Batch]:
        B = self.batch_size
        random.Random(_seed_of(self.seed, "window", epoch, w)).shuffle(rows)
        G = max(1, self.data_cfg.length_group)
        cache: dict[int, list[list[str]]] = {}
        for j in range(j0, n_batches):
            g, jj = divmod(j, G)
            if g not in cache:
                cache.clear()
                lo, hi = g * G * B, min((g + 1) * G, n_batches) * B
                # fewer rows than planned: wrap around (deterministically)
                names = rows[lo:hi] if hi <= len(rows) else [rows[t % len(rows)] for t in range(lo, hi)]
                if G > 1:  # similar lengths together (less padding), batch order shuffled in the group
                    names = sorted(names, key=len)
                    groups = [names[t: t + B] for t in range(0, len(names), B)]
                    random.Random(_seed_of(self.seed, "group", epoch, w, g)).shuffle(groups)
                else:
                    groups = [names]
                cache[g] = groups
            yield self._batch(cache[g][jj], epoch, j, w)

    def _batch(self, names, epoch, j, w) -> Batch:
        return make_batch(names, self.alphabet, self.train_mask_cfg, _seed_of(self.seed, "mask", epoch, w, j))

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        if self.source.is_hub:
            yield from self._hub_batches(epoch, start)
            return
        windows = self._windows(epoch)
        first = 0
        for w, win in enumerate(windows):
            if start >= first + win.n_batches:
                first += win.n_batches
                continue
            j0 = max(0, start - first)
            rows: list[str] = []
            for ch in win.chunks:
                rows.extend(self._train_rows(self.source.read_chunk(ch), key=ch))
            if not rows:  # a window of invalid rows only: borrow the names of the eval-free scan
                rows = self._fallback_rows()
            yield from self._window_batches(rows, win.n_batches, epoch, w, j0)
            first += win.n_batches

    def _fallback_rows(self) -> list[str]:
        for ch in self.chunks:
            rows = self._train_rows(self.source.read_chunk(ch))
            if rows:
                return rows
        raise DataError("no training names in the data", self.data_cfg.source)

    def _hub_batches(self, epoch: int, start: int) -> Iterator[Batch]:
        W = self.data_cfg.shuffle_buffer
        per = max(1, round(W * self.train_per_unit / self.batch_size))
        w = start // per
        j0 = start - w * per
        skip = w * W
        limit = self.hub_rows_limit
        it = self.source.iter_hub(seed=_seed_of(self.seed, "hub", epoch) % (2**32), skip=skip,
                                  buffer_size=min(W, 10_000))
        consumed = skip
        while True:
            raw = []
            for rec in it:
                raw.append(rec)
                consumed += 1
                if len(raw) >= W or (limit is not None and consumed >= limit):
                    break
            if not raw:
                return
            rows = self._train_rows(raw, key=("hub", w))
            n = per if len(raw) == W else max(1, round(len(raw) * self.train_per_unit / self.batch_size))
            if rows:
                yield from self._window_batches(rows, n, epoch, w, j0)
            w, j0 = w + 1, 0
            if len(raw) < W or (limit is not None and consumed >= limit):
                return

    def eval_batches(self) -> Iterator[Batch]:
        if self._eval_cache is None:
            eb = self.eval_batch_size
            names = self.eval_domains
            self._eval_cache = [make_batch(names[i: i + eb], self.alphabet, self.mask_cfg, _seed_of(self.seed, "eval", i))
                                for i in range(0, len(names), eb)]
        return iter(self._eval_cache)

    # ------------------------------------------------------------------ loss
    def forward(self, model: nn.Module, batch: Batch) -> LossOutput:
        logits = model(input_ids=batch["input_ids"], input_idx=batch["input_idx"],
                       attention_mask=batch["attention_mask"], spans=batch["spans"], targets=batch["targets"])
        loss, n, loss_sum, correct = span_loss(logits, batch["targets"])
        return LossOutput(loss=loss, n_targets=n, loss_sum=loss_sum, n_correct=correct,
                          n_tokens=batch["attention_mask"].sum())

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, model: nn.Module, path: Path) -> None:
        save_char_model(_unwrap(model), path, self.alphabet, self.data_cfg, self.model_cfg, self.mask_cfg)

    def describe(self) -> dict[str, Any]:
        m = _unwrap(self.model) if hasattr(self, "model") else None
        out = {
            "task": "char",
            "alphabet_size": len(self.alphabet),
            "alphabet": "".join(self.alphabet.chars),
            "source": self.data_cfg.source,
            "eval_names": len(self.eval_domains),
            "scan": self.scan_summary,
            "invalid_rows": self.invalid_counts(),
            "batches_per_epoch": self.num_batches(0),
        }
        if m is not None:
            out["parameters"] = sum(p.numel() for p in m.parameters())
            out["encoder"] = self.model_cfg.encoder
            out["head"] = f"{self.model_cfg.head}/{self.model_cfg.head_kind}"
        return out


# =============================================================================== save / load
def save_char_model(model: CharMLMModel, path: Path, alphabet: Alphabet, data: CharDataConfig,
                    mcfg: CharModelConfig, masking: SpanMaskConfig) -> None:
    from safetensors.torch import save_model

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = {
        "mlmkit_task": "char",
        "format_version": FORMAT_VERSION,
        "data": dataclasses.asdict(data),
        "model": dataclasses.asdict(mcfg),
        "masking": dataclasses.asdict(masking),
        "encoder_config": model.encoder_config(),
        "alphabet_size": len(alphabet),
    }
    (path / CONFIG_NAME).write_text(json.dumps(meta, indent=1, default=str), encoding="utf-8")
    alphabet.save(path / ALPHABET_NAME)
    save_model(model, str(path / WEIGHTS_NAME))


@dataclass
class CharMLM:
    """A loaded character MLM: model, alphabet and the configs it was trained with."""

    model: CharMLMModel
    alphabet: Alphabet
    data: CharDataConfig
    model_cfg: CharModelConfig
    masking: SpanMaskConfig

    def predict(self, pattern: str, k: int = 5, beam: Optional[int] = None):
        return predict_pattern(self, pattern, k=k, beam=beam)


def load_char_model(path, device: str | torch.device = "cpu") -> CharMLM:
    from safetensors.torch import load_model

    path = Path(path)
    cfg_file = path / CONFIG_NAME
    if not cfg_file.is_file():
        raise MlmkitError(f"{path}: not a character MLM folder (no {CONFIG_NAME})")
    meta = json.loads(cfg_file.read_text(encoding="utf-8"))
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise MlmkitError(f"{path}: saved by a newer mlmkit (format {meta['format_version']})")
    data = _from_dict(CharDataConfig, meta["data"])
    mcfg = _from_dict(CharModelConfig, meta["model"])
    masking = _from_dict(SpanMaskConfig, meta["masking"])
    alphabet = Alphabet.load(path / ALPHABET_NAME)
    model = CharMLMModel(mcfg, len(alphabet), data.max_length + 2, masking.max_span,
                         encoder_config=meta["encoder_config"])
    load_model(model, str(path / WEIGHTS_NAME), device=str(device))
    model.to(device).eval()
    return CharMLM(model, alphabet, data, mcfg, masking)


def export_encoder(path, out) -> Path:
    """Write the encoder alone: a Hugging Face CanineModel folder (canine) or safetensors +
    config.json + alphabet.json (scratch encoder, `ScratchCharEncoder(**config)`)."""
    bundle = load_char_model(path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    enc = bundle.model.encoder
    if isinstance(enc, CanineCharEncoder):
        enc.canine.save_pretrained(out)
    else:
        from safetensors.torch import save_model

        save_model(enc, str(out / "model.safetensors"))
        (out / "config.json").write_text(json.dumps({"mlmkit_encoder": "ScratchCharEncoder", **enc.config}, indent=1))
    bundle.alphabet.save(out / ALPHABET_NAME)
    return out


def load_scratch_encoder(folder) -> ScratchCharEncoder:
    from safetensors.torch import load_model

    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.pop("mlmkit_encoder", None)
    enc = ScratchCharEncoder(**cfg)
    load_model(enc, str(folder / "model.safetensors"))
    return enc.eval()


def _bundle(model_dir) -> CharMLM:
    return model_dir if isinstance(model_dir, CharMLM) else load_char_model(model_dir)


# =============================================================================== evaluation
@torch.no_grad()
def char_evaluate(model_dir, data_spec=None, *, split: str = "auto", max_samples: Optional[int] = None,
                  batch_size: int = 256, seed: int = 0, decode: bool = True) -> dict[str, Any]:
    """Masked-character accuracy, span exact match (greedy), bits per character, perplexity.

    `data_spec`: a file / folder / glob / hub name, or a list of them (default: the training
    source). `split`: ``valid`` -- only the hash-held-out names (the training split's validation
    side); ``all`` -- every valid name; ``auto`` (default) -- ``valid`` for the training source,
    ``all`` for any other data. At most `max_samples` names (default data.eval_size) in total.
    The mask is fixed by `seed`, so repeated calls give the same numbers."""
    bundle = _bundle(model_dir)
    if split not in ("valid", "all", "auto"):
        raise ConfigError(f"split must be valid|all|auto, got {split!r}")
    specs = [data_spec] if data_spec is None or isinstance(data_spec, (str, Path)) else list(data_spec)
    specs = [str(x) if x is not None else None for x in specs] or [None]
    limit = max_samples or bundle.data.eval_size
    names: list[str] = []
    invalid: Counter = Counter()
    for spec in specs:
        if len(names) >= limit:
            break
        same = spec is None or spec == bundle.data.source
        dcfg = dataclasses.replace(bundle.data, source=spec or bundle.data.source, max_samples=None,
                                   eval_size=limit - len(names), alphabet=None)
        if not same:
            dcfg = dataclasses.replace(dcfg, format="auto", hub_data_files=None)
        mode = split if split != "auto" else ("valid" if same else "all")
        if mode == "all":
            src = DomainSource(dcfg.source, dcfg.format, dcfg.column, dcfg.split, dcfg.chunk_bytes,
                               dcfg.hub_config, dcfg.hub_data_files)
            flt = DomainFilter(dcfg.idn, dcfg.on_invalid, dcfg.max_length)
            for d in flt.filter(src.iter_records()):
                names.append(d)
                if len(names) >= limit:
                    break
            invalid.update(flt.invalid)
        else:
            task = CharMLMTask(dcfg, bundle.model_cfg, bundle.masking, batch_size=batch_size, seed=seed,
                               alphabet=bundle.alphabet, build_model=False)
            names.extend(task.eval_domains)
            invalid.update(task.invalid_counts())
    if not names:
        raise DataError("no evaluation names (the held-out split is empty; try split='all')",
                        ", ".join(s or bundle.data.source for s in specs))
    return evaluate_names(bundle, names, batch_size=batch_size, seed=seed, decode=decode) | {
        "invalid_rows": dict(sorted(invalid.items()))}


@torch.no_grad()
def evaluate_names(bundle: CharMLM, names: Sequence[str], *, batch_size: int = 256, seed: int = 0,
                   decode: bool = True) -> dict[str, Any]:
    model = bundle.model
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    loss_sum = 0.0
    n_chars = n_correct = n_spans = span_exact = 0
    for i in range(0, len(names), batch_size):
        b = make_batch(names[i: i + batch_size], bundle.alphabet, bundle.masking, _seed_of(seed, "eval", i))
        b = {k: v.to(dev) for k, v in b.items()}
        hidden = model.encode(b["input_ids"], b["input_idx"], b["attention_mask"])
        logits = model.head(hidden, b["spans"], b["targets"], b["input_idx"])
        _, n, ls, c = span_loss(logits, b["targets"])
        loss_sum += float(ls)
        n_chars += int(n)
        n_correct += int(c)
        if decode and b["spans"].shape[0]:
            seqs, _ = model.head.beam_search(hidden, b["spans"], beam=1, input_idx=b["input_idx"])
            pred = seqs[:, 0, : b["targets"].shape[1]]
            tg = b["targets"]
            ok = ((pred == tg) | (tg < 0)).all(1)
            span_exact += int(ok.sum())
        n_spans += int(b["spans"].shape[0])
    model.train(was)
    loss = loss_sum / max(n_chars, 1)
    out = {
        "names": len(names),
        "masked_chars": n_chars,
        "spans": n_spans,
        "char_accuracy": n_correct / max(n_chars, 1),
        "loss": loss,
        "bits_per_char": loss / math.log(2),
        "perplexity": math.exp(min(loss, 50.0)),
    }
    if decode:
        out["span_exact_match"] = span_exact / max(n_spans, 1)
    return out


# =============================================================================== prediction
_HOLE = re.compile(r"\[(MASK|mask|\d+|\?)\]")


def parse_pattern(pattern: str, max_unknown: int = 8) -> list[tuple[str, list[bool]]]:
    """Expand a pattern into (text with placeholder chars, is_hole flags) variants.

    `[?]` produces one variant per length 1..max_unknown (the cartesian product for several)."""
    pattern = pattern.strip()
    parts: list = []  # literal strings, hole lengths, -1 for [?]
    pos = 0
    for m in _HOLE.finditer(pattern):
        if m.start() > pos:
            parts.append(pattern[pos: m.start()].lower())
        tok = m.group(1)
        if tok.lower() == "mask":
            parts.append(1)
        elif tok == "?":
            parts.append(-1)  # unknown length
        else:
            n = int(tok)
            if not 1 <= n <= 63:
                raise MlmkitError(f"pattern {pattern!r}: [{n}] must be between 1 and 63 characters")
            parts.append(n)
        pos = m.end()
    if pos < len(pattern):
        parts.append(pattern[pos:].lower())
    if "[" in "".join(p for p in parts if isinstance(p, str)) or "]" in "".join(p for p in parts if isinstance(p, str)):
        raise MlmkitError(f"pattern {pattern!r}: unknown hole; use [MASK], [n] (e.g. [3]) or [?]")
    if not any(not isinstance(p, str) for p in parts):
        raise MlmkitError(f"pattern {pattern!r} has no hole: use [MASK], [n] or [?]")
    variants: list[tuple[list, list[int]]] = [([], [])]
    for p in parts:
        if p == -1:
            variants = [(v + [n], u + [n]) for v, u in variants for n in range(1, max_unknown + 1)]
        else:
            variants = [(v + [p], u) for v, u in variants]
    out = []
    for v, unknown in variants:
        text, holes = "", []
        for p in v:
            if isinstance(p, str):
                text += p
                holes += [False] * len(p)
            else:
                text += "\u0000" * p
                holes += [True] * p
        out.append(PatternVariant(text, holes, unknown))
    return out


class PatternVariant(tuple):
    """(text, holes) -- text with NUL placeholders, per-character hole flags -- plus
    `unknown`: the lengths chosen for the pattern's [?] holes."""

    def __new__(cls, text: str, holes: list[bool], unknown: list[int]):
        obj = super().__new__(cls, (text, holes))
        obj.unknown = unknown
        return obj


def length_log_prior(n: int, mean_span: float, max_span: int) -> float:
    """log P(length = n) under the masking's geometric span lengths, truncated to 1..max_span."""
    p = 1.0 / mean_span
    if p >= 1.0:
        return 0.0 if n == 1 else float("-inf")
    z = 1.0 - (1.0 - p) ** max_span
    return math.log(p) + (n - 1) * math.log1p(-p) - math.log(z)


@torch.no_grad()
def predict_pattern(bundle: CharMLM, pattern: str, k: int = 5, beam: Optional[int] = None) -> list[tuple[str, float]]:
    model = bundle.model
    model.eval()
    alpha = bundle.alphabet
    variants = parse_pattern(pattern, bundle.masking.max_span)
    mk = bundle.masking
    beam = beam or max(2 * k, 5)
    maxlen = bundle.data.max_length
    dev = next(model.parameters()).device
    results: dict[str, float] = {}
    B = 64
    for i in range(0, len(variants), B):
        group = [v for v in variants[i: i + B] if len(v[0]) <= maxlen]
        if not group:
            continue
        texts = [t for t, _ in group]
        cps, idx, att, _, _, _ = encode_domains(texts, alpha)
        hole = torch.zeros_like(att, dtype=torch.bool)
        for r, (_, h) in enumerate(group):
            hole[r, 1: 1 + len(h)] = torch.tensor(h, dtype=torch.bool)
        cps = cps.masked_fill(hole, Alphabet.SPECIAL_CPS[Alphabet.MASK])
        idx = idx.masked_fill(hole, Alphabet.MASK)
        spans = _spans_from_mask(hole)
        hidden = model.encode(cps.to(dev), idx.to(dev), att.to(dev))
        seqs, scores = model.head.beam_search(hidden, spans.to(dev), beam=beam, input_idx=idx.to(dev))
        seqs, scores = seqs.cpu(), scores.cpu()
        for r, var in enumerate(group):
            text, h = var
            prior = sum(length_log_prior(n, mk.mean_span, mk.max_span) for n in var.unknown)
            rows = (spans[:, 0] == r).nonzero().flatten().tolist()
            combos: list[tuple[float, list[tuple[int, str]]]] = [(0.0, [])]
            for s in rows:
                start, length = int(spans[s, 1]) - 1, int(spans[s, 2])
                cands = [(float(scores[s, b]), alpha.decode(seqs[s, b, :length].tolist()))
                         for b in range(seqs.shape[1]) if math.isfinite(float(scores[s, b]))]
                combos = sorted(((sc + c_sc, fills + [(start, c)]) for sc, fills in combos for c_sc, c in cands),
                                key=lambda x: -x[0])[:beam]
            for sc, fills in combos:
                chars = list(text)
                for start, c in fills:
                    chars[start: start + len(c)] = list(c)
                name = "".join(chars)
                dom, reason = check_domain(name, "keep", None, None)
                tld = name.rsplit(".", 1)[-1]
                if reason is not None or ("." in name and (len(tld) < 2 or tld.isdigit())):
                    continue
                score = sc + prior
                if name not in results or score > results[name]:
                    results[name] = score
    ranked = sorted(results.items(), key=lambda x: -x[1])[:k]
    return [(n, float(s)) for n, s in ranked]


def char_predict(model_dir, pattern: str, k: int = 5, beam: Optional[int] = None) -> list[tuple[str, float]]:
    """Fill the holes of `pattern` (see the module docstring for the syntax); best `k` first."""
    return predict_pattern(_bundle(model_dir), pattern, k=k, beam=beam)


def is_char_model_dir(path) -> bool:
    """True if `path` is a folder written by `CharMLMTask.save_pretrained`."""
    return (Path(path) / CONFIG_NAME).is_file()


is_char_model = is_char_model_dir


def build_char_task(cfg, model: Optional[CharModelConfig] = None, masking: Optional[SpanMaskConfig] = None, *,
                    batch_size: Optional[int] = None, seed: Optional[int] = None, log=None) -> CharMLMTask:
    """Entry point for the trainer (``task: char``).

    Either ``build_char_task(config, log=...)`` with the run `Config` (sections ``data`` /
    ``model`` / ``masking`` of the char types, ``train.batch_size``, ``train.seed``), or
    ``build_char_task(data_cfg, model_cfg, masking_cfg, batch_size=..., seed=...)``."""
    if isinstance(cfg, CharDataConfig):
        data = cfg
    else:
        data, model, masking = cfg.data, cfg.model, cfg.masking
        train = getattr(cfg, "train", None)
        batch_size = batch_size or getattr(train, "batch_size", None)
        seed = seed if seed is not None else getattr(train, "seed", 0)
    task = CharMLMTask(data, model, masking, batch_size=batch_size or 128, seed=seed or 0)
    if log is not None:
        d = task.describe()
        inv = ", ".join(f"{k} {v}" for k, v in d["invalid_rows"].items()) or "none"
        log(f"char task: {d['scan']['train']:,} training names scanned, {d['eval_names']:,} held-out names, "
            f"alphabet {d['alphabet_size']} ({d['alphabet']}), {d.get('parameters', 0):,} parameters, "
            f"{d['batches_per_epoch'] or 'unknown'} batches/epoch; invalid rows skipped: {inv}")
    return task
