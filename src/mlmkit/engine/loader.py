"""Batches ahead of the model: the task's batches of an epoch, built in DataLoader worker
processes (`train.data_workers`) with pinned memory on CUDA, in exactly the order the task gives.

Worker k of K builds batches start + k, start + k + K, ... (`train_batches(epoch, start, stride)`),
and the DataLoader takes one from each worker in turn, so the order (and every batch) is the
one a single process makes -- resume and determinism are untouched. On a small CPU the workers
compete with the model for the cores, so the default is 0 (batches built in the main process).
"""

from __future__ import annotations

import inspect
from typing import Iterator

import torch


def can_stride(task) -> bool:
    """Whether the task's `train_batches` takes a `stride` (every stride-th batch from start)."""
    return "stride" in inspect.signature(task.train_batches).parameters


class _EpochBatches(torch.utils.data.IterableDataset):
    def __init__(self, task, epoch: int, start: int):
        super().__init__()
        self.task, self.epoch, self.start = task, epoch, start

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        k, K = (0, 1) if info is None else (info.id, info.num_workers)
        return iter(self.task.train_batches(self.epoch, self.start + k, stride=K))


def epoch_batches(task, epoch: int, start: int, workers: int = 0, pin_memory: bool = False) -> Iterator:
    """Batches `start`.. of `epoch`, from `workers` processes when the task can stride."""
    if workers <= 0 or not can_stride(task):
        return iter(task.train_batches(epoch, start))
    # Its own generator: the DataLoader draws a base seed for its workers, which from the global
    # generator would shift the model's dropout stream (and break bit-exact runs and resumes).
    loader = torch.utils.data.DataLoader(_EpochBatches(task, epoch, start), batch_size=None, num_workers=workers,
                                         pin_memory=pin_memory, prefetch_factor=2,
                                         generator=torch.Generator().manual_seed(epoch))
    return iter(loader)
