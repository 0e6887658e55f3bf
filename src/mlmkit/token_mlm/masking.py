"""BERT-style masking, vectorised over the whole batch.

`TokenMasker` selects ~`rate` of the eligible tokens (never special or padding tokens), then
replaces `mask_fraction` of the selected ones by the mask token, `random_fraction` by a random
*non-special* token and leaves the rest unchanged (80/10/10 by default). With whole-word masking
the selection and the 80/10/10 decision are made per word (word ids from a fast tokenizer, not
`##` prefixes), so a word is always masked whole and the split still holds token-weighted.

It returns the flat positions and original ids of the selected tokens, so the model can run its
vocabulary projection and loss on those positions only (see `models/`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engine.draws import uniforms

IGNORE_INDEX = -100


@dataclass
class MaskedBatch:
    input_ids: torch.Tensor  # (B, T) corrupted input
    positions: torch.Tensor  # (N,) flat indices into the (B*T) grid of the selected tokens
    targets: torch.Tensor  # (N,) original ids at `positions`

    def labels(self) -> torch.Tensor:
        """Dense labels (-100 where nothing is predicted), as transformers' `labels=` expects."""
        labels = torch.full_like(self.input_ids, IGNORE_INDEX)
        labels.view(-1)[self.positions] = self.targets
        return labels


def local_word_index(word_ids: torch.Tensor) -> torch.Tensor:
    """Renumber word ids within each row as 0, 1, 2, ... in order of appearance (-1 stays -1).

    Any integer ids work (per-document ids from a tokenizer, global ids after `group_texts`):
    a new word starts wherever the id changes.
    """
    valid = word_ids >= 0
    prev = torch.nn.functional.pad(word_ids[:, :-1], (1, 0), value=-1)
    starts = valid & (word_ids != prev)
    local = torch.cumsum(starts.to(torch.int64), dim=1) - 1
    return torch.where(valid, local, torch.full_like(local, -1))


class TokenMasker:
    def __init__(
        self,
        *,
        vocab_size: int,
        mask_token_id: int,
        special_ids: list[int] | set[int],
        rate: float = 0.15,
        mask_fraction: float = 0.8,
        random_fraction: float = 0.1,
        whole_word: bool = False,
    ):
        if mask_token_id is None:
            raise ValueError("a mask token id is required")
        self.rate = rate
        self.mask_fraction = mask_fraction
        self.random_fraction = random_fraction
        self.whole_word = whole_word
        self.mask_token_id = int(mask_token_id)
        specials = sorted({int(i) for i in special_ids if i is not None} | {self.mask_token_id})
        self.special_ids = torch.tensor(specials, dtype=torch.long)
        keep = torch.ones(vocab_size, dtype=torch.bool)
        keep[self.special_ids[self.special_ids < vocab_size]] = False
        # Random replacements are drawn from here, so a special token is never inserted.
        self.random_candidates = keep.nonzero().squeeze(1)
        # is_special[id]: a table look-up is ~3x faster than torch.isin on a batch.
        self._is_special = torch.zeros(max(vocab_size, specials[-1] + 1), dtype=torch.bool)
        self._is_special[self.special_ids] = True

    @classmethod
    def from_tokenizer(cls, tokenizer, **kwargs) -> "TokenMasker":
        return cls(
            vocab_size=len(tokenizer),
            mask_token_id=tokenizer.mask_token_id,
            special_ids=list(tokenizer.all_special_ids) + [tokenizer.pad_token_id],
            **kwargs,
        )

    def eligible(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        table = self._is_special
        if input_ids.numel() and 0 <= int(input_ids.min()) and int(input_ids.max()) < len(table):
            if table.device != input_ids.device:
                self._is_special = table = table.to(input_ids.device)
            ok = ~table[input_ids]
        else:  # ids outside the table (a model vocabulary larger than the tokenizer's)
            ok = ~torch.isin(input_ids, self.special_ids.to(input_ids.device))
        if attention_mask is not None:
            ok &= attention_mask.bool()
        return ok

    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        word_ids: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        keys: torch.Tensor | None = None,
    ) -> MaskedBatch:
        """Mask a batch. The draws come from `keys` (one per row, `engine.draws.example_keys`:
        each row's mask then depends on that row alone, wherever it is collated) or, without
        keys, from `generator` over the whole batch."""
        eligible = self.eligible(input_ids, attention_mask)
        # One uniform draw u per token (per word) decides both things: selected iff u < rate, and
        # given that, u / rate is again uniform on [0, 1) and picks [MASK] / random / unchanged.
        if keys is not None:
            u = uniforms(keys, 1, input_ids.shape[1])
        else:
            u = torch.rand(input_ids.shape, generator=generator)
        if self.whole_word:
            if word_ids is None:
                raise ValueError("whole-word masking needs word ids")
            local = local_word_index(torch.where(eligible, word_ids, torch.full_like(word_ids, -1)))
            # One draw per word: token t of word w reads draw number w of its row.
            u = u.gather(1, local.clamp(min=0))
            eligible = eligible & (local >= 0)
        selected = eligible & (u < self.rate)
        action_u = u / self.rate
        to_mask = selected & (action_u < self.mask_fraction)
        to_random = selected & ~to_mask & (action_u < self.mask_fraction + self.random_fraction)

        corrupted = input_ids.masked_fill(to_mask, self.mask_token_id)
        n_random = int(to_random.sum())
        if n_random:
            n = len(self.random_candidates)
            if keys is not None:  # a second stream of the same rows: the replacement token
                pick = (uniforms(keys, 2, input_ids.shape[1])[to_random] * n).long().clamp_(max=n - 1)
            else:
                pick = torch.randint(n, (n_random,), generator=generator)
            corrupted[to_random] = self.random_candidates[pick].to(input_ids.dtype)
        positions = selected.view(-1).nonzero().squeeze(1)
        targets = input_ids.view(-1)[positions]
        return MaskedBatch(corrupted, positions, targets)
