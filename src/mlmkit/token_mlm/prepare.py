"""Prepare once: records -> tokenised, packed training sequences in memory-mapped files.

`mlmkit prepare` (and `mlmkit train`, when the cache is missing) reads the corpus in independent
pieces (byte ranges of line-based files, Parquet row groups, one hub data set per piece),
tokenises them in parallel worker processes, and packs them in corpus order into three flat
files per split: `tokens.bin` (int32), `offsets.bin` (int64, one more than sequences) and, for
whole-word masking, `words.bin` (int32). The folder is named by a fingerprint of everything that
decides its content (files with their sizes and modification times, hub names, the tokenizer,
mode, max_length, word ids, column, format, split and caps), written under a temporary name and
renamed, so every rank and every resume reuses it, and a changed input makes a new one.

Training maps the files (`np.memmap`): resident memory and start-up time do not grow with the
corpus, and no rank ever holds the corpus as Python strings.

Why flat numpy files rather than Arrow (`datasets`) or a streaming library: the sequences are
read by index in a seeded, bucketed order (`TokenMLMTask._plan`), which needs O(1) random access
to a row and its length -- a memory-mapped token array plus offsets is exactly that, with no
dependency, no per-row decoding and no format conversion on the hot path. The packing (group_texts
across record and piece boundaries) must run in corpus order anyway, in one process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ..data.base import ReadContext, ReadStats
from ..data.chunks import Chunk, chunk_files, read_chunk
from ..data.hub import HubOptions, iter_hub
from ..data.records import resolve_sources
from ..errors import DataError, MlmkitError
from ..report.progress import progress_bar
from ..util import stable_hash
from .data import Packer, RecordBatch, Sequences, encode_batch

FORMAT_VERSION = 1
CACHE_ENV = "MLMKIT_CACHE"
PIECE_BYTES = 8 << 20  # bytes of a line-based file per work item
ENCODE_BATCH = 1000  # records per tokenizer call
SPLITS = ("train", "validation")


# ---------------------------------------------------------------------------------- the cache
def cache_root(data_cfg) -> Path:
    """`data.cache_dir`, else $MLMKIT_CACHE, else ~/.cache/mlmkit: prepared data lives here."""
    root = data_cfg.cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mlmkit"
    return Path(root).expanduser() / "prepared"


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else repr(tokenizer.get_vocab())
    return hashlib.sha256((text + repr(sorted(tokenizer.special_tokens_map.items()))).encode()).hexdigest()


def _source_facts(specs: list[str] | None, data_cfg) -> list:
    facts = []
    for spec in specs or []:
        found = resolve_sources([spec], data_cfg.format)
        for f in found.files:
            st = f.stat()
            facts.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
        facts += [["hf", name, data_cfg.hf_split, data_cfg.hf_config, data_cfg.hf_data_files] for name in found.hub]
    return facts


def fingerprint(data_cfg, tokenizer, word_ids: bool) -> str:
    """What decides the prepared sequences, hashed: change any of it and a new folder is made."""
    d = data_cfg
    facts = {"format_version": FORMAT_VERSION, "train": _source_facts(d.train, d),
             "validation": _source_facts(d.validation, d), "tokenizer": tokenizer_fingerprint(tokenizer),
             "mode": d.mode, "max_length": d.max_length, "word_ids": word_ids, "text_column": d.text_column,
             "format": d.format, "validation_fraction": d.validation_fraction, "max_samples": d.max_samples,
             "on_bad_record": d.on_bad_record}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:20]


def tokenizer_folder(cfg) -> Path:
    """Where a tokenizer trained on the run's data with the run's tokenizer settings is cached:
    the same data and settings give the same folder, so a second command (or `train` after
    `prepare`) reuses the tokenizer -- and with it the prepared data -- instead of training a new
    one (the `tokenizers` trainers break frequency ties in hash order: two trainings on the same
    text can number the vocabulary differently)."""
    d, t = cfg.data, cfg.tokenizer
    facts = {"train": _source_facts(d.train, d), "separate_validation": bool(d.validation),
             "validation_fraction": d.validation_fraction, "max_samples": d.max_samples,
             "text_column": d.text_column, "format": d.format, "on_bad_record": d.on_bad_record,
             "kind": t.kind, "vocab_size": t.vocab_size, "min_frequency": t.min_frequency,
             "lowercase": t.lowercase, "train_samples": t.train_samples, "max_length": d.max_length}
    fp = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:20]
    return cache_root(d).parent / "tokenizers" / fp


@dataclass
class Prepared:
    folder: Path
    train: Sequences
    validation: Sequences
    meta: dict[str, Any]


def load_prepared(folder: Path) -> Prepared:
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    splits = {s: _load_split(folder / s, meta["splits"][s], meta["word_ids"]) for s in SPLITS}
    return Prepared(folder, splits["train"], splits["validation"], meta)


def _load_split(folder: Path, info: dict, word_ids: bool) -> Sequences:
    def arr(name, dtype, n):
        return np.memmap(folder / name, dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(n, dtype)

    n_tok, n_seq = info["tokens"], info["sequences"]
    return Sequences(arr("tokens.bin", np.int32, n_tok), arr("offsets.bin", np.int64, n_seq + 1)
                     if n_seq else np.zeros(1, np.int64), arr("words.bin", np.int32, n_tok) if word_ids else None)


# ---------------------------------------------------------------------------------- work items
@dataclass(frozen=True)
class Item:
    """A piece of the corpus one worker reads and tokenises."""

    role: str  # "split" (held out by hash), "train" or "validation"
    chunk: Optional[Chunk] = None  # a piece of a local file
    hub: Optional[str] = None  # or a whole hub data set


def work_items(data_cfg) -> list[Item]:
    d = data_cfg
    items = []
    for specs, role in ((d.train, "train" if d.validation else "split"), (d.validation, "validation")):
        for spec in specs or []:
            found = resolve_sources([spec], d.format)
            items += [Item(role, chunk=c) for c in chunk_files(found.files, d.format, PIECE_BYTES, d.text_column)]
            # an empty file has no chunk; one empty item lets the bad-record rule see it
            items += [Item(role, chunk=Chunk(str(f), "text", 0, 0)) for f in found.files if f.stat().st_size == 0]
            items += [Item(role, hub=name) for name in found.hub]
            if not found.files and not found.hub:
                raise DataError("no data", spec)
    return items


@dataclass
class ItemResult:
    batch: RecordBatch  # the records with at least one token, in order
    text_index: np.ndarray  # index of each of them among the item's records
    held_out: np.ndarray  # bool per kept record: validation side
    n_texts: int  # records read
    stats: ReadStats
    source: str


_WORKER: dict[str, Any] = {}


def _init_worker(tokenizer, data_cfg, word_ids: bool) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process per core already
    _WORKER.update(tokenizer=tokenizer, data=data_cfg, word_ids=word_ids)


def _init_pool_worker(tokenizer, data_cfg, word_ids: bool) -> None:
    # Ctrl-C reaches the whole process group: the parent handles it and terminates the pool,
    # instead of every worker printing a KeyboardInterrupt traceback. (The workers the pool
    # starts at first inherit SIG_IGN from the parent; this covers any it starts later.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _init_worker(tokenizer, data_cfg, word_ids)


def encode_item(item: Item) -> ItemResult:
    """Read and tokenise one piece (runs in a worker process)."""
    tok, d, word_ids = _WORKER["tokenizer"], _WORKER["data"], _WORKER["word_ids"]
    ctx = ReadContext(d.text_column, d.on_bad_record, ReadStats())
    if item.chunk is not None:
        records, source = read_chunk(item.chunk, ctx, d.format), item.chunk.path
    else:
        hub = HubOptions(d.hf_split, d.hf_config, d.hf_data_files, streaming=True)
        records, source = iter_hub(item.hub, ctx, hub), f"hf:{item.hub}"
    texts = [r.text for r in records]
    ctx.stats.read = len(texts)
    batches = [encode_batch(texts[s: s + ENCODE_BATCH], tok, word_ids, with_index=True)
               for s in range(0, len(texts), ENCODE_BATCH)]
    index = np.concatenate([b.index + s for b, s in zip(batches, range(0, len(texts), ENCODE_BATCH))]
                           or [np.zeros(0, np.int64)])
    batch = _concat_records(batches, word_ids)
    if item.role == "split":
        threshold = int(d.validation_fraction * 2**32)
        held = np.fromiter((stable_hash(texts[i], 4, salt=b"0") < threshold for i in index), dtype=bool,
                           count=len(index))
    else:
        held = np.full(len(index), item.role == "validation")
    return ItemResult(batch, index, held, len(texts), ctx.stats, source)


def _concat_records(batches: list, word_ids: bool) -> RecordBatch:
    if not batches:
        return RecordBatch(np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int32) if word_ids else None)
    return RecordBatch(np.concatenate([b.ids for b in batches]), np.concatenate([b.lengths for b in batches]),
                       np.concatenate([b.words for b in batches]) if word_ids else None)


# ---------------------------------------------------------------------------------- writing
class SplitWriter:
    """Appends packed sequences to the three flat files of one split."""

    def __init__(self, folder: Path, word_ids: bool):
        folder.mkdir(parents=True)
        self.files = {"tokens": open(folder / "tokens.bin", "wb"), "offsets": open(folder / "offsets.bin", "wb")}
        if word_ids:
            self.files["words"] = open(folder / "words.bin", "wb")
        self.files["offsets"].write(np.zeros(1, np.int64).tobytes())
        self.tokens = self.sequences = 0

    def write(self, seqs: Sequences) -> None:
        if not len(seqs):
            return
        self.files["tokens"].write(np.ascontiguousarray(seqs.tokens, np.int32).tobytes())
        self.files["offsets"].write((seqs.offsets[1:] + self.tokens).astype(np.int64).tobytes())
        if "words" in self.files:
            self.files["words"].write(np.ascontiguousarray(seqs.word_ids, np.int32).tobytes())
        self.tokens += int(seqs.offsets[-1])
        self.sequences += len(seqs)

    def close(self) -> dict[str, int]:
        for f in self.files.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        return {"tokens": self.tokens, "sequences": self.sequences}


@dataclass
class _Tally:
    """Records read so far, per role, and the skip counts, for the caps and the log."""

    texts: dict[str, int] = field(default_factory=lambda: {"train": 0, "validation": 0})
    stats: dict[str, ReadStats] = field(default_factory=lambda: {"train": ReadStats(), "validation": ReadStats()})
    per_file: dict[str, int] = field(default_factory=dict)

    def add(self, role: str, res: ItemResult, n_texts: int) -> None:
        side = "validation" if role == "validation" else "train"
        self.texts[side] += n_texts
        st = self.stats[side]
        st.read += n_texts
        for reason, n in res.stats.skipped.items():
            st.skipped[reason] = st.skipped.get(reason, 0) + n
        for reason, example in res.stats.examples.items():
            st.examples.setdefault(reason, example)
        self.per_file[res.source] = self.per_file.get(res.source, 0) + n_texts


def _pack_all(items: list[Item], results, folder: Path, tokenizer, data_cfg, word_ids: bool, bar) -> dict:
    """Results in corpus order -> packed sequences on disk; returns the meta of the folder."""
    d = data_cfg
    writers = {s: SplitWriter(folder / s, word_ids) for s in SPLITS}
    packers = {s: Packer(d.mode, tokenizer, d.max_length, word_ids) for s in SPLITS}
    tally, cap = _Tally(), d.max_samples
    for item, res in zip(items, results):
        keep, n_texts = np.ones(len(res.text_index), bool), res.n_texts
        if cap is not None and item.role != "validation":
            room = max(cap - tally.texts["train"], 0)
            n_texts = min(n_texts, room)
            keep = res.text_index < room
        tally.add(item.role, res, n_texts)
        held = res.held_out & keep
        writers["train"].write(packers["train"].add(res.batch.select(keep & ~held)))
        writers["validation"].write(packers["validation"].add(res.batch.select(held)))
        bar.update(item.chunk.units if item.chunk is not None and item.chunk.kind != "parquet" else 0)
    for s in SPLITS:
        writers[s].write(packers[s].finish())
    _check_sources(tally, d)
    return {"format_version": FORMAT_VERSION, "word_ids": word_ids, "mode": d.mode, "max_length": d.max_length,
            "splits": {s: writers[s].close() for s in SPLITS},
            "read": {s: tally.stats[s].summary() for s in SPLITS}}


def _check_sources(tally: _Tally, data_cfg) -> None:
    for source, n in tally.per_file.items():
        if n == 0:  # a whole file with no record: an error unless bad records are skipped
            ctx = ReadContext(on_bad=data_cfg.on_bad_record, stats=tally.stats["train"])
            ctx.bad("empty_file", "contains no text records", source, None)
    if tally.texts["train"] == 0:
        raise DataError("contains no text records", ", ".join(data_cfg.train))
    if data_cfg.validation and tally.texts["validation"] == 0:
        raise DataError("contains no text records", ", ".join(data_cfg.validation))


# ---------------------------------------------------------------------------------- signals
class PrepareInterrupted(MlmkitError):
    """SIGTERM or SIGINT while data was being prepared (nothing was kept)."""


class _Interrupts:
    """While data is prepared, SIGTERM and SIGINT raise `PrepareInterrupted` in the main thread,
    so the way out terminates the pool and removes the temporary folder, and the command line
    prints one line and exits 2. (The default SIGTERM killed the process on the spot: the folder
    stayed in the cache forever, and workers still reading their start-up data from the dead
    parent printed UnpicklingError tracebacks. SIGINT is not left a KeyboardInterrupt: typer
    0.29 turns that into a silent exit 0 under `standalone_mode=False`.) A second signal during
    the clean-up is ignored: it must not be cut short."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.pending: Optional[int] = None  # the signal received (raised at once unless deferred)
        self.deferring = False
        self.old: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # only it may set handlers
            self.old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, old in self.old.items():
            signal.signal(s, old)

    def _handle(self, signum, frame):
        if self.pending is None:
            self.pending = signum
            if not self.deferring:
                self.raise_pending()

    def raise_pending(self) -> None:
        if self.pending is not None:
            raise PrepareInterrupted(f"data preparation stopped by {signal.Signals(self.pending).name}: "
                                     "nothing was kept (its temporary folder is removed)")

    @contextlib.contextmanager
    def deferred(self):
        """A signal waits for the end of the block (the caller then calls `raise_pending`): an
        exception while the pool starts would cut a worker off in the middle of its start-up data
        (an UnpicklingError traceback). SIGINT is even ignored meanwhile, so that the workers
        started here inherit SIG_IGN from their first instruction: a handler does not survive
        their exec (nor does a blocked mask), and a Ctrl-C while they import for seconds would
        print a KeyboardInterrupt traceback per worker. The price: a Ctrl-C in the milliseconds
        the pool takes to start is lost (press it again)."""
        self.deferring = True
        if self.old:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            if self.old:
                signal.signal(signal.SIGINT, self._handle)
            self.deferring = False


def _terminate(pool, before: set, timeout: float = 10.0) -> None:
    """`pool.terminate()`, but never hanging: a worker killed while it held one of the pool's
    queue locks (SIGTERM to the whole process group) makes terminate wait for that lock forever.
    Past `timeout` the workers (the children not in `before`: those the pool started) are killed
    and the pool's threads left behind (daemons)."""
    import multiprocessing as mp

    t = threading.Thread(target=pool.terminate, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        for p in set(mp.active_children()) - before:
            p.kill()


_TEMP_NAME = re.compile(r"\.[0-9a-f]{20}\.[a-z0-9_]+")  # tempfile.mkdtemp(prefix=f".{fingerprint}.")
STALE_SECONDS = 24 * 3600  # a temporary folder untouched this long is an interrupted prepare's


def remove_stale_temporaries(root: Path, log: Callable = print) -> int:
    """Remove the temporary folders that killed preparations (kill -9, a power cut) left in the
    cache `root`: those in which nothing was written for a day. A preparation still running
    appends to its files all the time, so its folder is never taken for stale."""
    now, removed = time.time(), 0
    for p in root.glob(".*"):
        if _TEMP_NAME.fullmatch(p.name) and p.is_dir() and now - _newest_mtime(p) > STALE_SECONDS:
            shutil.rmtree(p, ignore_errors=True)
            removed += 1
    if removed:
        log(f"removed {removed} stale temporary folder(s) of interrupted preparations in {root}")
    return removed


def _newest_mtime(folder: Path) -> float:
    """The newest modification time of `folder` and everything in it (now if any of it vanishes
    while looked at: another process is working there)."""
    try:
        newest = folder.stat().st_mtime
        for dirpath, dirs, files in os.walk(folder):
            for name in dirs + files:
                newest = max(newest, os.stat(os.path.join(dirpath, name)).st_mtime)
        return newest
    except FileNotFoundError:
        return time.time()


# ---------------------------------------------------------------------------------- prepare
def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def prepare(data_cfg, tokenizer, *, word_ids: bool, workers: Optional[int] = None, log: Callable = print,
            progress: bool = True) -> Prepared:
    """The prepared sequences of `data_cfg` with `tokenizer`: from the cache, or made now."""
    if not data_cfg.train:
        raise MlmkitError("config key 'data.train': no training data given (use --data FILE)")
    folder = cache_root(data_cfg) / fingerprint(data_cfg, tokenizer, word_ids)
    if folder.parent.is_dir():
        remove_stale_temporaries(folder.parent, log)
    if (folder / "meta.json").is_file():
        log(f"prepared data: {folder} (cached)")
        return load_prepared(folder)
    items = work_items(data_cfg)
    workers = data_cfg.prepare_workers or default_workers()
    workers = max(1, min(workers, len(items)))
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _Interrupts() as stops:
        meta = _prepare_into(folder, items, tokenizer, data_cfg, word_ids, workers, progress, stops)
    log(f"data {', '.join(data_cfg.train)}: {meta['read']['train']}")
    if data_cfg.validation:
        log(f"data {', '.join(data_cfg.validation)}: {meta['read']['validation']}")
    log(f"prepared data: {folder} ({meta['splits']['train']['tokens']:,} training tokens, "
        f"{meta['seconds']} s, {workers} worker(s))")
    return load_prepared(folder)


def _prepare_into(folder: Path, items: list[Item], tokenizer, data_cfg, word_ids: bool, workers: int,
                  progress: bool, stops: _Interrupts) -> dict:
    """Pack `items` into a temporary folder beside `folder`, renamed to it when complete and
    removed on any error or signal; returns the meta."""
    t0 = time.perf_counter()
    total = sum(i.chunk.units for i in items if i.chunk is not None and i.chunk.kind != "parquet")
    bar = progress_bar(total=total or None, desc="preparing", unit="B", unit_scale=True, disable=not progress)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        if workers == 1:
            _init_worker(tokenizer, data_cfg, word_ids)
            meta = _pack_all(items, map(encode_item, items), tmp, tokenizer, data_cfg, word_ids, bar)
        else:
            meta = _pack_in_pool(items, tmp, tokenizer, data_cfg, word_ids, workers, bar, stops)
        meta["seconds"], meta["workers"] = round(time.perf_counter() - t0, 2), workers
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        if folder.exists():  # another process finished first: theirs is as good
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        bar.close()
    return meta


def _pack_in_pool(items: list[Item], tmp: Path, tokenizer, data_cfg, word_ids: bool, workers: int, bar,
                  stops: _Interrupts) -> dict:
    """`_pack_all` with the items tokenised by a pool of `workers` spawned processes."""
    import multiprocessing as mp

    before = set(mp.active_children())
    with stops.deferred():
        pool = mp.get_context("spawn").Pool(workers, _init_pool_worker, (tokenizer, data_cfg, word_ids))
    try:
        stops.raise_pending()
        return _pack_all(items, pool.imap(encode_item, items), tmp, tokenizer, data_cfg, word_ids, bar)
    finally:
        _terminate(pool, before)
