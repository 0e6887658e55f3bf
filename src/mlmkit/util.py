"""Small helpers every layer uses: one seed mixer, one stable string hash, one-line messages."""

from __future__ import annotations

import hashlib

from .errors import MlmkitError

_GOLDEN = 0x9E3779B97F4A7C15
_MASK64 = 0xFFFFFFFFFFFFFFFF


def is_path_spec(spec: str) -> bool:
    """True if `spec` is written as a local path (``./x``, ``/x``, ``~/x``, ``a/b/c``), not as a
    Hub id (``name`` or ``user/name``): a missing one is a missing folder, not a Hub look-up."""
    return spec.startswith((".", "/", "~")) or spec.count("/") > 1


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from several integers, e.g. (seed, epoch, batch): the same in every process
    and on every machine (unlike `hash()`), so batch i of epoch e is drawn the same way on every
    rank and after every resume."""
    x = _GOLDEN
    for p in parts:
        x = (x ^ (int(p) + _GOLDEN + (x << 6) + (x >> 2))) & _MASK64
    return x & 0x7FFFFFFFFFFFFFFF


def stable_hash(text: str, digest_size: int = 8, salt: bytes = b"", person: bytes = b"") -> int:
    """An integer hash of `text` (blake2b) that is the same on every machine and run: what
    held-out splits are decided by, so a record is always on the same side of the split."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=digest_size, salt=salt[:16],
                             person=person[:16]).digest()
    return int.from_bytes(digest, "big")


def unit_hash(text: str, person: bytes = b"") -> float:
    """`stable_hash` scaled to [0, 1)."""
    return stable_hash(text, person=person) / 2.0**64


def one_line(e: BaseException) -> str:
    """The first non-empty line of an exception message (library errors often span lines)."""
    for part in str(e).splitlines():
        if part.strip():
            return part.strip()
    return type(e).__name__


def check_loaded(name: str, missing: list[str], total: int, encoder_prefix: str, *, allow_partial: bool,
                 key: str = "model.allow_partial_init") -> list[str]:
    """After loading checkpoint `name` into a model of `total` tensors with `missing` of them
    not found (transformers' loading info, which transformers itself only warns about): stop
    with one line when tensors of the encoder (names under `encoder_prefix`; "" means every
    tensor is the encoder's) are missing, unless `allow_partial`. Returns the missing tensors
    outside the encoder (a head created fresh), for the caller to say so."""
    inside = [k for k in missing if not encoder_prefix or k.startswith(encoder_prefix)]
    if inside and not allow_partial:
        loaded = total - len(missing)
        raise MlmkitError(f"{name}: {len(inside)} of the encoder's tensors are not in the checkpoint (e.g. {inside[0]}); "
                       f"{loaded} of {total} tensors loaded, so training would start from random weights -- is it "
                       f"a checkpoint of another architecture? (--set {key}=true trains from what did load)")
    return [k for k in missing if k not in inside]
