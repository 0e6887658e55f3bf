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

Sources (`DomainSource`) are the shared record reader's (`mlmkit.data`): local files of any
supported format, folders, globs, bundled samples, or one Hugging Face data set, streamed. Nothing
is ever loaded whole: local files are read in *chunks* (byte ranges of line-based files, row
groups of Parquet files) that can be read independently, which is what makes O(1) resume
possible (see `task.py`). Bad records (undecodable bytes, invalid names) are counted by reason or
stop the run with file:line (`data.on_bad_record`).
"""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path
from typing import Iterable, Iterator, Optional

from ..data.base import ReadContext, ReadStats, Record
from ..data.chunks import Chunk, chunk_files, read_chunk
from ..data.hub import HubOptions, ShardedStream, iter_hub
from ..data.records import resolve_sources
from ..errors import ConfigError, DataError
from ..util import stable_hash, unit_hash
from . import inputs
from .config import IDN_MODES

MAX_DOMAIN_LENGTH = 253
MAX_LABEL_LENGTH = 63


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


def holdout_key(domain: str, key: str = "name") -> str:
    """The string hashed for the train/validation split.

    ``domain``: the whole normalised name. ``name``: the name without its last label (the TLD), so
    ``foo.cf`` and ``foo.ga`` always land on the same side -- lists of registered or disposable
    domains often hold one name under many TLDs, and splitting them apart would let the
    validation set be memorised from its training twins."""
    if key == "name" and "." in domain:
        return domain.rsplit(".", 1)[0]
    return domain


def one_name_per_family(names: list[str], epoch: int) -> list[str]:
    """One name of each family in `names` (the names sharing `holdout_key` "name"), families in
    order of first appearance (`data.one_name_per_family`). Pass `epoch` takes a family's names in
    sorted order from an offset hashed from the family, so its names take turns, one a pass, and
    one pass does not take every family's first TLD."""
    families: dict[str, list[str]] = {}
    for d in names:
        families.setdefault(holdout_key(d, "name"), []).append(d)
    return [v[0] if len(v) == 1 else sorted(v)[(epoch + stable_hash(k)) % len(v)] for k, v in families.items()]


class FamilyMarks:
    """For the count memory's families (`model.head_ngram_count_families`): per name, the column
    of its last dot in the encoded row ([CLS] first; the [SEP] column without a dot), and whether
    its family (the name without its last label, `holdout_key` "name") was met before, in this
    call or an earlier one. The families met are bits of a hashed set of `bits` bits (128 MiB by
    default): a family whose bit another family set is counted as a repeat, about 1 in 1,000 at a
    million families. Each rank marks the names it counts: a family whose names are counted by
    two ranks has its stem counted once by each."""

    def __init__(self, bits: int = 1 << 30):
        import numpy as np

        self.bits = bits
        self.seen = np.zeros(bits // 8, dtype=np.uint8)

    def __call__(self, names: list[str]):
        import numpy as np
        import torch

        stem_end = torch.tensor([(d.rfind(".") if "." in d else len(d)) + 1 for d in names], dtype=torch.long)
        slots = np.array([stable_hash(holdout_key(d, "name")) % self.bits for d in names], dtype=np.int64)
        byte, bit = slots >> 3, (1 << (slots & 7)).astype(np.uint8)
        first = np.zeros(len(names), dtype=bool)
        first[np.unique(slots, return_index=True)[1]] = True  # the first name of each family here
        repeat = ((self.seen[byte] & bit) != 0) | ~first
        np.bitwise_or.at(self.seen, byte, bit)
        return stem_end, torch.from_numpy(repeat)


def is_validation(domain: str, valid_fraction: float, key: str = "name") -> bool:
    """Whether `domain` belongs to the held-out split (same answer on every machine, every run)."""
    return unit_hash(holdout_key(domain, key)) < valid_fraction


# --------------------------------------------------------------------------------------------
# alphabet
# --------------------------------------------------------------------------------------------



class Alphabet:
    """Characters the output softmax covers, after the specials.

    Indices: PAD 0, CLS 1, SEP 2, MASK 3, UNK 4, then one per character. Code points of the
    specials are CANINE's (PAD 0, CLS U+E000, SEP U+E001, MASK U+E003).
    """

    SPECIAL_NAMES = inputs.SPECIAL_NAMES
    SPECIAL_CPS = inputs.SPECIAL_CPS
    PAD, CLS, SEP, MASK, UNK = inputs.PAD, inputs.CLS, inputs.SEP, inputs.MASK, inputs.UNK
    N_SPECIALS = len(SPECIAL_NAMES)

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

ON_BAD_HINT = " (set data.on_bad_record: skip to count and skip such records)"


class DomainSource:
    """Raw records from the run's data specs: local files, read in chunks, or one hub data set,
    streamed. `ctx()` makes the reading context (column, bad-record rule) each read counts in."""

    def __init__(self, specs: list[str], data):
        self.data = data
        self.specs = list(specs)
        found = resolve_sources(self.specs, data.format)
        if found.hub and (found.files or len(found.hub) > 1):
            raise DataError("one Hugging Face data set at a time, and not mixed with local files",
                            ", ".join(self.specs))
        self.is_hub = bool(found.hub)
        self.hub_name = found.hub[0] if found.hub else None
        self.files = [str(f) for f in found.files if os.path.getsize(f) > 0]
        if found.files and not self.files:
            raise DataError("empty file: no domains to read", str(found.files[0]) if len(found.files) == 1
                            else ", ".join(self.specs))
        self.hub = HubOptions(data.hf_split, data.hf_config, data.hf_data_files, streaming=True)

    @property
    def name(self) -> str:
        return ", ".join(self.specs)

    def ctx(self) -> ReadContext:
        return ReadContext(self.data.text_column, self.data.on_bad_record, ReadStats(), hint=ON_BAD_HINT)

    def chunks(self, limits: Optional[dict[str, int]] = None) -> list[Chunk]:
        """Chunks of every local file, in file order; `limits` caps a file at a byte offset (or
        row group) -- used by max_samples."""
        return chunk_files(self.files, self.data.format, self.data.chunk_bytes, self.data.text_column, limits)

    def read_chunk(self, ch: Chunk, ctx: ReadContext) -> Iterator[Record]:
        return read_chunk(ch, ctx, self.data.format)

    def iter_hub(self, ctx: ReadContext) -> Iterator[Record]:
        return iter_hub(self.hub_name, ctx, self.hub)

    def hub_stream(self, *, seed: int, rank: int = 0, world: int = 1, shuffle: bool = True) -> ShardedStream:
        """The hub data set shard by shard, with a resumable position (see `ShardedStream`)."""
        return ShardedStream(self.hub_name, self.hub, self.data.text_column, seed=seed, rank=rank, world=world,
                             shuffle=shuffle)

    def iter_records(self, ctx: ReadContext) -> Iterator[Record]:
        if self.is_hub:
            yield from self.iter_hub(ctx)
            return
        for ch in self.chunks():
            yield from self.read_chunk(ch, ctx)


class DomainFilter:
    """Normalise + validate records: the name, or None for an invalid one (counted by reason in
    the reading context, or raised with file:line)."""

    def __init__(self, idn: str = "keep", max_length: Optional[int] = None, allow_unicode: Optional[bool] = None):
        if idn not in IDN_MODES:
            raise ConfigError(f"config key 'data.idn': expected one of {IDN_MODES}, got {idn!r}")
        self.idn, self.max_length, self.allow_unicode = idn, max_length, allow_unicode

    def __call__(self, rec: Record, ctx: ReadContext) -> Optional[str]:
        dom, reason = check_domain(rec.text, self.idn, self.allow_unicode, self.max_length)
        if reason is None:
            return dom
        ctx.bad(reason, f"invalid domain {rec.text.strip()[:80]!r}: {reason}", rec.source, rec.line, rec.offset)
        return None

    def filter(self, records: Iterable[Record], ctx: ReadContext) -> Iterator[str]:
        for r in records:
            d = self(r, ctx)
            if d is not None:
                yield d
