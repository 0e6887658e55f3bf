"""The training names of a character run, planned as batches: the start-up scan, windows of
chunks (local files) or of stream records (the Hub), hub positions, and which names each rank
trains on. `task.CharMLMTask` holds one `NameStream` and turns its names into masked batches.

Streaming and O(1) resume
-------------------------
Local files are cut into chunks (byte ranges of line-based files; Parquet row groups). In epoch
``e`` the chunks are put in a seeded random order and grouped into *windows* of about
``shuffle_buffer`` rows; a window's training rows are shuffled (seed, epoch, window) and cut into
a fixed number of batches computed from the window's size (bytes or Parquet rows) and the
valid-row rate measured at start-up. A window with more rows than that drops the surplus for this
epoch, one with fewer reuses rows, so batch ``i`` of epoch ``e`` is a pure function of
(seed, e, i) and ``batches(e, start)`` reads only the window that holds ``start``:
O(window), never the rows before it.

Hub streams (``datasets.load_dataset(..., streaming=True)``, or a saved data set) are read shard
by shard in a seeded order per pass (`data.hub.ShardedStream`); windows are consecutive groups of
``shuffle_buffer`` records. They cannot seek by batch number, so every batch carries the stream's
position at its window's start (the engine's `DATA_STATE`), the checkpoint keeps it, and a resumed
run re-opens that shard at the saved `datasets` state: O(window), not O(rows before it). With as
many shards as ranks (or more) each rank reads only its shards of each pass, endlessly (the epoch
length is unknown, `num_batches` is None), and such a run resumes only on as many ranks; with
fewer shards, or with ``max_samples`` (then the stream keeps its order and ends), every rank
reads the whole stream and trains on its share of every global batch, like local files.

With ``data.one_name_per_family`` a window trains on one name of each of its families (names
that differ only in their TLD), a different one each pass, and is cut into batches by the share of
families among names that the scan measured.

Within a window, names are sorted by length in groups of ``data.length_group`` batches (batch order
then shuffled) so batches carry little padding (~50% of positions otherwise).

Validation rows are chosen by a hash of the normalised domain (`data.is_validation`; by default of
the domain without its TLD, ``data.holdout_key: name``, so ``foo.cf`` and ``foo.ga`` stay
together): the same name is always on the same side and never leaks into training. With
``data.validation`` the held-out names come from that source instead. The evaluation set is the
first ``max_eval_samples`` held-out names in source order.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import torch

from ..data.hub import StreamCursor
from ..engine.draws import example_keys
from ..errors import ConfigError, DataError, MlmkitError
from ..util import mix_seed
from .config import CharDataConfig
from .data import (Alphabet, DomainFilter, DomainSource, derive_alphabet, holdout_key, is_validation,
                   one_name_per_family)

# The random streams of a run, mixed with (seed, epoch, ...) by the one seed mixer `util.mix_seed`.
CHUNKS, WINDOW, GROUP, MASK, HUB = range(1, 6)


@dataclass
class _Window:
    chunks: list  # Chunk list (local)
    n_batches: int


@dataclass
class _Scan:
    """What the start-up pass over a prefix of the data counted and collected."""

    need_alphabet: bool
    alpha_rows: list[str] = field(default_factory=list)
    eval_names: list[str] = field(default_factory=list)
    records: int = 0
    valid: int = 0
    train: int = 0
    units: float = 0.0  # bytes (line-based files) or rows (parquet, hub) scanned
    reached_max: bool = False
    # the families of the first window's worth of training names (`data.one_name_per_family`)
    families: Counter = field(default_factory=Counter)


@dataclass
class NamesBatch:
    """One batch of the plan, before masking: this rank's names, the key of each name's mask, and
    (hub streams) where the batch's window starts, for the engine to save (`DATA_STATE`)."""

    names: list[str]
    keys: torch.Tensor
    data_state: Optional[dict] = None


class NameStream:
    """The names of `data.train` as a plan of batches (see the module's docstring).

    Made by one start-up scan (alphabet, valid-row rate, evaluation names, the `max_samples`
    cut-off). Then: `num_batches(epoch)`, `batches(epoch, start, stride)` (this rank's names of
    each global batch of `batch_size * world_size`, or of its own shards' batches), and on resume
    `load_state` (the saved hub positions)."""

    def __init__(self, data: CharDataConfig, *, batch_size: int = 128, seed: int = 0, rank: int = 0,
                 world_size: int = 1, alphabet: Optional[Alphabet] = None):
        if not data.train:
            raise ConfigError("config key 'data.train': no training data given (use --data FILE)")
        self.data_cfg, self.seed = data, seed
        self.batch_size = batch_size  # per rank
        # Every rank plans the same global batches and trains on its share of each.
        self.rank, self.world_size = rank, world_size
        self.global_batch = batch_size * world_size
        self.source = DomainSource(data.train, data)
        # With a separate validation source nothing of the training data is held out.
        self.holdout = 0.0 if data.validation else data.validation_fraction
        self.filter = DomainFilter(data.idn, data.max_length)
        self._invalid_by_key: dict = {}
        self._window_cache: dict = {}
        self._scan(alphabet)

    # ------------------------------------------------------------------ start-up scan
    def _scan(self, alphabet: Optional[Alphabet]) -> None:
        """One pass over a prefix: alphabet, valid-row rate, eval names, max_samples cut-off."""
        d = self.data_cfg
        scan = _Scan(need_alphabet=alphabet is None and d.alphabet is None)
        if self.source.is_hub:
            self._scan_hub(scan)
        else:
            self._scan_local(scan)
        self.scan_summary = {"records_scanned": scan.records, "valid": scan.valid, "train": scan.train}
        self.train_per_unit = scan.train / max(scan.units, 1)
        if d.one_name_per_family and scan.families:
            # a window trains on its families only: plan its batches from their share of its names
            share = len(scan.families) / sum(scan.families.values())
            self.scan_summary["family_share"] = round(share, 4)
            self.train_per_unit *= share
        if scan.valid == 0:
            inv = ", ".join(f"{k}: {v}" for k, v in sorted(self.invalid_counts().items())) or "no records"
            raise DataError(f"no valid domain names found ({inv})", self.source.name)
        if scan.train == 0:
            raise DataError("no training names left after holding out the validation split "
                            "(lower data.validation_fraction)", self.source.name)
        self.eval_names = self._validation_names() if d.validation else scan.eval_names
        if alphabet is not None:
            self.alphabet = alphabet
        elif d.alphabet is not None:
            self.alphabet = Alphabet(list(d.alphabet))
        else:
            self.alphabet = derive_alphabet(scan.alpha_rows)

    def _tally(self, scan: _Scan, dom: str) -> None:
        """Count one valid name: alphabet sample, held-out or training, max_samples."""
        d = self.data_cfg
        scan.valid += 1
        if scan.need_alphabet and len(scan.alpha_rows) < d.alphabet_sample:
            scan.alpha_rows.append(dom)
        if is_validation(dom, self.holdout, d.holdout_key):
            if d.max_eval_samples is None or len(scan.eval_names) < d.max_eval_samples:
                scan.eval_names.append(dom)
        else:
            scan.train += 1
            if d.one_name_per_family and scan.train <= d.shuffle_buffer:
                scan.families[holdout_key(dom, "name")] += 1
        if d.max_samples is not None and scan.valid >= d.max_samples:
            scan.reached_max = True

    def _scan_done(self, scan: _Scan) -> bool:
        d = self.data_cfg
        if d.max_samples is not None:
            return scan.reached_max
        alpha_ok = (not scan.need_alphabet) or len(scan.alpha_rows) >= d.alphabet_sample
        eval_ok = self.holdout == 0 or (d.max_eval_samples is not None and len(scan.eval_names) >= d.max_eval_samples)
        return alpha_ok and eval_ok and scan.records >= min(d.alphabet_sample, 10000)

    def _scan_hub(self, scan: _Scan) -> None:
        ctx = self.source.ctx()
        for rec in self.source.iter_hub(ctx):
            scan.records = scan.units = rec.line  # raw rows consumed (rejected ones included)
            dom = self.filter(rec, ctx)
            if dom is not None:
                self._tally(scan, dom)
            if self._scan_done(scan):
                break
        self._invalid_by_key["scan"] = Counter(ctx.stats.bad_counts())
        self.hub_rows_limit = scan.records if scan.reached_max else None
        self.chunks: list = []
        # With max_samples the stream keeps its order (its first rows are the ones scanned) and
        # every rank reads it all; otherwise ranks read their own shards where there are enough.
        limited = self.hub_rows_limit is not None
        self.hub = self.source.hub_stream(seed=mix_seed(self.seed, HUB), rank=self.rank,
                                          world=1 if limited else self.world_size, shuffle=not limited)
        self._hub_cursors: dict[tuple[int, int], StreamCursor] = {}

    def _scan_local(self, scan: _Scan) -> None:
        chunks = self.source.chunks()
        limits: Optional[dict[str, int]] = None
        for ci, ch in enumerate(chunks):
            ctx, in_chunk, stop = self.source.ctx(), 0.0, False
            for rec in self.source.read_chunk(ch, ctx):
                scan.records += 1
                in_chunk = (rec.offset - ch.start + 1) if rec.offset is not None else in_chunk + 1
                dom = self.filter(rec, ctx)
                if dom is not None:
                    self._tally(scan, dom)
                    if scan.reached_max and limits is None:
                        # line-based: keep the lines starting before `cut`; Parquet: whole groups
                        cut = ch.end if rec.offset is None else rec.offset + 1
                        limits = {c.path: 0 for c in chunks[ci + 1:]}
                        limits[ch.path] = cut
                if scan.reached_max or self._scan_done(scan):
                    stop = True
                    break
            self._invalid_by_key[ch] = Counter(ctx.stats.bad_counts())
            if stop:
                scan.units += in_chunk
                break
            scan.units += ch.units
        self.chunks = self.source.chunks(limits) if limits is not None else chunks
        self.hub_rows_limit = None

    def _validation_names(self) -> list[str]:
        """The first `max_eval_samples` valid names of `data.validation`."""
        d = self.data_cfg
        source = DomainSource(d.validation, d)
        ctx = source.ctx()
        names: list[str] = []
        for dom in self.filter.filter(source.iter_records(ctx), ctx):
            names.append(dom)
            if d.max_eval_samples is not None and len(names) >= d.max_eval_samples:
                break
        return names

    # ------------------------------------------------------------------ what the scan found
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

    def describe(self) -> dict[str, Any]:
        """The data facts of the run summary: source, scan, invalid rows, batches, hub shards."""
        out = {
            "source": self.source.name,
            "eval_names": len(self.eval_names),
            "scan": self.scan_summary,
            "invalid_rows": self.invalid_counts(),
            "batches_per_epoch": self.num_batches(0),
        }
        if self.source.is_hub:  # how the ranks share the stream
            out["hub_shards"] = self.hub.n_shards
            out["hub_split_by_rank"] = self.hub.split
        return out

    # ------------------------------------------------------------------ every training name once
    def chunks_of_rank(self) -> list:
        """This rank's share of the local chunks: the ranks together read every training name
        once (to fill a count memory before training, `model.head_ngram_counts`)."""
        if self.source.is_hub:
            raise ConfigError("config key 'model.head_ngram_counts': needs local data files (a hub stream "
                              "cannot be counted before training): download the names first, or train "
                              "without counts with --set model.head_ngram_counts=false")
        return self.chunks[self.rank::self.world_size]

    def chunk_names(self, ch) -> list[str]:
        """The training names of one local chunk."""
        return self._chunk_rows(ch)[0]

    # ------------------------------------------------------------------ epochs and windows
    def windows(self, epoch: int) -> list[_Window]:
        """The windows of local chunks of `epoch`, in their seeded order."""
        if epoch in self._window_cache:
            return self._window_cache[epoch]
        B = self.global_batch
        order = list(range(len(self.chunks)))
        random.Random(mix_seed(self.seed, CHUNKS, epoch)).shuffle(order)
        windows: list[_Window] = []
        cur: list = []
        cur_rows = 0.0
        for i in order:
            ch = self.chunks[i]
            cur.append(ch)
            cur_rows += ch.units * self.train_per_unit
            if cur_rows >= self.data_cfg.shuffle_buffer:
                windows.append(_Window(cur, max(1, round(cur_rows / B))))
                cur, cur_rows = [], 0.0
        if cur:
            windows.append(_Window(cur, max(1, round(cur_rows / B))))
        self._window_cache = {epoch: windows}
        return windows

    def num_batches(self, epoch: int) -> Optional[int]:
        if self.source.is_hub:
            if self.hub_rows_limit is None:  # (and a stream split by rank never ends)
                return None
            n_win, rest = divmod(self.hub_rows_limit, self.data_cfg.shuffle_buffer)
            return n_win * self.hub_per_window() + (self._window_size(rest) if rest else 0)
        return sum(w.n_batches for w in self.windows(epoch))

    def _chunk_rows(self, ch) -> tuple[list[str], Any]:
        """The training names of one local chunk, and the reading context that counted its bad rows."""
        ctx = self.source.ctx()
        return self._train_rows(self.source.read_chunk(ch, ctx), ctx), ctx

    def _train_rows(self, records, ctx) -> list[str]:
        d = self.data_cfg
        return [dom for dom in self.filter.filter(records, ctx) if not is_validation(dom, self.holdout, d.holdout_key)]

    def _window_batches(self, rows: list[str], n_batches: int, epoch: int, w: int, j0: int,
                        stride: int = 1) -> Iterator[NamesBatch]:
        """Batches j0.. of window `w`: its rows (one of each family with `data.one_name_per_family`)
        shuffled, then in groups of `length_group` batches sorted by length (batch order shuffled in
        the group). An example is its slot in the shuffled window (slots past the end wrap around);
        its mask is keyed by that slot."""
        split = self.split
        B = self.batch_size if split else self.global_batch
        if self.data_cfg.one_name_per_family:
            rows = one_name_per_family(rows, epoch)
        random.Random(mix_seed(self.seed, WINDOW, epoch, w)).shuffle(rows)
        # Ranks reading their own shards number their slots alike: their masks must differ.
        mask_seed = mix_seed(self.seed, MASK, epoch, w, self.rank) if split else mix_seed(self.seed, MASK, epoch, w)
        G = max(1, self.data_cfg.length_group)
        cache: dict[int, list[list[int]]] = {}
        for j in range(j0, n_batches, stride):
            g, jj = divmod(j, G)
            if g not in cache:
                cache.clear()
                slots = list(range(g * G * B, min((g + 1) * G, n_batches) * B))
                if G > 1:  # similar lengths together (less padding), batch order shuffled in the group
                    slots.sort(key=lambda t: len(rows[t % len(rows)]))
                groups = [slots[t: t + B] for t in range(0, len(slots), B)]
                if G > 1:
                    random.Random(mix_seed(self.seed, GROUP, epoch, w, g)).shuffle(groups)
                cache[g] = groups
            # every W-th slot of the length-sorted batch (as `engine.task.TaskBase.rows_of_rank`):
            # contiguous shares would give the last rank the longest names
            mine = cache[g][jj] if split else cache[g][jj][self.rank::self.world_size]
            keys = example_keys(mask_seed, torch.tensor(mine, dtype=torch.int64))
            yield NamesBatch([rows[t % len(rows)] for t in mine], keys)

    def batches(self, epoch: int, start: int = 0, stride: int = 1) -> Iterator[NamesBatch]:
        """Batches start, start + stride, ... of `epoch` (this rank's names of each)."""
        if self.source.is_hub:
            yield from self._hub_batches(epoch, start, stride)
            return
        first, nxt = 0, start  # nxt: the next batch number wanted
        for w, win in enumerate(self.windows(epoch)):
            if nxt >= first + win.n_batches:
                first += win.n_batches
                continue
            rows: list[str] = []
            for ch in win.chunks:
                chunk_rows, ctx = self._chunk_rows(ch)
                rows.extend(chunk_rows)
                # each chunk counted once, however often it is read
                self._invalid_by_key[ch] = Counter(ctx.stats.bad_counts())
            if not rows:  # a window of invalid rows only: borrow the names of another chunk
                rows = self._fallback_rows()
            yield from self._window_batches(rows, win.n_batches, epoch, w, nxt - first, stride)
            nxt = _next_wanted(nxt, first + win.n_batches, stride)
            first += win.n_batches

    def _fallback_rows(self) -> list[str]:
        for ch in self.chunks:
            rows, _ = self._chunk_rows(ch)
            if rows:
                return rows
        raise DataError("no training names in the data", self.source.name)

    # ------------------------------------------------------------------ hub streams
    @property
    def split(self) -> bool:
        """Whether this rank trains on its own shards of a hub stream (not a share of every batch)."""
        return self.source.is_hub and self.hub.split

    def _window_size(self, rows: int) -> int:
        """Batches made from a window of `rows` raw rows (each rank's batch when split)."""
        return max(1, round(rows * self.train_per_unit / (self.batch_size if self.split else self.global_batch)))

    def hub_per_window(self) -> int:
        """Batches made from a whole window of the hub stream."""
        return self._window_size(self.data_cfg.shuffle_buffer)

    def _hub_batches(self, epoch: int, start: int, stride: int = 1) -> Iterator[NamesBatch]:
        """Windows of `shuffle_buffer` consecutive records of the stream (rejected rows not
        counted), each cut into a fixed number of batches. Every batch carries the stream's
        position at its window's start (`data_state`), which the engine saves: a resumed run
        starts reading there, not at the stream's start."""
        W, per = self.data_cfg.shuffle_buffer, self.hub_per_window()
        w, j0 = divmod(start, per)
        at, cursor = self._hub_start(epoch, w)
        ctx = self.source.ctx()
        cursor, records = self.hub.open(ctx, cursor)
        left = None if self.hub_rows_limit is None else max(0, self.hub_rows_limit - at * W)
        while left is None or left > 0:
            window_start, counted = dataclasses.replace(cursor), Counter(ctx.stats.bad_counts())
            window = list(itertools.islice(records, W if left is None else min(W, left)))
            if not window:
                return
            left = None if left is None else left - len(window)
            if at == w:  # (windows before it are read only to reach it)
                rows = self._train_rows(window, ctx)
                self._invalid_by_key[("hub", epoch, at)] = Counter(ctx.stats.bad_counts()) - counted
                n = per if len(window) == W else self._window_size(len(window))
                mark = {"epoch": epoch, "window": at, "cursor": window_start.to_json(), "split": self._split_key()}
                for batch in (self._window_batches(rows, n, epoch, at, j0, stride) if rows and j0 < n else ()):
                    batch.data_state = mark
                    yield batch
                w, j0 = divmod(_next_wanted(at * per + j0, at * per + n, stride), per)
            at += 1

    def _split_key(self) -> Optional[list[int]]:
        return [self.rank, self.world_size] if self.split else None

    def _hub_start(self, epoch: int, w: int) -> tuple[int, StreamCursor]:
        """The nearest known window start at or before window `w` of `epoch` (a saved one, else the
        epoch's start)."""
        known = [v for (e, v) in self._hub_cursors if e == epoch and v <= w]
        if not known:
            return 0, StreamCursor(epoch=epoch)
        return max(known), self._hub_cursors[(epoch, max(known))]

    def load_state(self, states: list) -> None:
        """Resume a hub stream where the checkpoint's window started. A stream split by rank can
        continue only on the same ranks (each read its own shards); a read-all stream on any."""
        if not self.source.is_hub:
            return
        mine = next((s for s in states if s), None)
        if mine is None:
            return
        split = mine.get("split")
        if split is None and self.hub.split:  # (saved by a run that read it all: keep doing so)
            self.hub.split, self.hub.rank, self.hub.world = False, 0, 1
        elif split is not None:
            if split[1] != self.world_size or len(states) != self.world_size or not self.hub.split:
                raise MlmkitError(f"the checkpoint's hub stream was split over {split[1]} ranks, each reading its "
                                  f"own shards of {self.source.name}: resume it on {split[1]} ranks")
            mine = states[self.rank]
        self._hub_cursors[(mine["epoch"], mine["window"])] = StreamCursor.from_json(mine["cursor"])


def _next_wanted(nxt: int, end: int, stride: int) -> int:
    """The first batch number >= `end` in the sequence nxt, nxt + stride, ..."""
    return nxt if nxt >= end else nxt + -(-(end - nxt) // stride) * stride
