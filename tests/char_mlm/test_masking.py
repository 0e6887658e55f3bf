"""Statistics and invariants of the vectorised span masking."""

from __future__ import annotations

import pytest
import torch

from mlmkit.char_mlm.masking import clipped_geometric_mean, mask_spans, span_targets

MASK = 3




def _rows(B=4000, L=34, lo=10, hi=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = torch.randint(lo, hi + 1, (B,), generator=g)
    pos = torch.arange(L)
    maskable = (pos[None] >= 1) & (pos[None] <= n[:, None])  # [CLS] at 0, [SEP] after, padding
    ids = torch.randint(5, 40, (B, L), generator=g) * maskable
    ids[:, 0] = 1
    ids[torch.arange(B), n + 1] = 2
    return ids, maskable


def test_rate_span_length_and_split():
    ids, maskable = _rows()
    g = torch.Generator().manual_seed(1)
    r = mask_spans(ids, maskable, MASK, rate=0.15, mean_span=3, max_span=8, ensure_one_span=False, generator=g)
    rate = r.mask.sum().item() / maskable.sum().item()
    assert abs(rate - 0.15) < 0.01, rate
    lengths = r.spans[:, 2].float()
    assert abs(lengths.mean().item() - clipped_geometric_mean(3, 8)) < 0.15
    assert lengths.max().item() <= 8 and lengths.min().item() >= 1
    assert abs(r.replaced.float().mean().item() - 0.9) < 0.03
    # 90/10 split: replaced spans carry MASK, the others are unchanged; nothing random
    masked_pos = r.masked_ids == MASK
    assert torch.equal(masked_pos & r.mask, masked_pos)
    assert torch.equal(r.masked_ids[~masked_pos], ids[~masked_pos])
    assert abs(masked_pos.sum().item() / r.mask.sum().item() - 0.9) < 0.04


def test_specials_and_padding_never_masked():
    ids, maskable = _rows(B=2000)
    for align in ("none", "parts"):
        seps = (ids == 7) & maskable
        r = mask_spans(ids, maskable, MASK, rate=0.4, align=align, separators=seps,
                       generator=torch.Generator().manual_seed(2))
        assert not (r.mask & ~maskable).any()
        assert (r.masked_ids[:, 0] == 1).all()
        if align == "parts":
            assert not (r.mask & seps).any()


def test_span_table_matches_mask_and_spans_do_not_touch():
    ids, maskable = _rows(B=500)
    r = mask_spans(ids, maskable, MASK, rate=0.3, generator=torch.Generator().manual_seed(3))
    rebuilt = torch.zeros_like(r.mask)
    for row, start, length in r.spans.tolist():
        assert not rebuilt[row, start - 1] and not rebuilt[row, start:start + length].any()
        rebuilt[row, start:start + length] = True
    assert torch.equal(rebuilt, r.mask)
    tg = span_targets(ids, r.spans)
    for s, (row, start, length) in enumerate(r.spans[:50].tolist()):
        assert tg[s, :length].tolist() == ids[row, start:start + length].tolist()
        assert (tg[s, length:] == -100).all()


def test_ensure_one_span_and_determinism():
    ids, maskable = _rows(B=300, lo=3, hi=8)
    a = mask_spans(ids, maskable, MASK, generator=torch.Generator().manual_seed(5))
    b = mask_spans(ids, maskable, MASK, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.masked_ids, b.masked_ids) and torch.equal(a.spans, b.spans)
    assert a.mask.any(1).all()


def test_aligned_masks_whole_segments():
    # "abc-de.fgh": segments abc / de / fgh, separators '-' (9) and '.' (8)
    row = torch.tensor([1, 20, 21, 22, 9, 23, 24, 8, 25, 26, 27, 2])
    ids = row.repeat(400, 1)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, 0] = maskable[:, -1] = False
    seps = (ids == 8) | (ids == 9)
    r = mask_spans(ids, maskable, MASK, rate=0.3, align="parts", separators=seps, max_span=8,
                   generator=torch.Generator().manual_seed(0))
    segs = {(1, 3), (5, 2), (8, 3)}
    assert {(s, l) for _, s, l in r.spans.tolist()} <= segs
    frac = r.mask.sum().item() / (maskable & ~seps).sum().item()
    assert 0.25 < frac < 0.45  # 0.3 plus the ensure-one-span rows


def test_extra_ids_masked_identically():
    ids, maskable = _rows(B=100)
    cps = ids + 1000
    r = mask_spans(ids, maskable, MASK, generator=torch.Generator().manual_seed(9),
                   extra_ids=[(cps, 0xE003)])
    assert torch.equal(r.extra[0] == 0xE003, r.masked_ids == MASK)


def test_cloze_windows_start_at_every_character_and_never_cross_a_non_character():
    """One window per character; lengths cycle 1..n along the name from an offset that depends
    on the row's content only (the same row anywhere in any batch gets the same windows); a
    window stops at [SEP] or an UNK (index 4) inside the name."""
    from mlmkit.char_mlm.masking import window_spans

    ids, _ = _rows(B=200, seed=3)
    ids[5, 4] = 4  # an UNK inside row 5
    w = window_spans(ids, 3, 5)
    is_char = ids >= 5
    assert w.shape[0] == int(is_char.sum())
    assert torch.equal(w[:, :2], is_char.nonzero())
    row, start, n = w.unbind(1)
    assert int(n.min()) == 1 and int(n.max()) == 3
    for k in range(3):  # every character of the window is a character
        inside = n > k
        assert is_char[row[inside], start[inside] + k].all()
    full = (start + (ids * is_char).sum(1)[row]) % 3 + 1
    assert (n <= full).all() and (n == full).float().mean() > 0.8  # cut only at a name's end
    assert w[(row == 5) & (start == 2)][0, 2] == 2  # 3 by the cycle, cut before the UNK
    again = window_spans(ids[[7, 5]], 3, 5)  # the same rows elsewhere: the same windows
    assert torch.equal(again[again[:, 0] == 1, 1:], w[row == 5, 1:])
