"""Streaming text records out of files, directories, globs and Hugging Face datasets.

Everything here is a generator: a 50 GB corpus is read line by line (or Parquet batch by batch),
never loaded whole. Each record carries the file and 1-based line (or row) it came from, so that
any problem, raised here or later in the pipeline, can point the user at the exact spot.

Bad records either stop the run with a one-line `DataError` ("corpus.txt:17: invalid UTF-8 at
byte 5 (0xff)"), or, with ``on_bad="skip"``, are dropped and counted in a `ReadStats`. Problems
that make a whole source unusable (a missing file, a CSV header without the text column, a source
that yields nothing) are always errors: silently training on nothing helps nobody.
"""

from __future__ import annotations

import csv
import glob
import gzip
import json
import os
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlmkit.errors import DataError, MlmkitError

__all__ = ["Record", "ReadStats", "iter_records", "read_texts", "resolve_files", "SUPPORTED_SUFFIXES"]

# Suffix (after removing an optional ".gz") -> reader format. Files with other suffixes given
# explicitly are read as plain text; directory scans only pick up these.
_FORMAT_BY_SUFFIX = {
    ".txt": "text",
    ".text": "text",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
}
SUPPORTED_SUFFIXES = tuple(sorted(_FORMAT_BY_SUFFIX))
_FORMATS = ("auto", "text", "jsonl", "csv", "tsv", "parquet", "hf")
_ON_BAD = ("error", "skip")
# Suffixes that mark a spec as a (missing) file rather than a hub id like "owner/name".
_FILE_SUFFIXES = set(_FORMAT_BY_SUFFIX) | {".gz", ".zip", ".bz2", ".xz", ".zst", ".arrow", ".md"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
# Files written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`.
_SAVED_DATASET_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_PARQUET_BATCH_ROWS = 1024
_HF_BATCH_ROWS = 1000


@dataclass
class Record:
    """One text example and where it came from (for error messages and debugging)."""

    text: str
    source: str  # file path, or "hf:NAME" for a Hugging Face dataset
    line: int  # 1-based line (text/jsonl/csv: physical line where the record starts) or row (parquet/hf)


@dataclass
class ReadStats:
    """How many records were read, and how many were skipped and why.

    ``skipped`` keeps insertion order so the summary lists reasons in the order first met;
    ``examples`` keeps the first full message per reason, so a skip summary can still tell the
    user where to look.
    """

    read: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)

    def skip(self, reason: str, example: str | None = None) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if example is not None and reason not in self.examples:
            self.examples[reason] = example

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        """E.g. ``"read 1200 records, skipped 4 (invalid_utf8: 1, empty: 3)"``."""
        text = f"read {self.read} records"
        # Blank lines are normal in text files (paragraph breaks): report them apart from the
        # records that were actually bad, so a real problem is not drowned in them.
        bad = {k: v for k, v in self.skipped.items() if k != "empty"}
        if bad:
            reasons = ", ".join(f"{k}: {v}" for k, v in bad.items())
            text += f", skipped {sum(bad.values())} bad ({reasons})"
            example = next((self.examples[k] for k in bad if k in self.examples), None)
            if example:
                text += f"; first: {example}"
        if self.skipped.get("empty"):
            text += f", ignored {self.skipped['empty']} empty lines"
        return text


@dataclass
class _Ctx:
    """Per-call reading options, passed to every reader instead of six separate arguments."""

    text_column: str
    on_bad: str
    stats: ReadStats
    skip_empty: bool

    def bad(self, reason: str, message: str, source: str, line: int | None) -> None:
        """Raise for a bad record, or count it when the user asked to skip bad records."""
        err = DataError(message, source, line)
        if self.on_bad == "error":
            raise err from None  # the decode/parse error is already summarised in the message
        self.stats.skip(reason, str(err))

    def accept(self, value: Any, source: str, line: int) -> Record | None:
        """Validate a text value; return a Record, or None if it was skipped."""
        if not isinstance(value, str):
            kind = "null" if value is None else type(value).__name__
            self.bad("not_text", f"value of {self.text_column!r} is {kind}, not a string", source, line)
            return None
        if "\x00" in value:
            self.bad("nul_byte", f"NUL byte at character {value.index(chr(0)) + 1}", source, line)
            return None
        if self.skip_empty and not value.strip():
            self.stats.skip("empty")
            return None
        return Record(value, source, line)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def iter_records(
    spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    text_column: str = "text",
    fmt: str = "auto",
    on_bad: str = "error",
    stats: ReadStats | None = None,
    hf_split: str = "train",
    hf_config: str | None = None,
    streaming: bool = True,
    skip_empty: bool = True,
) -> Iterator[Record]:
    """Yield text records from one spec or a list of specs, in order.

    A spec is a file, a directory (all supported files under it, recursively, sorted), a glob,
    a folder written by ``Dataset.save_to_disk``, ``hf:NAME`` (``datasets.load_dataset``; NAME may
    be a hub id or a local path) or a bare hub id such as ``owner/name`` that is not a local path.

    ``fmt`` forces one file format for every file (default: from the extension; unknown
    extensions are plain text). ``on_bad="skip"`` drops bad records and counts them in ``stats``
    instead of raising. Empty / whitespace-only records are skipped (counted as ``empty``) unless
    ``skip_empty=False``. Raises `DataError` if nothing at all was read.
    """
    if on_bad not in _ON_BAD:
        raise MlmkitError(f"on_bad must be one of {', '.join(_ON_BAD)}, got {on_bad!r}")
    if fmt not in _FORMATS:
        raise MlmkitError(f"unknown data format {fmt!r}; expected one of {', '.join(_FORMATS)}")
    specs = _as_spec_list(spec)
    if not specs:
        raise DataError("no data source given")
    ctx = _Ctx(text_column, on_bad, stats if stats is not None else ReadStats(), skip_empty)
    hf_kw = {"split": hf_split, "config": hf_config, "streaming": streaming}

    count = 0
    for item in specs:
        for record in _iter_one_spec(item, fmt, ctx, hf_kw):
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


def resolve_files(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Expand files, directories and globs into a list of files (each spec's files sorted).

    Directories are scanned recursively for files with a supported extension (hidden files and
    folders skipped). Raises `DataError` for a missing path, a glob matching nothing or a
    directory with no supported files.
    """
    files: list[Path] = []
    for item in _as_spec_list(spec):
        files.extend(_resolve_one(item))
    return files


# --------------------------------------------------------------------------------------------
# Spec dispatch
# --------------------------------------------------------------------------------------------


def _as_spec_list(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    if isinstance(spec, (str, os.PathLike)):
        return [os.fspath(spec)]
    return [os.fspath(s) for s in spec]


def _iter_one_spec(item: str, fmt: str, ctx: _Ctx, hf_kw: dict[str, Any]) -> Iterator[Record]:
    if item.startswith("hf:"):
        yield from _iter_hf(item[3:], ctx, **hf_kw)
    elif fmt == "hf":
        yield from _iter_hf(item, ctx, **hf_kw)
    elif _is_saved_dataset(Path(item)):
        yield from _iter_hf(item, ctx, **hf_kw)
    elif not _has_glob(item) and not os.path.exists(item) and _looks_like_hub_id(item):
        yield from _iter_hf(item, ctx, **hf_kw)
    else:
        for path in _resolve_one(item):
            yield from _iter_file(path, fmt, ctx)


def _has_glob(item: str) -> bool:
    return any(ch in item for ch in "*?[")


def _looks_like_hub_id(item: str) -> bool:
    """``owner/name`` or ``name`` with no data-file extension, e.g. ``imdb``, ``allenai/c4``."""
    return bool(_HUB_ID.match(item)) and Path(item).suffix.lower() not in _FILE_SUFFIXES


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in _SAVED_DATASET_MARKERS)


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
            d for d in dirnames if not d.startswith(".") and not _is_saved_dataset(Path(dirpath) / d)
        ]
        for name in filenames:
            if not name.startswith(".") and _suffix(name) in _FORMAT_BY_SUFFIX:
                found.append(Path(dirpath) / name)
    return sorted(found)


def _suffix(name: str) -> str:
    """The data suffix of a file name, looking through a trailing ``.gz``."""
    name = name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return Path(name).suffix


def _iter_file(path: Path, fmt: str, ctx: _Ctx) -> Iterator[Record]:
    file_fmt = fmt if fmt != "auto" else _FORMAT_BY_SUFFIX.get(_suffix(path.name), "text")
    reader = {
        "text": _iter_text,
        "jsonl": _iter_jsonl,
        "csv": _iter_csv,
        "tsv": _iter_csv,
        "parquet": _iter_parquet,
    }[file_fmt]
    source = str(path)
    count = 0
    for record in reader(path, ctx, file_fmt):
        count += 1
        yield record
    if count == 0:
        # In skip mode one empty file among many is not fatal; the caller still errors if the
        # whole spec turns out empty.
        ctx.bad("empty_file", "contains no text records", source, None)


# --------------------------------------------------------------------------------------------
# Line-based formats (text, JSONL): binary read, per-line decode so errors can name the line
# --------------------------------------------------------------------------------------------


def _binary_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield (1-based line number, line without its trailing newline) from a maybe-gzipped file."""
    source = str(path)
    try:
        fh = gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot open: {e.strerror or e}", source) from None
    lineno = 0
    with fh:
        try:
            for lineno, raw in enumerate(fh, 1):
                if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]  # UTF-8 BOM (Windows editors) is not part of the text
                if raw.endswith(b"\n"):
                    raw = raw[:-1]
                if raw.endswith(b"\r"):  # CRLF, and a CR before end of file with no newline
                    raw = raw[:-1]
                yield lineno, raw
        except (OSError, EOFError, zlib.error) as e:
            # gzip.BadGzipFile is an OSError; a truncated .gz raises EOFError.
            raise DataError(f"cannot read (corrupt or truncated file?): {e}", source, lineno + 1) from None


def _decode(raw: bytes, ctx: _Ctx, source: str, line: int) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        # Byte position is 1-based within the line, like a column number.
        ctx.bad("invalid_utf8", f"invalid UTF-8 at byte {e.start + 1} (0x{raw[e.start]:02x})", source, line)
        return None


def _iter_text(path: Path, ctx: _Ctx, fmt: str) -> Iterator[Record]:
    """One example per line."""
    source = str(path)
    for line, raw in _binary_lines(path):
        text = _decode(raw, ctx, source, line)
        if text is not None and (record := ctx.accept(text, source, line)) is not None:
            yield record


def _iter_jsonl(path: Path, ctx: _Ctx, fmt: str) -> Iterator[Record]:
    """One JSON object per line; the text is in ``ctx.text_column``.

    A file whose content starts with ``[`` is read as one JSON array instead (see `_iter_json_array`).
    """
    if _starts_with_bracket(path):
        yield from _iter_json_array(path, ctx)
        return
    source = str(path)
    col = ctx.text_column
    for line, raw in _binary_lines(path):
        if not raw.strip():
            ctx.stats.skip("empty")
            continue
        text = _decode(raw, ctx, source, line)
        if text is None:
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            hint = ""
            if line == 1 and text.lstrip().startswith("["):
                hint = " (a JSON array is not supported: use JSON Lines, one object per line)"
            ctx.bad("bad_json", f"invalid JSON: {e.msg} at column {e.colno}{hint}", source, line)
            continue
        except RecursionError:  # json's decoder recurses once per nesting level
            ctx.bad("bad_json", "invalid JSON: nested too deeply", source, line)
            continue
        if not isinstance(obj, dict):
            ctx.bad("bad_json", f"expected a JSON object, got {type(obj).__name__}", source, line)
            continue
        if col not in obj:
            ctx.bad("missing_column", _missing_column_msg(col, obj.keys(), "field"), source, line)
            continue
        if _lone_surrogate(obj[col]):
            ctx.bad("invalid_unicode", _SURROGATE_MSG, source, line)
            continue
        if (record := ctx.accept(obj[col], source, line)) is not None:
            yield record


# JSON can spell text that is not Unicode ("\ud800"): json.loads returns a str that cannot be
# encoded, and the tokenizer fails on it much later. Caught here, with the file and line.
_SURROGATE_MSG = "text holds a lone surrogate escape (\\ud800-\\udfff), which is not valid Unicode"


def _lone_surrogate(value: Any) -> bool:
    if not isinstance(value, str) or value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _starts_with_bracket(path: Path) -> bool:
    for _, raw in _binary_lines(path):
        stripped = raw.lstrip()
        if stripped:
            return stripped.startswith(b"[")
    return False


def _iter_json_array(path: Path, ctx: _Ctx) -> Iterator[Record]:
    """A ``.json`` file holding one array: strings are texts, objects use ``ctx.text_column``.

    The standard library cannot stream a JSON array, so this one case reads the whole file;
    it exists for small word/domain lists (e.g. a list of domain names), not for corpora, which
    should be JSON Lines. The reported "line" is the 1-based element index.
    """
    source = str(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read (corrupt or truncated file?): {e}", source) from None
    try:
        items = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - data.rfind(b"\n", 0, e.start)  # 1-based byte within the line
        raise DataError(f"invalid UTF-8 at byte {column} (0x{data[e.start]:02x})", source, line) from None
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg} at column {e.colno}", source, e.lineno) from None
    except RecursionError:
        raise DataError("invalid JSON: nested too deeply", source) from None
    del data
    col = ctx.text_column
    for index, item in enumerate(items, 1):
        if isinstance(item, dict):
            if col not in item:
                ctx.bad("missing_column", _missing_column_msg(col, item.keys(), "field"), source, index)
                continue
            item = item[col]
        if _lone_surrogate(item):
            ctx.bad("invalid_unicode", _SURROGATE_MSG, source, index)
            continue
        if (record := ctx.accept(item, source, index)) is not None:
            yield record


def _missing_column_msg(col: str, available: Iterable[str], what: str = "column") -> str:
    names = ", ".join(repr(str(n)) for n in available) or "none"
    return f"no {what} {col!r}; available {what}s: {names}"


# --------------------------------------------------------------------------------------------
# CSV / TSV
# --------------------------------------------------------------------------------------------


class _LineFeeder:
    """Feeds decoded lines to `csv.reader` while tracking line numbers and decode errors.

    `csv.reader` pulls as many lines as a record needs (quoted fields may span lines), so the
    record's start line and any undecodable line inside it are tracked here rather than by
    the reader. Undecodable lines are passed on with replacement characters and flagged, so the
    whole record can be reported (or skipped) without derailing the CSV parser.
    """

    def __init__(self, path: Path):
        self.lines = _binary_lines(path)
        self.lineno = 0
        self.bad_utf8: tuple[int, str] | None = None  # (line, message) of first bad line in record

    def __iter__(self) -> Iterator[str]:
        for lineno, raw in self.lines:
            self.lineno = lineno
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                if self.bad_utf8 is None:
                    self.bad_utf8 = (lineno, f"invalid UTF-8 at byte {e.start + 1} (0x{raw[e.start]:02x})")
                text = raw.decode("utf-8", errors="replace")
            yield text + "\n"


def _iter_csv(path: Path, ctx: _Ctx, fmt: str) -> Iterator[Record]:
    """CSV/TSV with a header row. Line numbers are physical lines (the header is line 1)."""
    source = str(path)
    _raise_csv_field_limit()
    feeder = _LineFeeder(path)
    reader = csv.reader(feeder, delimiter="\t" if fmt == "tsv" else ",")
    header = _read_csv_header(reader, feeder, source)
    col = ctx.text_column
    if col not in header:
        raise DataError(_missing_column_msg(col, header), source, 1)
    idx = header.index(col)

    while True:
        start = feeder.lineno + 1
        feeder.bad_utf8 = None
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            ctx.bad("bad_csv", f"malformed CSV: {e}", source, start)
            continue
        if feeder.bad_utf8 is not None:
            ctx.bad("invalid_utf8", feeder.bad_utf8[1], source, feeder.bad_utf8[0])
            continue
        if not row or (len(row) == 1 and not row[0].strip() and len(header) > 1):
            ctx.stats.skip("empty")  # blank line
            continue
        if idx >= len(row):
            msg = f"row has {len(row)} fields but column {col!r} is field {idx + 1} of the header"
            ctx.bad("missing_column", msg, source, start)
            continue
        if (record := ctx.accept(row[idx], source, start)) is not None:
            yield record


def _read_csv_header(reader: Any, feeder: _LineFeeder, source: str) -> list[str]:
    try:
        header = next(reader)
    except StopIteration:
        raise DataError("contains no text records (empty file, no header row)", source) from None
    except csv.Error as e:
        raise DataError(f"malformed CSV header: {e}", source, 1) from None
    if feeder.bad_utf8 is not None:
        raise DataError(feeder.bad_utf8[1], source, feeder.bad_utf8[0])
    return [h.strip() for h in header]


def _raise_csv_field_limit() -> None:
    # The default limit (128 KiB per field) is smaller than many real documents.
    limit = 2**31 - 1
    if csv.field_size_limit() < limit:
        csv.field_size_limit(limit)


# --------------------------------------------------------------------------------------------
# Parquet
# --------------------------------------------------------------------------------------------


def _iter_parquet(path: Path, ctx: _Ctx, fmt: str) -> Iterator[Record]:
    """Read only the text column, a batch at a time (memory stays at one batch, not the file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = str(path)
    if path.name.lower().endswith(".gz"):
        raise DataError("gzip-compressed Parquet is not supported (Parquet compresses internally)", source)
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"not a readable Parquet file: {_one_line(e)}", source) from None
    col = ctx.text_column
    names = pf.schema_arrow.names
    if col not in names:
        raise DataError(_missing_column_msg(col, names), source)
    col_type = pf.schema_arrow.field(col).type
    if not (pa.types.is_string(col_type) or pa.types.is_large_string(col_type)
            or getattr(pa.types, "is_string_view", lambda t: False)(col_type)):
        raise DataError(f"column {col!r} has type {col_type}, not string", source)

    row = 0
    batches = pf.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=[col])
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"cannot read Parquet data: {_one_line(e)}", source, row + 1) from None
        for value in batch.column(0).to_pylist():
            row += 1
            if (record := ctx.accept(value, source, row)) is not None:
                yield record


# --------------------------------------------------------------------------------------------
# Hugging Face datasets
# --------------------------------------------------------------------------------------------

# Local file suffix -> `datasets` packaged builder, for ``hf:/path/to/file.jsonl``.
_HF_BUILDERS = {"text": "text", "jsonl": "json", "csv": "csv", "tsv": "csv", "parquet": "parquet"}


def _iter_hf(name: str, ctx: _Ctx, *, split: str, config: str | None, streaming: bool) -> Iterator[Record]:
    source = f"hf:{name}"
    ds = _load_hf(name, split=split, config=config, streaming=streaming)
    col = ctx.text_column
    names = ds.column_names  # None for some streaming datasets whose features are unknown
    if names is not None and col not in names:
        raise DataError(_missing_column_msg(col, names), source)

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
                    ctx.bad("missing_column", _missing_column_msg(col, example.keys()), source, row)
                elif (record := ctx.accept(example[col], source, row)) is not None:
                    yield record
    except MlmkitError:
        raise
    except Exception as e:  # network / format errors surface lazily when streaming
        raise DataError(f"could not read dataset {name!r}: {_one_line(e)}") from None


def _load_hf(name: str, *, split: str, config: str | None, streaming: bool) -> Any:
    """`load_from_disk` for saved datasets, `load_dataset` for everything else; one-line errors."""
    import datasets

    path = Path(name)
    try:
        if _is_saved_dataset(path):
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise DataError(f"dataset {name!r} has no split {split!r}; splits: {', '.join(ds)}")
                ds = ds[split]
            return ds
        if path.is_file():
            # load_dataset wants a builder name plus data_files for a single local file.
            fmt = _FORMAT_BY_SUFFIX.get(_suffix(path.name), "text")
            extra = {"delimiter": "\t"} if fmt == "tsv" else {}
            return datasets.load_dataset(
                _HF_BUILDERS[fmt], data_files=str(path), split=split, streaming=streaming, **extra
            )
        return datasets.load_dataset(name, config, split=split, streaming=streaming)
    except MlmkitError:
        raise
    except Exception as e:  # datasets raises many types (FileNotFoundError, DatasetNotFoundError, ...)
        # A typo in a local path also lands here (it looks like a hub id), so say so.
        where = "" if path.exists() else " (and there is no local file or directory of that name)"
        raise DataError(f"could not load dataset {name!r}{where}: {_one_line(e)}") from None


def _one_line(e: BaseException) -> str:
    """First non-empty line of an exception message (library errors are often multi-line)."""
    for part in str(e).splitlines():
        if part.strip():
            return part.strip()
    return type(e).__name__
