"""One record reader for every family: text out of files, folders, globs, bundled samples and
Hugging Face datasets.

A *spec* (a `data.train` / `data.validation` entry) is one of:

* a file: plain text (a record per line), JSON Lines (or one JSON array), CSV/TSV, Parquet;
  `.gz` works for the line-based formats; the format comes from the suffix or `data.format`;
* a folder (every supported file under it, recursively, sorted) or a glob;
* `mlmkit:samples/NAME`: a file shipped inside the package;
* a Hugging Face data set: `hf:NAME`, a `save_to_disk` folder, or a bare hub id (`imdb`,
  `user/name`) that is not a local path (one starting with `.`, `/` or `~` never is).

Everything is a generator: a 50 GB corpus is read line by line (or Parquet batch by batch), never
loaded whole. Each record carries the file and line (or row) it came from, so any problem, raised
here or later in the pipeline, can point the user at the exact spot. Bad records either stop the
run with a one-line `DataError` ("corpus.txt:17: invalid UTF-8 at byte 5 (0xff)"), or, with
``on_bad="skip"``, are dropped and counted in a `ReadStats`. Problems that make a whole source
unusable (a missing file, a CSV header without the text column, a source that yields nothing)
are always errors: silently training on nothing helps nobody.

`iter_records` reads specs sequentially; `data/chunks.py` reads local files in independent
pieces (what streaming tasks use to start anywhere in O(1)).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..config import DATA_FORMATS
from ..errors import DataError, MlmkitError
from .base import FORMAT_BY_SUFFIX, ON_BAD, SUPPORTED_SUFFIXES, ReadContext, ReadStats, Record
from .formats import iter_file, suffix
from .hub import HubOptions, is_saved_dataset, iter_hub

__all__ = ["Record", "ReadStats", "ReadContext", "iter_records", "read_texts", "resolve_files",
           "resolve_sources", "Sources", "SUPPORTED_SUFFIXES"]

# Suffixes that mark a spec as a (missing) file rather than a hub id like "owner/name".
_FILE_SUFFIXES = set(FORMAT_BY_SUFFIX) | {".gz", ".zip", ".bz2", ".xz", ".zst", ".arrow", ".md"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
BUNDLED = "mlmkit:"


@dataclass
class Sources:
    """Specs resolved: local files (each spec's files sorted) and hub data set names."""

    files: list[Path] = field(default_factory=list)
    hub: list[str] = field(default_factory=list)


def bundled_path(spec: str) -> str:
    """`mlmkit:samples/english.txt` -> the file shipped inside the package."""
    if isinstance(spec, str) and spec.startswith(BUNDLED):
        return str(resources.files("mlmkit") / spec[len(BUNDLED):])
    return spec


def hub_name(item: str, fmt: str = "auto") -> str | None:
    """The data set name if spec `item` names a Hugging Face data set, else None."""
    if item.startswith("hf:"):
        return item[3:]
    if fmt == "hf" or is_saved_dataset(Path(item)):
        return item
    if not _has_glob(item) and not os.path.exists(item) and _looks_like_hub_id(item):
        return item
    return None


def resolve_sources(spec: str | os.PathLike | Sequence[str | os.PathLike], fmt: str = "auto") -> Sources:
    out = Sources()
    for item in _as_spec_list(spec):
        item = bundled_path(item)
        name = hub_name(item, fmt)
        if name is not None:
            out.hub.append(name)
        else:
            out.files.extend(_resolve_one(os.path.expanduser(item)))
    return out


def resolve_files(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Expand files, directories, globs and bundled samples into a list of files.

    Raises `DataError` for a missing path, a glob matching nothing or a directory with no
    supported files."""
    files: list[Path] = []
    for item in _as_spec_list(spec):
        files.extend(_resolve_one(os.path.expanduser(bundled_path(item))))
    return files


def iter_records(
    spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    text_column: str = "text",
    fmt: str = "auto",
    on_bad: str = "error",
    stats: ReadStats | None = None,
    hf_split: str = "train",
    hf_config: str | None = None,
    hf_data_files: list[str] | None = None,
    streaming: bool = True,
    skip_empty: bool = True,
) -> Iterator[Record]:
    """Yield text records from one spec or a list of specs, in order (see the module docstring).

    ``fmt`` forces one file format for every file (default: from the extension; unknown
    extensions are plain text). ``on_bad="skip"`` drops bad records and counts them in ``stats``
    instead of raising. Empty / whitespace-only records are skipped (counted as ``empty``) unless
    ``skip_empty=False``. Raises `DataError` if nothing at all was read.
    """
    if on_bad not in ON_BAD:
        raise MlmkitError(f"on_bad must be one of {', '.join(ON_BAD)}, got {on_bad!r}")
    if fmt not in DATA_FORMATS:
        raise MlmkitError(f"unknown data format {fmt!r}; expected one of {', '.join(DATA_FORMATS)}")
    specs = _as_spec_list(spec)
    if not specs:
        raise DataError("no data source given")
    ctx = ReadContext(text_column, on_bad, stats if stats is not None else ReadStats(), skip_empty)
    hub = HubOptions(hf_split, hf_config, hf_data_files, streaming)
    count = 0
    for item in specs:
        for record in _iter_one_spec(bundled_path(item), fmt, ctx, hub):
            count += 1
            ctx.stats.read += 1
            yield record
    if count == 0:
        raise DataError("contains no text records", ", ".join(specs))


def read_texts(
    spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    max_samples: int | None = None,
    **kw: Any,
) -> list[str]:
    """Materialise the texts of `iter_records` (at most ``max_samples``) into a list."""
    texts: list[str] = []
    if max_samples is not None and max_samples <= 0:
        return texts
    for record in iter_records(spec, **kw):
        texts.append(record.text)
        if max_samples is not None and len(texts) >= max_samples:
            break
    return texts


# --------------------------------------------------------------------------------------------
# Spec dispatch
# --------------------------------------------------------------------------------------------


def _as_spec_list(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    if isinstance(spec, (str, os.PathLike)):
        return [os.fspath(spec)]
    return [os.fspath(s) for s in spec]


def _iter_one_spec(item: str, fmt: str, ctx: ReadContext, hub: HubOptions) -> Iterator[Record]:
    name = hub_name(item, fmt)
    if name is not None:
        yield from iter_hub(name, ctx, hub)
    else:
        for path in _resolve_one(os.path.expanduser(item)):
            yield from iter_file(path, fmt, ctx)


def _has_glob(item: str) -> bool:
    return any(ch in item for ch in "*?[")


def _looks_like_hub_id(item: str) -> bool:
    """``owner/name`` or ``name`` with no data-file extension, e.g. ``imdb``, ``allenai/c4``."""
    return bool(_HUB_ID.match(item)) and Path(item).suffix.lower() not in _FILE_SUFFIXES


def _resolve_one(item: str) -> list[Path]:
    if _has_glob(item) and not os.path.exists(item):
        matches = sorted(glob.glob(item, recursive=True))
        if not matches:
            raise DataError("no files match", item)
        files: list[Path] = []
        for m in matches:
            p = Path(m)
            files.extend(_scan_dir(p) if p.is_dir() else [p])
        if not files:
            raise DataError(f"no supported data files ({', '.join(SUPPORTED_SUFFIXES)}) match", item)
        return files
    path = Path(item)
    if path.is_dir():
        files = _scan_dir(path)
        if not files:
            raise DataError(f"directory has no supported data files ({', '.join(SUPPORTED_SUFFIXES)})", item)
        return files
    if not path.exists():
        raise DataError("no such file or directory", item)
    return [path]


def _scan_dir(root: Path) -> list[Path]:
    """Supported files under ``root``, recursively, sorted.

    Hidden entries (.git, .cache) are skipped, and so are folders written by ``save_to_disk``:
    their ``state.json`` / ``dataset_info.json`` are metadata, not JSON Lines text.
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [
            d for d in dirnames if not d.startswith(".") and not is_saved_dataset(Path(dirpath) / d)
        ]
        for name in filenames:
            if not name.startswith(".") and suffix(name) in FORMAT_BY_SUFFIX:
                found.append(Path(dirpath) / name)
    return sorted(found)
