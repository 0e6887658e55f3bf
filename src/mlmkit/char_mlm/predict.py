"""Filling holes in domain names with a character model: ``mlmkit predict`` and `char_predict`.

The pattern syntax and the search live in `portable.py` (they travel with exported models, so an
exported model fills patterns without mlmkit exactly as mlmkit does); this module adds mlmkit's
own name validation (`data.check_domain`) and one-line errors.
"""

from __future__ import annotations

from typing import Optional

from ..errors import MlmkitError
from .data import MAX_LABEL_LENGTH, check_domain, validate_domain
from .model import CharMLM, bundle_of
from .portable import PatternError, Rescore, fill_pattern, fill_patterns
from .portable import parse_pattern as _parse_pattern
from .portable import plausible_name


def parse_pattern(pattern: str, max_unknown: int = 8, max_length: Optional[int] = None):
    """`portable.parse_pattern`, with its errors as `MlmkitError`s."""
    try:
        return _parse_pattern(pattern, max_unknown, max_length)
    except PatternError as e:
        raise MlmkitError(str(e)) from None


def _valid(name: str) -> bool:
    return check_domain(name, "keep", None, None)[1] is None and plausible_name(name)


def check_pattern(bundle: CharMLM, pattern: str) -> None:
    """Raise a one-line `MlmkitError` if `pattern` cannot be filled by `bundle`'s model: its
    syntax (`portable.parse_pattern`), or literal text that no filling of the holes makes a valid
    name. Without the second check such a pattern printed nothing: every candidate has the bad
    character (a space, an emoji) or label, and all are dropped as invalid names."""
    try:
        text = _parse_pattern(pattern, bundle.masking.max_span, bundle.data.max_length)[0][0]
    except PatternError as e:
        raise MlmkitError(str(e)) from None
    why = _literal_error(text)
    if why:
        shown = pattern.strip() if len(pattern.strip()) <= 60 else pattern.strip()[:57] + "..."
        raise MlmkitError(f"pattern {shown!r}: {why}")


def _literal_error(text: str) -> Optional[str]:
    """Why no name can have the literal parts of a parsed pattern (holes are NULs), or None. A
    hole may be filled with any character, a '.' too: only what the literal text decides alone
    is an error here."""
    skeleton = text.replace("\0", "a")  # letters in the holes: the most lenient filling
    reason = validate_domain(skeleton)
    if reason == "bad_char":
        bad = next(c for c in skeleton if validate_domain(c) == "bad_char")
        return f"{bad!r} cannot be in a domain name (letters, digits, '-' and '.')"
    if reason == "empty_label":
        return "it has an empty label ('..', or a '.' at the start)"
    if reason == "hyphen_edge":
        return "a label starts or ends with '-'"
    labels = text.split(".")
    if any(len(lab) > MAX_LABEL_LENGTH and "\0" not in lab for lab in labels):
        return f"a label is longer than {MAX_LABEL_LENGTH} characters"
    tld = labels[-1]
    if "\0" not in tld and (len(tld) < 2 or tld.isdigit()):
        return f"its TLD {tld!r} is never a TLD (two or more characters, not all digits)"
    return None


def predict_pattern(bundle: CharMLM, pattern: str, k: int = 5, beam: Optional[int] = None,
                    rescore: Rescore = "auto", rescore_weight: float = 1.0) -> list[tuple[str, float]]:
    """The best `k` fillings of `pattern` by a loaded model: (name, log-probability);
    `rescore`: see `portable.fill_patterns`."""
    check_pattern(bundle, pattern)
    return fill_pattern(bundle.model, "".join(bundle.alphabet.chars), pattern, max_span=bundle.masking.max_span,
                        mean_span=bundle.masking.mean_span, max_length=bundle.data.max_length, k=k, beam=beam,
                        keep=_valid, rescore=rescore, rescore_weight=rescore_weight)


def char_predict(model_dir, pattern: str, k: int = 5, beam: Optional[int] = None,
                 rescore: Rescore = "auto") -> list[tuple[str, float]]:
    """Fill the holes of `pattern` (see the module docstring for the syntax); best `k` first."""
    return predict_pattern(bundle_of(model_dir), pattern, k=k, beam=beam, rescore=rescore)


def predict_patterns(model, patterns: list[str], top_k: int = 5, rescore: Rescore = "auto") -> list[dict]:
    """`mlmkit predict` for a character model: one JSON-ready result per pattern, in order. The
    patterns are checked first; the good ones are filled together in batches
    (`portable.fill_patterns`, whose `rescore` re-ranks), and a bad one gets {"input", "error"}
    instead of stopping the others."""
    bundle = bundle_of(model)
    errors: dict[int, str] = {}
    for i, pattern in enumerate(patterns):
        try:
            check_pattern(bundle, pattern)
        except MlmkitError as e:
            errors[i] = str(e)
    good = [p for i, p in enumerate(patterns) if i not in errors]
    fills = iter(fill_patterns(bundle.model, "".join(bundle.alphabet.chars), good,
                               max_span=bundle.masking.max_span, mean_span=bundle.masking.mean_span,
                               max_length=bundle.data.max_length, k=top_k, keep=_valid, rescore=rescore))
    return [{"input": p, "error": errors[i]} if i in errors else
            {"input": p, "fills": [{"text": s, "score": sc} for s, sc in next(fills)]}
            for i, p in enumerate(patterns)]


def format_fills(result: dict) -> list[str]:
    return [result["input"]] + [f"  {f['score']:8.4f}  {f['text']}" for f in result["fills"]]
