import torch

from mlmkit.token_mlm.data import group_texts
from mlmkit.token_mlm.masking import TokenMasker, local_word_index


def _batch(tokenizer, texts, max_length=128, word_ids=False):
    seqs = group_texts(texts, tokenizer, max_length, word_ids=word_ids, progress=False)
    n = len(seqs)
    ids = torch.full((n, max_length), tokenizer.pad_token_id, dtype=torch.long)
    att = torch.zeros_like(ids)
    words = torch.full_like(ids, -1)
    for i in range(n):
        t, w = seqs.get(i)
        ids[i, : len(t)] = torch.from_numpy(t.astype("int64"))
        att[i, : len(t)] = 1
        if w is not None:
            words[i, : len(t)] = torch.from_numpy(w.astype("int64"))
    return ids, att, words


def test_bert_masking_statistics_over_100k_tokens(tiny_tokenizer, english_texts):
    ids, att, _ = _batch(tiny_tokenizer, english_texts)
    # Pad some rows heavily, so padding exists to be (not) selected.
    att[::3, 64:] = 0
    ids[::3, 64:] = tiny_tokenizer.pad_token_id
    masker = TokenMasker.from_tokenizer(tiny_tokenizer)
    specials = torch.tensor(sorted(set(tiny_tokenizer.all_special_ids)))
    eligible = masker.eligible(ids, att)
    assert int(eligible.sum()) >= 100_000
    out = masker(ids, att, generator=torch.Generator().manual_seed(0))
    selected = torch.zeros(ids.numel(), dtype=torch.bool)
    selected[out.positions] = True
    selected = selected.view_as(ids)
    # never special, never padding
    assert not (selected & torch.isin(ids, specials)).any()
    assert not (selected & (att == 0)).any()
    rate = selected.sum().item() / eligible.sum().item()
    assert abs(rate - 0.15) < 0.005
    n = selected.sum().item()
    masked = (out.input_ids == tiny_tokenizer.mask_token_id) & selected
    unchanged = (out.input_ids == ids) & selected
    random = selected & ~masked & ~unchanged
    assert abs(masked.sum().item() / n - 0.8) < 0.01
    # a random draw can hit the original id: count those as "random" draws by expectation
    assert abs((random.sum().item() + unchanged.sum().item()) / n - 0.2) < 0.01
    assert abs(unchanged.sum().item() / n - 0.1) < 0.012
    # random replacements never insert a special token
    assert not torch.isin(out.input_ids[random], specials).any()
    # nothing outside the selection changes
    assert torch.equal(out.input_ids[~selected], ids[~selected])
    assert torch.equal(out.targets, ids.view(-1)[out.positions])


def test_random_replacement_never_draws_special_tokens():
    masker = TokenMasker(vocab_size=10, mask_token_id=4, special_ids=[0, 1, 2, 3], rate=0.99,
                         mask_fraction=0.0, random_fraction=1.0)
    ids = torch.full((200, 50), 7)
    out = masker(ids, generator=torch.Generator().manual_seed(1))
    assert set(out.input_ids.unique().tolist()) <= {5, 6, 7, 8, 9}


def test_whole_word_masking_selects_whole_words_and_keeps_split(tiny_tokenizer, english_texts):
    ids, att, words = _batch(tiny_tokenizer, english_texts, word_ids=True)
    masker = TokenMasker.from_tokenizer(tiny_tokenizer, whole_word=True)
    out = masker(ids, att, words, generator=torch.Generator().manual_seed(3))
    selected = torch.zeros(ids.numel(), dtype=torch.bool)
    selected[out.positions] = True
    selected = selected.view_as(ids)
    local = local_word_index(words)
    multi = 0
    for r in range(ids.shape[0]):
        for w in local[r].unique().tolist():
            if w < 0:
                continue
            toks = selected[r][local[r] == w]
            assert toks.all() or not toks.any(), "a word was partially masked"
            multi += int(toks.all() and len(toks) > 1)
    assert multi > 100  # multi-piece words do get masked
    eligible = masker.eligible(ids, att)
    rate = selected.sum().item() / eligible.sum().item()
    assert abs(rate - 0.15) < 0.01
    n = selected.sum().item()
    masked = ((out.input_ids == tiny_tokenizer.mask_token_id) & selected).sum().item()
    assert abs(masked / n - 0.8) < 0.015


def test_masking_is_deterministic_given_a_generator(tiny_tokenizer, english_texts):
    ids, att, _ = _batch(tiny_tokenizer, english_texts[:200])
    m = TokenMasker.from_tokenizer(tiny_tokenizer)
    a = m(ids, att, generator=torch.Generator().manual_seed(5))
    b = m(ids, att, generator=torch.Generator().manual_seed(5))
    c = m(ids, att, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.positions, b.positions)
    assert not torch.equal(a.positions, c.positions)


def test_local_word_index_renumbers_per_row():
    w = torch.tensor([[-1, 7, 7, 9, -1, -1], [-1, 3, 4, 4, 4, -1]])
    assert local_word_index(w).tolist() == [[-1, 0, 0, 1, -1, -1], [-1, 0, 1, 1, 1, -1]]
