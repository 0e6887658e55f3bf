"""Hugging Face datasets as a record source: a hub name (`imdb`, `user/name`), `hf:NAME` (also a
local file read through a `datasets` builder) or a folder written by `save_to_disk`.

Streaming data sets (`streaming=True`) are read as they arrive. `ShardedStream` reads one shard
at a time, in a seeded order per pass, optionally only a rank's share of the shards, and knows
where it stands (`StreamCursor`): a run resumes by re-opening one shard at a saved `datasets`
state, not by reading the rows before it again."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import DataError, MlmkitError
from ..util import mix_seed, one_line
from .base import FORMAT_BY_SUFFIX, ReadContext, Record, missing_column_msg
from .formats import suffix

# Local file suffix -> `datasets` packaged builder, for ``hf:/path/to/file.jsonl``.
_HF_BUILDERS = {"text": "text", "jsonl": "json", "csv": "csv", "tsv": "csv", "parquet": "parquet"}
_HF_BATCH_ROWS = 1000
# A saved `datasets` stream state counts batches, so it only resumes a stream read in batches of
# the same size: a cursor records the size it was made with.
STATE_BATCH_ROWS = 1000
# A saved data set (`save_to_disk`) is memory-mapped; it is streamed as this many row ranges
# (fewer for tiny sets), so that ranks can share it out. Opening a range costs ~5 ms.
SAVED_DATASET_SHARDS = 64
# Files written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`.
SAVED_DATASET_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


@dataclass
class HubOptions:
    split: str = "train"
    config: Optional[str] = None
    data_files: Optional[list[str]] = None
    streaming: bool = True


def is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in SAVED_DATASET_MARKERS)


def load_hub(name: str, opts: HubOptions) -> Any:
    """`load_from_disk` for saved datasets, `load_dataset` for everything else; one-line errors."""
    import datasets

    path = Path(name)
    try:
        if is_saved_dataset(path):
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if opts.split not in ds:
                    raise DataError(f"dataset {name!r} has no split {opts.split!r}; splits: {', '.join(ds)}")
                ds = ds[opts.split]
            return ds
        kwargs: dict[str, Any] = {"split": opts.split, "streaming": opts.streaming}
        if path.is_file():
            # load_dataset wants a builder name plus data_files for a single local file.
            fmt = FORMAT_BY_SUFFIX.get(suffix(path.name), "text")
            extra = {"delimiter": "\t"} if fmt == "tsv" else {}
            return datasets.load_dataset(_HF_BUILDERS[fmt], data_files=str(path), **kwargs, **extra)
        if opts.data_files:
            kwargs["data_files"] = list(opts.data_files)
        return datasets.load_dataset(name, opts.config, **kwargs)
    except MlmkitError:
        raise
    except Exception as e:  # datasets raises many types (FileNotFoundError, DatasetNotFoundError, ...)
        # A typo in a local path also lands here (it looks like a hub id), so say so.
        where = "" if path.exists() else " (and there is no local file or directory of that name)"
        raise DataError(f"could not load dataset {name!r}{where}: {one_line(e)}") from None


def iter_hub(name: str, ctx: ReadContext, opts: HubOptions) -> Iterator[Record]:
    """Records of column `ctx.text_column`, in the data set's order; rows are numbered from 1."""
    source = f"hf:{name}"
    ds = load_hub(name, opts)
    col = ctx.text_column
    names = ds.column_names  # None for some streaming datasets whose features are unknown
    if names is not None and col not in names:
        raise DataError(missing_column_msg(col, names), source)
    try:
        if names is not None:
            row = 0
            for batch in ds.select_columns([col]).iter(batch_size=_HF_BATCH_ROWS):
                for value in batch[col]:
                    row += 1
                    if (record := ctx.accept(value, source, row)) is not None:
                        yield record
        else:
            for row, example in enumerate(ds, 1):
                if col not in example:
                    ctx.bad("missing_column", missing_column_msg(col, example.keys()), source, row)
                elif (record := ctx.accept(example[col], source, row)) is not None:
                    yield record
    except MlmkitError:
        raise
    except Exception as e:  # network / format errors surface lazily when streaming
        raise DataError(f"could not read dataset {name!r}: {one_line(e)}") from None


# --------------------------------------------------------------------------------------------
# sharded streams with a resumable position
# --------------------------------------------------------------------------------------------


@dataclass
class StreamCursor:
    """Where a `ShardedStream` stands: in pass `epoch`, `k` shards of the pass's order are done
    and `row` rows of the next one are read. `state` is the `datasets` state after the first
    `state_row` of those rows (a whole number of batches; None: the shard's start), so a restart
    re-opens the shard there and drops fewer than one batch of rows."""

    epoch: int = 0
    k: int = 0
    row: int = 0
    state_row: int = 0
    state: Optional[dict] = None
    batch_rows: int = STATE_BATCH_ROWS

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "StreamCursor":
        cur = cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
        if cur.batch_rows != STATE_BATCH_ROWS:  # a state of another batch size would land elsewhere
            cur.state, cur.state_row, cur.batch_rows = None, 0, STATE_BATCH_ROWS
        return cur


def load_stream(name: str, opts: HubOptions) -> Any:
    """The data set as a `datasets.IterableDataset` (a saved one as row ranges of itself)."""
    import datasets

    ds = load_hub(name, dataclasses.replace(opts, streaming=True))
    if not isinstance(ds, datasets.IterableDataset):
        ds = ds.to_iterable_dataset(num_shards=max(1, min(len(ds), SAVED_DATASET_SHARDS)))
    return ds


class ShardedStream:
    """One hub data set read shard by shard (a shard: one of its files, or a row range of a saved
    set), in a seeded order per pass (`shuffle=False`: the data set's order).

    With `world` > 1 ranks and at least as many shards, rank r reads only shards order[r::world]
    of each pass -- whole shards, as `datasets.distributed.split_dataset_by_node` gives them --
    and the stream never ends: pass after pass, so ranks whose shards differ in size never wait
    for each other, and a shard goes to another rank in the next pass. Otherwise (`split` False)
    every rank reads every shard and a stream is one pass.

    The rows are streamed in batches, not shuffled by `datasets` (whose shuffle buffer is lost on
    resume): the caller shuffles windows of rows itself."""

    def __init__(self, name: str, opts: HubOptions, column: str, *, seed: int, rank: int = 0,
                 world: int = 1, shuffle: bool = True):
        self.name, self.column, self.seed, self.shuffle = name, column, seed, shuffle
        self.ds = load_stream(name, opts)
        names = self.ds.column_names
        if names is not None and column not in names:
            raise DataError(missing_column_msg(column, names), f"hf:{name}")
        self.n_shards = self.ds.n_shards
        self.split = world > 1 and self.n_shards >= world
        self.rank, self.world = (rank, world) if self.split else (0, 1)

    def shards(self, epoch: int) -> list[int]:
        """This reader's shards of pass `epoch`, in reading order."""
        order = list(range(self.n_shards))
        if self.shuffle:
            random.Random(mix_seed(self.seed, epoch)).shuffle(order)
        return order[self.rank::self.world]

    def open(self, ctx: ReadContext, start: StreamCursor) -> tuple[StreamCursor, Iterator[Record]]:
        """The records from `start` on, and a cursor that stays at the position after the last
        record the iterator yielded."""
        cur = dataclasses.replace(start)
        return cur, self._records(ctx, cur)

    def _records(self, ctx: ReadContext, cur: StreamCursor) -> Iterator[Record]:
        while True:
            shards, got = self.shards(cur.epoch), cur.k > 0 or cur.row > 0
            while cur.k < len(shards):
                for rec in self._shard_records(shards[cur.k], ctx, cur):
                    got = True
                    yield rec
                cur.k, cur.row, cur.state_row, cur.state = cur.k + 1, 0, 0, None
            if not self.split:
                return
            if not got:
                raise DataError(f"the shards of rank {self.rank} hold no readable rows (pass {cur.epoch})", f"hf:{self.name}")
            cur.epoch, cur.k = cur.epoch + 1, 0

    def _shard_records(self, shard: int, ctx: ReadContext, cur: StreamCursor) -> Iterator[Record]:
        ds = self.ds.shard(num_shards=self.n_shards, index=shard)
        col, source = self.column, f"hf:{self.name}" + (f" shard {shard}" if self.n_shards > 1 else "")
        if ds.column_names is not None:
            ds = ds.select_columns([col])
        if cur.state is not None:
            ds.load_state_dict(cur.state)
        row = cur.state_row
        try:
            for batch in ds.iter(batch_size=cur.batch_rows):
                after = ds.state_dict()  # the state after this batch
                values = batch.get(col)
                for i in range(len(next(iter(batch.values()), ()))):
                    row += 1
                    if row <= cur.row:  # rows before the cursor, in its batch
                        continue
                    cur.row = row
                    if values is None:
                        ctx.bad("missing_column", missing_column_msg(col, batch.keys()), source, row)
                    elif (record := ctx.accept(values[i], source, row)) is not None:
                        yield record
                cur.state, cur.state_row = after, row
        except MlmkitError:
            raise
        except Exception as e:  # network / format errors surface lazily when streaming
            raise DataError(f"could not read dataset {self.name!r}: {one_line(e)}") from None
