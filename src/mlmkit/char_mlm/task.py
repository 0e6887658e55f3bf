"""Character-level MLM as the engine's `Task`: planned names -> masked span batches -> span loss.

`SpanTask` is what training and evaluation share (masked span batches of a list of names, the
span loss, metrics, saving); `CharMLMTask` adds the training names, planned by a
`stream.NameStream` (the start-up scan, windows, hub positions, each rank's share), and masks
them as batches. Batch ``i`` of epoch ``e`` is a pure function of (seed, e, i): the stream picks
the names and the key of each name's mask, `masking.make_batch` draws the masks from those keys.

Throughput note: on a small CPU shared with other processes, PyTorch's default intra-op threads
can make these small models several times slower (spinning threads fight for cores);
``torch.set_num_threads(1)`` was 4x faster for the tiny encoder on the 2-core development box.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
import torch.nn as nn

from ..engine.distributed import Dist, all_reduce_sum_, unwrap
from ..engine.draws import EVAL_KEY, example_keys
from ..engine.task import DATA_STATE, Batch, LossOutput, ParamGroup, TaskBase, WeightsCodec, standard_metrics
from ..errors import ConfigError
from ..report.progress import progress_bar
from .config import CharDataConfig, CharMaskingConfig, CharModelConfig
from .data import Alphabet, FamilyMarks
from .encoders import ngram_tables
from .heads import span_loss
from .inputs import encode_names
from .masking import make_batch, span_targets, window_spans
from .model import CharMLMModel, pack_count_tables, save_char_meta, save_char_model, unpack_count_tables
from .stream import NameStream


class SpanTask(TaskBase):
    """What training and evaluation share: masked span batches of names, the span loss, metrics
    (bits per character; span exact match when `decode_eval`), saving. `CharMLMTask` adds the
    streamed training data; `evaluate.py` scores a saved model on any list of names with it."""

    # checkpoints hold a count table as its set cells, as the model folder does (1.3 GB whole
    # with the preset's 1,048,576 rows; the 18M cells set on the full lists take 90 MB)
    weights_codec = WeightsCodec(pack_count_tables, unpack_count_tables)

    def __init__(self, model: Optional[nn.Module], alphabet: Alphabet, data: CharDataConfig,
                 model_cfg: CharModelConfig, masking: CharMaskingConfig, *, eval_domains: list[str],
                 eval_batch_size: int = 128, seed: int = 0, decode_eval: bool = False):
        if model is not None:
            self.model = model
        self.alphabet, self.data_cfg, self.model_cfg, self.mask_cfg = alphabet, data, model_cfg, masking
        self.eval_domains, self.eval_batch_size, self.seed = eval_domains, eval_batch_size, seed
        self.decode_eval = decode_eval  # evaluation also decodes spans greedily (span exact match)
        self._eval_cache: Optional[list[Batch]] = None

    def eval_batches(self) -> Iterator[Batch]:
        if self._eval_cache is None:
            eb = self.eval_batch_size
            names = self.eval_domains
            # keyed by the fixed evaluation key and the name's place in the evaluation set: the
            # same masks for every run, seed and batch size
            keys = example_keys(EVAL_KEY, torch.arange(len(names)))
            self._eval_cache = [make_batch(names[i: i + eb], self.alphabet, self.mask_cfg, keys[i: i + eb])
                                for i in range(0, len(names), eb)]
        return iter(self._eval_cache)

    # ------------------------------------------------------------------ loss
    def counts(self, batch: Batch) -> tuple[int, int]:
        # The (spans x longest span) targets are padded with -100: only real characters count.
        return int((batch["targets"] >= 0).sum()), int(batch["attention_mask"].sum())

    def forward(self, model: nn.Module, batch: Batch) -> LossOutput:
        if self.decode_eval and not model.training:
            return self._forward_decoded(unwrap(model), batch)
        spans, targets = self._targets(model, batch)
        out = model(input_ids=batch["input_ids"], input_idx=batch["input_idx"],
                    attention_mask=batch["attention_mask"], spans=spans, targets=targets,
                    clean_idx=batch.get("clean_idx"))  # used only by a dense head memory, in training
        logits, dense = (out[0], out[1:]) if isinstance(out, tuple) else (out, None)
        loss, n, loss_sum, correct = span_loss(logits, targets)
        if dense is not None:  # the memory's every-character loss joins what is back-propagated only
            loss = loss + self.model_cfg.head_ngram_dense * dense[0] / dense[1].clamp_min(1)
        return LossOutput(loss=loss, n_targets=n, loss_sum=loss_sum, n_correct=correct,
                          n_tokens=batch["attention_mask"].sum())

    def _targets(self, model: nn.Module, batch: Batch):
        """The spans to predict and their gold characters: the masked spans, or in training with a
        cloze encoder a window of 1..`cloze_windows` characters at every character
        (`window_spans`; the loss reported in training is then over those; evaluation always
        scores the masked spans)."""
        n = self.model_cfg.cloze_windows
        if not (model.training and self.model_cfg.arch == "cloze" and n):
            return batch["spans"], batch["targets"]
        spans = window_spans(batch["clean_idx"], n, Alphabet.N_SPECIALS)
        return spans, span_targets(batch["clean_idx"], spans)

    def _forward_decoded(self, model: nn.Module, batch: Batch) -> LossOutput:
        """The loss, plus spans filled greedily by the head: how many come out exactly right."""
        hidden = model.encode(batch["input_ids"], batch["input_idx"], batch["attention_mask"])
        logits = model.head(hidden, batch["spans"], batch["targets"], batch["input_idx"])
        loss, n, loss_sum, correct = span_loss(logits, batch["targets"])
        exact, spans = 0, int(batch["spans"].shape[0])
        if spans:
            seqs, _ = model.head.beam_search(hidden, batch["spans"], beam=1, input_idx=batch["input_idx"])
            gold = batch["targets"]
            exact = int(((seqs[:, 0, : gold.shape[1]] == gold) | (gold < 0)).all(1).sum())
        return LossOutput(loss=loss, n_targets=n, loss_sum=loss_sum, n_correct=correct,
                          n_tokens=batch["attention_mask"].sum(), extra={"spans": spans, "exact_spans": exact})

    def eval_metrics(self, totals: dict[str, Any]) -> dict[str, float]:
        out = standard_metrics(totals)
        if out:
            out["eval_bits_per_char"] = out["eval_loss"] / math.log(2)
        if "spans" in totals:
            out["eval_spans"] = int(totals["spans"])
            out["eval_span_exact_match"] = totals["exact_spans"] / max(totals["spans"], 1)
        return out

    def param_groups(self, model: nn.Module) -> list[ParamGroup]:
        # Hashed n-gram tables are memories, not features: a row learns only when its context
        # occurs, so they get their own LR multiplier and no weight decay.
        tables = [t.weight for t in ngram_tables(model)]
        return [ParamGroup(tables, lr_scale=self.model_cfg.ngram_lr_scale, weight_decay=0.0)] if tables else []

    def sample_text(self, model: nn.Module, n: int) -> str | None:
        from .masked_examples import eval_examples_text

        return eval_examples_text(self, model, n)

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, model: nn.Module, path: Path) -> None:
        save_char_model(unwrap(model), path, self.alphabet, self.data_cfg, self.model_cfg, self.mask_cfg)

    def model_files(self, model: nn.Module, path: Path) -> None:
        save_char_meta(unwrap(model), path, self.alphabet, self.data_cfg, self.model_cfg, self.mask_cfg)


class CharMLMTask(SpanTask):
    """Character MLM on streamed names (the engine's `Task`): the names of a `NameStream`, masked."""

    def __init__(self, data: CharDataConfig | None = None, model: CharModelConfig | None = None,
                 masking: CharMaskingConfig | None = None, *, batch_size: int = 128, seed: int = 0,
                 eval_batch_size: Optional[int] = None, alphabet: Optional[Alphabet] = None,
                 model_instance: Optional[CharMLMModel] = None, build_model: bool = True,
                 rank: int = 0, world_size: int = 1, progress: bool = False):
        data, model, masking = data or CharDataConfig(), model or CharModelConfig(), masking or CharMaskingConfig()
        if batch_size < 1:
            raise ConfigError("config key 'train.batch_size': must be >= 1")
        self.stream = NameStream(data, batch_size=batch_size, seed=seed, rank=rank, world_size=world_size,
                                 alphabet=alphabet)
        super().__init__(model_instance, self.stream.alphabet, data, model, masking,
                         eval_domains=self.stream.eval_names, eval_batch_size=eval_batch_size or batch_size, seed=seed)
        # evaluation always masks at `rate`, so runs trained at different rates stay comparable
        self.train_mask_cfg = (dataclasses.replace(self.mask_cfg, rate=self.mask_cfg.train_rate)
                               if self.mask_cfg.train_rate else self.mask_cfg)
        self.batch_size = batch_size  # per rank
        self.rank, self.world_size = rank, world_size
        if model_instance is None and build_model:
            self.model = CharMLMModel(self.model_cfg, len(self.alphabet), data.max_length + 2, self.mask_cfg.max_span)
            if self.model_cfg.head_ngram_counts:
                self._count_names(self.model.head, progress and rank == 0)

    def _count_names(self, head, progress: bool = False) -> None:
        """Fill the head's count memory with every training name, once (each rank counts its
        share of the chunks; the tables are summed). A resumed run then loads its saved counts."""
        mine = self.stream.chunks_of_rank()
        families = FamilyMarks() if self.model_cfg.head_ngram_count_families else None
        # (40,000 names took 35 s on one core here, with 1M count rows: long enough to show progress)
        with progress_bar(desc="counting names", unit="chunk", total=len(mine), disable=not progress,
                          leave=False) as bar:
            for ch in mine:
                rows = self.stream.chunk_names(ch)
                for i in range(0, len(rows), 4096):
                    block = rows[i: i + 4096]
                    marks = families(block) if families is not None else ()
                    head.count_names(encode_names(block, self.alphabet.encode)[1], *marks)
                bar.update(1)
        counts = head.counts
        if self.world_size > 1:  # every rank joins the sum, one without chunks too
            counts.all_reduce(lambda t: all_reduce_sum_(t, Dist(rank=self.rank, world_size=self.world_size)))
        counts.finish()

    # ------------------------------------------------------------------ the engine's data calls
    def num_batches(self, epoch: int) -> Optional[int]:
        return self.stream.num_batches(epoch)

    def train_batches(self, epoch: int, start: int = 0, stride: int = 1) -> Iterator[Batch]:
        for planned in self.stream.batches(epoch, start, stride):
            batch = make_batch(planned.names, self.alphabet, self.train_mask_cfg, planned.keys)
            if planned.data_state is not None:  # a hub stream's position, which the engine saves
                batch[DATA_STATE] = planned.data_state
            yield batch

    def load_data_state(self, states: list) -> None:
        self.stream.load_state(states)

    def describe(self) -> dict[str, Any]:
        m = unwrap(self.model) if hasattr(self, "model") else None
        out = {"task": "char", "alphabet_size": len(self.alphabet), "alphabet": "".join(self.alphabet.chars),
               **self.stream.describe()}
        if m is not None:
            out["parameters"] = sum(p.numel() for p in m.parameters())
            out["encoder"] = self.model_cfg.arch
            out["head"] = f"{self.model_cfg.head}/{self.model_cfg.head_kind}"
        return out
