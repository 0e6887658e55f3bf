"""Vectorised character-span masking (CANINE-C style).

`mask_spans` works on a whole batch with tensor ops only (no Python loop over rows, spans or
characters) and is deterministic for a given `torch.Generator`.

Unaligned spans (``align="none"``): for a row with ``n`` maskable characters the number of spans is
``k = stochastic_round(rate * n / E[len])`` (so the expected masked fraction is ``rate``), span
lengths are geometric with mean ``mean_span`` clipped to ``max_span`` (``E[len]`` is the mean of the
clipped distribution), and the ``k`` spans are laid out uniformly at random, never overlapping and
never touching (at least one unmasked character between two spans), so every span is one
maximal run of masked characters. ``ensure_one_span`` gives every row with maskable characters at
least one span (useful for short domains; it raises the effective rate on them).

Aligned spans (``align="labels"`` or ``"parts"``): the segments between separators (``.`` for
labels, ``.`` and ``-`` for parts) are masked whole, each with probability ``rate``; a segment
longer than ``max_span`` is masked on a random window of ``max_span`` characters.

Replacement (CANINE-C): each span is replaced by MASK with probability ``mask_fraction`` (0.9) and left
unchanged otherwise (0.1); no random characters. Specials and padding are never masked.


`make_batch` turns a list of names into a masked training batch with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ..engine.draws import uniforms
from ..engine.task import Batch
from .data import Alphabet
from .inputs import encode_names, span_gather_index, spans_from_mask  # noqa: F401 (re-exported)


@dataclass
class SpanMaskResult:
    masked_ids: torch.Tensor  # (B, L) inputs with MASK written into replaced spans
    mask: torch.Tensor  # (B, L) bool: positions to predict (replaced and unchanged spans)
    spans: torch.Tensor  # (S, 3) long: (row, start, length), sorted by row then start
    replaced: torch.Tensor  # (S,) bool: span replaced by MASK (False: left unchanged)


class Draws:
    """The uniform draws of one masking call: from a generator over the whole batch, or
    counter-based from one key per row (`engine.draws`), so that a row's spans depend on that row
    alone -- the same wherever it is collated (any batch, any rank). `stream` numbers the uses."""

    def __init__(self, generator: Optional[torch.Generator] = None, keys: Optional[torch.Tensor] = None):
        self.generator, self.keys = generator, keys

    def rand(self, stream: int, rows: int, cols: int, device=None) -> torch.Tensor:
        """(rows, cols) uniforms; `rows` is the batch size."""
        if self.keys is None:
            return torch.rand((rows, cols), generator=self.generator, device=device)
        return uniforms(self.keys, stream, cols).to(device=device, dtype=torch.float32)

    def per_span(self, stream: int, spans: torch.Tensor, rows: int) -> torch.Tensor:
        """One uniform per span (row, start, length): the row's j-th span reads its draw j."""
        S = spans.shape[0]
        if self.keys is None:
            return torch.rand(S, generator=self.generator, device=spans.device)
        row = spans[:, 0].contiguous()
        first = torch.searchsorted(row, torch.arange(rows, device=spans.device))  # spans sorted by row
        ordinal = torch.arange(S, device=spans.device) - first[row]
        width = int(ordinal.max()) + 1 if S else 1
        return self.rand(stream, rows, width, spans.device)[row, ordinal]


def clipped_geometric_mean(mean_span: float, max_span: int) -> float:
    p = 1.0 / mean_span
    return (1.0 - (1.0 - p) ** max_span) / p


def geometric_lengths(shape, mean_span: float, max_span: int, draws: Draws, device=None) -> torch.Tensor:
    """Geometric(1/mean) lengths >= 1, clipped to max_span; `shape` is (rows, n)."""
    p = 1.0 / mean_span
    if p >= 1.0:
        return torch.ones(shape, dtype=torch.long, device=device)
    u = draws.rand(2, shape[0], shape[1], device).clamp_min(1e-12)
    lengths = torch.floor(torch.log(u) / math.log1p(-p)).long() + 1
    return lengths.clamp_(1, max_span)




def _random_layout(maskable: torch.Tensor, rate: float, mean_span: float, max_span: int,
                   ensure_one: bool, draws: Draws) -> torch.Tensor:
    """Boolean mask of non-touching geometric spans laid out over each row's maskable run.

    Assumes the maskable positions of a row are contiguous (true for [CLS] text [SEP] pad)."""
    B, L = maskable.shape
    dev = maskable.device
    n = maskable.sum(1)  # (B,)
    first = torch.where(n > 0, maskable.float().argmax(1), torch.zeros_like(n))
    e_len = clipped_geometric_mean(mean_span, max_span)
    expected = rate * n.float() / e_len
    k = torch.floor(expected + draws.rand(1, B, 1, dev)[:, 0]).long()
    if ensure_one:
        k = torch.where(n > 0, k.clamp_min(1), k)
    k_max = int(k.max().item()) if B else 0
    if k_max == 0:
        return torch.zeros_like(maskable)
    lengths = geometric_lengths((B, k_max), mean_span, max_span, draws, dev)
    col = torch.arange(k_max, device=dev)
    active = col[None, :] < k[:, None]
    lengths = lengths * active
    # fit: drop spans (from the last) while total + gaps exceed n
    total = lengths.cumsum(1) + (col[None, :]).clamp_min(0) * active  # masked + forced gaps up to j
    fits = (total <= n[:, None]) & active
    # keep a prefix only (cumulative fits)
    fits = fits.long().cumprod(1).bool()
    # a single span longer than the row: clip it to n
    none_fit = (~fits[:, 0]) & (k > 0) & (n > 0)
    lengths[:, 0] = torch.where(none_fit, torch.minimum(lengths[:, 0], n), lengths[:, 0])
    fits[:, 0] |= none_fit
    lengths = lengths * fits
    k = fits.sum(1)
    M = lengths.sum(1)
    free = (n - M - (k - 1).clamp_min(0)).clamp_min(0)  # unmasked chars to distribute in k+1 gaps
    # stars and bars: choose k slots among free + k, uniformly
    slots = free + k
    s_max = int(slots.max().item())
    keys = draws.rand(3, B, max(s_max, 1), dev)
    slot_col = torch.arange(max(s_max, 1), device=dev)
    keys = torch.where(slot_col[None, :] < slots[:, None], keys, torch.full_like(keys, 2.0))
    chosen = keys.argsort(1)[:, :k_max]
    chosen = torch.where(col[None, :] < k[:, None], chosen, torch.full_like(chosen, 1 << 30))
    chosen = chosen.sort(1).values  # the first k columns of a row are its sorted slots
    cum_before = lengths.cumsum(1) - lengths
    starts = first[:, None] + chosen + cum_before  # c_j + lengths before j (gaps of >=1 built in)
    valid = col[None, :] < k[:, None]
    starts = torch.where(valid, starts, torch.full_like(starts, L + 1))
    ends = starts + lengths
    # difference array via scatter_add: +1 at start, -1 at end
    diff = torch.zeros((B, L + 2 + max_span + 1), dtype=torch.long, device=dev)
    diff.scatter_add_(1, starts.clamp_max(diff.shape[1] - 1), valid.long())
    diff.scatter_add_(1, ends.clamp_max(diff.shape[1] - 1), -valid.long())
    covered = diff.cumsum(1)[:, :L] > 0
    return covered & maskable


def _aligned_layout(maskable: torch.Tensor, separators: torch.Tensor, rate: float, max_span: int,
                    ensure_one: bool, draws: Draws) -> torch.Tensor:
    B, L = maskable.shape
    dev = maskable.device
    chars = maskable & ~separators
    # segment id: increments at every separator or non-maskable position
    brk = (~chars).long()
    seg = brk.cumsum(1)  # positions of one segment share an id (ids < L + 1)
    n_seg_ids = L + 1
    flat = (torch.arange(B, device=dev)[:, None] * n_seg_ids + seg)  # (B, L)
    seg_len = torch.zeros(B * n_seg_ids, dtype=torch.long, device=dev)
    seg_len.scatter_add_(0, flat[chars], torch.ones_like(flat[chars]))
    seg_start = torch.full((B * n_seg_ids,), L, dtype=torch.long, device=dev)
    posgrid = torch.arange(L, device=dev).expand(B, L)
    seg_start.scatter_reduce_(0, flat[chars], posgrid[chars], reduce="amin")
    exists = seg_len > 0
    pick = (draws.rand(4, B, n_seg_ids, dev).reshape(-1) < rate) & exists
    if ensure_one:
        has_any = pick.view(B, n_seg_ids).any(1)
        score = draws.rand(5, B, n_seg_ids, dev).reshape(-1) * exists
        best = score.view(B, n_seg_ids).argmax(1)
        row_has_seg = exists.view(B, n_seg_ids).any(1)
        force = (~has_any) & row_has_seg
        idx = torch.arange(B, device=dev) * n_seg_ids + best
        pick[idx[force]] = True
    # window of at most max_span characters inside long segments
    extra = (seg_len - max_span).clamp_min(0)
    off = torch.floor(draws.rand(6, B, n_seg_ids, dev).reshape(-1) * (extra + 1).float()).long()
    win_lo = seg_start + off
    win_hi = win_lo + seg_len.clamp_max(max_span)
    lo, hi, pk = win_lo[flat], win_hi[flat], pick[flat]
    return chars & pk & (posgrid >= lo) & (posgrid < hi)


def mask_spans(
    ids: torch.Tensor,
    maskable: torch.Tensor,
    mask_value: int,
    rate: float = 0.15,
    mean_span: float = 3.0,
    max_span: int = 8,
    mask_fraction: float = 0.9,
    align: str = "none",
    separators: Optional[torch.Tensor] = None,
    ensure_one_span: bool = True,
    generator: Optional[torch.Generator] = None,
    keys: Optional[torch.Tensor] = None,
    extra_ids: Optional[list[tuple[torch.Tensor, int]]] = None,
) -> SpanMaskResult:
    """Mask character spans of `ids` (B, L) where `maskable` (B, L) is True.

    `mask_value` is written into replaced spans. `extra_ids` are further (tensor, mask value)
    pairs masked at exactly the same places (e.g. code points and alphabet indices of one batch);
    their masked copies are returned in `result.extra`. The draws come from `keys` (one per row:
    each row's spans then depend on that row alone) or, without keys, from `generator`.
    """
    draws = Draws(generator, keys)
    if align == "none":
        mask = _random_layout(maskable, rate, mean_span, max_span, ensure_one_span, draws)
    elif align in ("labels", "parts"):
        if separators is None:
            raise ValueError("aligned masking needs `separators`")
        mask = _aligned_layout(maskable, separators, rate, max_span, ensure_one_span, draws)
    else:
        raise ValueError(f"align must be none|labels|parts, got {align!r}")
    spans = spans_from_mask(mask)
    S = spans.shape[0]
    replaced = draws.per_span(7, spans, ids.shape[0]) < mask_fraction
    # broadcast span decision to positions
    span_of = torch.zeros_like(ids, dtype=torch.long)
    if S:
        starts_flat = torch.zeros(ids.numel() + 1, dtype=torch.long, device=ids.device)
        L = ids.shape[1]
        starts_flat[spans[:, 0] * L + spans[:, 1]] = torch.arange(1, S + 1, device=ids.device)
        # running span id along masked runs: cummax of start markers, zero outside masks
        sid = starts_flat[:-1].view_as(ids).cummax(1).values
        span_of = torch.where(mask, sid, torch.zeros_like(sid))
    rep_pos = mask & torch.cat([torch.zeros(1, dtype=torch.bool, device=ids.device), replaced])[span_of]
    masked = ids.masked_fill(rep_pos, mask_value)
    res = SpanMaskResult(masked, mask, spans, replaced)
    res.extra = [t.masked_fill(rep_pos, v) for t, v in (extra_ids or [])]  # type: ignore[attr-defined]
    return res




def span_targets(ids: torch.Tensor, spans: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """(S, Lmax) gold ids of every span character, `ignore_index` after a span's end."""
    index, valid = span_gather_index(spans, ids.shape[1])
    gold = ids.reshape(-1)[index]
    return gold.masked_fill(~valid, ignore_index)


def window_spans(clean_idx: torch.Tensor, longest: int, first_char: int) -> torch.Tensor:
    """(S, 3) the targets of a cloze encoder, which can predict any window of a name from the same
    forward pass: every character of every row of `clean_idx` (alphabet indices; a character is
    an index >= `first_char`) starts one window of 1..`longest` characters. Lengths cycle along
    the name from an offset that depends on the row's characters alone (not on its place in the
    batch), and stop at the name's end. One window per start rather than all `longest` of them:
    the span head's cost grows with the windows, and neighbouring starts already cover the
    lengths. Row-major order."""
    is_char = clean_idx >= first_char
    B, L = clean_idx.shape
    row, start = is_char.nonzero(as_tuple=True)
    if row.numel() == 0:
        return clean_idx.new_zeros((0, 3))
    # characters from each position up to the next non-character (SEP, or an UNK inside)
    pos = torch.arange(L, device=clean_idx.device).expand(B, L)
    stop = torch.where(is_char, torch.full_like(pos, L), pos).flip(1).cummin(1).values.flip(1)
    run = stop - pos
    offset = (clean_idx * is_char).sum(1)  # a function of the row's content
    length = (start + offset[row]) % longest + 1
    length = torch.minimum(length, run[row, start])
    return torch.stack([row, start, length], 1)


# --------------------------------------------------------------------------------- batches
def encode_domains(domains: Sequence[str], alphabet: Alphabet):
    """Tensors for a list of names: [CLS] chars [SEP] PAD...

    Returns code points, alphabet indices, attention mask, maskable and separator flags."""
    cps, idx, att = encode_names(domains, alphabet.encode)
    maskable = (att == 1) & (idx != Alphabet.CLS) & (idx != Alphabet.SEP)
    return cps, idx, att, maskable, (cps == ord(".")), (cps == ord("-"))


def make_batch(domains: Sequence[str], alphabet: Alphabet, mcfg, keys: torch.Tensor) -> Batch:
    """Names -> [CLS] chars [SEP] rows with character spans masked as `mcfg` (the masking
    section) says; `keys` (one per name, `engine.draws.example_keys`) decide each name's spans."""
    cps, idx, att, maskable, dots, hyph = encode_domains(domains, alphabet)
    seps = dots if mcfg.align == "labels" else (dots | hyph)
    res = mask_spans(idx, maskable, Alphabet.MASK, rate=mcfg.rate, mean_span=mcfg.mean_span,
                     max_span=mcfg.max_span, mask_fraction=mcfg.mask_fraction, align=mcfg.align,
                     separators=seps, ensure_one_span=mcfg.ensure_one_span, keys=keys,
                     extra_ids=[(cps, Alphabet.SPECIAL_CPS[Alphabet.MASK])])
    return {
        "input_ids": res.extra[0],
        "input_idx": res.masked_ids,
        "attention_mask": att,
        "spans": res.spans,
        "targets": span_targets(idx, res.spans),
        "clean_idx": idx,  # the unmasked rows (a dense head memory learns from every character)
    }
