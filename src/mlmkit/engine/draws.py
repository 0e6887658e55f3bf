"""Counter-based random draws: the uniform number for (example, stream, column) is a hash of
those integers, not the next output of a generator.

Why: a mask drawn from a generator over a whole batch depends on the batch's shape -- its other
rows, its padded width, the order of the rows -- so a rank that collates only its own rows, a
resumed run on another number of ranks, or an evaluation with another batch size would draw a
different mask for the same example. Hashing (seed, example, position) gives every example the same
mask wherever it is collated, and stays vectorised (integer tensor ops, no Python loop).

The hash is the 32-bit integer mixer of Chris Wellons' "lowbias32" family (two multiply-xorshift
rounds), computed in int64 so no product overflows.
"""

from __future__ import annotations

import torch

_M32 = 0xFFFFFFFF
_GOLD = 0x9E3779B1
EVAL_KEY = 1234  # evaluation masks: the same for every run, seed and batch size


def _mix32(x: torch.Tensor) -> torch.Tensor:
    x = ((x >> 16) ^ x) * 0x21F0AAAD & _M32
    x = ((x >> 15) ^ x) * 0x735A2D97 & _M32
    return (x >> 15) ^ x


def example_keys(batch_key: int, examples: torch.Tensor) -> torch.Tensor:
    """One 32-bit key per example (int64 ids), for draws keyed by (`batch_key`, example)."""
    lo, hi = batch_key & _M32, (batch_key >> 32) & _M32
    x = _mix32((examples.to(torch.int64) * _GOLD + lo) & _M32)
    return _mix32(x ^ hi)


def uniforms(keys: torch.Tensor, stream: int, n: int) -> torch.Tensor:
    """(len(keys), n) float64 uniforms in [0, 1): column j of row r depends only on (keys[r],
    stream, j). Different streams give independent draws for the same examples."""
    cols = torch.arange(n, dtype=torch.int64)
    x = (keys[:, None] ^ ((cols[None, :] + 1) * _GOLD & _M32)) & _M32
    x = _mix32(_mix32(x ^ (stream * 0x85EBCA6B & _M32)))
    return x.to(torch.float64) / 2.0**32
