"""Shared test inputs: a fixed masked token batch with one padded row."""

import torch

from mlmkit.token_mlm.masking import TokenMasker


def masked_token_batch(vocab: int = 500, length: int = 48, pad_from: int = 30):
    """(MaskedBatch, attention mask) of 4 rows of random ids >= 5 (ids 0-3 special, 4 the mask),
    the second row padded from `pad_from` on; the same on every call."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (4, length), generator=g)
    att = torch.ones_like(ids)
    att[1, pad_from:] = 0
    ids[1, pad_from:] = 0
    masker = TokenMasker(vocab_size=vocab, mask_token_id=4, special_ids=[0, 1, 2, 3])
    return masker(ids, att, generator=g), att
