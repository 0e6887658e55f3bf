"""What every reader shares: a record, the skip counts, and the bad-record rule."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import DataError

# Suffix (after removing an optional ".gz") -> reader format. Files with other suffixes given
# explicitly are read as plain text; directory scans only pick up these.
FORMAT_BY_SUFFIX = {
    ".txt": "text",
    ".text": "text",
    ".lst": "text",
    ".list": "text",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
SUPPORTED_SUFFIXES = tuple(sorted(FORMAT_BY_SUFFIX))
ON_BAD = ("error", "skip")


@dataclass
class Record:
    """One text example and where it came from (for error messages and debugging)."""

    text: str
    source: str  # file path, or "hf:NAME" for a Hugging Face dataset
    line: int | None  # 1-based line (text/jsonl/csv: where the record starts) or row (parquet/hf)
    offset: int | None = None  # byte offset of the line (chunked reads: the line is counted on demand)


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

    def bad_counts(self) -> dict[str, int]:
        """Skipped records by reason, blank lines left out (they are normal in text files)."""
        return {k: v for k, v in self.skipped.items() if k != "empty"}

    def summary(self) -> str:
        """E.g. ``"read 1200 records, skipped 4 bad (invalid_utf8: 1, ...); first: ..."``."""
        text = f"read {self.read} records"
        # Blank lines are normal in text files (paragraph breaks): report them apart from the
        # records that were actually bad, so a real problem is not drowned in them.
        bad = self.bad_counts()
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
class ReadContext:
    """Per-call reading options, passed to every reader instead of separate arguments.

    `hint` is appended to error messages: how to skip such records instead."""

    text_column: str = "text"
    on_bad: str = "error"
    stats: ReadStats = field(default_factory=ReadStats)
    skip_empty: bool = True
    hint: str = ""

    def bad(self, reason: str, message: str, source: str, line: int | None, offset: int | None = None) -> None:
        """Raise for a bad record, or count it when the user asked to skip bad records. A
        chunked read knows the byte `offset`, not the line: it is counted only when a message
        needs it (an error, or the first example of a reason)."""
        if self.on_bad != "error" and reason in self.stats.examples:
            self.stats.skip(reason)
            return
        if line is None and offset is not None and os.path.isfile(source):
            line = line_number(source, offset)
        err = DataError(message + self.hint, source, line)
        if self.on_bad == "error":
            raise err from None  # the decode/parse error is already summarised in the message
        self.stats.skip(reason, str(err))

    def accept(self, value: Any, source: str, line: int | None, offset: int | None = None) -> Record | None:
        """Validate a text value; return a Record, or None if it was skipped."""
        if isinstance(value, bytes):  # a binary Parquet / hub cell: text if it is UTF-8
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as e:
                self.bad("invalid_utf8", f"invalid UTF-8 at byte {e.start + 1} (0x{value[e.start]:02x})",
                         source, line, offset)
                return None
        if not isinstance(value, str):
            kind = "null" if value is None else type(value).__name__
            self.bad("not_text", f"value of {self.text_column!r} is {kind}, not a string", source, line, offset)
            return None
        if "\x00" in value:
            self.bad("nul_byte", f"NUL byte at character {value.index(chr(0)) + 1}", source, line, offset)
            return None
        if self.skip_empty and not value.strip():
            self.stats.skip("empty")
            return None
        return Record(value, source, line, offset)


def missing_column_msg(col: str, available: Iterable[str], what: str = "column") -> str:
    names = ", ".join(repr(str(n)) for n in available) or "none"
    return f"no {what} {col!r}; available {what}s: {names}"


def line_number(path: str, byte_offset: int) -> int:
    """1-based line number of the line starting at `byte_offset` (counted only for messages)."""
    n = 1
    with open(path, "rb") as fh:
        remaining = byte_offset
        while remaining > 0:
            buf = fh.read(min(remaining, 1 << 20))
            if not buf:
                break
            n += buf.count(b"\n")
            remaining -= len(buf)
    return n
