"""Reading one file of each format, sequentially: text (a record per line), JSON Lines (or one
JSON array), CSV/TSV with a header (quoted fields may span lines), Parquet (one column, a batch at
a time). Line-based formats are read as bytes and decoded per line, so errors name the line.

The per-line parsers (`parse_jsonl_line`, `parse_csv_line`) are shared with the chunked reader
(`data/chunks.py`).
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..util import one_line
from .base import FORMAT_BY_SUFFIX, ReadContext, Record, missing_column_msg


def suffix(name: str) -> str:
    """The data suffix of a file name, looking through a trailing ``.gz``."""
    name = name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return Path(name).suffix


def format_of(path: Path | str, fmt: str = "auto") -> str:
    """The reader format of a file: `fmt` unless "auto", else by suffix (plain text if unknown)."""
    if fmt not in ("auto", "hf"):
        return fmt
    return FORMAT_BY_SUFFIX.get(suffix(Path(path).name), "text")


def iter_file(path: Path, fmt: str, ctx: ReadContext) -> Iterator[Record]:
    file_fmt = format_of(path, fmt)
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


def binary_lines(path: Path) -> Iterator[tuple[int, bytes]]:
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


def decode(raw: bytes, ctx: ReadContext, source: str, line: int | None, offset: int | None = None) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        # Byte position is 1-based within the line, like a column number.
        ctx.bad("invalid_utf8", f"invalid UTF-8 at byte {e.start + 1} (0x{raw[e.start]:02x})", source, line, offset)
        return None


def _iter_text(path: Path, ctx: ReadContext, fmt: str) -> Iterator[Record]:
    """One example per line."""
    source = str(path)
    for line, raw in binary_lines(path):
        text = decode(raw, ctx, source, line)
        if text is not None and (record := ctx.accept(text, source, line)) is not None:
            yield record


def _iter_jsonl(path: Path, ctx: ReadContext, fmt: str) -> Iterator[Record]:
    """One JSON object per line; the text is in ``ctx.text_column``.

    A file whose content starts with ``[`` is read as one JSON array instead (see `_iter_json_array`).
    """
    if starts_with_bracket(path):
        yield from iter_json_array(path, ctx)
        return
    source = str(path)
    for line, raw in binary_lines(path):
        if (record := parse_jsonl_line(raw, ctx, source, line)) is not None:
            yield record


def parse_jsonl_line(raw: bytes, ctx: ReadContext, source: str, line: int | None,
                     offset: int | None = None) -> Record | None:
    """The record of one JSON Lines line, or None (blank, or bad and skipped)."""
    if not raw.strip():
        ctx.stats.skip("empty")
        return None
    text = decode(raw, ctx, source, line, offset)
    if text is None:
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        hint = ""
        if line == 1 and text.lstrip().startswith("["):
            hint = " (a JSON array is not supported: use JSON Lines, one object per line)"
        ctx.bad("bad_json", f"invalid JSON: {e.msg} at column {e.colno}{hint}", source, line, offset)
        return None
    except RecursionError:  # json's decoder recurses once per nesting level
        ctx.bad("bad_json", "invalid JSON: nested too deeply", source, line, offset)
        return None
    col = ctx.text_column
    if not isinstance(obj, dict):
        ctx.bad("bad_json", f"expected a JSON object, got {type(obj).__name__}", source, line, offset)
        return None
    if col not in obj:
        ctx.bad("missing_column", missing_column_msg(col, obj.keys(), "field"), source, line, offset)
        return None
    if _lone_surrogate(obj[col]):
        ctx.bad("invalid_unicode", _SURROGATE_MSG, source, line, offset)
        return None
    return ctx.accept(obj[col], source, line, offset)


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


def starts_with_bracket(path: Path) -> bool:
    for _, raw in binary_lines(path):
        stripped = raw.lstrip()
        if stripped:
            return stripped.startswith(b"[")
    return False


def iter_json_array(path: Path, ctx: ReadContext) -> Iterator[Record]:
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
                ctx.bad("missing_column", missing_column_msg(col, item.keys(), "field"), source, index)
                continue
            item = item[col]
        if _lone_surrogate(item):
            ctx.bad("invalid_unicode", _SURROGATE_MSG, source, index)
            continue
        if (record := ctx.accept(item, source, index)) is not None:
            yield record


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
        self.lines = binary_lines(path)
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


def _iter_csv(path: Path, ctx: ReadContext, fmt: str) -> Iterator[Record]:
    """CSV/TSV with a header row. Line numbers are physical lines (the header is line 1)."""
    source = str(path)
    raise_csv_field_limit()
    feeder = _LineFeeder(path)
    reader = csv.reader(feeder, delimiter="\t" if fmt == "tsv" else ",")
    header = _read_csv_header(reader, feeder, source)
    col = ctx.text_column
    if col not in header:
        raise DataError(missing_column_msg(col, header), source, 1)
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


def csv_column_index(path: Path, col: str, delimiter: str) -> int:
    """The index of column `col` in the header line of a CSV/TSV file (for chunked reads, which
    parse one line at a time and so need the header apart)."""
    with open(path, "rb") as fh:
        first = fh.readline()
    try:
        header_line = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError("CSV header is not UTF-8", str(path), 1) from None
    header = [h.strip() for h in next(csv.reader([header_line], delimiter=delimiter), [])]
    if col not in header:
        raise DataError(missing_column_msg(col, header), str(path), 1)
    return header.index(col)


def raise_csv_field_limit() -> None:
    # The default limit (128 KiB per field) is smaller than many real documents.
    limit = 2**31 - 1
    if csv.field_size_limit() < limit:
        csv.field_size_limit(limit)


# --------------------------------------------------------------------------------------------
# Parquet
# --------------------------------------------------------------------------------------------


_PARQUET_BATCH_ROWS = 1024


def open_parquet(path: Path, col: str):
    """A `pyarrow.parquet.ParquetFile` whose column `col` holds text (strings or UTF-8 bytes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = str(path)
    if str(path).lower().endswith(".gz"):
        raise DataError("gzip-compressed Parquet is not supported (Parquet compresses internally)", source)
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"not a readable Parquet file: {one_line(e)}", source) from None
    names = pf.schema_arrow.names
    if col not in names:
        raise DataError(missing_column_msg(col, names), source)
    t = pf.schema_arrow.field(col).type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
            or pa.types.is_large_binary(t) or getattr(pa.types, "is_string_view", lambda t: False)(t)):
        raise DataError(f"column {col!r} has type {t}, not string", source)
    return pf


def _iter_parquet(path: Path, ctx: ReadContext, fmt: str) -> Iterator[Record]:
    """Read only the text column, a batch at a time (memory stays at one batch, not the file)."""
    import pyarrow as pa

    source = str(path)
    pf = open_parquet(path, ctx.text_column)
    row = 0
    batches = pf.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=[ctx.text_column])
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"cannot read Parquet data: {one_line(e)}", source, row + 1) from None
        for value in batch.column(0).to_pylist():
            row += 1
            if (record := ctx.accept(value, source, row)) is not None:
                yield record
