"""Span prediction heads for character MLM.

`AutoregressiveSpanHead` (CANINE-C's autoregressive character loss): every masked span is predicted
left to right. Step ``t`` of a span sees the encoder output at span position ``t`` (and a summary of
the whole span's encoder outputs) plus the gold characters ``< t`` (teacher forcing). All spans of
a batch are packed into one (S, Lmax) tensor with a single gather and run through a GRU (or a
1-layer causal transformer) at once: no Python loop over spans or characters in training.
Logits for character ``t`` never depend on gold characters at ``t`` or later.

With ``ngram_buckets > 0`` the autoregressive head also reads a hashed n-gram memory
(`SpanNgramMemory`): at each step, embeddings of the n characters just left of the character
(teacher-forced inside the span) and just right of the span. The encoder sees the span as MASKs,
so only the head can look up "what follows these gold characters"; it is what a character n-gram
model does, learned, and it was the largest single gain on domain names (docs/results-char.md,
"How the preset got here").

`ParallelSpanHead`: one independent softmax per masked position (BERT style), for comparison.

Both predict over the alphabet indices (specials + the characters actually used), never over all
code points. Inference (`beam_search`) fills every span of a batch together: greedy is beam=1.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .encoders import ngram_hash_step
from .inputs import span_gather_index


def gather_span_context(hidden: torch.Tensor, spans: torch.Tensor, lmax: int | None = None):
    """(S, Lmax, D) encoder states at every span character, and the (S, Lmax) valid mask."""
    B, L, D = hidden.shape
    index, valid = span_gather_index(spans, L, lmax)
    ctx = hidden.reshape(B * L, D).index_select(0, index.reshape(-1)).view(*index.shape, D)
    return ctx, valid


class ClozeContext(nn.Module):
    """Span context for a `ClozeCharEncoder` (hidden = [fwd, bwd]): every step of span (p, n)
    reads fwd at p - 1 and bwd at p + n, states that never saw the span, plus an embedding of
    the characters still to fill (n - t). `gather_span_context` would read states at the span's
    own positions, which a cloze encoder computed from the very characters to predict."""

    def __init__(self, hidden_size: int, max_span: int):
        super().__init__()
        self.max_span = max_span
        self.left_to_fill = nn.Embedding(max_span + 1, hidden_size)

    def forward(self, hidden: torch.Tensor, spans: torch.Tensor, lmax: int | None = None):
        B, L, D2 = hidden.shape
        row, start, length = spans.unbind(1)
        lmax = max(int(length.max()) if spans.shape[0] else 1, lmax or 0)
        flat = hidden.reshape(B * L, D2)
        half = D2 // 2
        around = torch.cat([flat.index_select(0, row * L + start - 1)[:, :half],
                            flat.index_select(0, row * L + start + length)[:, half:]], -1)  # (S, D2)
        t = torch.arange(lmax, device=spans.device)
        valid = t[None] < length[:, None]
        rest = (length[:, None] - t[None]).clamp(0, self.max_span)
        return around[:, None, :] + self.left_to_fill(rest), valid


def context_rows(ids: torch.Tensor, buckets: int, first: int = 0) -> torch.Tensor:
    """Rows of a table of `buckets` rows per column for the context hashes `ids` (..., columns),
    whose last dimension holds columns first, first + 1, ...: column j's hash modulo `buckets`,
    in column j's range of rows."""
    return ids % buckets + (torch.arange(ids.shape[-1], device=ids.device) + first) * buckets


class SpanNgramMemory(nn.Module):
    """Hashed n-gram embeddings for the span head: a large, cheap memory of "what follows this
    context", the statistic a character n-gram model lives on.

    At step ``t`` of a span (the character at position p), it sums the embeddings of

    * the n characters just left of p (n = 1..max_n), teacher-forced: the gold characters earlier
      in the same span, then the masked input before the span (other spans stay MASK), and
    * the n characters just right of the span in the masked input, hashed with the distance
      ``length - t`` from p to them (clipped to ``max_dist``).

    Only positions < p of the span's own characters ever enter a hash, so the logits for character
    t never see gold characters at t or later. One bucket range per (side, order)."""

    def __init__(self, buckets: int, max_n: int, dim: int, max_dist: int = 8, drop: float = 0.0,
                 row_dim: int = 0, joint: int = 0):
        super().__init__()
        self.buckets, self.max_n, self.max_dist, self.drop = buckets, max_n, max_dist, drop
        self.joint = min(joint, max_n)  # joint contexts: n left and n right together, n = 1..joint
        self.columns = 2 * max_n + self.joint
        # narrow rows + one projection: more buckets (fewer collisions) for the same memory
        self.emb = nn.Embedding(buckets * self.columns, row_dim or dim)
        nn.init.zeros_(self.emb.weight)  # a no-op at the start; frequent contexts grow first
        self.proj = nn.Linear(row_dim, dim, bias=False) if row_dim and row_dim != dim else nn.Identity()

    def windows(self, input_idx: torch.Tensor, spans: torch.Tensor, lmax: int):
        """(left (S, max_n + lmax), right (S, max_n), lengths (S,)): the masked input from max_n
        characters before each span to its end, and the max_n characters after it (PAD outside
        the row). The span's own slots in `left` (from index max_n on) are overwritten with its
        characters as they become known: gold in training, chosen ones in decoding."""
        B, L = input_idx.shape
        K = self.max_n
        row, start, length = spans[:, 0:1], spans[:, 1:2], spans[:, 2:3]
        flat = input_idx.reshape(-1)

        def take(pos):
            ok = (pos >= 0) & (pos < L)
            return torch.where(ok, flat[row * L + pos.clamp(0, L - 1)], torch.zeros_like(pos))

        left = take(start - K + torch.arange(K + lmax, device=spans.device)[None])
        right = take(start + length + torch.arange(K, device=spans.device)[None])
        return left, right, spans[:, 2]

    def ids(self, left: torch.Tensor, right: torch.Tensor, lengths: torch.Tensor, t0: int, T: int):
        """(S, T, columns) hashes (< 2^31) of the contexts of steps t0..t0+T-1; `left` must hold
        the known characters of the span before each step (slots K + t for t < the step). Columns:
        the left n-grams (n = 1..K), the right ones with the distance, then the joint ones (the
        left and right n-grams of the same n together, with the distance: "goo" + ?? + "e.co").
        A table of B buckets per column reads rows `context_rows(ids, B)`."""
        K = self.max_n
        ids, lefts, rights = [], [], []
        h = left[:, K - 1 + t0: K - 1 + t0 + T]  # the character just before p
        for n in range(1, K + 1):
            if n > 1:
                h = ngram_hash_step(h, left[:, K - n + t0: K - n + t0 + T], n)
            lefts.append(h)
            ids.append(h)
        t = torch.arange(t0, t0 + T, device=left.device)
        dist = (lengths[:, None] - t[None]).clamp(1, self.max_dist)  # (S, T)
        r = right[:, 0]
        for n in range(1, K + 1):
            if n > 1:
                r = ngram_hash_step(r, right[:, n - 1], n)
            rights.append(ngram_hash_step(r[:, None], dist, 97))
            ids.append(rights[-1])
        for n in range(1, self.joint + 1):
            ids.append(ngram_hash_step(lefts[n - 1], rights[n - 1], 131))
        return torch.stack(ids, -1)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """(S, T, dim): the summed (projected) rows of the context hashes `ids`."""
        emb = self.emb(context_rows(ids, self.buckets))  # (S, T, columns, dim)
        if self.training and self.drop > 0:
            # Drop whole look-ups: the rows memorise training names, and a model that always finds
            # its long contexts never learns to back off to short ones, as it must on new names.
            keep = torch.rand(emb.shape[:-1], device=emb.device) >= self.drop
            emb = emb * keep[..., None].to(emb.dtype)
        return self.proj(emb.sum(2))

    def features(self, left: torch.Tensor, right: torch.Tensor, lengths: torch.Tensor, t0: int, T: int):
        """(S, T, dim) for steps t0..t0+T-1 (`ids`, then `embed`)."""
        return self.embed(self.ids(left, right, lengths, t0, T))

    def dense_windows(self, idx: torch.Tensor, n_specials: int, dists=(1, 2, 3)):
        """Every character of every (unmasked) row as the first character of a span of each length
        in `dists`: (left, right, lengths, targets) shaped as `windows` gives them for one step, so
        `features(left, right, lengths, 0, 1)` hashes exactly what a real span would."""
        K, D = self.max_n, max(dists)
        row, pos = (idx >= n_specials).nonzero(as_tuple=True)
        padded = F.pad(idx, (K, K + D))  # PAD (0) outside the row, as `windows` reads it
        flat, W = padded.reshape(-1), padded.shape[1]
        base = row * W + pos  # padded[row, pos + K + j] is row position pos + j
        left = flat[base[:, None] + torch.arange(K + 1, device=idx.device)[None]]  # pos-K .. pos
        rights = [flat[base[:, None] + K + d + torch.arange(K, device=idx.device)[None]] for d in dists]
        n = row.shape[0]
        lengths = torch.tensor(dists, device=idx.device).repeat_interleave(n)
        return left.repeat(len(dists), 1), torch.cat(rights), lengths, idx[row, pos].repeat(len(dists))


class CountMemory(nn.Module):
    """Counts, per row of a hashed context (the n characters left of a character, or the n right
    of its span at a distance), of the character that followed it in the training names, filled
    in one pass before training (`count_names`); a frozen parameter, so it is saved with the model
    and never trained. The head adds a learned log-linear mixture of the contexts' smoothed
    distributions: weights from its own state and how often each context was seen. An
    SGD-trained memory row needs several sightings of its context; a count needs one, as a
    Kneser-Ney model does. In training, the name's own occurrence is taken out of its counts
    (leave-one-out), so the head learns to trust counts as much as they deserve on names it has
    not seen.

    Rows: `buckets` per column (`model.head_ngram_count_buckets`, default the memory's own), a
    byte per character: the count itself up to 63, then 64 + round(12 * log2(count / 64)) (within
    3%, saturating near 4 million). Hash collisions, not precision, limit the counts: at a byte a
    character, 16 times the rows of the float32 table fit in 4 times its bytes. Counting tallies
    exactly until `finish`, only the cells it met (a context is followed by a few characters: 2-3%
    of the cells), so a large table's tally costs a fraction of an int32 for every cell; float32
    tables of older models are converted on load."""

    EXACT, SCALE = 64, 12.0  # counts below EXACT are stored as they are

    def __init__(self, buckets: int, columns: int, vocab_size: int, hidden: int):
        super().__init__()
        self.buckets = buckets
        self.table = nn.Parameter(torch.zeros(buckets * columns, vocab_size, dtype=torch.uint8), requires_grad=False)
        # exact counts while counting (`add` ... `finish`): the cells met (flat indices, sorted,
        # distinct) and their counts, and the cells added since they were last merged
        self._cells: torch.Tensor | None = None
        self._n: torch.Tensor | None = None
        self._pending: list[torch.Tensor] = []
        self._dense: torch.Tensor | None = None  # a whole int32 tally instead, once that is smaller
        self.gate = nn.Linear(hidden, columns)
        nn.init.zeros_(self.gate.weight)
        nn.init.constant_(self.gate.bias, -2.0)  # small weights at first: every column's distribution adds up
        self.trust = nn.Parameter(torch.zeros(columns))  # per context: weight by log(1 + count)
        self.smooth = nn.Parameter(torch.zeros(columns))  # per context: add-k smoothing, k = softplus

    @classmethod
    def quantise(cls, counts: torch.Tensor) -> torch.Tensor:
        c = counts.float().clamp_min(0)
        big = torch.log2(c.clamp_min(cls.EXACT) / cls.EXACT).mul_(cls.SCALE).add_(cls.EXACT)
        return torch.where(c < cls.EXACT, c, big).round_().clamp_(0, 255).to(torch.uint8)

    @classmethod
    def counts_of(cls, q: torch.Tensor) -> torch.Tensor:
        q = q.float()
        return torch.where(q < cls.EXACT, q, ((q - cls.EXACT) / cls.SCALE).exp2_().mul_(cls.EXACT))

    PENDING = 1 << 23  # cells added before they are merged into the tally (64 MiB of indices)
    DENSE_ABOVE = 1 / 3  # a share of the cells set above which a whole int32 tally is the smaller

    @torch.no_grad()
    def add(self, ids: torch.Tensor, gold: torch.Tensor, first: int = 0, keep: torch.Tensor | None = None) -> None:
        """Count `gold` (M,) once under each of its context hashes `ids` (M, C) of columns
        first.. (into the tally); `keep` (M, C): only where true."""
        rows = context_rows(ids, self.buckets, first).reshape(-1)
        cols = gold.repeat_interleave(ids.shape[1])
        if keep is not None:
            rows, cols = rows[keep.reshape(-1)], cols[keep.reshape(-1)]
        keys = (rows * self.table.shape[1] + cols).to(self.table.device)
        if self._dense is not None:
            self._dense.view(-1).index_add_(0, keys, torch.ones_like(keys, dtype=torch.int32))
            return
        self._pending.append(keys)
        if self._cells is None or sum(map(len, self._pending)) >= self.PENDING:
            self._merge()

    def _merge(self) -> None:
        """Fold the pending cells into the tally's (cells, counts); past `DENSE_ABOVE` of the
        cells (a very large corpus), go on with a whole int32 tally: 4 bytes a cell, not 16."""
        if not self._pending:
            return
        keys, n = torch.cat(self._pending), torch.ones(sum(map(len, self._pending)), dtype=torch.int64,
                                                        device=self.table.device)
        if self._cells is not None:
            keys, n = torch.cat([self._cells, keys]), torch.cat([self._n, n])
        self._cells, inverse = torch.unique(keys, return_inverse=True)
        self._n = torch.zeros(len(self._cells), dtype=torch.int64, device=keys.device).index_add_(0, inverse, n)
        self._pending = []
        if len(self._cells) > self.DENSE_ABOVE * self.table.numel():
            self._dense, self._cells, self._n = self.tally, None, None

    @property
    def tally(self) -> torch.Tensor | None:
        """The exact counts while counting, as a whole (rows, characters) int32 table; None
        when there are none."""
        self._merge()
        if self._dense is not None or self._cells is None:
            return self._dense
        dense = torch.zeros(self.table.shape, dtype=torch.int32, device=self.table.device)
        dense.view(-1)[self._cells] = self._n.to(torch.int32)
        return dense

    @torch.no_grad()
    def all_reduce(self, sum_: Callable[[torch.Tensor], object]) -> None:
        """Sum the tally over the ranks with `sum_` (an in-place all-reduce of a whole table: a
        collective of the same size on every rank); a rank that counted nothing joins with zeros."""
        dense = self.tally
        if dense is None:
            dense = torch.zeros(self.table.shape, dtype=torch.int32, device=self.table.device)
        sum_(dense)
        self._dense, self._cells, self._n, self._pending = dense, None, None, []

    @torch.no_grad()
    def finish(self) -> None:
        """Move the tally into the table (after the ranks summed their tallies), added to what the
        table held: the cells it met, or a slice of rows at a time from a whole tally."""
        if self._cells is None and self._dense is None:
            return
        table, merge = self.table.data, bool(self.table.data.any())
        self._merge()
        if self._dense is not None:
            step = 1 << 16  # a float copy of a whole large table would need 4 bytes a count at once
            for i in range(0, table.shape[0], step):
                counts = self._dense[i: i + step].float()
                if merge:
                    counts += self.counts_of(table[i: i + step]).round_()
                table[i: i + step] = self.quantise(counts)
        elif self._cells is not None:
            flat = table.view(-1)
            counts = self._n.float()
            if merge:
                counts += self.counts_of(flat[self._cells]).round_()
            flat[self._cells] = self.quantise(counts)
        self._dense = self._cells = self._n = None

    def _save_to_state_dict(self, *args, **kwargs):
        self.finish()  # never save a table whose counts are still in the tally
        super()._save_to_state_dict(*args, **kwargs)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        t = state_dict.get(prefix + "table")
        if t is not None and t.is_floating_point():  # a float32 count table (mlmkit before the byte rows)
            state_dict[prefix + "table"] = self.quantise(t)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def read(self, ids: torch.Tensor, gold: torch.Tensor | None = None) -> torch.Tensor:
        """(S, T, C, V) counts of the context hashes `ids` (S, T, C); `gold` (S, T): the characters
        to leave out, once under each context (training on a counted name)."""
        self.finish()
        c = self.counts_of(self.table[context_rows(ids, self.buckets)])
        if gold is not None:
            c = (c - F.one_hot(gold, c.shape[-1]).to(c.dtype)[:, :, None, :]).clamp_min(0.0)
        return c

    def forward(self, ids: torch.Tensor, h: torch.Tensor, gold: torch.Tensor | None = None) -> torch.Tensor:
        """(S, T, V) logits for the context hashes `ids` (S, T, C) from the head states `h`
        (S, T, d); `gold` (S, T): the characters to leave out (training on a counted name)."""
        c = self.read(ids, gold)  # (S, T, C, V)
        n = c.sum(-1)  # (S, T, C)
        k = F.softplus(self.smooth)[:, None]
        logp = torch.log(c + k) - torch.log(n + k[:, 0] * c.shape[-1])[..., None]
        w = F.softplus(self.gate(h).float() + self.trust * torch.log1p(n))
        return (w[..., None] * logp).sum(2).to(h.dtype)


class SpanHeadBase(nn.Module):
    n_specials = 5  # alphabet indices that are never generated (PAD, CLS, SEP, MASK, UNK)

    def __init__(self, hidden_size: int, vocab_size: int, cloze: bool = False, max_span: int = 64):
        super().__init__()
        self.hidden_size, self.vocab_size = hidden_size, vocab_size
        self.ngram: SpanNgramMemory | None = None
        self.cloze = ClozeContext(hidden_size, max_span) if cloze else None

    def gather(self, hidden: torch.Tensor, spans: torch.Tensor, lmax: int | None = None):
        """(S, Lmax, D) context of every span character and the (S, Lmax) valid mask."""
        if self.cloze is not None:
            return self.cloze(hidden, spans, lmax)
        return gather_span_context(hidden, spans, lmax)

    # teacher-forced logits --------------------------------------------------------------------
    def forward(self, hidden: torch.Tensor, spans: torch.Tensor, targets: torch.Tensor,
                input_idx: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (S, Lmax, V) for `spans` (S, 3) with gold `targets` (S, Lmax) (-100 padded).
        `input_idx` (the masked input, alphabet indices) is needed by a head with n-gram memory."""
        if spans.shape[0] == 0:  # a batch without masked spans: empty logits, still in the graph
            out = hidden.new_zeros(0, targets.shape[1], self.vocab_size) + hidden.sum() * 0.0
            if self.ngram is not None:  # through a look-up: a sparse table needs a sparse gradient
                out = out + self.ngram.emb(spans.new_zeros(1)).sum() * 0.0
            return out
        ctx, valid = self.gather(hidden, spans, targets.shape[1])
        gold = targets.clamp_min(0)
        feats = ids = None
        if self.ngram is not None:
            left, right, lengths = self._ngram_windows(input_idx, spans, gold.shape[1])
            K = self.ngram.max_n
            left[:, K:] = gold  # teacher forcing: step t's left context ends at slot K + t - 1
            ids = self.ngram.ids(left, right, lengths, 0, gold.shape[1])
            feats = self.ngram.embed(ids)
        return self.span_logits(ctx, valid, gold, feats, ids)

    def _ngram_windows(self, input_idx, spans, lmax):
        if input_idx is None:
            raise ValueError("this span head has n-gram memory: pass input_idx (the masked input)")
        return self.ngram.windows(input_idx, spans, lmax)

    def span_logits(self, ctx, valid, targets, feats=None, ids=None):  # pragma: no cover - abstract
        raise NotImplementedError

    # incremental decoding ----------------------------------------------------------------------
    def init_state(self, ctx, valid, ngram_state=None):
        raise NotImplementedError

    def step(self, state, t: int, prev: torch.Tensor):
        """(log-probs (N, V), new state) for step `t` given previous characters `prev` (N,)."""
        raise NotImplementedError

    def reorder(self, state, index: torch.Tensor):
        raise NotImplementedError

    @torch.no_grad()
    def beam_search(self, hidden: torch.Tensor, spans: torch.Tensor, beam: int = 5,
                    input_idx: torch.Tensor | None = None):
        """Fill every span of `spans` (S, 3) by beam search (beam=1: greedy).

        Returns (seqs (S, beam, Lmax) alphabet ids, scores (S, beam) summed log-probs), beams
        sorted best first; unreachable beams have score -inf."""
        S = spans.shape[0]
        if S == 0:
            return (torch.zeros((0, beam, 1), dtype=torch.long, device=hidden.device),
                    torch.zeros((0, beam), device=hidden.device))
        lengths = spans[:, 2]
        ctx, valid = self.gather(hidden, spans)
        lmax = ctx.shape[1]
        V = self.vocab_size
        ctx_b = ctx.repeat_interleave(beam, 0)
        valid_b = valid.repeat_interleave(beam, 0)
        ngram_state = None
        if self.ngram is not None:
            ngram_state = [x.repeat_interleave(beam, 0) for x in self._ngram_windows(input_idx, spans, lmax)]
        state = self.init_state(ctx_b, valid_b, ngram_state)
        dev = hidden.device
        scores = torch.full((S, beam), float("-inf"), device=dev)
        scores[:, 0] = 0.0
        seqs = torch.zeros((S, beam, lmax), dtype=torch.long, device=dev)
        prev = torch.full((S * beam,), self.bos_index, dtype=torch.long, device=dev)
        ar = torch.arange(beam, device=dev)
        for t in range(lmax):
            logp, new_state = self.step(state, t, prev)
            logp = logp.float().clone()
            logp[:, : self.n_specials] = float("-inf")
            cand = scores[:, :, None] + logp.view(S, beam, V)
            k = min(beam, beam * V)
            top = cand.view(S, -1).topk(k, dim=1)
            src = top.indices // V
            tok = top.indices % V
            active = (t < lengths)[:, None]
            scores = torch.where(active, top.values, scores)
            src = torch.where(active, src, ar[None, :].expand(S, beam))
            seqs = seqs.gather(1, src[:, :, None].expand(S, beam, lmax)).clone()
            seqs[:, :, t] = torch.where(active, tok, torch.zeros_like(tok))
            flat = (torch.arange(S, device=dev)[:, None] * beam + src).reshape(-1)
            state = self.reorder(new_state, flat)
            prev = torch.where(active, tok, torch.zeros_like(tok)).reshape(-1)
        return seqs, scores

    @property
    def bos_index(self) -> int:
        return self.vocab_size  # one extra embedding row


class AutoregressiveSpanHead(SpanHeadBase):
    def __init__(self, hidden_size: int, vocab_size: int, head_size: int | None = None,
                 kind: str = "gru", max_span: int = 64, dropout: float = 0.0, num_heads: int = 4,
                 ngram_buckets: int = 0, ngram_max: int = 6, ngram_dropout: float = 0.0, ngram_dim: int = 0,
                 ngram_dense: bool = False, cloze: bool = False, ngram_counts: bool = False, ngram_joint: int = 0,
                 ngram_count_buckets: int = 0, ngram_max_dist: int = 8):
        super().__init__(hidden_size, vocab_size, cloze, max_span)
        d = head_size or hidden_size
        if ngram_buckets:
            self.ngram = SpanNgramMemory(ngram_buckets, ngram_max, d, max_dist=ngram_max_dist, drop=ngram_dropout,
                                         row_dim=ngram_dim, joint=ngram_joint)
        # dense memory: the memory also reaches the output directly, and `dense_loss` trains it
        # on every character of every name (as counting would), not only on the masked ones
        self.ngram_dense = bool(ngram_dense and ngram_buckets)
        if kind not in ("gru", "transformer"):
            raise ValueError(f"head kind must be gru|transformer, got {kind!r}")
        self.kind, self.head_size = kind, d
        self.ctx_proj = nn.Linear(hidden_size, d)
        self.summary_proj = nn.Linear(hidden_size, d)
        self.char_emb = nn.Embedding(vocab_size + 1, d)  # + BOS
        self.drop = nn.Dropout(dropout)
        if kind == "gru":
            self.rnn = nn.GRU(d, d, batch_first=True)
        else:
            self.pos_emb = nn.Embedding(max_span, d)
            nh = num_heads if d % num_heads == 0 else 1
            self.block = nn.TransformerEncoderLayer(d, nh, 4 * d, dropout, activation="gelu",
                                                    batch_first=True, norm_first=True)
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, vocab_size)
        self.counts = None
        if ngram_counts and ngram_buckets:
            self.counts = CountMemory(ngram_count_buckets or ngram_buckets, self.ngram.columns, vocab_size, d)

    def _inputs(self, ctx, valid, prev, feats=None):
        ctxp = self.ctx_proj(ctx)  # (S, T, d)
        w = valid.to(ctx.dtype)[..., None]
        summary = self.summary_proj((ctx * w).sum(1) / w.sum(1).clamp_min(1.0))  # (S, d)
        x = ctxp + self.char_emb(prev) + summary[:, None, :]
        if feats is not None:
            x = x + feats.to(x.dtype)
        return self.drop(x), ctxp, summary

    def span_logits(self, ctx, valid, targets, feats=None, ids=None):
        S, T = targets.shape
        prev = torch.cat([torch.full((S, 1), self.bos_index, dtype=torch.long, device=targets.device),
                          targets[:, :-1]], dim=1)
        x, ctxp, summary = self._inputs(ctx, valid, prev, feats)
        if self.kind == "gru":
            h0 = torch.tanh(summary)[None]
            y, _ = self.rnn(x, h0.contiguous())
        else:
            x = x + self.pos_emb.weight[:T][None]
            causal = torch.triu(torch.full((T, T), float("-inf"), device=x.device), diagonal=1)
            y = self.block(x, src_mask=causal, is_causal=True)
        if self.ngram_dense:
            y = y + feats.to(y.dtype)
        z = self.norm(y + ctxp)
        if self.counts is not None:  # training: the targets are counted names (leave one out)
            return self.out(z) + self.counts(ids, z, targets if self.training else None)
        return self.out(z)

    def dense_loss(self, clean_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed cross-entropy, count) of the memory alone predicting every character of the
        unmasked rows `clean_idx`, through the head's own output layer. A masked span trains a
        context's rows only when that context is masked (~15% of characters, once a pass); this
        trains every context every pass, as a count would, with the contexts a fill sees (the rest
        of the name unmasked)."""
        left, right, lengths, gold = self.ngram.dense_windows(clean_idx, self.n_specials)
        feats = self.ngram.features(left, right, lengths, 0, 1)[:, 0]
        logits = self.out(self.norm(feats))
        return F.cross_entropy(logits.float(), gold, reduction="sum"), gold.new_tensor(gold.shape[0])

    @torch.no_grad()
    def count_names(self, clean_idx: torch.Tensor, stem_end: torch.Tensor | None = None,
                    repeat: torch.Tensor | None = None) -> None:
        """Add the names `clean_idx` (unmasked rows) to the count memory: every character under
        its left contexts once, and under its right (and joint) contexts at every distance the
        memory hashes.

        Families (`stem_end` (B,): the column of each row's last dot; `repeat` (B,): its family,
        the names that differ only after that dot, was counted before): a repeat's contexts that
        lie wholly in the stem (a character before the dot, and right characters up to the dot)
        are left out, since its family counted them already. Leaving a training name's own
        occurrence out of its counts then leaves its whole family out of the stem's contexts, as
        a new name's family is: `foo.cf` no longer finds `foo.ga` in its counts."""
        dists = tuple(range(1, self.ngram.max_dist + 1))
        left, right, lengths, gold = self.ngram.dense_windows(clean_idx, self.n_specials, dists)
        ids = self.ngram.ids(left, right, lengths, 0, 1)[:, 0]
        K, first = self.ngram.max_n, lengths == 1  # the left contexts repeat for every distance
        keep_left = keep_right = None
        if repeat is not None:
            keep_left, keep_right = self._outside_stem(clean_idx, stem_end, repeat, lengths, len(dists))
            keep_left = keep_left[first, None].expand(-1, K)
        self.counts.add(ids[first, :K], gold[first], keep=keep_left)
        self.counts.add(ids[:, K:], gold, first=K, keep=keep_right)

    def _outside_stem(self, clean_idx, stem_end, repeat, dist, n_dists):
        """For `count_names`' entries (each character at each of `n_dists` distances, as
        `dense_windows` lays them out): whether to count its left contexts (E,) and its right and
        joint ones (E, K + joint): always, but for a repeat only those that reach past its stem."""
        row, pos = (clean_idx >= self.n_specials).nonzero(as_tuple=True)
        row, pos = row.repeat(n_dists), pos.repeat(n_dists)
        end, rep = stem_end[row], repeat[row]
        in_left = pos < end
        n = torch.arange(1, self.ngram.max_n + 1, device=pos.device)
        in_right = ((pos + dist)[:, None] + n[None] - 1 <= end[:, None]) & in_left[:, None]
        in_cols = torch.cat([in_right, in_right[:, : self.ngram.joint]], 1)
        return ~(rep & in_left), ~(rep[:, None] & in_cols)

    # incremental decoding
    def init_state(self, ctx, valid, ngram_state=None):
        w = valid.to(ctx.dtype)[..., None]
        summary = self.summary_proj((ctx * w).sum(1) / w.sum(1).clamp_min(1.0))
        ctxp = self.ctx_proj(ctx)
        state = {"ctxp": ctxp, "summary": summary}
        if ngram_state is not None:
            state["ng_left"], state["ng_right"], state["ng_len"] = ngram_state
        if self.kind == "gru":
            return {**state, "h": torch.tanh(summary)[None].contiguous()}
        return {**state, "xs": ctxp[:, :0]}

    def step(self, state, t, prev):
        ctxp_t = state["ctxp"][:, t]
        ids = None
        x = ctxp_t + self.char_emb(prev) + state["summary"]
        if self.ngram is not None:
            left = state["ng_left"]
            if t > 0:  # the character chosen at t - 1 becomes known left context
                left = left.clone()
                left[:, self.ngram.max_n + t - 1] = prev
            state = {**state, "ng_left": left}
            ids = self.ngram.ids(left, state["ng_right"], state["ng_len"], t, 1)  # also read by the counts
            feats = self.ngram.embed(ids)[:, 0].to(x.dtype)
            x = x + feats
            if self.ngram_dense:
                ctxp_t = ctxp_t + feats  # the direct path of `span_logits`
        if self.kind == "gru":
            y, h = self.rnn(x[:, None], state["h"])
            return F.log_softmax(self._step_logits(y[:, 0] + ctxp_t, ids), -1), {**state, "h": h}
        x = x + self.pos_emb.weight[t]
        xs = torch.cat([state["xs"], x[:, None]], 1)
        T = xs.shape[1]
        causal = torch.triu(torch.full((T, T), float("-inf"), device=x.device), diagonal=1)
        y = self.block(xs, src_mask=causal, is_causal=True)[:, -1]
        return F.log_softmax(self._step_logits(y + ctxp_t, ids), -1), {**state, "xs": xs}

    def _step_logits(self, y, ids):
        """One step's logits; `ids` (N, 1, columns): the memory rows this step looked up."""
        z = self.norm(y)
        if self.counts is None:
            return self.out(z)
        return self.out(z) + self.counts(ids, z[:, None])[:, 0]

    def reorder(self, state, index):
        out = {k: state[k].index_select(0, index) for k in ("ctxp", "summary", "ng_left", "ng_right", "ng_len")
               if k in state}
        if "h" in state:
            out["h"] = state["h"].index_select(1, index)
        if "xs" in state:
            out["xs"] = state["xs"].index_select(0, index)
        return out


class ParallelSpanHead(SpanHeadBase):
    """Independent per-position prediction from the encoder state (no previous characters)."""

    def __init__(self, hidden_size: int, vocab_size: int, head_size: int | None = None, dropout: float = 0.0,
                 cloze: bool = False, max_span: int = 64, **_):
        super().__init__(hidden_size, vocab_size, cloze, max_span)
        d = head_size or hidden_size
        self.dense = nn.Linear(hidden_size, d)
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(d, vocab_size)

    def _logits(self, ctx):
        return self.out(self.norm(F.gelu(self.dense(self.drop(ctx)))))

    def span_logits(self, ctx, valid, targets, feats=None, ids=None):
        return self._logits(ctx)

    def init_state(self, ctx, valid, ngram_state=None):
        return {"ctx": ctx}

    def step(self, state, t, prev):
        return F.log_softmax(self._logits(state["ctx"][:, t]), -1), state

    def reorder(self, state, index):
        return {"ctx": state["ctx"].index_select(0, index)}


def build_head(head: str, hidden_size: int, vocab_size: int, **kw) -> SpanHeadBase:
    if head in ("autoregressive", "ar", "gru"):
        return AutoregressiveSpanHead(hidden_size, vocab_size, kind=kw.pop("kind", "gru"), **kw)
    if head == "transformer":
        kw.pop("kind", None)
        return AutoregressiveSpanHead(hidden_size, vocab_size, kind="transformer", **kw)
    if head == "parallel":
        kw.pop("kind", None)
        memory = {k: kw.pop(k) for k in [k for k in kw if k.startswith("ngram_")]}
        if memory.get("ngram_buckets"):
            raise ValueError("n-gram memory (head_ngram_buckets) needs the autoregressive head")
        return ParallelSpanHead(hidden_size, vocab_size, **kw)
    raise ValueError(f"unknown head {head!r}")


def span_loss(logits: torch.Tensor, targets: torch.Tensor):
    """(mean loss, n_targets, loss_sum, n_correct) over non-ignored targets."""
    V = logits.shape[-1]
    flat_t = targets.reshape(-1)
    keep = flat_t >= 0
    n = keep.sum()
    loss_sum = F.cross_entropy(logits.reshape(-1, V).float(), flat_t, ignore_index=-100, reduction="sum")
    loss = loss_sum / n.clamp_min(1)
    correct = ((logits.argmax(-1).reshape(-1) == flat_t) & keep).sum()
    return loss, n, loss_sum.detach(), correct
