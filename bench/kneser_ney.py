"""Interpolated modified Kneser-Ney character n-gram over whole strings (BOS name EOS), in numpy.

Chen & Goodman's interpolated modified KN, with KenLM's treatment of the sentence start:

    p_n(w | h) = max(a_n(hw) - D_n(a_n(hw)), 0) / A_n(h)  +  gamma_n(h) p_{n-1}(w | h')
    gamma_n(h) = (D_n1 N1(h.) + D_n2 N2(h.) + D_n3+ N3+(h.)) / A_n(h),   A_n(h) = sum_w a_n(hw)

h' is h without its first symbol, p_0 is uniform over the predicted vocabulary (the alphabet,
UNK and EOS; BOS is never predicted) and an unseen context h passes p_{n-1} through. a_n are the
adjusted counts: raw counts at the highest order and for n-grams that start with BOS (nothing
precedes BOS), continuation counts N1+(. g) (distinct left extensions) otherwise. The discounts come
from the count-of-counts of a_n: Y = n1/(n1 + 2 n2), D_k = k - (k+1) Y n_{k+1}/n_k (KenLM's
fallback 0.5, 1, 1.5 where that leaves (0, k]).

An n-gram is an int64 code: its symbols (1..B-1, most distant first) as digits in base B, so codes
of different lengths never collide. Each order keeps its sorted codes with the discounted
numerators, and its sorted context codes with A and the gamma numerator; `logprob` looks a batch
of (context, symbol) queries up in hash indexes (`finder`), all orders at once per query.
"""

from __future__ import annotations

import numpy as np

BOS, EOS, UNK = 1, 2, 3
N_SPECIAL = 4  # 0 is "no symbol" (before the string start)


class CharKN:
    def __init__(self, chars: str, order: int):
        if order < 2:
            raise ValueError("order must be >= 2")
        self.chars, self.order = chars, order
        self.index = {c: i + N_SPECIAL for i, c in enumerate(chars)}
        self.B = len(chars) + N_SPECIAL
        if self.B ** (order + 1) >= 2**62:
            raise ValueError(f"order {order} is too high for {len(chars)} characters (int64 codes)")
        self.n_pred = len(chars) + 2  # the characters, UNK and EOS
        self.tables: list[dict] = []

    # ------------------------------------------------------------------ encoding
    def encode(self, s: str) -> list[int]:
        get = self.index.get
        return [get(c, UNK) for c in s]

    def stream(self, names) -> np.ndarray:
        """order-1 zeros, BOS, name, EOS for every name, concatenated."""
        pad = [0] * max(self.order - 1, 1)
        out: list[int] = []
        for n in names:
            out += pad
            out.append(BOS)
            out += self.encode(n)
            out.append(EOS)
        return np.asarray(out, dtype=np.int64)

    # ------------------------------------------------------------------ training
    def fit(self, names) -> "CharKN":
        T = self.stream(names)
        B = self.B
        raw_keys, raw_counts = [], []
        code, valid = T.copy(), T > 0  # 1-grams
        for n in range(1, self.order + 1):  # n-grams ending at each position
            if n > 1:
                code, valid = _shift(code) * B + T, _shift(valid) & (T > 0)
            k, c = np.unique(code[valid & (T != BOS)], return_counts=True)  # BOS is never predicted
            raw_keys.append(k)
            raw_counts.append(c)
        self.tables = [self._table(n, raw_keys, raw_counts) for n in range(1, self.order + 1)]
        return self

    def _adjusted(self, n: int, raw_keys, raw_counts) -> np.ndarray:
        keys, raw = raw_keys[n - 1], raw_counts[n - 1]
        if n == self.order:
            return raw
        suffix = raw_keys[n] % (self.B ** n)  # each distinct (n+1)-gram gives its suffix one left extension
        sk, sc = np.unique(suffix, return_counts=True)
        j = np.searchsorted(sk, keys).clip(max=len(sk) - 1)
        cont = np.where(sk[j] == keys, sc[j], 0)
        starts_bos = keys // (self.B ** (n - 1)) == BOS
        return np.where(starts_bos, raw, cont)

    def _table(self, n: int, raw_keys, raw_counts) -> dict:
        keys = raw_keys[n - 1]
        a = self._adjusted(n, raw_keys, raw_counts)
        D = discounts(a)
        dk = np.minimum(a, 3)
        num = np.maximum(a - D[dk], 0.0)
        ctx = keys // self.B
        ctx_keys, first = np.unique(ctx, return_index=True)
        total = np.add.reduceat(a.astype(np.float64), first)
        gamma = np.add.reduceat(D[dk], first)  # sum of the discounts taken = D1 N1 + D2 N2 + D3 N3+
        return {"keys": keys, "num": num, "ctx": ctx_keys, "total": total, "gamma": gamma, "D": D,
                "key_find": finder(keys), "ctx_find": finder(ctx_keys)}

    # ------------------------------------------------------------------ queries
    def logprob(self, ctx: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Natural-log p(w | ctx) for a batch: `ctx` (Q, order-1) symbol codes, nearest last, 0
        where there is none (before BOS); `w` (Q,) symbol codes."""
        Q = len(w)
        p = np.full(Q, 1.0 / self.n_pred)
        h = np.zeros(Q, dtype=np.int64)
        avail = np.ones(Q, dtype=bool)
        for n, t in enumerate(self.tables, start=1):
            if n > 1:
                s = ctx[:, -(n - 1)]
                avail &= s > 0
                if not avail.any():
                    break
                h = np.where(avail, s * self.B ** (n - 2) + h, 0)
            j = t["ctx_find"](h)
            seen = avail & (j >= 0)
            k = t["key_find"](h * self.B + w)
            num = np.where(k >= 0, t["num"][k], 0.0)
            total = t["total"][j]
            p = np.where(seen, (num + t["gamma"][j] * p) / np.where(seen, total, 1.0), p)
        return np.log(p)

    def score_rows(self, seqs: np.ndarray, positions) -> np.ndarray:
        """Sum over `positions` of log p(seqs[:, p] | the order-1 symbols before it), per row.
        Rows are padded on the left with order-1 zeros before BOS. Identical windows (common
        when rows differ in a few symbols) are looked up once."""
        m = self.order - 1
        pos = np.asarray(list(positions), dtype=np.int64)
        code = np.zeros((len(seqs), len(pos)), dtype=np.int64)
        for j in range(-m, 1):  # the window's symbols, farthest first
            code = code * self.B + seqs[:, pos + j]
        uniq, first, inverse = np.unique(code.ravel(), return_index=True, return_inverse=True)
        row, at = first // len(pos), pos[first % len(pos)]
        ctx = seqs[row[:, None], at[:, None] + np.arange(-m, 0)]
        lp = self.logprob(ctx, seqs[row, at])
        return lp[inverse].reshape(len(seqs), len(pos)).sum(1)

    def string_logprob(self, names: list[str]) -> np.ndarray:
        """log p(name EOS | BOS) for every name (natural log)."""
        m = self.order - 1
        out = np.zeros(len(names))
        by_len: dict[int, list[int]] = {}
        for i, s in enumerate(names):
            by_len.setdefault(len(s), []).append(i)
        for L, rows in by_len.items():
            seqs = np.array([[0] * m + [BOS] + self.encode(names[i]) + [EOS] for i in rows], dtype=np.int64)
            out[rows] = self.score_rows(seqs, range(m + 1, m + L + 2))
        return out

    def span_scores(self, left: str, right: str, cands: np.ndarray) -> np.ndarray:
        """log p(left + c + right EOS | BOS) up to a constant shared by all candidates `cands`
        (C, L) symbol codes: the sum over the positions whose window holds a span character."""
        m = self.order - 1
        head = ([0] * m + [BOS] + self.encode(left))[-m:]
        tail = (self.encode(right) + [EOS])[:m]
        C, L = cands.shape
        seqs = np.concatenate([np.broadcast_to(np.array(head, np.int64), (C, m)), cands,
                               np.broadcast_to(np.array(tail, np.int64), (C, len(tail)))], 1)
        return self.score_rows(seqs, range(m, m + L + len(tail)))

    def candidates(self, L: int) -> np.ndarray:
        """Every string of L characters of the alphabet (C, L) as symbol codes."""
        syms = np.arange(N_SPECIAL, self.B, dtype=np.int64)
        grids = np.meshgrid(*([syms] * L), indexing="ij")
        return np.stack([g.ravel() for g in grids], 1)

    def decode(self, codes) -> str:
        return "".join(self.chars[int(c) - N_SPECIAL] if c >= N_SPECIAL else "\ufffd" for c in codes)

    def predicted_symbols(self) -> np.ndarray:
        return np.array([EOS, UNK] + [self.index[c] for c in self.chars], dtype=np.int64)


def discounts(a: np.ndarray) -> np.ndarray:
    """[0, D1, D2, D3+] from the count-of-counts of adjusted counts `a` (Chen & Goodman). Where
    the estimate is out of range (0, k] -- low orders of a small alphabet, whose continuation
    counts are not Zipf-like -- KenLM's fallback discounts 0.5, 1, 1.5 (its --discount_fallback)."""
    n = [int((a == k).sum()) for k in range(1, 5)]
    fallback = np.array([0.0, 0.5, 1.0, 1.5])
    if min(n) == 0:
        return fallback
    Y = n[0] / (n[0] + 2 * n[1])
    D = [k - (k + 1) * Y * n[k] / n[k - 1] for k in (1, 2, 3)]
    if any(not 0 < d <= k for k, d in zip((1, 2, 3), D)):
        return fallback
    return np.array([0.0, *D])


def finder(keys: np.ndarray):
    """A function giving the index of each query in the sorted unique `keys`, -1 if absent: a
    pandas hash index when pandas is there (several times faster on big tables), else searchsorted."""
    try:
        import pandas as pd
    except ImportError:
        pd = None
    if pd is not None:
        index = pd.Index(keys)
        return index.get_indexer

    def find(q: np.ndarray) -> np.ndarray:
        j = np.searchsorted(keys, q).clip(max=len(keys) - 1)
        return np.where(keys[j] == q, j, -1)

    return find


def _shift(x: np.ndarray) -> np.ndarray:
    """x moved one position right (the first slot zero / False)."""
    out = np.zeros_like(x)
    out[1:] = x[:-1]
    return out
