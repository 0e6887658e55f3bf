"""The engine's own config sections: `optim` (AdamW and its schedule) and `train` (the loop)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from ..config import check, check_choices
from ..report.loggers import check_logger_names


@dataclass
class OptimConfig:
    lr: float = 5e-4  # peak learning rate (AdamW), reached after the warm-up
    weight_decay: float = 0.01  # AdamW weight decay (none on biases and norm weights)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])  # AdamW's decay rates of its two moments
    eps: float = 1e-6  # AdamW's epsilon (added to the denominator)
    warmup_steps: Optional[int] = None  # None: warmup_ratio of the planned steps
    warmup_ratio: float = 0.06  # share of the planned steps (or time budget) spent warming up from 0
    # the LR after the warm-up: linear or cosine decay to min_lr_ratio, constant, or wsd
    # (warmup-stable-decay: the peak until the last decay_ratio of the run, then decay_shape)
    schedule: Literal["linear", "cosine", "constant", "wsd"] = "linear"
    min_lr_ratio: float = 0.0  # the schedule's floor, as a share of lr
    decay_ratio: float = 0.2  # wsd: the share of the run (steps or time budget) spent decaying
    decay_shape: Literal["1-sqrt", "linear"] = "1-sqrt"  # wsd: how the LR falls in that share
    grad_clip: float = 1.0  # clip the gradients' total norm to this (0: no clipping)

    def __post_init__(self):
        check_choices(self, "optim")
        check(self.lr > 0, "optim.lr", "must be > 0")
        check(len(self.betas) == 2, "optim.betas", "must be two numbers")
        # AdamW's moment decays: 1 would never forget, a negative one flips the moments' signs
        check(all(0.0 <= b < 1.0 for b in self.betas), "optim.betas", "must both be in [0, 1)")
        check(self.eps > 0, "optim.eps", "must be > 0")  # 0: a parameter with no gradient history divides by zero
        check(self.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
        check(self.warmup_steps is None or self.warmup_steps >= 0, "optim.warmup_steps", "must be >= 0")
        check(0.0 <= self.warmup_ratio <= 1.0, "optim.warmup_ratio", "must be in [0, 1]")
        check(0.0 <= self.min_lr_ratio <= 1.0, "optim.min_lr_ratio", "must be in [0, 1]")
        check(0.0 <= self.decay_ratio <= 1.0, "optim.decay_ratio", "must be in [0, 1] (0: no decay)")
        check(self.grad_clip >= 0, "optim.grad_clip", "must be >= 0 (0: no clipping)")


@dataclass
class TrainConfig:
    output_dir: str = "runs/mlm"  # the run folder: config.yaml, metrics.jsonl, checkpoints/, the final model/
    seed: int = 0  # model initialisation, data order and masks: a run is reproducible from its config
    batch_size: int = 32  # examples per micro-batch and rank (a step: batch_size * grad_accum * ranks)
    grad_accum: int = 1  # micro-batches per optimiser step (gradient accumulation)
    max_steps: Optional[int] = None  # optimiser steps; None: epochs
    epochs: float = 1.0  # passes over the training data, when neither max_steps nor max_minutes is set
    max_minutes: Optional[float] = None  # wall-clock budget; the schedule is planned from it
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: fp32 on CPUs, bf16 on GPUs that have it, else fp16
    device: str = "auto"  # auto: CUDA, else MPS, else CPU; or a torch device such as cuda:1
    compile: bool = False  # torch.compile the repeated encoder layers (faster steps after a compile at the start)
    # Keep only each layer's input in the forward pass and recompute the rest in the backward
    # (about a third more compute): bigger batches or longer sequences fit in memory. The model
    # must have a gradient_checkpointing_enable() method (transformers models, mlmkit's own).
    gradient_checkpointing: bool = False
    # Data parallelism under torchrun (WORLD_SIZE > 1): "ddp" replicates the model, "fsdp"
    # shards parameters, gradients and optimiser state (FSDP2); "auto" = ddp. Ignored when
    # single-process, except fsdp under torchrun: one rank runs the sharded code (a smoke test).
    # batch_size is per rank: the global batch is batch_size * world size.
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"
    # How long a rank waits in a collective (e.g. while rank 0 prepares the data or trains the
    # tokenizer) before the process group gives up.
    dist_timeout_minutes: float = 60.0
    # Processes that build batches ahead of the model (0: the main process builds them). They
    # help when building a batch is slow next to a step (big batches, a GPU); on a 2-core CPU
    # they compete with the model for the cores.
    data_workers: int = 0
    eval_every: int = 200  # steps between evaluations on the held-out data
    eval_at_start: bool = True  # evaluate before the first step: the curves' starting point
    log_every: int = 10  # steps between training-loss records in metrics.jsonl
    save_every: int = 500  # steps between checkpoints (0: only at the end and on a signal)
    keep_checkpoints: int = 2  # newest checkpoints kept in checkpoints/ (older ones are removed)
    early_stopping_patience: Optional[int] = None  # evaluations without improvement
    # The evaluation metric that decides "best" (early stopping, restore_best): lower is better
    # for losses and perplexities, higher for everything else (accuracy, F1).
    best_metric: str = "eval_loss"
    restore_best: bool = False  # keep the best evaluation's weights (checkpoints/best) and end on them (always with early stopping)
    max_bad_steps: int = 10  # consecutive NaN/inf steps (loss or gradient norm) before stopping
    progress: bool = True  # progress bars (off a terminal they update every 30 s)
    threads: Optional[int] = None  # torch intra-op threads; None: torch's default (all cores)
    # Experiment logging (report/loggers.py): metrics.jsonl is always written; add "tensorboard"
    # and/or "wandb" to mirror it there. wandb defaults to offline (no network, no account).
    loggers: list[str] = field(default_factory=lambda: ["jsonl"])
    wandb_project: str = "mlmkit"  # the wandb project (loggers: wandb)
    wandb_mode: Literal["offline", "online", "disabled"] = "offline"  # offline: no network; sync later with wandb sync
    show_samples: int = 4  # Original/Masked/Predicted examples logged at each evaluation (0: none)

    def __post_init__(self):
        check_choices(self, "train")
        check_logger_names(self.loggers)
        check(self.show_samples >= 0, "train.show_samples", "must be >= 0")
        check(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        check(self.grad_accum >= 1, "train.grad_accum", "must be >= 1")
        check(self.max_steps is None or self.max_steps >= 1, "train.max_steps", "must be >= 1")
        check(self.eval_every >= 1, "train.eval_every", "must be >= 1")
        # Checked here, before any data is prepared: the loop divides by log_every and save_every.
        check(self.log_every >= 1, "train.log_every", "must be >= 1")
        check(self.save_every >= 0, "train.save_every", "must be >= 0 (0: only at the end and on a signal)")
        check(self.keep_checkpoints >= 1, "train.keep_checkpoints", "must be >= 1")
        check(self.max_bad_steps >= 1, "train.max_bad_steps", "must be >= 1")
        check(self.epochs > 0, "train.epochs", "must be > 0")
        check(self.max_minutes is None or self.max_minutes > 0, "train.max_minutes", "must be > 0 (or null: no budget)")
        check(self.early_stopping_patience is None or self.early_stopping_patience >= 1,
              "train.early_stopping_patience", "must be >= 1 (or null: no early stopping)")
        check(self.threads is None or self.threads >= 1, "train.threads", "must be >= 1 (or null: torch's default)")
        check(0 <= self.seed < 2**63, "train.seed", "must be in [0, 2**63)")  # torch and numpy take no negative seed
        check(self.data_workers >= 0, "train.data_workers", "must be >= 0")
        check(self.dist_timeout_minutes > 0, "train.dist_timeout_minutes", "must be > 0")
        check(self.best_metric.startswith("eval_"), "train.best_metric", "must name an evaluation metric (eval_...)")

    @property
    def lower_is_better(self) -> bool:
        return "loss" in self.best_metric or "perplexity" in self.best_metric
