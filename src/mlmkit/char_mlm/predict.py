"""Filling holes in domain names with a character model.

Prediction pattern syntax (``char_predict``)
--------------------------------------------
A pattern is a domain name with holes; the literal parts are lowercased, holes are filled:

* ``[MASK]``  -- exactly one unknown character (repeat it: ``goo[MASK][MASK][MASK].com``);
* ``[n]``     -- exactly ``n`` unknown characters: ``goo[3].com`` is the same as the line above;
* ``[?]``     -- an unknown number of characters, 1 to ``masking.max_span`` (every length is tried).

Holes next to each other form one span (``[2][MASK]`` == ``[3]``). Several holes may be used
(``[4]-shop.[2]``); they are filled jointly (beam search per span, then the best combinations).
Scores are natural-log probabilities of the filled characters (summed over the holes). For a
``[?]`` hole the log-probability of its length under the masking's span-length distribution
(geometric with mean ``masking.mean_span``, truncated to ``1..max_span``) is added, so candidates of
different lengths are compared as log P(length) + log P(characters | length). Candidates that are
not valid domain names (e.g. a label ending in ``-``) or whose last label is not a plausible TLD
(one character, or digits only) are dropped.
"""

from __future__ import annotations

import math
import re
from typing import Optional

import torch

from ..errors import MlmkitError
from .data import Alphabet, check_domain
from .masking import spans_from_mask, encode_domains
from .model import CharMLM, bundle_of


_HOLE = re.compile(r"\[(MASK|mask|\d+|\?)\]")


MAX_VARIANTS = 512  # [?] holes multiply: four of them at 8 lengths would be 4,096 beam searches


def parse_pattern(pattern: str, max_unknown: int = 8, max_length: Optional[int] = None) -> list[tuple[str, list[bool]]]:
    """Expand a pattern into (text with placeholder chars, is_hole flags) variants.

    `[?]` produces one variant per length 1..max_unknown (the cartesian product for several; at
    most `MAX_VARIANTS`). A pattern must have a dot (a TLD, given or a hole) and, with
    `max_length` (the model's), fit the model."""
    pattern = pattern.strip()
    shown = pattern if len(pattern) <= 60 else pattern[:57] + "..."  # errors stay one short line
    parts: list = []  # literal strings, hole lengths, -1 for [?]
    pos = 0
    for m in _HOLE.finditer(pattern):
        if m.start() > pos:
            parts.append(pattern[pos: m.start()].lower())
        tok = m.group(1)
        if tok.lower() == "mask":
            parts.append(1)
        elif tok == "?":
            parts.append(-1)  # unknown length
        else:
            n = int(tok)
            if not 1 <= n <= 63:
                raise MlmkitError(f"pattern {shown!r}: [{n}] must be between 1 and 63 characters")
            parts.append(n)
        pos = m.end()
    if pos < len(pattern):
        parts.append(pattern[pos:].lower())
    if "[" in "".join(p for p in parts if isinstance(p, str)) or "]" in "".join(p for p in parts if isinstance(p, str)):
        raise MlmkitError(f"pattern {shown!r}: unknown hole; use [MASK], [n] (e.g. [3]) or [?]")
    if not any(not isinstance(p, str) for p in parts):
        raise MlmkitError(f"pattern {shown!r} has no hole: use [MASK], [n] or [?]")
    literal = "".join(p for p in parts if isinstance(p, str))
    if "." not in literal or (isinstance(parts[-1], str) and parts[-1].endswith(".")):
        raise MlmkitError(f"pattern {shown!r} has no TLD: write a domain name, e.g. goo[3].com or goo.[3]")
    n_variants = max_unknown ** sum(1 for p in parts if p == -1)
    if n_variants > MAX_VARIANTS:
        raise MlmkitError(f"pattern {shown!r} has {n_variants:,} length combinations of its [?] holes "
                          f"(at most {MAX_VARIANTS}): give some holes a length, e.g. [3]")
    shortest = sum(len(p) if isinstance(p, str) else max(p, 1) for p in parts)
    if max_length is not None and shortest > max_length:
        raise MlmkitError(f"pattern {shown!r} is at least {shortest} characters; the model takes at most "
                          f"{max_length} (data.max_length)")
    variants: list[tuple[list, list[int]]] = [([], [])]
    for p in parts:
        if p == -1:
            variants = [(v + [n], u + [n]) for v, u in variants for n in range(1, max_unknown + 1)]
        else:
            variants = [(v + [p], u) for v, u in variants]
    out = []
    for v, unknown in variants:
        text, holes = "", []
        for p in v:
            if isinstance(p, str):
                text += p
                holes += [False] * len(p)
            else:
                text += "\u0000" * p
                holes += [True] * p
        out.append(PatternVariant(text, holes, unknown))
    return out


class PatternVariant(tuple):
    """(text, holes) -- text with NUL placeholders, per-character hole flags -- plus
    `unknown`: the lengths chosen for the pattern's [?] holes."""

    def __new__(cls, text: str, holes: list[bool], unknown: list[int]):
        obj = super().__new__(cls, (text, holes))
        obj.unknown = unknown
        return obj


def length_log_prior(n: int, mean_span: float, max_span: int) -> float:
    """log P(length = n) under the masking's geometric span lengths, truncated to 1..max_span."""
    p = 1.0 / mean_span
    if p >= 1.0:
        return 0.0 if n == 1 else float("-inf")
    z = 1.0 - (1.0 - p) ** max_span
    return math.log(p) + (n - 1) * math.log1p(-p) - math.log(z)


@torch.no_grad()
def predict_pattern(bundle: CharMLM, pattern: str, k: int = 5, beam: Optional[int] = None) -> list[tuple[str, float]]:
    model = bundle.model
    model.eval()
    alpha = bundle.alphabet
    variants = parse_pattern(pattern, bundle.masking.max_span, bundle.data.max_length)
    mk = bundle.masking
    beam = beam or max(2 * k, 5)
    maxlen = bundle.data.max_length
    dev = next(model.parameters()).device
    results: dict[str, float] = {}
    B = 64
    for i in range(0, len(variants), B):
        group = [v for v in variants[i: i + B] if len(v[0]) <= maxlen]
        if not group:
            continue
        texts = [t for t, _ in group]
        cps, idx, att, _, _, _ = encode_domains(texts, alpha)
        hole = torch.zeros_like(att, dtype=torch.bool)
        for r, (_, h) in enumerate(group):
            hole[r, 1: 1 + len(h)] = torch.tensor(h, dtype=torch.bool)
        cps = cps.masked_fill(hole, Alphabet.SPECIAL_CPS[Alphabet.MASK])
        idx = idx.masked_fill(hole, Alphabet.MASK)
        spans = spans_from_mask(hole)
        hidden = model.encode(cps.to(dev), idx.to(dev), att.to(dev))
        seqs, scores = model.head.beam_search(hidden, spans.to(dev), beam=beam, input_idx=idx.to(dev))
        seqs, scores = seqs.cpu(), scores.cpu()
        for r, var in enumerate(group):
            text, h = var
            prior = sum(length_log_prior(n, mk.mean_span, mk.max_span) for n in var.unknown)
            rows = (spans[:, 0] == r).nonzero().flatten().tolist()
            combos: list[tuple[float, list[tuple[int, str]]]] = [(0.0, [])]
            for s in rows:
                start, length = int(spans[s, 1]) - 1, int(spans[s, 2])
                cands = [(float(scores[s, b]), alpha.decode(seqs[s, b, :length].tolist()))
                         for b in range(seqs.shape[1]) if math.isfinite(float(scores[s, b]))]
                combos = sorted(((sc + c_sc, fills + [(start, c)]) for sc, fills in combos for c_sc, c in cands),
                                key=lambda x: -x[0])[:beam]
            for sc, fills in combos:
                chars = list(text)
                for start, c in fills:
                    chars[start: start + len(c)] = list(c)
                name = "".join(chars)
                dom, reason = check_domain(name, "keep", None, None)
                tld = name.rsplit(".", 1)[-1]
                if reason is not None or ("." in name and (len(tld) < 2 or tld.isdigit())):
                    continue
                score = sc + prior
                if name not in results or score > results[name]:
                    results[name] = score
    ranked = sorted(results.items(), key=lambda x: -x[1])[:k]
    return [(n, float(s)) for n, s in ranked]


def char_predict(model_dir, pattern: str, k: int = 5, beam: Optional[int] = None) -> list[tuple[str, float]]:
    """Fill the holes of `pattern` (see the module docstring for the syntax); best `k` first."""
    return predict_pattern(bundle_of(model_dir), pattern, k=k, beam=beam)


def predict_patterns(model: str, patterns: list[str], top_k: int = 5) -> list[dict]:
    """`mlmkit predict` for a character model: one JSON-ready result per pattern."""
    bundle = bundle_of(model)
    return [{"input": p, "fills": [{"text": s, "score": sc} for s, sc in predict_pattern(bundle, p, k=top_k)]}
            for p in patterns]


def format_fills(result: dict) -> list[str]:
    return [result["input"]] + [f"  {f['score']:8.4f}  {f['text']}" for f in result["fills"]]
