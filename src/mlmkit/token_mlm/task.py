"""Token-level MLM as a `Task`: sequences -> padded, masked batches -> sparse loss.

Batch `i` of epoch `e` is a pure function of (seed, e, i): the epoch's order comes from a
generator seeded with (seed, e), and the mask from one seeded with (seed, e, i). Resume is then
just "start the plan at batch i": no data is re-read, and the result is bit-identical.

Data parallelism: `batch_size` is per rank. Every rank computes the same *global* plan of
batches of `batch_size * world_size` rows, masks global batch `i` (same seed on every rank), and
keeps its own contiguous slice of rows. So the union over ranks of step `i` is exactly the batch
one process with `batch_size * world_size` would train on, with the same mask: a row's mask does
not depend on which rank holds it. (The cost: each rank pads and masks the global batch, not just
its slice -- a few milliseconds of CPU work for in-memory token sequences, far below a step.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.nn import functional as F

from ..engine.distributed import barrier, init_distributed, rank_and_world, unwrap
from ..engine.task import Batch, LossOutput, TaskBase
from ..errors import ConfigError, MlmkitError
from ..util import mix_seed
from .data import Sequences, load_texts, split_validation, subset, tokenize
from .masking import TokenMasker
from .model import SparseMLM, build_model, load_model
from .tokenizers import load_tokenizer, train_tokenizer

EVAL_MASK_SEED = 1234  # fixed for every run, so validation numbers are comparable across runs


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
        Each rank trains on its slice of every batch (`_rows_of_rank`), so every example is seen
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

    def collate(self, seqs: Sequences, indices, generator: torch.Generator) -> Batch:
        ids, att, words = self._pad(seqs, indices)
        masked = self.masker(ids, att, words, generator=generator)
        return {"input_ids": masked.input_ids, "attention_mask": att,
                "positions": masked.positions, "targets": masked.targets}

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        plan = self._plan(epoch)
        for i in range(start, len(plan)):
            # Seeded by the global batch, not the rank: every rank draws the same mask for it.
            g = torch.Generator().manual_seed(mix_seed(self.seed, epoch, i))
            batch = self.collate(self.train, plan[i], g)
            yield batch if self.world_size == 1 else self._rows_of_rank(batch)

    def _rows_of_rank(self, batch: Batch) -> Batch:
        """This rank's contiguous slice of a masked global batch, trimmed to its own longest row;
        the flat `positions` are re-based onto the smaller grid (their order is kept)."""
        n_rows, width = batch["input_ids"].shape
        bounds = np.linspace(0, n_rows, self.world_size + 1).round().astype(int)  # even split
        lo, hi = int(bounds[self.rank]), int(bounds[self.rank + 1])
        att = batch["attention_mask"][lo:hi]
        w = max(int(att.sum(1).max()), 1)
        pos = batch["positions"]
        row, col = pos // width, pos % width
        keep = (row >= lo) & (row < hi)
        return {"input_ids": batch["input_ids"][lo:hi, :w].contiguous(), "attention_mask": att[:, :w].contiguous(),
                "positions": (row[keep] - lo) * w + col[keep], "targets": batch["targets"][keep]}

    # ------------------------------------------------------------------ evaluation
    def eval_tensors(self):
        """Mask the whole validation set once, with a fixed seed: every evaluation (any batch
        size, any checkpoint, any run) scores the same masked positions."""
        if self._eval_cache is None:
            order = np.argsort(self.validation.lengths(), kind="stable")
            ids, att, words = self._pad(self.validation, order)
            g = torch.Generator().manual_seed(EVAL_MASK_SEED)
            masked = self.masker(ids, att, words, generator=g)
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

    def sample_text(self, model, n: int) -> str | None:
        from .samples import eval_samples_text

        return eval_samples_text(self, model, n)

    def describe(self) -> dict[str, Any]:
        return {
            "vocab_size": len(self.tokenizer),
            "train_sequences": 0 if self.train is None else len(self.train),
            "train_tokens": 0 if self.train is None else self.train.num_tokens(),
            "validation_sequences": 0 if self.validation is None else len(self.validation),
        }


# ---------------------------------------------------------------------- building from a config
def build_token_task(cfg, *, log=print, progress: bool = True, resume: bool = False) -> TokenMLMTask:
    """Config -> tokenizer, model, tokenised train/validation sets, masker. `resume`: reuse the
    tokenizer this run trained before (see `_run_tokenizer`)."""
    d, m = cfg.data, cfg.model
    if not d.train:
        raise ConfigError("config key 'data.train': no training data given (use --data FILE)")
    texts = load_texts(d, d.train, max_samples=d.max_samples, log=log)
    if d.validation:
        train_texts, val_texts = texts, load_texts(d, d.validation, log=log)
    else:
        train_texts, val_texts = split_validation(texts, d.validation_fraction, seed=0)
    if not train_texts:
        raise MlmkitError("no training records left after the validation split")

    # Seed the model's initialisation: a run is reproducible from its config, and every rank of a
    # distributed run builds the same model (FSDP shards each rank's copy without broadcasting).
    torch.manual_seed(cfg.train.seed)
    if m.init_from:
        tokenizer = load_tokenizer(cfg.tokenizer.name_or_path or m.init_from,
                                   trust_remote_code=m.trust_remote_code)
        model = load_model(m.init_from, trust_remote_code=m.trust_remote_code)
        log(f"continuing pre-training from {m.init_from} "
            f"({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters)")
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(tokenizer))
    else:
        if cfg.tokenizer.name_or_path:
            tokenizer = load_tokenizer(cfg.tokenizer.name_or_path, trust_remote_code=m.trust_remote_code)
        else:
            tokenizer = _run_tokenizer(cfg, train_texts, resume=resume, log=log, progress=progress)
        model = build_model(m.arch, m.size, tokenizer, d.max_length, m.overrides)
        log(f"new {m.arch}-{m.size} model ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters)")
    limit = _max_length_of(model)
    if limit is not None and d.max_length > limit:
        raise ConfigError(f"config key 'data.max_length': {d.max_length} exceeds the model's "
                          f"maximum of {limit} positions")
    whole = cfg.masking.whole_word
    train_seqs = tokenize(train_texts, tokenizer, d.mode, d.max_length, word_ids=whole, progress=progress)
    val_seqs = tokenize(val_texts, tokenizer, d.mode, d.max_length, word_ids=whole, progress=progress)
    if d.max_eval_samples is not None and len(val_seqs) > d.max_eval_samples:
        val_seqs = subset(val_seqs, range(d.max_eval_samples))
    log(f"{len(train_seqs):,} training sequences ({train_seqs.num_tokens():,} tokens), "
        f"{len(val_seqs):,} validation sequences, mode {d.mode}, max_length {d.max_length}")
    masker = make_masker(tokenizer, cfg.masking)
    dist_rank, dist_world = rank_and_world()
    return TokenMLMTask(model, tokenizer, train_seqs, val_seqs, masker, batch_size=cfg.train.batch_size,
                        seed=cfg.train.seed, sparse=m.sparse_prediction, rank=dist_rank,
                        world_size=dist_world)


def _run_tokenizer(cfg, train_texts, *, resume: bool, log, progress: bool):
    """Train the run's tokenizer once and keep it in `<output_dir>/tokenizer/`.

    Tokenizer training is not bit-reproducible (the `tokenizers` trainers break frequency ties in
    hash order: two trainings on the same text can number the vocabulary differently), so a
    resumed run, and every rank but 0 of a distributed run, must load rank 0's saved copy rather
    than train their own -- or the checkpoint's embeddings would be read with another vocabulary.
    """
    folder = Path(cfg.train.output_dir) / "tokenizer"
    dist_info = init_distributed(cfg.train.strategy)  # no-op for one process
    reuse = resume and (folder / "tokenizer_config.json").is_file()
    tokenizer = None
    if dist_info.is_main and not reuse:
        log(f"training a {cfg.tokenizer.kind} tokenizer (vocab {cfg.tokenizer.vocab_size}) "
            f"on {len(train_texts):,} records")
        tokenizer = train_tokenizer(train_texts, kind=cfg.tokenizer.kind, vocab_size=cfg.tokenizer.vocab_size,
                                    min_frequency=cfg.tokenizer.min_frequency,
                                    lowercase=cfg.tokenizer.lowercase, model_max_length=cfg.data.max_length,
                                    show_progress=progress)
        tokenizer.save_pretrained(folder)
    barrier(dist_info)  # rank 0's tokenizer is on disk
    if tokenizer is None:
        if reuse:
            log(f"reusing this run's tokenizer from {folder}")
        tokenizer = load_tokenizer(str(folder))
    return tokenizer


def make_masker(tokenizer, masking_cfg) -> TokenMasker:
    if tokenizer.mask_token_id is None:
        raise MlmkitError("the tokenizer has no mask token; masked-LM pre-training needs one")
    return TokenMasker.from_tokenizer(tokenizer, rate=masking_cfg.rate, mask_fraction=masking_cfg.mask_fraction,
                                      random_fraction=masking_cfg.random_fraction,
                                      whole_word=masking_cfg.whole_word)


def _max_length_of(model) -> int | None:
    cfg = getattr(model, "config", None)
    n = getattr(cfg, "max_position_embeddings", None)
    if n is None:
        return None
    if getattr(cfg, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        n -= 2
    return int(n)
