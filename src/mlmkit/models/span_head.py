"""Span prediction heads for character MLM.

`AutoregressiveSpanHead` (CANINE-C's autoregressive character loss): every masked span is predicted
left to right. Step ``t`` of a span sees the encoder output at span position ``t`` (and a summary of
the whole span's encoder outputs) plus the gold characters ``< t`` (teacher forcing). All spans of
a batch are packed into one (S, Lmax) tensor with a single gather and run through a GRU (or a
1-layer causal transformer) at once: no Python loop over spans or characters in training.
Logits for character ``t`` never depend on gold characters at ``t`` or later.

`ParallelSpanHead`: one independent softmax per masked position (BERT style), for comparison.

Both predict over the alphabet indices (specials + the characters actually used), never over all
code points. Inference (`beam_search`) fills every span of a batch together: greedy is beam=1.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mlmkit.span_masking import span_gather_index


def gather_span_context(hidden: torch.Tensor, spans: torch.Tensor, lmax: int | None = None):
    """(S, Lmax, D) encoder states at every span character, and the (S, Lmax) valid mask."""
    B, L, D = hidden.shape
    index, valid = span_gather_index(spans, L, lmax)
    ctx = hidden.reshape(B * L, D).index_select(0, index.reshape(-1)).view(*index.shape, D)
    return ctx, valid


class SpanHeadBase(nn.Module):
    n_specials = 5  # alphabet indices that are never generated (PAD, CLS, SEP, MASK, UNK)

    def __init__(self, hidden_size: int, vocab_size: int):
        super().__init__()
        self.hidden_size, self.vocab_size = hidden_size, vocab_size

    # teacher-forced logits --------------------------------------------------------------------
    def forward(self, hidden: torch.Tensor, spans: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Logits (S, Lmax, V) for `spans` (S, 3) with gold `targets` (S, Lmax) (-100 padded)."""
        if spans.shape[0] == 0:  # a batch without masked spans: empty logits, still in the graph
            return hidden.new_zeros(0, targets.shape[1], self.vocab_size) + hidden.sum() * 0.0
        ctx, valid = gather_span_context(hidden, spans, targets.shape[1])
        return self.span_logits(ctx, valid, targets.clamp_min(0))

    def span_logits(self, ctx, valid, targets):  # pragma: no cover - abstract
        raise NotImplementedError

    # incremental decoding ----------------------------------------------------------------------
    def init_state(self, ctx, valid):
        raise NotImplementedError

    def step(self, state, t: int, prev: torch.Tensor):
        """(log-probs (N, V), new state) for step `t` given previous characters `prev` (N,)."""
        raise NotImplementedError

    def reorder(self, state, index: torch.Tensor):
        raise NotImplementedError

    @torch.no_grad()
    def beam_search(self, hidden: torch.Tensor, spans: torch.Tensor, beam: int = 5):
        """Fill every span of `spans` (S, 3) by beam search (beam=1: greedy).

        Returns (seqs (S, beam, Lmax) alphabet ids, scores (S, beam) summed log-probs), beams
        sorted best first; unreachable beams have score -inf."""
        S = spans.shape[0]
        if S == 0:
            return (torch.zeros((0, beam, 1), dtype=torch.long, device=hidden.device),
                    torch.zeros((0, beam), device=hidden.device))
        lengths = spans[:, 2]
        ctx, valid = gather_span_context(hidden, spans)
        lmax = ctx.shape[1]
        V = self.vocab_size
        ctx_b = ctx.repeat_interleave(beam, 0)
        valid_b = valid.repeat_interleave(beam, 0)
        state = self.init_state(ctx_b, valid_b)
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
                 kind: str = "gru", max_span: int = 64, dropout: float = 0.0, num_heads: int = 4):
        super().__init__(hidden_size, vocab_size)
        d = head_size or hidden_size
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

    def _inputs(self, ctx, valid, prev):
        ctxp = self.ctx_proj(ctx)  # (S, T, d)
        w = valid.to(ctx.dtype)[..., None]
        summary = self.summary_proj((ctx * w).sum(1) / w.sum(1).clamp_min(1.0))  # (S, d)
        x = self.drop(ctxp + self.char_emb(prev) + summary[:, None, :])
        return x, ctxp, summary

    def span_logits(self, ctx, valid, targets):
        S, T = targets.shape
        prev = torch.cat([torch.full((S, 1), self.bos_index, dtype=torch.long, device=targets.device),
                          targets[:, :-1]], dim=1)
        x, ctxp, summary = self._inputs(ctx, valid, prev)
        if self.kind == "gru":
            h0 = torch.tanh(summary)[None]
            y, _ = self.rnn(x, h0.contiguous())
        else:
            x = x + self.pos_emb.weight[:T][None]
            causal = torch.triu(torch.full((T, T), float("-inf"), device=x.device), diagonal=1)
            y = self.block(x, src_mask=causal, is_causal=True)
        return self.out(self.norm(y + ctxp))

    # incremental decoding
    def init_state(self, ctx, valid):
        w = valid.to(ctx.dtype)[..., None]
        summary = self.summary_proj((ctx * w).sum(1) / w.sum(1).clamp_min(1.0))
        ctxp = self.ctx_proj(ctx)
        if self.kind == "gru":
            return {"ctxp": ctxp, "summary": summary, "h": torch.tanh(summary)[None].contiguous()}
        return {"ctxp": ctxp, "summary": summary, "xs": ctxp[:, :0]}

    def step(self, state, t, prev):
        ctxp_t = state["ctxp"][:, t]
        x = ctxp_t + self.char_emb(prev) + state["summary"]
        if self.kind == "gru":
            y, h = self.rnn(x[:, None], state["h"])
            logits = self.out(self.norm(y[:, 0] + ctxp_t))
            return F.log_softmax(logits, -1), {**state, "h": h}
        x = x + self.pos_emb.weight[t]
        xs = torch.cat([state["xs"], x[:, None]], 1)
        T = xs.shape[1]
        causal = torch.triu(torch.full((T, T), float("-inf"), device=x.device), diagonal=1)
        y = self.block(xs, src_mask=causal, is_causal=True)[:, -1]
        logits = self.out(self.norm(y + ctxp_t))
        return F.log_softmax(logits, -1), {**state, "xs": xs}

    def reorder(self, state, index):
        out = {"ctxp": state["ctxp"].index_select(0, index), "summary": state["summary"].index_select(0, index)}
        if "h" in state:
            out["h"] = state["h"].index_select(1, index)
        if "xs" in state:
            out["xs"] = state["xs"].index_select(0, index)
        return out


class ParallelSpanHead(SpanHeadBase):
    """Independent per-position prediction from the encoder state (no previous characters)."""

    def __init__(self, hidden_size: int, vocab_size: int, head_size: int | None = None, dropout: float = 0.0, **_):
        super().__init__(hidden_size, vocab_size)
        d = head_size or hidden_size
        self.dense = nn.Linear(hidden_size, d)
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(d, vocab_size)

    def _logits(self, ctx):
        return self.out(self.norm(F.gelu(self.dense(self.drop(ctx)))))

    def span_logits(self, ctx, valid, targets):
        return self._logits(ctx)

    def init_state(self, ctx, valid):
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
