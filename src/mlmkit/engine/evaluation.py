"""The evaluation loop, for every task: sums over every target of the validation set (not a mean
of batch means), so the numbers do not depend on the batch size or the number of ranks."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .device import autocast, to_device
from .distributed import Dist, all_gather_objects
from .task import Task


def _add(totals: dict[str, Any], key: str, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy() if value.ndim else float(value)
    totals[key] = totals[key] + value if key in totals else value


@torch.no_grad()
def evaluate(task: Task, model: torch.nn.Module, device: torch.device, precision: str,
             dist_info: Dist | None = None) -> dict[str, float]:
    """`task`'s evaluation metrics for `model` on `task.eval_batches()`.

    DDP: rank r scores batches r, r+W, ... and the sums are combined (exact, token-weighted).
    FSDP: every forward is a collective, so all ranks score every batch and nothing is combined."""
    was_training = model.training
    model.eval()
    totals: dict[str, Any] = {"loss_sum": 0.0, "targets": 0, "correct": 0}
    split = dist_info is not None and dist_info.enabled and not dist_info.fsdp
    for idx, batch in enumerate(task.eval_batches()):
        if split and idx % dist_info.world_size != dist_info.rank:
            continue
        with autocast(device, precision):
            out = task.forward(model, to_device(batch, device))
        totals["loss_sum"] += float(out.loss_sum)
        totals["targets"] += int(out.n_targets)
        totals["correct"] += int(out.n_correct)
        for key, value in out.extra.items():
            _add(totals, key, value)
    if split:
        totals = _combine(all_gather_objects(totals, dist_info))
    if dist_info is not None and dist_info.fsdp:
        # FSDP2 keeps the root's parameters unsharded after a forward until the backward
        # reshards them; with no backward here they would stay so, and the optimiser (and the
        # checkpoint) would no longer find its sharded parameters in the model.
        model.reshard()
    model.train(was_training)
    return task.eval_metrics(totals)


def _combine(per_rank: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for totals in per_rank:  # rank order: the same sum on every rank
        for key, value in totals.items():
            _add(out, key, np.asarray(value) if isinstance(value, np.ndarray) else value)
    return out
