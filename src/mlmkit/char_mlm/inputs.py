"""What the character model takes as input, shared by mlmkit's data pipeline and the portable
model (`portable.py`, exported with the model so that it loads without mlmkit; so this file imports
nothing from mlmkit): the special symbols, names encoded as ``[CLS] chars [SEP] PAD...`` rows,
and span tables.

Alphabet indices: PAD 0, CLS 1, SEP 2, MASK 3, UNK 4, then one per character. The specials' code
points are CANINE's (PAD 0, CLS U+E000, SEP U+E001, MASK U+E003); UNK's is only for display (the
CANINE encoder sees the real code point, the scratch encoder the UNK index).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

SPECIAL_NAMES = ("PAD", "CLS", "SEP", "MASK", "UNK")
PAD, CLS, SEP, MASK, UNK = range(5)
PAD_CP, CLS_CP, SEP_CP, MASK_CP, UNK_CP = 0, 0xE000, 0xE001, 0xE003, 0xFFFD
SPECIAL_CPS = (PAD_CP, CLS_CP, SEP_CP, MASK_CP, UNK_CP)


def encode_names(names: Sequence[str], encode: Callable[[str], list[int]]):
    """(code points, alphabet indices, attention mask), each (B, longest + 2): [CLS] chars [SEP]
    PAD...; `encode` maps a string to alphabet indices. Built with one scatter per tensor, not a
    Python loop per character."""
    B = len(names)
    L = max((len(d) for d in names), default=0) + 2
    cps = torch.zeros((B, L), dtype=torch.long)
    idx = torch.zeros((B, L), dtype=torch.long)
    att = torch.zeros((B, L), dtype=torch.long)
    flat_cp: list[int] = []
    flat_ix: list[int] = []
    rows: list[int] = []
    cols: list[int] = []
    for i, d in enumerate(names):
        n = len(d)
        flat_cp.extend(map(ord, d))
        flat_ix.extend(encode(d))
        rows.extend([i] * n)
        cols.extend(range(1, n + 1))
        att[i, : n + 2] = 1
        cps[i, 0], cps[i, n + 1] = CLS_CP, SEP_CP
        idx[i, 0], idx[i, n + 1] = CLS, SEP
    if rows:
        r, c = torch.tensor(rows), torch.tensor(cols)
        cps[r, c] = torch.tensor(flat_cp)
        idx[r, c] = torch.tensor(flat_ix)
    return cps, idx, att


def spans_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """(S, 3) table (row, start, length) of the maximal runs of True in `mask` (B, L)."""
    m = mask.to(torch.int8)
    prev = torch.nn.functional.pad(m, (1, 0))[:, :-1]
    nxt = torch.nn.functional.pad(m, (0, 1))[:, 1:]
    starts = (m == 1) & (prev == 0)
    ends = (m == 1) & (nxt == 0)
    s_idx = starts.nonzero()  # row-major order
    e_idx = ends.nonzero()
    length = e_idx[:, 1] - s_idx[:, 1] + 1
    return torch.stack([s_idx[:, 0], s_idx[:, 1], length], dim=1)


def span_gather_index(spans: torch.Tensor, seq_len: int, max_len: Optional[int] = None):
    """Flat indices into a (B*L) view for every character of every span.

    Returns (index (S, Lmax) long, valid (S, Lmax) bool). Padding slots index position 0 of
    the span's row (harmless; excluded by `valid`)."""
    S = spans.shape[0]
    lmax = int(spans[:, 2].max().item()) if S else 1
    if max_len is not None:
        lmax = max(lmax, max_len)
    t = torch.arange(lmax, device=spans.device)
    valid = t[None, :] < spans[:, 2:3]
    pos = spans[:, 1:2] + t[None, :]
    index = spans[:, 0:1] * seq_len + torch.where(valid, pos, torch.zeros_like(pos))
    return index, valid
