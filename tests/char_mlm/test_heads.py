"""The autoregressive span head: no leakage, batching == per-span, decoding consistency."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mlmkit.char_mlm.heads import AutoregressiveSpanHead, CountMemory, ParallelSpanHead, context_rows, span_loss
from mlmkit.char_mlm.masking import span_targets

V, D = 30, 32
MASK = 3
# (kind, n-gram buckets, dense memory)
HEADS = [("gru", 0, False), ("transformer", 0, False), ("gru", 64, False), ("transformer", 64, False),
         ("gru", 64, True), ("transformer", 64, True)]


def _setup(seed=0):
    """hidden states, the masked input (span characters = MASK), spans and gold targets."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(4, 20, D, generator=g)
    ids = torch.randint(5, V, (4, 20), generator=g)
    spans = torch.tensor([[0, 1, 5], [0, 9, 2], [1, 3, 1], [2, 2, 6], [3, 10, 4]])
    masked = ids.clone()
    for row, start, n in spans.tolist():
        masked[row, start: start + n] = MASK
    return hidden, masked, spans, span_targets(ids, spans)


def _ar_head(kind, ngram, dense=False):
    head = AutoregressiveSpanHead(D, V, kind=kind, ngram_buckets=ngram, ngram_max=4, ngram_dense=dense)
    if ngram:  # the memory starts at zero (a no-op): give it weights so that it matters
        torch.nn.init.normal_(head.ngram.emb.weight)
    return head.eval()


@pytest.mark.parametrize("kind,ngram,dense", HEADS)
def test_no_leakage(kind, ngram, dense):
    torch.manual_seed(0)
    head = _ar_head(kind, ngram, dense)
    hidden, ids, spans, tg = _setup()
    base = head(hidden, spans, tg, ids)
    for t in range(tg.shape[1]):
        tg2 = tg.clone()
        live = tg2[:, t] >= 0
        tg2[live, t] = (tg2[live, t] - 5 + 7) % (V - 5) + 5  # a different gold character at t
        out = head(hidden, spans, tg2, ids)
        diff = (out - base).abs().amax(-1)  # (S, Lmax)
        assert diff[:, : t + 1].max().item() == 0.0, f"logits at <= {t} changed"
        later = live & (spans[:, 2] > t + 1)
        if later.any():
            assert diff[later, t + 1].min().item() > 0.0  # and the next step does use it


def test_ngram_memory_reads_the_context_around_the_span():
    """The memory is keyed on the characters next to the span: changing one just left of a span
    changes that span's logits (and no other span's, unless it is that close to it too)."""
    torch.manual_seed(0)
    head = AutoregressiveSpanHead(D, V, ngram_buckets=64, ngram_max=4)
    torch.nn.init.normal_(head.ngram.emb.weight)
    head.eval()
    hidden, ids, spans, tg = _setup()
    base = head(hidden, spans, tg, ids)
    ids2 = ids.clone()
    ids2[3, 9] = (ids2[3, 9] - 5 + 1) % (V - 5) + 5  # just left of span 4 (row 3, start 10)
    diff = (head(hidden, spans, tg, ids2) - base).abs().amax((1, 2))
    assert diff[4] > 0 and (diff[:4] == 0).all()
    with pytest.raises(ValueError, match="input_idx"):
        head(hidden, spans, tg)


@pytest.mark.parametrize("kind,ngram,dense", HEADS)
def test_batched_equals_one_span_at_a_time(kind, ngram, dense):
    torch.manual_seed(0)
    head = _ar_head(kind, ngram, dense)
    hidden, ids, spans, tg = _setup(1)
    batched = head(hidden, spans, tg, ids)
    for s in range(spans.shape[0]):
        n = int(spans[s, 2])
        single = head(hidden, spans[s: s + 1], tg[s: s + 1, :n], ids)
        assert torch.allclose(single[0], batched[s, :n], atol=1e-5)


@pytest.mark.parametrize("kind,ngram,dense", HEADS + [("parallel", 0, False)])
def test_greedy_and_beam_scores_match_teacher_forcing(kind, ngram, dense):
    """Incremental decoding (with the memory updated as characters are chosen) scores a sequence
    exactly as the teacher-forced forward does."""
    torch.manual_seed(0)
    head = ParallelSpanHead(D, V).eval() if kind == "parallel" else _ar_head(kind, ngram, dense)
    hidden, ids, spans, tg = _setup(2)
    seqs, scores = head.beam_search(hidden, spans, beam=1, input_idx=ids)
    seqs4, scores4 = head.beam_search(hidden, spans, beam=4, input_idx=ids)
    for s in range(spans.shape[0]):
        n = int(spans[s, 2])
        for seq, sc in ((seqs[s, 0, :n], scores[s, 0]), (seqs4[s, 0, :n], scores4[s, 0])):
            assert seq.min().item() >= 5  # specials are never generated
            lp = F.log_softmax(head(hidden, spans[s: s + 1], seq[None], ids), -1)[0]
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


def test_ngram_memory_dropout_is_training_only():
    torch.manual_seed(0)
    head = AutoregressiveSpanHead(D, V, ngram_buckets=64, ngram_max=3, ngram_dropout=0.5, ngram_dim=8)
    torch.nn.init.normal_(head.ngram.emb.weight)
    hidden, ids, spans, tg = _setup()
    head.train()
    assert not torch.equal(head(hidden, spans, tg, ids), head(hidden, spans, tg, ids))
    head.eval()
    assert torch.equal(head(hidden, spans, tg, ids), head(hidden, spans, tg, ids))


def _dense_features(head, ids, dists=(1, 2, 3)):
    """{(row, pos, length): memory features} of `dense_windows` on the unmasked rows `ids`."""
    left, right, lengths, gold = head.ngram.dense_windows(ids, 5, dists)
    feats = head.ngram.features(left, right, lengths, 0, 1)[:, 0]
    rows, pos = (ids >= 5).nonzero(as_tuple=True)
    keys = [(r, p, d) for d in dists for r, p in zip(rows.tolist(), pos.tolist())]
    return dict(zip(keys, feats)), dict(zip(keys, gold.tolist()))


def test_dense_memory_hashes_what_a_real_span_would():
    """Every character as the start of a 1-3 character span: the same look-ups (and target) as
    that span masked alone, so what the dense loss teaches is what a fill reads."""
    torch.manual_seed(0)
    head = _ar_head("gru", 64, dense=True)
    ids = _setup()[1].clamp_min(5)  # unmasked rows
    feats, gold = _dense_features(head, ids)
    for row, start, d in [(0, 0, 1), (0, 7, 3), (1, 18, 2), (2, 19, 1), (3, 4, 2)]:
        masked = ids.clone()
        masked[row, start: start + d] = MASK
        span = torch.tensor([[row, start, d]])
        left, right, lengths = head.ngram.windows(masked, span, d)
        real = head.ngram.features(left, right, lengths, 0, 1)[0, 0]
        assert torch.equal(real, feats[(row, start, d)])
        assert gold[(row, start, d)] == int(ids[row, start])


def test_dense_memory_never_reads_the_characters_it_predicts():
    torch.manual_seed(0)
    head = _ar_head("gru", 64, dense=True)
    ids = _setup()[1].clamp_min(5)
    row, p = 1, 8
    base, _ = _dense_features(head, ids)
    for d in (1, 2, 3):
        inside = ids.clone()
        inside[row, p: p + d] = (inside[row, p: p + d] - 5 + 3) % (V - 5) + 5  # the span's own characters
        assert torch.equal(_dense_features(head, inside)[0][(row, p, d)], base[(row, p, d)])
        for q in (p - 1, p + d):  # the characters just left and just right of it are read
            near = ids.clone()
            near[row, q] = (near[row, q] - 5 + 3) % (V - 5) + 5
            assert not torch.equal(_dense_features(head, near)[0][(row, p, d)], base[(row, p, d)])


def test_dense_loss_trains_the_memory_on_every_character():
    """The dense loss alone reaches the rows of contexts no span masked; off (the default) the
    head has no such loss and its logits have no direct memory path."""
    torch.manual_seed(0)
    head = _ar_head("gru", 64, dense=True).train()
    ids = _setup()[1].clamp_min(5)
    loss, n = head.dense_loss(ids)
    assert int(n) == 3 * ids.numel()
    loss.backward()
    touched = (head.ngram.emb.weight.grad.abs().sum(1) > 0).sum()
    assert touched > 0.5 * head.ngram.emb.weight.shape[0]  # 80 names x 8 look-ups spread over most rows
    assert not _ar_head("gru", 64).ngram_dense and not _ar_head("gru", 0, dense=True).ngram_dense


def _count_head(names_idx):
    head = AutoregressiveSpanHead(D, V, ngram_buckets=4096, ngram_max=3, ngram_counts=True)
    torch.nn.init.normal_(head.counts.gate.weight)  # the gate starts constant: make it read the state
    for rows in names_idx:
        head.count_names(rows)
    head.counts.finish()
    return head


def _distinct_rows(seed, B=6, L=12):
    """[CLS] chars [SEP] rows of distinct characters (no context repeats inside a name)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.stack([torch.randperm(V - 5, generator=g)[: L - 2] + 5 for _ in range(B)])
    return torch.cat([torch.ones(B, 1, dtype=torch.long), x, torch.full((B, 1), 2)], 1)


def test_count_tally_holds_only_the_cells_met_and_merges_in_any_steps(monkeypatch):
    """Counting keeps the cells it met and their counts, not an int32 for every cell of the table
    (a 1M-row table's would be 3.3 GB), merging what it added every `PENDING` cells, until so many
    cells are set that a whole int32 tally is the smaller: the same table whether it merges after
    every batch, once at the end, or goes on with a whole tally."""
    names = _distinct_rows(3, B=40)
    tables = []
    for pending, dense_above in ((10**9, 1.0), (50, 1.0), (50, 1e-3)):
        monkeypatch.setattr(CountMemory, "PENDING", pending)
        monkeypatch.setattr(CountMemory, "DENSE_ABOVE", dense_above)
        head = AutoregressiveSpanHead(D, V, ngram_buckets=4096, ngram_max=3, ngram_counts=True)
        for i in range(0, 40, 8):
            head.count_names(names[i: i + 8])
        dense = head.counts.tally
        if dense_above < 1:  # past that share of the cells set, a whole int32 tally goes on counting
            assert head.counts._cells is None and head.counts._dense is dense
        else:
            assert len(head.counts._cells) == int((dense > 0).sum()) < dense.numel() / 20
            assert int(head.counts._n.sum()) == int(dense.sum()) > 0
        head.counts.finish()
        tables.append(head.counts.table.clone())
    assert torch.equal(tables[0], tables[1]) and torch.equal(tables[0], tables[2]) and int(tables[0].sum()) > 0


def test_count_memory_counts_each_context_and_its_next_character():
    """After counting, the memory row of "the 2 characters left of p" holds, at the character at
    p, the number of names where that pair is followed by it (hash collisions aside: 4,096 rows)."""
    names = _distinct_rows(0, B=40)
    names[1:4, 3:6] = names[0, 3:6]  # four names share "xyz" at positions 3..5
    head = AutoregressiveSpanHead(D, V, ngram_buckets=4096, ngram_max=3, ngram_counts=True)
    head.count_names(names)
    K, chars = 3, int((names >= 5).sum())
    assert int(head.counts.tally.sum()) == chars * K * (1 + head.ngram.max_dist)  # left once, right at every distance
    tally = head.counts.tally.clone()
    head.counts.finish()
    assert head.counts.tally is None and torch.equal(head.counts.table, CountMemory.quantise(tally))
    spans = torch.tensor([[0, 5, 1]])
    left, right, lengths = head.ngram.windows(names, spans, 1)
    left[:, K] = names[0, 5]
    rows = context_rows(head.ngram.ids(left, right, lengths, 0, 1)[0, 0], head.counts.buckets)  # (2K,)
    assert head.counts.table[rows[1], names[0, 5]] == 4  # "xy" -> "z" in four names (small counts: exact)
    assert head.counts.table[rows[0], names[0, 5]] >= 4  # "y" -> "z": at least those


def test_max_dist_bounds_the_distances_counted_and_farther_ones_read_the_farthest():
    """`ngram_max_dist`: right contexts are counted at distances 1..max_dist only (fewer rows
    filled), and a span longer than that reads its farther steps' right context at max_dist."""
    names = _distinct_rows(1, B=10)
    head = AutoregressiveSpanHead(D, V, ngram_buckets=4096, ngram_max=3, ngram_counts=True, ngram_max_dist=3)
    head.count_names(names)
    chars = int((names >= 5).sum())
    assert int(head.counts.tally.sum()) == chars * 3 * (1 + 3)
    left, right, _ = head.ngram.windows(names, torch.tensor([[0, 2, 5]]), 5)
    ids = [head.ngram.ids(left, right, torch.tensor([n]), 0, 1)[0, 0, 3:] for n in (3, 4, 6)]  # right columns
    assert torch.equal(ids[0], ids[1]) and torch.equal(ids[0], ids[2])


def _left_row(head, names, row, pos, n):
    """The count row of the n characters left of `pos` in `row` (n = 1..max_n)."""
    K = head.ngram.max_n
    left, right, lengths = head.ngram.windows(names, torch.tensor([[row, pos, 1]]), 1)
    left[:, K] = names[row, pos]
    return context_rows(head.ngram.ids(left, right, lengths, 0, 1)[0, 0], head.counts.buckets)[n - 1]


def test_families_count_a_stem_once_so_leaving_a_name_out_leaves_its_family_out():
    """foo.cf and foo.ga (one family: the same stem before the last dot): with families, the
    contexts wholly inside the stem are counted once, the ones that reach the TLD per name; so the
    leave-one-out of training finds no count of "fo" -> "o" left for foo.ga, as for a new name."""
    f, o, dot, c, g, a = 6, 7, 5, 8, 9, 10
    names = torch.tensor([[1, f, o, o, dot, c, f, 2], [1, f, o, o, dot, g, a, 2]])
    stem_end, repeat = torch.tensor([4, 4]), torch.tensor([False, True])
    plain = AutoregressiveSpanHead(D, V, ngram_buckets=4096, ngram_max=3, ngram_counts=True)
    plain.count_names(names)
    fam = AutoregressiveSpanHead(D, V, ngram_buckets=4096, ngram_max=3, ngram_counts=True)
    fam.count_names(names, stem_end, repeat)
    for head in (plain, fam):
        head.counts.finish()
    stem, tld = _left_row(fam, names, 1, 3, 2), _left_row(fam, names, 1, 5, 2)  # "fo" -> o, "o." -> g
    assert plain.counts.table[stem, o] == 2 and fam.counts.table[stem, o] == 1
    assert plain.counts.table[tld, g] == fam.counts.table[tld, g] == 1  # reaches past the stem: counted
    gold = torch.tensor([[o]])  # training on foo.ga: its own occurrence out of its counts
    ids = fam.ngram.ids(*fam.ngram.windows(names, torch.tensor([[1, 3, 1]]), 1), 0, 1)
    for head, left_after in ((plain, 1.0), (fam, 0.0)):
        assert head.counts.read(ids, gold)[0, 0, 1, o] == left_after  # what training's logits read
    # the repeat's counts inside its stem are gone, and only those: its 3 stem characters' left
    # contexts (3 orders each: 9) and its right ones that end by the dot (n + d <= 5 - pos: 6 + 3 + 1)
    assert int(plain.counts.table.sum()) - int(fam.counts.table.sum()) == 9 + 10


def test_count_bytes_are_exact_below_64_and_within_3_percent_above():
    """The count table's byte code: 0..63 as they are, larger counts on a log scale (12 steps a
    doubling); a float32 table of an older model is converted when loaded."""
    c = torch.tensor([0, 1, 2, 17, 63, 64, 100, 1000, 123456, 3_000_000])
    back = CountMemory.counts_of(CountMemory.quantise(c))
    assert torch.equal(back[:5], c[:5].float())
    assert ((back[5:] - c[5:]).abs() / c[5:] < 0.03).all()
    assert CountMemory.quantise(torch.tensor([1e9])).item() == 255
    old = CountMemory(8, 2, 5, 4)
    state = {k: v for k, v in old.state_dict().items()}
    state["table"] = torch.zeros(16, 5)
    state["table"][3, 1] = 7.0
    new = CountMemory(8, 2, 5, 4)
    new.load_state_dict(state)
    assert new.table.dtype == torch.uint8 and new.table[3, 1] == 7 and int(new.table.sum()) == 7
    pending = CountMemory(8, 2, 5, 4)
    pending.add(torch.tensor([[3, 5]]), torch.tensor([1]))  # counted, not finished: saving finishes it
    saved = pending.state_dict()["table"]
    assert pending.tally is None and saved[3, 1] == 1 and saved[8 + 5, 1] == 1 and int(saved.sum()) == 2


def test_count_table_may_have_its_own_number_of_buckets():
    """`ngram_count_buckets`: the counts get their own rows per column (here 4x the memory's),
    and the counting and the look-ups of training and decoding all use them."""
    names = _distinct_rows(3, B=20)
    head = AutoregressiveSpanHead(D, V, ngram_buckets=256, ngram_max=3, ngram_counts=True, ngram_count_buckets=1024)
    head.count_names(names)
    head.counts.finish()
    assert head.ngram.emb.num_embeddings == 256 * head.ngram.columns
    assert head.counts.table.shape == (1024 * head.ngram.columns, V)
    shared = AutoregressiveSpanHead(D, V, ngram_buckets=256, ngram_max=3, ngram_counts=True)
    shared.count_names(names)
    shared.counts.finish()  # the same counts in 4x fewer rows: more contexts collide
    assert int(head.counts.table.sum()) == int(shared.counts.table.sum())
    assert int((head.counts.table > 0).sum()) > int((shared.counts.table > 0).sum())
    spans = torch.tensor([[0, 4, 1]])
    left, right, lengths = head.ngram.windows(names, spans, 1)
    left[:, 3] = names[0, 4]
    rows = context_rows(head.ngram.ids(left, right, lengths, 0, 1)[0, 0], 1024)
    assert (head.counts.table[rows[:3], names[0, 4]] >= 1).all()  # the name's own left contexts, counted


def test_count_memory_leaves_the_training_name_out():
    """In training the counts of a counted name's own characters are removed: the logits equal
    those of a head (same weights) whose counts never saw the name, in evaluation mode."""
    torch.manual_seed(0)
    names = _distinct_rows(1)
    full = _count_head([names])
    others = _count_head([names[1:]])
    others.load_state_dict({**full.state_dict(), "counts.table": others.counts.table})
    spans = torch.tensor([[0, 2, 3], [0, 7, 1]])
    tg = span_targets(names, spans)
    masked = names.clone()
    masked[0, 2:5], masked[0, 7] = MASK, MASK
    hidden = torch.randn(names.shape[0], names.shape[1], D)
    full.train()
    full.drop.p = 0.0
    real = tg >= 0  # the span characters (padding steps are never scored)
    got = full(hidden, spans, tg, masked)[real]
    want = others.eval()(hidden, spans, tg, masked)[real]
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(full.eval()(hidden, spans, tg, masked)[real], want, atol=1e-3)  # the counts matter


def test_count_memory_decoding_scores_match_teacher_forcing():
    torch.manual_seed(0)
    head = _count_head([_distinct_rows(2, B=30)]).eval()
    hidden, ids, spans, tg = _setup(2)
    seqs, scores = head.beam_search(hidden, spans, beam=3, input_idx=ids)
    for s in range(spans.shape[0]):
        n = int(spans[s, 2])
        seq = seqs[s, 0, :n]
        lp = F.log_softmax(head(hidden, spans[s: s + 1], seq[None], ids), -1)[0]
        assert torch.allclose(lp.gather(1, seq[:, None]).sum(), scores[s, 0], atol=1e-4)


def test_joint_contexts_read_both_sides_of_the_span():
    """A joint column hashes the n characters left of the predicted one together with the n right
    of its span: changing the character just left changes the left and joint columns only, the
    character just right the right and joint ones; each column stays in its own row range."""
    from mlmkit.char_mlm.heads import SpanNgramMemory

    mem = SpanNgramMemory(256, 3, D, joint=2)
    _, ids, spans, _ = _setup()
    span = spans[4:5]  # row 3, start 10, length 4
    base = mem.ids(*mem.windows(ids, span, 4), 0, 4)
    assert base.shape == (1, 4, 8) and mem.emb.num_embeddings == 8 * 256
    assert all(((context_rows(base, 256)[..., c] // 256) == c).all() for c in range(8))
    for pos, changed in ((9, {0, 1, 2, 6, 7}), (14, {3, 4, 5, 6, 7})):
        other = ids.clone()
        other[3, pos] = (other[3, pos] - 5 + 1) % (V - 5) + 5
        diff = (mem.ids(*mem.windows(other, span, 4), 0, 4) != base)[0, 0]
        assert set(diff.nonzero().flatten().tolist()) == changed
