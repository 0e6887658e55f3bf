"""Hugging Face datasets as a record source: a hub name (`imdb`, `user/name`), `hf:NAME` (also a
local file read through a `datasets` builder) or a folder written by `save_to_disk`.

Streaming data sets (`streaming=True`) are read as they arrive; a seeded `shuffle` (buffered) and
`skip` serve the character family's windows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import DataError, MlmkitError
from ..util import one_line
from .base import FORMAT_BY_SUFFIX, ReadContext, Record, missing_column_msg
from .formats import suffix

# Local file suffix -> `datasets` packaged builder, for ``hf:/path/to/file.jsonl``.
_HF_BUILDERS = {"text": "text", "jsonl": "json", "csv": "csv", "tsv": "csv", "parquet": "parquet"}
_HF_BATCH_ROWS = 1000
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


def iter_hub(name: str, ctx: ReadContext, opts: HubOptions, *, shuffle_seed: int | None = None,
             buffer_size: int = 10_000, skip: int = 0) -> Iterator[Record]:
    """Records of column `ctx.text_column`; rows are numbered from 1 (after `skip` rows of the
    seeded shuffle, when given)."""
    source = f"hf:{name}"
    ds = load_hub(name, opts)
    col = ctx.text_column
    names = ds.column_names  # None for some streaming datasets whose features are unknown
    if names is not None and col not in names:
        raise DataError(missing_column_msg(col, names), source)
    if shuffle_seed is not None:
        ds = ds.shuffle(seed=shuffle_seed, buffer_size=buffer_size)
    if skip:
        ds = ds.skip(skip)
    try:
        if names is not None:
            row = skip
            for batch in ds.select_columns([col]).iter(batch_size=_HF_BATCH_ROWS):
                for value in batch[col]:
                    row += 1
                    if (record := ctx.accept(value, source, row)) is not None:
                        yield record
        else:
            for row, example in enumerate(ds, skip + 1):
                if col not in example:
                    ctx.bad("missing_column", missing_column_msg(col, example.keys()), source, row)
                elif (record := ctx.accept(example[col], source, row)) is not None:
                    yield record
    except MlmkitError:
        raise
    except Exception as e:  # network / format errors surface lazily when streaming
        raise DataError(f"could not read dataset {name!r}: {one_line(e)}") from None
