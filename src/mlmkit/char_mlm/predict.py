"""Filling holes in domain names with a character model: ``mlmkit predict`` and `char_predict`.

The pattern syntax and the search live in `portable.py` (they travel with exported models, so an
exported model fills patterns without mlmkit exactly as mlmkit does); this module adds mlmkit's
own name validation (`data.check_domain`) and one-line errors.
"""

from __future__ import annotations

from typing import Optional

from ..errors import MlmkitError
from .data import check_domain
from .model import CharMLM, bundle_of
from .portable import PatternError, fill_pattern, fill_patterns
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


def predict_pattern(bundle: CharMLM, pattern: str, k: int = 5, beam: Optional[int] = None,
                    rescore: Optional[int] = None, rescore_weight: float = 1.0) -> list[tuple[str, float]]:
    """The best `k` fillings of `pattern` by a loaded model: (name, log-probability);
    `rescore`: see `portable.fill_patterns`."""
    try:
        return fill_pattern(bundle.model, "".join(bundle.alphabet.chars), pattern, max_span=bundle.masking.max_span,
                            mean_span=bundle.masking.mean_span, max_length=bundle.data.max_length, k=k, beam=beam,
                            keep=_valid, rescore=rescore, rescore_weight=rescore_weight)
    except PatternError as e:
        raise MlmkitError(str(e)) from None


def char_predict(model_dir, pattern: str, k: int = 5, beam: Optional[int] = None,
                 rescore: Optional[int] = None) -> list[tuple[str, float]]:
    """Fill the holes of `pattern` (see the module docstring for the syntax); best `k` first."""
    return predict_pattern(bundle_of(model_dir), pattern, k=k, beam=beam, rescore=rescore)


def predict_patterns(model, patterns: list[str], top_k: int = 5, rescore: Optional[int] = None) -> list[dict]:
    """`mlmkit predict` for a character model: one JSON-ready result per pattern, all patterns
    filled together in batches (`portable.fill_patterns`, whose `rescore` re-ranks)."""
    bundle = bundle_of(model)
    try:
        fills = fill_patterns(bundle.model, "".join(bundle.alphabet.chars), list(patterns),
                              max_span=bundle.masking.max_span, mean_span=bundle.masking.mean_span,
                              max_length=bundle.data.max_length, k=top_k, keep=_valid, rescore=rescore)
    except PatternError as e:
        raise MlmkitError(str(e)) from None
    return [{"input": p, "fills": [{"text": s, "score": sc} for s, sc in f]} for p, f in zip(patterns, fills)]


def format_fills(result: dict) -> list[str]:
    return [result["input"]] + [f"  {f['score']:8.4f}  {f['text']}" for f in result["fills"]]
