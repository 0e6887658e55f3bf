"""Domain names as data: normalisation, validation, alphabet and streaming sources.

Normalisation (`normalize_domain`): strip whitespace, lowercase, drop one trailing root dot
(``example.com.`` -> ``example.com``) and, by the user's choice (``idn``):

* ``keep``       -- leave the name as written (Unicode labels stay Unicode, ``xn--`` stays ASCII);
* ``to_ascii``   -- Unicode labels -> ``xn--`` punycode (IDNA 2003 ToASCII, stdlib ``encodings.idna``);
* ``to_unicode`` -- ``xn--`` labels -> Unicode.

Validation (`validate_domain`) returns ``None`` for a good name or a short *reason* string:
``empty``, ``too_long`` (over 253 characters), ``longer_than_max_length`` (over the model's
configured limit), ``empty_label`` (``a..b``), ``label_too_long`` (over 63), ``bad_char``
(allowed: ``a-z 0-9 - .`` plus Unicode letters/marks/digits when Unicode is allowed),
``hyphen_edge`` (a label starting or ending with ``-``), ``idna`` (IDN conversion failed),
``not_utf8`` (undecodable bytes in the file).

Sources (`DomainSource`) read local text (one domain per line), CSV (column ``column``), Parquet
(column ``column``) files, directories or globs of them, and Hugging Face hub data sets via
``datasets.load_dataset(name, split=..., streaming=True)``. Nothing is ever loaded whole: local
files are cut into *chunks* (byte ranges of text/CSV files, row groups of Parquet files) that can
be read independently, which is what makes O(1) resume possible (see `char_task.py`).
A line belongs to the chunk in which it starts. CSV files must not contain newlines inside quoted
fields (domain lists never do).
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

from mlmkit.errors import ConfigError, DataError

MAX_DOMAIN_LENGTH = 253
MAX_LABEL_LENGTH = 63
IDN_MODES = ("keep", "to_ascii", "to_unicode")
TEXT_EXTS = (".txt", ".text", ".lst", ".list")
CSV_EXTS = (".csv", ".tsv")
PARQUET_EXTS = (".parquet", ".pq")

SAMPLE_NAME = "sample"


def sample_path() -> Path:
    """The bundled sample of 50,000 real domain names (see samples/LICENSE-domains.md)."""
    return Path(__file__).resolve().parent.parent / "samples" / "domains.txt"


# --------------------------------------------------------------------------------------------
# normalisation and validation
# --------------------------------------------------------------------------------------------


def _label_to_ascii(label: str) -> str:
    if label.isascii():
        return label
    import encodings.idna as idna_codec

    return idna_codec.ToASCII(label).decode("ascii")


def _label_to_unicode(label: str) -> str:
    if not label.startswith("xn--"):
        return label
    import encodings.idna as idna_codec

    return idna_codec.ToUnicode(label)


class _IdnaFailure(ValueError):
    pass


def normalize_domain(raw: str, idn: str = "keep") -> str:
    """Strip, lowercase, drop a trailing root dot and convert IDNs as asked.

    Raises `_IdnaFailure` (a ValueError) when the IDN conversion fails; `check_domain` turns that
    into the reason ``idna``.
    """
    s = raw.strip().lower()
    if s.endswith(".") and len(s) > 1:
        s = s[:-1]
    if idn == "keep" or not s:
        return s
    try:
        if idn == "to_ascii":
            return ".".join(_label_to_ascii(lab) if lab else lab for lab in s.split("."))
        if idn == "to_unicode":
            return ".".join(_label_to_unicode(lab) if lab else lab for lab in s.split("."))
    except (UnicodeError, ValueError) as e:  # bad punycode, label too long for IDNA, ...
        raise _IdnaFailure(str(e)) from None
    raise ConfigError(f"data.idn: expected one of {IDN_MODES}, got {idn!r}")


def _allowed_char(c: str, allow_unicode: bool) -> bool:
    if c.isascii():
        return ("a" <= c <= "z") or ("0" <= c <= "9") or c == "-" or c == "."
    if not allow_unicode:
        return False
    cat = unicodedata.category(c)
    return cat[0] in ("L", "M") or cat == "Nd"


def validate_domain(
    s: str, allow_unicode: bool = True, max_length: Optional[int] = None
) -> Optional[str]:
    """None if `s` (already normalised) is a valid domain name, else a short reason."""
    if not s:
        return "empty"
    if len(s) > MAX_DOMAIN_LENGTH:
        return "too_long"
    if max_length is not None and len(s) > max_length:
        return "longer_than_max_length"
    for c in s:
        if not _allowed_char(c, allow_unicode):
            return "bad_char"
    for label in s.split("."):
        if not label:
            return "empty_label"
        if len(label) > MAX_LABEL_LENGTH:
            return "label_too_long"
        if label[0] == "-" or label[-1] == "-":
            return "hyphen_edge"
    return None


def check_domain(
    raw: str, idn: str = "keep", allow_unicode: Optional[bool] = None,
    max_length: Optional[int] = None,
) -> tuple[Optional[str], Optional[str]]:
    """Normalise and validate: returns (domain, None) or (None, reason)."""
    if allow_unicode is None:
        allow_unicode = idn != "to_ascii"
    try:
        s = normalize_domain(raw, idn)
    except _IdnaFailure:
        return None, "idna"
    reason = validate_domain(s, allow_unicode=allow_unicode, max_length=max_length)
    if reason is not None:
        return None, reason
    return s, None


def holdout_value(domain: str) -> float:
    """A deterministic number in [0, 1) from the normalised domain (blake2b)."""
    h = hashlib.blake2b(domain.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64


HOLDOUT_KEYS = ("name", "domain")


def holdout_key(domain: str, key: str = "name") -> str:
    """The string hashed for the train/validation split.

    ``domain``: the whole normalised name. ``name``: the name without its last label (the TLD), so
    ``foo.cf`` and ``foo.ga`` always land on the same side -- lists of registered or disposable
    domains often hold one name under many TLDs, and splitting them apart would let the
    validation set be memorised from its training twins."""
    if key == "name" and "." in domain:
        return domain.rsplit(".", 1)[0]
    return domain


def is_validation(domain: str, valid_fraction: float, key: str = "name") -> bool:
    """Whether `domain` belongs to the held-out split (same answer on every machine, every run)."""
    return holdout_value(holdout_key(domain, key)) < valid_fraction


# --------------------------------------------------------------------------------------------
# alphabet
# --------------------------------------------------------------------------------------------

PAD_CP, CLS_CP, SEP_CP, MASK_CP = 0, 0xE000, 0xE001, 0xE003
UNK_CP = 0xFFFD  # only for display; the model sees the real code point (CANINE) or UNK index


class Alphabet:
    """Characters the output softmax covers, after the specials.

    Indices: PAD 0, CLS 1, SEP 2, MASK 3, UNK 4, then one per character. Code points of the
    specials are CANINE's (PAD 0, CLS U+E000, SEP U+E001, MASK U+E003).
    """

    SPECIAL_NAMES = ("PAD", "CLS", "SEP", "MASK", "UNK")
    SPECIAL_CPS = (PAD_CP, CLS_CP, SEP_CP, MASK_CP, UNK_CP)
    PAD, CLS, SEP, MASK, UNK = range(5)
    N_SPECIALS = 5

    def __init__(self, chars: Iterable[str]):
        seen: list[str] = []
        for c in chars:
            if len(c) != 1:
                raise ConfigError(f"data.alphabet: entries must be single characters, got {c!r}")
            if ord(c) in self.SPECIAL_CPS:
                continue
            if c not in seen:
                seen.append(c)
        self.chars: list[str] = sorted(seen)
        self.index = {c: i + self.N_SPECIALS for i, c in enumerate(self.chars)}
        self.code_points = list(self.SPECIAL_CPS) + [ord(c) for c in self.chars]

    def __len__(self) -> int:
        return self.N_SPECIALS + len(self.chars)

    def __eq__(self, other) -> bool:
        return isinstance(other, Alphabet) and self.chars == other.chars

    def encode(self, s: str) -> list[int]:
        get, unk = self.index.get, self.UNK
        return [get(c, unk) for c in s]

    def char(self, i: int) -> str:
        if i >= self.N_SPECIALS:
            return self.chars[i - self.N_SPECIALS]
        return "\ufffd" if i == self.UNK else ""

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.char(int(i)) for i in ids)

    def to_json(self) -> dict:
        return {"specials": dict(zip(self.SPECIAL_NAMES, self.SPECIAL_CPS)), "chars": "".join(self.chars)}

    @classmethod
    def from_json(cls, d: dict) -> "Alphabet":
        return cls(list(d["chars"]))

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> "Alphabet":
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


BASE_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-."


def derive_alphabet(domains: Iterable[str], base: str = BASE_ALPHABET) -> Alphabet:
    chars = set(base)
    for d in domains:
        chars.update(d)
    return Alphabet(chars)


# --------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """An independently readable piece of a local file."""

    path: str
    kind: str  # text | csv | parquet
    start: int  # byte offset (text/csv) or row-group index (parquet)
    end: int  # byte offset (exclusive) or row-group index + 1
    rows_hint: int = 0  # parquet: rows in the group


@dataclass
class Record:
    source: str
    line: Optional[int]  # 1-based line (text/csv) or row number (parquet), None if unknown
    value: Optional[str]  # None when the bytes could not be decoded
    byte_offset: Optional[int] = None


def _kind_of(path: str, fmt: str) -> str:
    if fmt in ("text", "csv", "parquet"):
        return fmt
    p = path.lower()
    if p.endswith(PARQUET_EXTS):
        return "parquet"
    if p.endswith(CSV_EXTS):
        return "csv"
    return "text"


def resolve_files(source: str) -> list[str]:
    """Local files for `source` (file, directory, glob, 'sample' or 'mlmkit:samples/...');
    [] if it is not local."""
    if source == SAMPLE_NAME:
        return [str(sample_path())]
    if source.startswith("mlmkit:"):  # a file shipped inside the package, e.g. mlmkit:samples/domains.txt
        source = str(Path(__file__).resolve().parent.parent / source[len("mlmkit:"):])
    if os.path.isfile(source):
        return [source]
    if os.path.isdir(source):
        out = []
        for root, _dirs, files in os.walk(source):
            for f in sorted(files):
                if f.lower().endswith(TEXT_EXTS + CSV_EXTS + PARQUET_EXTS):
                    out.append(os.path.join(root, f))
        if not out:
            raise DataError("directory holds no .txt/.csv/.parquet files", source)
        return sorted(out)
    if any(ch in source for ch in "*?["):
        out = sorted(glob.glob(source, recursive=True))
        if not out:
            raise DataError("glob matches no files", source)
        return out
    return []


def looks_local(source: str) -> bool:
    return (
        source == SAMPLE_NAME or source.startswith("mlmkit:") or os.path.exists(source) or any(ch in source for ch in "*?[")
        or source.startswith((".", "/", "~")) or source.lower().endswith(TEXT_EXTS + CSV_EXTS + PARQUET_EXTS)
    )


class DomainSource:
    """Raw records (undecoded/unvalidated strings) from local files or a hub data set."""

    def __init__(self, source: str, fmt: str = "auto", column: str = "domain",
                 split: str = "train", chunk_bytes: int = 1 << 16,
                 hub_config: Optional[str] = None, hub_data_files: Optional[list[str]] = None):
        self.source, self.fmt, self.column, self.split = source, fmt, column, split
        self.chunk_bytes = chunk_bytes
        self.hub_config, self.hub_data_files = hub_config, hub_data_files
        self.is_hub = fmt == "hub" or (fmt == "auto" and not looks_local(source))
        self.files: list[str] = []
        self._csv_col: dict[str, int] = {}
        if not self.is_hub:
            files = resolve_files(os.path.expanduser(source))
            if not files:
                raise DataError("no such file or directory", source)
            self.files = files
            nonempty = [f for f in files if os.path.getsize(f) > 0]
            if not nonempty:
                raise DataError("empty file: no domains to read", files[0] if len(files) == 1 else source)
            self.files = nonempty

    # -- local chunks ---------------------------------------------------------------------
    def chunks(self, limit_bytes: Optional[dict[str, int]] = None) -> list[Chunk]:
        """Chunks of every local file, in file order. `limit_bytes` caps a file at a byte offset
        (or row group for Parquet) -- used by max_samples."""
        out: list[Chunk] = []
        for f in self.files:
            kind = _kind_of(f, self.fmt)
            lim = None if limit_bytes is None else limit_bytes.get(f)
            if lim == 0:
                continue
            if kind == "parquet":
                pf = self._parquet(f)
                n = pf.metadata.num_row_groups
                if lim is not None:
                    n = min(n, lim)
                for g in range(n):
                    out.append(Chunk(f, kind, g, g + 1, pf.metadata.row_group(g).num_rows))
            else:
                size = os.path.getsize(f) if lim is None else lim
                for s in range(0, size, self.chunk_bytes):
                    out.append(Chunk(f, kind, s, min(s + self.chunk_bytes, size)))
        return out

    def _parquet(self, f: str):
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(f)
        except Exception as e:  # pyarrow raises ArrowInvalid etc.
            raise DataError(f"not a readable Parquet file ({e.__class__.__name__}: {e})", f) from None
        names = pf.schema_arrow.names
        if self.column not in names:
            raise DataError(f"no column {self.column!r} (columns: {', '.join(names)}); set data.column", f)
        return pf

    def _csv_column(self, f: str) -> int:
        if f not in self._csv_col:
            with open(f, "rb") as fh:
                first = fh.readline()
            try:
                header_line = first.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise DataError("CSV header is not UTF-8", f, 1) from None
            delim = "\t" if f.lower().endswith(".tsv") else ","
            header = next(csv.reader([header_line], delimiter=delim), [])
            header = [h.strip() for h in header]
            if self.column not in header:
                raise DataError(f"no column {self.column!r} in CSV header (columns: {', '.join(header)}); set data.column", f, 1)
            self._csv_col[f] = header.index(self.column)
        return self._csv_col[f]

    def read_chunk(self, ch: Chunk) -> Iterator[Record]:
        if ch.kind == "parquet":
            yield from self._read_parquet_group(ch)
            return
        col = self._csv_column(ch.path) if ch.kind == "csv" else None
        delim = "\t" if ch.path.lower().endswith(".tsv") else ","
        with open(ch.path, "rb") as fh:
            if ch.start > 0:
                fh.seek(ch.start - 1)
                fh.readline()  # finish the line that started in an earlier chunk
            pos = fh.tell()
            while pos < ch.end:
                raw = fh.readline()
                if not raw:
                    break
                line_pos = pos
                pos += len(raw)
                if line_pos == 0 and col is not None:
                    continue  # CSV header
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    yield Record(ch.path, None, None, line_pos)
                    continue
                if line_pos == 0 and text.startswith("\ufeff"):
                    text = text[1:]
                if col is not None:
                    if not text.strip():
                        continue
                    fields = next(csv.reader([text], delimiter=delim), [])
                    text = fields[col] if col < len(fields) else ""
                elif not text.strip():
                    continue  # blank lines are not records
                yield Record(ch.path, None, text, line_pos)

    def _read_parquet_group(self, ch: Chunk) -> Iterator[Record]:
        pf = self._parquet(ch.path)
        base = sum(pf.metadata.row_group(g).num_rows for g in range(ch.start))
        table = pf.read_row_group(ch.start, columns=[self.column])
        for j, v in enumerate(table.column(0).to_pylist()):
            yield _cell_record(ch.path, base + j + 1, v)

    def iter_local(self) -> Iterator[Record]:
        for ch in self.chunks():
            yield from self.read_chunk(ch)

    # -- hub --------------------------------------------------------------------------------
    def hub_dataset(self, seed: Optional[int] = None, buffer_size: int = 10_000):
        import datasets

        kwargs = {"split": self.split, "streaming": True}
        if self.hub_data_files:
            kwargs["data_files"] = list(self.hub_data_files)
        try:
            if self.hub_config:
                ds = datasets.load_dataset(self.source, self.hub_config, **kwargs)
            else:
                ds = datasets.load_dataset(self.source, **kwargs)
        except Exception as e:
            raise DataError(f"cannot open data set ({e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''})", self.source) from None
        if seed is not None:
            ds = ds.shuffle(seed=seed, buffer_size=buffer_size)
        return ds

    def iter_hub(self, seed: Optional[int] = None, skip: int = 0, buffer_size: int = 10_000) -> Iterator[Record]:
        ds = self.hub_dataset(seed, buffer_size)
        if skip:
            ds = ds.skip(skip)  # O(skip) for streams: documented limitation
        for j, row in enumerate(ds):
            if self.column not in row:
                raise DataError(f"no column {self.column!r} (columns: {', '.join(row)}); set data.column", self.source)
            yield _cell_record(self.source, skip + j + 1, row[self.column])

    def iter_records(self) -> Iterator[Record]:
        return self.iter_hub() if self.is_hub else self.iter_local()


def _cell_record(source: str, row: int, value) -> Record:
    """A Parquet / hub cell as a Record: bytes decoded as UTF-8 (text None if they are not, so
    the filter counts or reports the row), None as the empty string."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return Record(source, row, None)
    return Record(source, row, "" if value is None else str(value))


def line_number(path: str, byte_offset: int) -> int:
    """1-based line number of the line starting at `byte_offset` (counted only for errors)."""
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


class DomainFilter:
    """Normalise + validate records; count or raise on the bad ones."""

    def __init__(self, idn: str = "keep", on_invalid: str = "skip", max_length: Optional[int] = None,
                 allow_unicode: Optional[bool] = None):
        if idn not in IDN_MODES:
            raise ConfigError(f"data.idn: expected one of {IDN_MODES}, got {idn!r}")
        if on_invalid not in ("skip", "error"):
            raise ConfigError(f"data.on_invalid: expected 'skip' or 'error', got {on_invalid!r}")
        self.idn, self.on_invalid, self.max_length = idn, on_invalid, max_length
        self.allow_unicode = allow_unicode
        self.invalid: Counter = Counter()
        self.n_valid = 0

    def __call__(self, rec: Record) -> Optional[str]:
        if rec.value is None:
            reason, dom = "not_utf8", None
        else:
            dom, reason = check_domain(rec.value, self.idn, self.allow_unicode, self.max_length)
        if reason is None:
            self.n_valid += 1
            return dom
        self.invalid[reason] += 1
        if self.on_invalid == "error":
            line = rec.line
            if line is None and rec.byte_offset is not None and os.path.isfile(rec.source):
                line = line_number(rec.source, rec.byte_offset)
            shown = "" if rec.value is None else f" {rec.value.strip()[:80]!r}"
            msg = {
                "not_utf8": "bytes are not valid UTF-8",
            }.get(reason, f"invalid domain{shown}: {reason}")
            raise DataError(msg + " (set data.on_invalid: skip to count and skip such rows)", rec.source, line)
        return None

    def filter(self, records: Iterable[Record]) -> Iterator[str]:
        for r in records:
            d = self(r)
            if d is not None:
                yield d

    def summary(self) -> dict:
        return {"valid": self.n_valid, "invalid": dict(sorted(self.invalid.items()))}


def shuffle_buffer(items: Iterable, size: int, rng) -> Iterator:
    """Classic streaming shuffle buffer (`rng` a random.Random): memory O(size)."""
    buf: list = []
    for x in items:
        if len(buf) < size:
            buf.append(x)
            continue
        j = rng.randrange(size)
        buf[j], x = x, buf[j]
        yield x
    rng.shuffle(buf)
    yield from buf
