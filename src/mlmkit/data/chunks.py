"""Chunked reading: local files cut into pieces that can be read independently and in any order.

Line-based files (text, JSON Lines, CSV/TSV) are cut into byte ranges; a line belongs to the chunk
in which it starts, so every line is read exactly once however the chunks are ordered. Parquet
files are cut into row groups. A file holding one JSON array (or gzip-compressed) cannot be
entered in the middle and is one chunk. This is what lets a streaming task start at any batch in
O(1) (read only the chunks that batch needs) and split a corpus between ranks and workers.

In chunked CSV/TSV files a quoted field must not hold a newline (domain and word lists never
do); records carry a byte offset, and the line number is counted only for a message.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .base import ReadContext, Record
from .formats import (csv_column_index, decode, format_of, iter_file, open_parquet, parse_jsonl_line,
                      starts_with_bracket)


@dataclass(frozen=True)
class Chunk:
    """An independently readable piece of a local file."""

    path: str
    kind: str  # text | jsonl | csv | tsv | parquet | whole (read the file from the start)
    start: int  # byte offset (line-based) or row-group index (parquet)
    end: int  # byte offset (exclusive) or row-group index + 1
    rows_hint: int = 0  # parquet: rows in the group

    @property
    def units(self) -> float:
        """Size for planning: bytes (line-based) or rows (parquet)."""
        return self.rows_hint if self.kind == "parquet" else self.end - self.start


def chunk_files(files: list[Path | str], fmt: str, chunk_bytes: int, column: str,
                limits: Optional[dict[str, int]] = None) -> list[Chunk]:
    """Chunks of every file, in file order. `limits` caps a file at a byte offset (or a number of
    row groups for Parquet); a limit of 0 leaves the file out."""
    out: list[Chunk] = []
    for f in files:
        f = str(f)
        kind = format_of(f, fmt)
        lim = None if limits is None else limits.get(f)
        if lim == 0:
            continue
        if kind == "parquet":
            meta = open_parquet(Path(f), column).metadata
            n = meta.num_row_groups if lim is None else min(meta.num_row_groups, lim)
            out += [Chunk(f, kind, g, g + 1, meta.row_group(g).num_rows) for g in range(n)]
        elif f.lower().endswith(".gz") or (kind == "jsonl" and starts_with_bracket(Path(f))):
            size = os.path.getsize(f)
            out.append(Chunk(f, "whole", 0, size if lim is None else min(size, lim)))
        else:
            size = os.path.getsize(f) if lim is None else lim
            out += [Chunk(f, kind, s, min(s + chunk_bytes, size)) for s in range(0, size, chunk_bytes)]
    return out


def read_chunk(ch: Chunk, ctx: ReadContext, fmt: str = "auto") -> Iterator[Record]:
    """The records of one chunk (bad ones raised or counted in `ctx`, blank lines skipped)."""
    if ch.kind == "parquet":
        yield from _parquet_group(ch, ctx)
    elif ch.kind == "whole":
        yield from iter_file(Path(ch.path), fmt, ctx)
    else:
        yield from _line_range(ch, ctx)


def _lines(ch: Chunk) -> Iterator[tuple[int, bytes]]:
    """(offset, line without its line ending) of every line that starts in [start, end)."""
    with open(ch.path, "rb") as fh:
        if ch.start > 0:
            fh.seek(ch.start - 1)
            fh.readline()  # finish the line that started in an earlier chunk
        pos = fh.tell()
        while pos < ch.end:
            raw = fh.readline()
            if not raw:
                return
            line_pos, pos = pos, pos + len(raw)
            if line_pos == 0 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # UTF-8 BOM
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            if raw.endswith(b"\r"):  # CRLF, and a CR before end of file with no newline
                raw = raw[:-1]
            yield line_pos, raw


def _line_range(ch: Chunk, ctx: ReadContext) -> Iterator[Record]:
    src = ch.path
    if ch.kind == "jsonl":
        for offset, raw in _lines(ch):
            if (rec := parse_jsonl_line(raw, ctx, src, None, offset)) is not None:
                yield rec
        return
    col = None
    delim = "\t" if ch.kind == "tsv" else ","
    if ch.kind in ("csv", "tsv"):
        col = csv_column_index(Path(src), ctx.text_column, delim)
    for offset, raw in _lines(ch):
        if offset == 0 and col is not None:
            continue  # the header
        text = decode(raw, ctx, src, None, offset)
        if text is None:
            continue
        if col is not None and text.strip():
            fields = next(csv.reader([text], delimiter=delim), [])
            if col >= len(fields):
                ctx.bad("missing_column", f"row has {len(fields)} fields but column {ctx.text_column!r} "
                        f"is field {col + 1} of the header", src, None, offset)
                continue
            text = fields[col]
        if (rec := ctx.accept(text, src, None, offset)) is not None:
            yield rec


def _parquet_group(ch: Chunk, ctx: ReadContext) -> Iterator[Record]:
    pf = open_parquet(Path(ch.path), ctx.text_column)
    base = sum(pf.metadata.row_group(g).num_rows for g in range(ch.start))
    table = pf.read_row_group(ch.start, columns=[ctx.text_column])
    for j, value in enumerate(table.column(0).to_pylist()):
        if (rec := ctx.accept(value, ch.path, base + j + 1)) is not None:
            yield rec
