"""TokenMLMTask: each rank collates only its rows, and together the ranks train on exactly the
batches (and masks) of one process with the global batch."""

import numpy as np
import torch

from mlmkit.token_mlm.data import group_texts, line_by_line
from mlmkit.token_mlm.masking import TokenMasker
from mlmkit.token_mlm.task import TokenMLMTask


def _rows(batch):
    """Each row's (input ids, targets) without padding."""
    out = []
    ids, att = batch["input_ids"], batch["attention_mask"]
    width = ids.shape[1]
    row_of = batch["positions"] // width
    for r in range(ids.shape[0]):
        n = int(att[r].sum())
        out.append((tuple(ids[r, :n].tolist()), tuple(batch["targets"][row_of == r].tolist()),
                    tuple((batch["positions"][row_of == r] % width).tolist())))
    return out


def test_ranks_split_every_global_batch_and_mask_rows_alike(tiny_tokenizer, english_texts, tiny_bert):
    for pack in (group_texts, line_by_line):
        seqs = pack(english_texts[:600], tiny_tokenizer, 48, word_ids=True, progress=False)
        masker = TokenMasker.from_tokenizer(tiny_tokenizer, whole_word=True)
        one = TokenMLMTask(tiny_bert, tiny_tokenizer, seqs, None, masker, batch_size=12, seed=4)
        ranks = [TokenMLMTask(tiny_bert, tiny_tokenizer, seqs, None, masker, batch_size=4, seed=4, rank=r,
                              world_size=3) for r in range(3)]
        assert ranks[0].num_batches(1) == one.num_batches(1)
        per_rank = [list(t.train_batches(1)) for t in ranks]
        for i, whole in enumerate(one.train_batches(1)):
            parts = [p[i] for p in per_rank]
            assert sum(p["input_ids"].shape[0] for p in parts) == whole["input_ids"].shape[0]
            for r, p in enumerate(parts):  # every third row each (batches are sorted by length), same masks
                assert _rows(p) == _rows(whole)[r::3]
        # a rank pads to its own longest row, not the global batch's
        assert pack is group_texts or any(p["input_ids"].shape[1] < w["input_ids"].shape[1]
                   for p, w in zip(per_rank[0], one.train_batches(1)))


def test_workers_striding_an_epoch_give_the_same_batches(tiny_tokenizer, english_texts, tiny_bert):
    seqs = line_by_line(english_texts[:300], tiny_tokenizer, 48, progress=False)
    task = TokenMLMTask(tiny_bert, tiny_tokenizer, seqs, None, TokenMasker.from_tokenizer(tiny_tokenizer),
                        batch_size=8, seed=1)
    full = list(task.train_batches(0, 3))
    a, b = list(task.train_batches(0, 3, stride=2)), list(task.train_batches(0, 4, stride=2))
    merged = [x for pair in zip(a, b) for x in pair] + a[len(b):]
    assert len(merged) == len(full)
    assert all(torch.equal(x["input_ids"], y["input_ids"]) and torch.equal(x["targets"], y["targets"])
               for x, y in zip(merged, full))


def test_evaluation_masks_do_not_depend_on_seed_or_batch_size(tiny_tokenizer, english_texts, tiny_bert):
    val = line_by_line(english_texts[:80], tiny_tokenizer, 48, progress=False)
    masker = TokenMasker.from_tokenizer(tiny_tokenizer)
    a = TokenMLMTask(tiny_bert, tiny_tokenizer, None, val, masker, batch_size=4, seed=1)
    b = TokenMLMTask(tiny_bert, tiny_tokenizer, None, val, masker, batch_size=32, seed=7)
    rows = lambda t: [row for batch in t.eval_batches() for row in _rows(batch)]
    assert len(rows(a)) == len(val) and rows(a) == rows(b)
