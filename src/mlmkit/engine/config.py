"""The engine's own config sections: `optim` (AdamW and its schedule) and `train` (the loop)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from ..config import check, check_choices
from ..report.loggers import check_logger_names


@dataclass
class OptimConfig:
    lr: float = 5e-4
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    warmup_steps: Optional[int] = None  # None: warmup_ratio of the planned steps
    warmup_ratio: float = 0.06
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0

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
        check(self.grad_clip >= 0, "optim.grad_clip", "must be >= 0 (0: no clipping)")


@dataclass
class TrainConfig:
    output_dir: str = "runs/mlm"
    seed: int = 0
    batch_size: int = 32
    grad_accum: int = 1
    max_steps: Optional[int] = None  # optimiser steps; None: epochs
    epochs: float = 1.0
    max_minutes: Optional[float] = None  # wall-clock budget; the schedule is planned from it
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: str = "auto"
    compile: bool = False
    # Data parallelism under torchrun (WORLD_SIZE > 1): "ddp" replicates the model, "fsdp"
    # shards parameters, gradients and optimiser state (FSDP2); "auto" = ddp. Ignored when
    # single-process. batch_size is per rank: the global batch is batch_size * world size.
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"
    # How long a rank waits in a collective (e.g. while rank 0 prepares the data or trains the
    # tokenizer) before the process group gives up.
    dist_timeout_minutes: float = 60.0
    # Processes that build batches ahead of the model (0: the main process builds them). They
    # help when building a batch is slow next to a step (big batches, a GPU); on a 2-core CPU
    # they compete with the model for the cores.
    data_workers: int = 0
    eval_every: int = 200
    eval_at_start: bool = True
    log_every: int = 10
    save_every: int = 500
    keep_checkpoints: int = 2
    early_stopping_patience: Optional[int] = None  # evaluations without improvement
    # The evaluation metric that decides "best" (early stopping, restore_best): lower is better
    # for losses and perplexities, higher for everything else (accuracy, F1).
    best_metric: str = "eval_loss"
    restore_best: bool = False  # keep the best evaluation's weights (checkpoints/best) and end on them (always with early stopping)
    max_bad_steps: int = 10  # consecutive NaN/inf steps (loss or gradient norm) before stopping
    progress: bool = True
    threads: Optional[int] = None  # torch intra-op threads; None: torch's default (all cores)
    # Experiment logging (report/loggers.py): metrics.jsonl is always written; add "tensorboard"
    # and/or "wandb" to mirror it there. wandb defaults to offline (no network, no account).
    loggers: list[str] = field(default_factory=lambda: ["jsonl"])
    wandb_project: str = "mlmkit"
    wandb_mode: Literal["offline", "online", "disabled"] = "offline"
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
