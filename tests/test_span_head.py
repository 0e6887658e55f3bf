"""The autoregressive span head: no leakage, batching == per-span, decoding consistency."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mlmkit.models.span_head import AutoregressiveSpanHead, ParallelSpanHead, span_loss
from mlmkit.span_masking import span_targets

V, D = 30, 32




def _setup(seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(4, 20, D, generator=g)
    ids = torch.randint(5, V, (4, 20), generator=g)
    spans = torch.tensor([[0, 1, 5], [0, 9, 2], [1, 3, 1], [2, 2, 6], [3, 10, 4]])
    return hidden, ids, spans, span_targets(ids, spans)


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_no_leakage(kind):
    torch.manual_seed(0)
    head = AutoregressiveSpanHead(D, V, kind=kind).eval()
    hidden, ids, spans, tg = _setup()
    base = head(hidden, spans, tg)
    for t in range(tg.shape[1]):
        tg2 = tg.clone()
        live = tg2[:, t] >= 0
        tg2[live, t] = (tg2[live, t] - 5 + 7) % (V - 5) + 5  # a different gold character at t
        out = head(hidden, spans, tg2)
        diff = (out - base).abs().amax(-1)  # (S, Lmax)
        assert diff[:, : t + 1].max().item() == 0.0, f"logits at <= {t} changed"
        later = live & (spans[:, 2] > t + 1)
        if later.any():
            assert diff[later, t + 1].min().item() > 0.0  # and the next step does use it


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_batched_equals_one_span_at_a_time(kind):
    torch.manual_seed(0)
    head = AutoregressiveSpanHead(D, V, kind=kind).eval()
    hidden, ids, spans, tg = _setup(1)
    batched = head(hidden, spans, tg)
    for s in range(spans.shape[0]):
        n = int(spans[s, 2])
        single = head(hidden, spans[s: s + 1], tg[s: s + 1, :n])
        assert torch.allclose(single[0], batched[s, :n], atol=1e-5)


@pytest.mark.parametrize("head_cls,kw", [(AutoregressiveSpanHead, {"kind": "gru"}),
                                         (AutoregressiveSpanHead, {"kind": "transformer"}),
                                         (ParallelSpanHead, {})])
def test_greedy_and_beam_scores_match_teacher_forcing(head_cls, kw):
    torch.manual_seed(0)
    head = head_cls(D, V, **kw).eval()
    hidden, ids, spans, tg = _setup(2)
    seqs, scores = head.beam_search(hidden, spans, beam=1)
    seqs4, scores4 = head.beam_search(hidden, spans, beam=4)
    for s in range(spans.shape[0]):
        n = int(spans[s, 2])
        for seq, sc in ((seqs[s, 0, :n], scores[s, 0]), (seqs4[s, 0, :n], scores4[s, 0])):
            assert seq.min().item() >= 5  # specials are never generated
            lp = F.log_softmax(head(hidden, spans[s: s + 1], seq[None]), -1)[0]
            assert torch.allclose(lp.gather(1, seq[:, None]).sum(), sc, atol=1e-4)
        assert scores4[s, 0] >= scores[s, 0] - 1e-5  # the beam never loses to greedy
        assert (scores4[s, :-1] >= scores4[s, 1:] - 1e-6).all()  # sorted best first


def test_head_learns_and_loss_counts():
    torch.manual_seed(0)
    hidden, ids, spans, tg = _setup(3)
    head = AutoregressiveSpanHead(D, V)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        loss, n, loss_sum, correct = span_loss(head(hidden, spans, tg), tg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert int(n) == int(spans[:, 2].sum())
    assert loss.item() < 0.3 * first and int(correct) > 0


def test_batch_without_spans():
    head = AutoregressiveSpanHead(D, V)
    hidden = torch.randn(2, 6, D, requires_grad=True)
    spans = torch.zeros((0, 3), dtype=torch.long)
    tg = torch.full((0, 1), -100)
    logits = head(hidden, spans, tg)
    loss, n, _, _ = span_loss(logits, tg)
    loss.backward()
    assert logits.shape == (0, 1, V) and int(n) == 0 and loss.item() == 0.0
    seqs, scores = head.beam_search(hidden, spans, beam=3)
    assert seqs.shape[0] == 0 and scores.shape == (0, 3)
