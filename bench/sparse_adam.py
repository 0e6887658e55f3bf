"""The sparse-table optimiser step: mlmkit's RowAdam against torch.optim.SparseAdam (the
reference), measured in the same run on the shapes of the character preset's n-gram tables.

    python bench/sparse_adam.py [--threads 1] [--steps 20]

Each case: a table of ROWS x DIM, a coalesced gradient on N random rows (what a step of
`domains-tiny` touches: the encoder's 131,072 x 128 input table, the span head's 1,048,576 x 32
memory; N doubles under 2 DDP ranks, which update the union of their rows), the same gradient
every step. Prints ms per step for each and the ratio, and the largest weight difference."""

from __future__ import annotations

import argparse
import time

import torch

from mlmkit.engine.optim import RowAdam

CASES = [(131072, 128, 15000), (131072, 128, 30000), (1048576, 32, 30000), (1048576, 32, 60000)]


def time_steps(opt, p, grad, steps: int) -> float:
    total = 0.0
    for _ in range(steps):
        p.grad = grad
        t = time.perf_counter()
        opt.step()
        total += time.perf_counter() - t
    return total / steps * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'rows x dim':>16} {'touched':>8} {'SparseAdam ms':>14} {'RowAdam ms':>11} {'speed-up':>9} {'max diff':>9}")
    for rows, dim, n in CASES:
        g = torch.Generator().manual_seed(0)
        idx = torch.randperm(rows, generator=g)[:n].sort().values
        grad = torch.sparse_coo_tensor(idx[None], torch.randn(n, dim, generator=g), (rows, dim), check_invariants=False).coalesce()
        ref = torch.nn.Parameter(torch.randn(rows, dim, generator=g))
        mine = torch.nn.Parameter(ref.detach().clone())
        t_ref = time_steps(torch.optim.SparseAdam([ref], lr=1e-3), ref, grad, args.steps)
        t_mine = time_steps(RowAdam([mine], lr=1e-3), mine, grad, args.steps)
        diff = (ref - mine).abs().max().item()
        print(f"{rows:>9,} x {dim:<4} {n:>8,} {t_ref:>14.1f} {t_mine:>11.1f} {t_ref / t_mine:>8.1f}x {diff:>9.1e}")


if __name__ == "__main__":
    main()
