"""Token-level MLM as a `Task`: sequences -> padded, masked batches -> sparse loss. A run's task is
built from its config by `build.py` (tokenizer, model, prepared sequences).

Batch `i` of epoch `e` is a pure function of (seed, e, i): the epoch's order comes from a
generator seeded with (seed, e), and each row's mask from counter-based draws keyed by
(seed, e, i, example) (`engine/draws.py`). Resume is then just "start the plan at batch i": no
data is re-read, and the result is bit-identical.

Data parallelism: `batch_size` is per rank. Every rank computes the same *global* plan of
batches of `batch_size * world_size` rows and pads and masks only its own share (every W-th row) of
each. A row's mask does not depend on which rank holds it, nor on the other rows, so the union
over ranks of step `i` is exactly the batch one process with `batch_size * world_size` trains
on -- and a run resumed on another number of ranks with the same global batch continues the same
order with the same masks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.nn import functional as F

from ..engine.distributed import unwrap
from ..engine.draws import EVAL_KEY, example_keys
from ..engine.task import Batch, LossOutput, TaskBase
from ..util import mix_seed
from .data import Sequences
from .masking import TokenMasker
from .model import SparseMLM


class TokenMLMTask(TaskBase):
    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        train: Sequences | None,
        validation: Sequences | None,
        masker: TokenMasker,
        *,
        batch_size: int = 32,
        seed: int = 0,
        sparse: bool = True,
        eval_batch_size: int | None = None,
        bucket: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer needs a padding token")
        # The trainer wraps `self.model` (DDP, FSDP, compile), so it must be the module whose
        # forward computes the sparse logits; the masked-LM itself is `self.model.model`.
        self.model = model if isinstance(model, SparseMLM) else SparseMLM(model, sparse=sparse)
        self.saved_submodule = "model"  # SparseMLM.model: the transformers model
        self.tokenizer = tokenizer
        self.train = train
        self.validation = validation
        self.masker = masker
        self.batch_size = batch_size
        self.seed = seed
        self.sparse = sparse
        self.eval_batch_size = eval_batch_size or batch_size
        self.bucket = bucket
        self.rank, self.world_size = rank, world_size
        self.pad_id = int(tokenizer.pad_token_id)
        self._plans: dict[int, list[np.ndarray]] = {}
        self._eval_cache = None

    # ------------------------------------------------------------------ batch plans
    def _plan(self, epoch: int) -> list[np.ndarray]:
        """The global batches (arrays of example indices, `batch_size * world_size` rows) of
        `epoch`: the same on every rank, and the same as one process with the global batch size.
        Each rank trains on its share of every batch (`rows_of_rank`), so every example is seen
        once per epoch across ranks.
        """
        if epoch in self._plans:
            return self._plans[epoch]
        n = len(self.train)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(n)
        b = self.batch_size * self.world_size
        lengths = self.train.lengths()
        if self.bucket and lengths.min(initial=0) != lengths.max(initial=0):
            # Length bucketing: sort within windows of 64 batches, so a batch's rows have similar
            # lengths and dynamic padding wastes little, yet the order stays random.
            window = 64 * b
            chunks = []
            for s in range(0, n, window):
                part = order[s : s + window]
                chunks.append(part[np.argsort(lengths[part], kind="stable")])
            order = np.concatenate(chunks)
        batches = [order[s : s + b] for s in range(0, n, b)]
        perm = rng.permutation(len(batches))
        batches = [batches[i] for i in perm]
        # A last batch with fewer rows than ranks would leave a rank with nothing to train on
        # (and DDP needs every rank in every step): drop it (< world_size examples per epoch).
        plan = [p for p in batches if len(p) >= self.world_size]
        self._plans = {epoch: plan}  # keep only the current epoch's plan
        return plan

    def num_batches(self, epoch: int) -> int:
        return len(self._plan(epoch))

    def _pad(self, seqs: Sequences, indices) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        items = [seqs.get(int(i)) for i in indices]
        width = max(len(t) for t, _ in items)
        ids = np.full((len(items), width), self.pad_id, dtype=np.int64)
        att = np.zeros((len(items), width), dtype=np.int64)
        words = np.full((len(items), width), -1, dtype=np.int64) if seqs.word_ids is not None else None
        for r, (t, w) in enumerate(items):
            ids[r, : len(t)] = t
            att[r, : len(t)] = 1
            if words is not None:
                words[r, : len(t)] = w
        return (torch.from_numpy(ids), torch.from_numpy(att),
                None if words is None else torch.from_numpy(words))

    def collate(self, seqs: Sequences, indices, keys: torch.Tensor) -> Batch:
        """Pad and mask the sequences `indices`; `keys` (one per row) decide the masks."""
        ids, att, words = self._pad(seqs, indices)
        masked = self.masker(ids, att, words, keys=keys)
        return {"input_ids": masked.input_ids, "attention_mask": att,
                "positions": masked.positions, "targets": masked.targets}

    def train_batches(self, epoch: int, start: int = 0, stride: int = 1) -> Iterator[Batch]:
        plan = self._plan(epoch)
        for i in range(start, len(plan), stride):
            # Each rank pads and masks only its rows; a row's mask is keyed by (seed, epoch,
            # batch, example), never by the rank or the batch's shape, so the ranks together
            # train on exactly what one process with the global batch trains on.
            rows = self.rows_of_rank(plan[i])
            keys = example_keys(mix_seed(self.seed, epoch, i), torch.from_numpy(rows.astype(np.int64)))
            yield self.collate(self.train, rows, keys)

    # ------------------------------------------------------------------ evaluation
    def eval_tensors(self):
        """Mask the whole validation set once, with a fixed seed: every evaluation (any batch
        size, any checkpoint, any run) scores the same masked positions."""
        if self._eval_cache is None:
            order = np.argsort(self.validation.lengths(), kind="stable")
            ids, att, words = self._pad(self.validation, order)
            keys = example_keys(EVAL_KEY, torch.from_numpy(order.astype(np.int64)))
            masked = self.masker(ids, att, words, keys=keys)
            selected = torch.zeros(ids.numel(), dtype=torch.bool)
            selected[masked.positions] = True
            self._eval_cache = (ids, masked.input_ids, att, selected.view_as(ids))
        return self._eval_cache

    def eval_batches(self) -> Iterator[Batch]:
        if self.validation is None or len(self.validation) == 0:
            return
        original, corrupted, att, selected = self.eval_tensors()
        for s in range(0, len(original), self.eval_batch_size):
            rows = slice(s, s + self.eval_batch_size)
            width = int(att[rows].sum(1).max())
            sel = selected[rows, :width].reshape(-1)
            positions = sel.nonzero().squeeze(1)
            yield {"input_ids": corrupted[rows, :width].contiguous(),
                   "attention_mask": att[rows, :width].contiguous(),
                   "positions": positions,
                   "targets": original[rows, :width].reshape(-1)[positions]}

    # ------------------------------------------------------------------ model
    def counts(self, batch: Batch) -> tuple[int, int]:
        return int(batch["targets"].numel()), int(batch["attention_mask"].sum())

    def forward(self, model, batch: Batch) -> LossOutput:
        # Call the module (not a function that reaches into it): under DDP/FSDP/compile the
        # wrapper's forward is what synchronises gradients / gathers parameters.
        if not isinstance(unwrap(model), SparseMLM):  # a bare masked-LM, e.g. from `mlmkit eval`
            model = SparseMLM(model, sparse=self.sparse)
        if hasattr(model, "_orig_mod"):  # torch.compile'd: the number of masked positions
            # changes every batch; declare it dynamic up front (one compile instead of a second
            # one at the first new count: ~30 s on a 2-core CPU).
            torch._dynamo.maybe_mark_dynamic(batch["positions"], 0)
        logits = model(batch["input_ids"], batch["attention_mask"], batch["positions"])
        targets = batch["targets"]
        loss_sum = F.cross_entropy(logits.float(), targets, reduction="sum")
        n = targets.numel()
        loss = loss_sum / max(n, 1)
        correct = (logits.detach().argmax(-1) == targets).sum()
        return LossOutput(loss=loss, n_targets=n, loss_sum=loss_sum.detach(), n_correct=correct,
                          n_tokens=batch["attention_mask"].sum())

    def save_pretrained(self, model, path: Path) -> None:
        # `save_pretrained(path)` with no options: transformers models write safetensors by
        # default, and any other model (EncoderForMaskedLM) need not accept transformers' keywords.
        unwrap(model).save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    def model_files(self, model, path: Path) -> None:
        config = getattr(unwrap(model).get_submodule(self.saved_submodule), "config", None)
        if hasattr(config, "save_pretrained"):  # transformers models (not a bare EncoderForMaskedLM)
            config.save_pretrained(path)
            self.tokenizer.save_pretrained(path)

    def sample_text(self, model, n: int) -> str | None:
        from .masked_examples import eval_examples_text

        return eval_examples_text(self, model, n)

    def describe(self) -> dict[str, Any]:
        return {
            "vocab_size": len(self.tokenizer),
            "train_sequences": 0 if self.train is None else len(self.train),
            "train_tokens": 0 if self.train is None else self.train.num_tokens(),
            "validation_sequences": 0 if self.validation is None else len(self.validation),
        }
