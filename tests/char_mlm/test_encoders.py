"""The cloze encoder: each tower sees only its own side, rows of any padding give the same
states, and the span context built on it never reads the span."""

from __future__ import annotations

import pytest
import torch

from mlmkit.char_mlm.encoders import ClozeCharEncoder, build_scratch_encoder, reverse_index
from mlmkit.char_mlm.heads import AutoregressiveSpanHead
from mlmkit.char_mlm.masking import span_targets, window_spans

SMALL = dict(vocab_size=40, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, dropout=0.0,
             ngram_buckets=256, ngram_max=4)


def _rows(seed=0, B=3, L=14):
    """[CLS] chars [SEP] rows (alphabet indices), row 1 shorter and padded."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(5, 40, (B, L), generator=g)
    x[:, 0], x[:, -1] = 1, 2
    am = torch.ones_like(x)
    am[1, 9:] = 0  # a shorter row: padding after it
    x[1, 8], x[1, 9:] = 2, 0
    return x, am


def test_reverse_index_reverses_only_the_real_part():
    am = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert reverse_index(am).tolist() == [[2, 1, 0, 3, 4], [4, 3, 2, 1, 0]]


def test_each_tower_sees_only_its_side():
    """Changing character j changes the forward half only at positions >= j and the backward
    half only at positions <= j (the n-gram embeddings included: they hash only one side)."""
    torch.manual_seed(0)
    enc = ClozeCharEncoder(**SMALL).eval()
    x, am = _rows()
    base = enc(x, am)
    D = enc.hidden_size // 2
    for j in (0, 5, 13):
        y = x.clone()
        y[0, j] = (y[0, j] - 5 + 3) % 35 + 5
        full = (enc(y, am) - base).abs()
        diff = full[0]
        fwd, bwd = diff[:, :D].amax(-1) > 1e-6, diff[:, D:].amax(-1) > 1e-6
        assert fwd.nonzero().flatten().tolist() == list(range(j, 14))
        assert bwd.nonzero().flatten().tolist() == list(range(0, j + 1))
        assert full[1:].max() == 0  # other rows untouched


def test_padding_does_not_change_a_row():
    torch.manual_seed(0)
    enc = ClozeCharEncoder(**SMALL).eval()
    x, am = _rows()
    alone = enc(x[1:2, :9], am[1:2, :9])
    assert torch.allclose(enc(x, am)[1:2, :9], alone, atol=1e-5)


def test_saved_config_rebuilds_the_cloze_encoder():
    enc = ClozeCharEncoder(**SMALL)
    again = build_scratch_encoder(**enc.config)
    assert isinstance(again, ClozeCharEncoder) and enc.config["cloze"] is True
    assert again.state_dict().keys() == enc.state_dict().keys()
    assert "cloze" not in build_scratch_encoder(**SMALL).config  # older configs stay as saved


@pytest.mark.parametrize("ngram", [0, 64])
def test_span_logits_never_read_the_span(ngram):
    """On clean input (a training window), a span's logits at step t change neither with the
    input characters inside the span nor with gold characters at >= t; only the teacher-forced
    characters < t enter, through the head."""
    torch.manual_seed(0)
    enc = ClozeCharEncoder(**SMALL).eval()
    head = AutoregressiveSpanHead(enc.hidden_size, 40, ngram_buckets=ngram, ngram_max=4, cloze=True).eval()
    if ngram:
        torch.nn.init.normal_(head.ngram.emb.weight)
    x, am = _rows(1)
    spans = window_spans(x, 3, 5)
    spans = spans[spans[:, 2] == 3][:6]
    tg = span_targets(x, spans)
    base = head(enc(x, am), spans, tg, x)
    for s, (row, start, n) in enumerate(spans.tolist()):
        y = x.clone()
        y[row, start: start + n] = (y[row, start: start + n] - 5 + 1) % 35 + 5  # the span's input only
        out = head(enc(y, am), spans[s: s + 1], tg[s: s + 1], y)
        assert torch.allclose(out[0, 0], base[s, 0], atol=1e-5)  # step 0 never sees the span
        tg2 = tg[s: s + 1].clone()
        tg2[0, 0] = (tg2[0, 0] - 5 + 1) % 35 + 5  # another gold first character
        out2 = head(enc(x, am), spans[s: s + 1], tg2, x)
        assert torch.allclose(out2[0, 0], base[s, 0], atol=1e-5)  # not seen by its own step
        assert not torch.allclose(out2[0, 1], base[s, 1])  # but by the next one
