"""The character MLM as a Hugging Face custom model, so that an exported folder loads without
mlmkit::

    from transformers import AutoModel
    model = AutoModel.from_pretrained("exported/", trust_remote_code=True)
    model.fill("goo[3].com", top_k=5)    # [("google.com", -0.8), ...]: names, log-probabilities

`mlmkit export` saves this file with the model (with `inputs.py`, `encoders.py` and `heads.py`,
which it imports) and an ``auto_map`` in ``config.json``, the Hub's convention for custom
architectures. So this file imports only torch, transformers and those siblings, never mlmkit.
mlmkit fills patterns through the same `fill_pattern` (``mlmkit predict``), so the exported model
and mlmkit give the same candidates with the same scores.

Pattern syntax
--------------
A pattern is a domain name with holes; the literal parts are lowercased, holes are filled:

* ``[MASK]``  -- exactly one unknown character (repeat it: ``goo[MASK][MASK][MASK].com``);
* ``[n]``     -- exactly ``n`` unknown characters: ``goo[3].com`` is the same as the line above;
* ``[?]``     -- an unknown number of characters, 1 to ``max_span`` (every length is tried).

Holes next to each other form one span (``[2][MASK]`` == ``[3]``). Several holes may be used
(``[4]-shop.[2]``); they are filled jointly (beam search per span, then the best combinations).
Scores are natural-log probabilities of the filled characters (summed over the holes). For a
``[?]`` hole the log-probability of its length under the masking's span-length distribution
(geometric with mean ``mean_span``, truncated to ``1..max_span``) is added, so candidates of
different lengths are compared as log P(length) + log P(characters | length). Candidates that are
not plausible domain names (an empty label, a label starting or ending with ``-``, a TLD of one
character or of digits only) are dropped.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Optional, Union

import torch
from transformers import PretrainedConfig, PreTrainedModel

from .encoders import CanineCharEncoder, build_scratch_encoder
from .heads import build_head
from .inputs import MASK, MASK_CP, SPECIAL_CPS, UNK, encode_names, spans_from_mask


class PatternError(ValueError):
    """A pattern that cannot be filled (mlmkit shows it as a one-line error)."""


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
                raise PatternError(f"pattern {shown!r}: [{n}] must be between 1 and 63 characters")
            parts.append(n)
        pos = m.end()
    if pos < len(pattern):
        parts.append(pattern[pos:].lower())
    if "[" in "".join(p for p in parts if isinstance(p, str)) or "]" in "".join(p for p in parts if isinstance(p, str)):
        raise PatternError(f"pattern {shown!r}: unknown hole; use [MASK], [n] (e.g. [3]) or [?]")
    if not any(not isinstance(p, str) for p in parts):
        raise PatternError(f"pattern {shown!r} has no hole: use [MASK], [n] or [?]")
    literal = "".join(p for p in parts if isinstance(p, str))
    if "." not in literal or (isinstance(parts[-1], str) and parts[-1].endswith(".")):
        raise PatternError(f"pattern {shown!r} has no TLD: write a domain name, e.g. goo[3].com or goo.[3]")
    n_variants = max_unknown ** sum(1 for p in parts if p == -1)
    if n_variants > MAX_VARIANTS:
        raise PatternError(f"pattern {shown!r} has {n_variants:,} length combinations of its [?] holes "
                          f"(at most {MAX_VARIANTS}): give some holes a length, e.g. [3]")
    shortest = sum(len(p) if isinstance(p, str) else max(p, 1) for p in parts)
    if max_length is not None and shortest > max_length:
        raise PatternError(f"pattern {shown!r} is at least {shortest} characters; the model takes at most "
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


def plausible_name(name: str) -> bool:
    """Labels non-empty, not starting or ending with '-', and a TLD of two or more characters,
    not all digits."""
    labels = name.split(".")
    if any(not lab or lab[0] == "-" or lab[-1] == "-" for lab in labels):
        return False
    return len(labels) < 2 or (len(labels[-1]) >= 2 and not labels[-1].isdigit())


def _char_index(chars: str) -> dict[str, int]:
    """Character -> alphabet index (after the specials)."""
    return {c: i + len(SPECIAL_CPS) for i, c in enumerate(chars)}


def _encode(texts: list[str], holes: list[list[bool]], chars: str):
    """Model inputs for texts whose hole characters become MASK, and their span table."""
    index = _char_index(chars)
    cps, idx, att = encode_names(texts, lambda s: [index.get(c, UNK) for c in s])
    hole = torch.zeros_like(att, dtype=torch.bool)
    for r, h in enumerate(holes):
        hole[r, 1: 1 + len(h)] = torch.tensor(h, dtype=torch.bool)
    return cps.masked_fill(hole, MASK_CP), idx.masked_fill(hole, MASK), att, spans_from_mask(hole)


def _decode(ids, chars: str) -> str:
    n = len(SPECIAL_CPS)
    return "".join(chars[i - n] if i >= n else "\ufffd" for i in ids)


def _combine(text: str, span_rows: list, spans, seqs, scores, chars: str, beam: int) -> list[tuple[float, str]]:
    """The best `beam` joint fillings of one variant's spans: (summed log-prob, filled text)."""
    combos: list[tuple[float, list[tuple[int, str]]]] = [(0.0, [])]
    for s in span_rows:
        start, length = int(spans[s, 1]) - 1, int(spans[s, 2])
        cands = [(float(scores[s, b]), _decode(seqs[s, b, :length].tolist(), chars))
                 for b in range(seqs.shape[1]) if math.isfinite(float(scores[s, b]))]
        combos = sorted(((sc + c_sc, fills + [(start, c)]) for sc, fills in combos for c_sc, c in cands),
                        key=lambda x: -x[0])[:beam]
    out = []
    for sc, fills in combos:
        filled = list(text)
        for start, c in fills:
            filled[start: start + len(c)] = list(c)
        out.append((sc, "".join(filled)))
    return out


Rescore = Union[int, None, str]  # R, None (off) or "auto" (`default_rescore`)
AUTO_RESCORE = 4  # R of "auto": the best of 2, 4 and 8 on held-out names of the training lists (docs/results-char.md)


def reads_own_character(model) -> bool:
    """Whether `model`'s encoder state at a position has read that position's character (any
    encoder but the cloze towers): then scoring each character with only itself hidden costs a
    pass per character, otherwise one pass per name."""
    return getattr(getattr(model, "encoder", None), "reads_own_character", True)


def default_rescore(model) -> Optional[int]:
    """What `rescore="auto"` does for `model`: re-rank with R = `AUTO_RESCORE` when the re-scoring
    costs one more pass per candidate (more exact fills at about a sixth of the speed); not where it
    would cost a pass per character."""
    return None if reads_own_character(model) else AUTO_RESCORE


@torch.no_grad()
def fill_pattern(model, chars: str, pattern: str, *, max_span: int, mean_span: float, max_length: int,
                 k: int = 5, beam: Optional[int] = None, keep: Callable[[str], bool] = plausible_name,
                 rescore: Rescore = "auto", rescore_weight: float = 1.0) -> list[tuple[str, float]]:
    """The best `k` fillings of `pattern` (syntax above) as (name, log-probability). `model` has
    ``encode(input_ids, input_idx, attention_mask)`` and a span ``head``; `chars` is its alphabet
    after the specials; `keep` drops implausible names; `rescore`: see `fill_patterns`."""
    return fill_patterns(model, chars, [pattern], max_span=max_span, mean_span=mean_span, max_length=max_length,
                         k=k, beam=beam, keep=keep, rescore=rescore, rescore_weight=rescore_weight)[0]


@torch.no_grad()
def fill_patterns(model, chars: str, patterns: list[str], *, max_span: int, mean_span: float, max_length: int,
                  k: int = 5, beam: Optional[int] = None, keep: Callable[[str], bool] = plausible_name,
                  batch_size: int = 256, rescore: Rescore = "auto",
                  rescore_weight: float = 1.0) -> list[list[tuple[str, float]]]:
    """`fill_pattern` for many patterns at once: the variants of all of them go through the
    encoder and the beam search in batches of `batch_size` names (a batch's rows are independent,
    so each pattern gets what it gets alone), one Python round per batch instead of per pattern.

    `rescore` = R (off with None; "auto": `default_rescore`): each pattern's candidates are
    re-ranked by their score plus `rescore_weight` x their pseudo-log-likelihood over the holes and
    R characters either side (`pseudo_log_likelihood`): a check, in both directions, that a filling
    fits its neighbours."""
    model.eval()
    if rescore == "auto":
        rescore = default_rescore(model)
    variants = [(i, v) for i, p in enumerate(patterns)
                for v in parse_pattern(p, max_span, max_length) if len(v[0]) <= max_length]
    variants.sort(key=lambda iv: len(iv[1][0]))  # similar lengths together: less padding
    beam = beam or max(2 * k, 5)
    dev = next(model.parameters()).device
    results: list[dict[str, float]] = [{} for _ in patterns]
    holes_of: list[dict[str, list[int]]] = [{} for _ in patterns]
    for i in range(0, len(variants), batch_size):
        group = variants[i: i + batch_size]
        cps, idx, att, spans = _encode([v[0] for _, v in group], [v[1] for _, v in group], chars)
        hidden = model.encode(cps.to(dev), idx.to(dev), att.to(dev))
        seqs, scores = model.head.beam_search(hidden, spans.to(dev), beam=beam, input_idx=idx.to(dev))
        seqs, scores = seqs.cpu(), scores.cpu()
        rows_of: list[list[int]] = [[] for _ in group]
        for s, r in enumerate(spans[:, 0].tolist()):
            rows_of[r].append(s)
        for r, (which, var) in enumerate(group):
            prior = sum(length_log_prior(n, mean_span, max_span) for n in var.unknown)
            found = results[which]
            for sc, name in _combine(var[0], rows_of[r], spans, seqs, scores, chars, beam):
                if keep(name) and sc + prior > found.get(name, float("-inf")):
                    found[name] = sc + prior
                    if rescore is not None:  # where the re-scoring reads
                        holes_of[which][name] = [j for j, h in enumerate(var[1]) if h]
    if rescore is not None:
        results = _rescored(model, chars, results, holes_of, rescore, rescore_weight, beam)
    return [[(n, float(s)) for n, s in sorted(found.items(), key=lambda x: -x[1])[:k]] for found in results]


def _rescored(model, chars: str, results: list[dict[str, float]], holes_of: list[dict[str, list[int]]],
              radius: int, weight: float, beam: int) -> list[dict[str, float]]:
    """Each pattern's best `beam` candidates, scored + weight x their pseudo-log-likelihood around
    the holes."""
    best = [sorted(found.items(), key=lambda x: -x[1])[:beam] for found in results]
    names, where = [], []
    for which, cands in enumerate(best):
        for name, _ in cands:
            holes = holes_of[which][name]
            names.append(name)
            where.append(list(range(max(0, holes[0] - radius), min(len(name), holes[-1] + radius + 1))))
    pll = iter(pseudo_log_likelihood(model, chars, names, where))
    return [{name: sc + weight * next(pll) for name, sc in cands} for cands in best]


@torch.no_grad()
def pseudo_log_likelihood(model, chars: str, names: list[str], positions: list[list[int]],
                          batch_size: int = 512) -> list[float]:
    """For each name, the sum over its `positions` q of log P(name[q] | the name with only q
    hidden), each a one-character span read by the model. An encoder whose states never read the
    span's own characters (the cloze towers) scores all of a name's positions from one pass over
    the name as it is; any other gets one row per position, with that character masked."""
    model.eval()
    index = _char_index(chars)
    one_pass = not reads_own_character(model)
    rows = [(i, [q]) for i, qs in enumerate(positions) for q in qs] if not one_pass else list(enumerate(positions))
    dev = next(model.parameters()).device
    out = [0.0] * len(names)
    step = max(1, batch_size // max(1, max((len(q) for _, q in rows), default=1))) if one_pass else batch_size
    for b in range(0, len(rows), step):
        chunk = rows[b: b + step]
        texts = [names[i] for i, _ in chunk]
        holes = [[j in qs and not one_pass for j in range(len(t))] for t, (_, qs) in zip(texts, chunk)]
        cps, idx, att, _ = _encode(texts, holes, chars)
        spans = torch.tensor([(r, 1 + q, 1) for r, (_, qs) in enumerate(chunk) for q in qs], dtype=torch.long)
        gold = torch.tensor([[index.get(names[i][q], UNK)] for i, qs in chunk for q in qs], device=dev)
        hidden = model.encode(cps.to(dev), idx.to(dev), att.to(dev))
        logits = model.head(hidden, spans.to(dev), gold, input_idx=idx.to(dev))
        lp = iter(logits[:, 0].float().log_softmax(-1).gather(1, gold).squeeze(1).tolist())
        for i, qs in chunk:
            out[i] += sum(next(lp) for _ in qs)
    return out


def build_encoder(arch: str, encoder_config: dict):
    """The encoder of a saved model from its own config: CANINE or mlmkit's scratch encoder."""
    if arch == "canine":
        return CanineCharEncoder(config=dict(encoder_config))
    return build_scratch_encoder(**encoder_config)


class MlmkitCharConfig(PretrainedConfig):
    """What rebuilds the model: the encoder's architecture and config, the span head's arguments,
    the alphabet (characters after the specials PAD CLS SEP MASK UNK) and the pattern limits."""

    model_type = "mlmkit_char"

    def __init__(self, encoder_arch: str = "scratch", encoder_config: Optional[dict] = None,
                 head_config: Optional[dict] = None, alphabet: str = "", max_chars: int = 64,
                 max_span: int = 8, mean_span: float = 3.0, **kwargs):
        self.encoder_arch = encoder_arch
        self.encoder_config = encoder_config or {}
        self.head_config = head_config or {}
        self.alphabet = alphabet
        self.max_chars = max_chars  # "max_length" is a generation setting to transformers
        self.max_span = max_span
        self.mean_span = mean_span
        super().__init__(**kwargs)


class MlmkitCharForMaskedLM(PreTrainedModel):
    """Character encoder + span head, as trained by mlmkit; `fill` fills a pattern."""

    config_class = MlmkitCharConfig
    base_model_prefix = "encoder"

    def __init__(self, config: MlmkitCharConfig):
        super().__init__(config)
        self.encoder = build_encoder(config.encoder_arch, config.encoder_config)
        self.head = build_head(**config.head_config)
        self.post_init()

    def _init_weights(self, module):  # weights come from the file; nothing to initialise
        pass

    def encode(self, input_ids, input_idx, attention_mask):
        if self.encoder.uses_code_points:
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        return self.encoder(input_idx, attention_mask)

    def forward(self, input_ids, input_idx, attention_mask, spans=None, targets=None):
        """Per-character hidden states; with `spans` (S, 3) and `targets`, the head's output."""
        hidden = self.encode(input_ids, input_idx, attention_mask)
        return hidden if spans is None else self.head(hidden, spans, targets, input_idx)

    def fill(self, pattern: str, top_k: int = 5, beam: Optional[int] = None,
             rescore: Rescore = "auto") -> list[tuple[str, float]]:
        """Fill the holes of `pattern` (module docstring): the best `top_k` (name, log-probability);
        `rescore` = R re-ranks by the pseudo-log-likelihood around the holes (None: off; "auto":
        as `default_rescore`; `fill_patterns`)."""
        c = self.config
        return fill_pattern(self, c.alphabet, pattern, max_span=c.max_span, mean_span=c.mean_span,
                            max_length=c.max_chars, k=top_k, beam=beam, rescore=rescore)
