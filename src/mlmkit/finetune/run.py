"""`finetune()`: a pre-trained encoder fine-tuned on labelled data, on the engine, for either task
(`FinetuneConfig.task`): the task's data and classifier (`sequence_prepare.py`,
`token_prepare.py`), the engine's loop with early stopping and the best weights restored,
validation and test scores, the saved folder and its card (`card.py`).

Training runs on the engine (`engine.train`: checkpoints, precision, logging, early stopping):
AdamW with warmup and linear decay, evaluation on the validation split after every epoch (or
every ``--eval-every`` steps), early stopping on validation accuracy (entity F1 when tagging), and
the best weights restored at the end (`checkpoints/best`). ``--from-scratch`` re-initialises
every weight but keeps the architecture and tokenizer: the baseline that shows what pre-training
bought.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from ..engine.config import OptimConfig, TrainConfig
from ..engine.device import pick_device
from ..engine.evaluation import evaluate
from ..engine.loop import train
from ..errors import MlmkitError
from ..families import open_model_dir
from ..folders import claim
from .card import write_card
from .labelled_task import Prepared
from .sequence_prepare import prepare_classification
from .token_prepare import prepare_tagging

TASKS = ("classification", "token-classification")
# Column defaults per task (None in the config: the task's default).
DEFAULT_COLUMNS = {"classification": ("text", "label"), "token-classification": ("tokens", "tags")}


@dataclass
class FinetuneConfig:
    task: str = "classification"  # or "token-classification" (a tag per word: NER, POS)
    text_column: Optional[str] = None  # None: "text" (classification), "tokens" (token-classification)
    label_column: Optional[str] = None  # None: "label", or "tags" ("upos" for CoNLL-U files)
    validation_fraction: float = 0.1
    test_fraction: float = 0.0  # > 0: also report accuracy on a test split never used for stopping
    epochs: float = 3.0
    max_minutes: Optional[float] = None  # wall-clock budget (stops early; the LR schedule follows it)
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_length: int = 128
    patience: Optional[int] = 2  # evaluations without a better validation accuracy (None: never stop)
    eval_every: Optional[int] = None  # steps; None: once per epoch
    seed: int = 0
    from_scratch: bool = False
    max_samples: Optional[int] = None
    # a seeded sample of the training split only (validation and test stay whole): the few-labels
    # setting where pre-training should pay off most
    max_train_samples: Optional[int] = None
    device: str = "auto"
    # CPU threads for torch. On a machine shared with other jobs, 1 thread can be several times
    # faster than 2 oversubscribed ones (measured 0.11 s vs 0.4-1.6 s per step, BERT tiny).
    threads: Optional[int] = None
    progress: bool = True

    def __post_init__(self):
        if self.task not in TASKS:
            raise MlmkitError(f"unknown fine-tuning task {self.task!r} (supported: {', '.join(TASKS)})")
        text_default, label_default = DEFAULT_COLUMNS[self.task]
        self.text_column = self.text_column or text_default
        self.label_column = self.label_column or label_default
        if not 0 < self.validation_fraction < 1 or not 0 <= self.test_fraction < 1 \
                or self.validation_fraction + self.test_fraction >= 1:
            raise MlmkitError("validation and test fractions must be in [0, 1) and leave some training data")
        if self.epochs <= 0 or self.batch_size < 1 or self.lr <= 0:
            raise MlmkitError("epochs, batch size and learning rate must be positive")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise MlmkitError("max_train_samples must be >= 1")


@dataclass
class FinetuneResult:
    labels: list[str]
    validation: dict = field(default_factory=dict)
    test: dict = field(default_factory=dict)
    best_step: int = 0
    steps: int = 0
    train_seconds: float = 0.0
    stopped: str = "finished"
    sizes: dict = field(default_factory=dict)


def finetune(model: str, data: list[str], out: str | Path, cfg: FinetuneConfig | None = None,
             log: Callable[[str], None] = print, overwrite: bool = False) -> FinetuneResult:
    """Fine-tune `model` (run folder, model folder, exported encoder, or character model) on
    `data`; save the classifier (or, for token classification, the tagger) to `out`, a new or
    empty folder (`overwrite`: one that holds an earlier output of mlmkit, cleared first)."""
    cfg = cfg or FinetuneConfig()
    path, _ = open_model_dir(model)
    out = Path(out)
    run_lock = claim(out, "finetune", overwrite=overwrite, source=Path(path), log=log)
    try:
        return _finetune(path, model, list(data), out, cfg, log)
    finally:
        run_lock.release()


def _finetune(path: str, model: str, data: list[str], out: Path, cfg: FinetuneConfig, log) -> FinetuneResult:
    prepare = prepare_tagging if cfg.task == "token-classification" else prepare_classification
    run = prepare(path, list(data), cfg, log)
    log(f"{'randomly initialised' if cfg.from_scratch else 'pre-trained'} {type(run.clf.model).__name__} "
        f"({sum(p.numel() for p in run.clf.model.parameters()) / 1e6:.2f}M parameters) from {path}")
    threads_before = torch.get_num_threads()
    try:
        result = _train(run, cfg, out, log)
    finally:
        torch.set_num_threads(threads_before)  # a library call must not change the caller's torch
    run.clf.save(out)
    write_card(out, cfg, result, model, data, run)
    key = run.best_metric[len("eval_"):]
    test = result.test
    log(f"best validation {key} {result.validation[key]:.4f} (step {result.best_step} of {result.steps}); "
        + (f"test accuracy {test['accuracy']:.4f}, " + (f"F1 {test['f1']:.4f}, " if "f1" in test else "")
           + f"macro-F1 {test['macro_f1']:.4f}; " if test else "")
        + f"saved to {out}")
    return result


def _split_metrics(task, device) -> dict:
    """The task's evaluation metrics without the ``eval_`` prefix; ``n``: examples (words) scored."""
    m = {k[len("eval_"):]: v for k, v in evaluate(task, task.model, device, "fp32").items() if k.startswith("eval_")}
    m["n"] = int(m.pop("targets", 0))
    return m


def _train(run: Prepared, cfg: FinetuneConfig, out: Path, log) -> FinetuneResult:
    """The engine's loop on the prepared task; the best validation score's weights are restored
    at the end, then validation and test are scored."""
    per_epoch = math.ceil(run.sizes["train"] / cfg.batch_size)
    # epochs as steps, and a time budget if given: whichever comes first ends the run (the LR
    # schedule follows the nearer end)
    train_cfg = TrainConfig(output_dir=str(out), seed=cfg.seed, batch_size=cfg.batch_size,
                            max_steps=max(1, int(math.ceil(per_epoch * cfg.epochs))), max_minutes=cfg.max_minutes, device=cfg.device, eval_every=cfg.eval_every or per_epoch,
                            eval_at_start=False, save_every=0, keep_checkpoints=1,
                            early_stopping_patience=cfg.patience, best_metric=run.best_metric, restore_best=True,
                            progress=cfg.progress, threads=cfg.threads, show_samples=0)
    optim = OptimConfig(lr=cfg.lr, weight_decay=cfg.weight_decay, betas=[0.9, 0.999], eps=1e-8,
                        warmup_ratio=cfg.warmup_ratio, schedule="linear", grad_clip=1.0)
    summary = train(run.task, train_cfg, optim, save_final=False, log=log)
    result = FinetuneResult(labels=run.labels, sizes=dict(run.sizes))
    result.steps, result.stopped = summary["step"], summary["stopped"]
    result.best_step = summary.get("best_step") or summary["step"]
    result.train_seconds = summary["train_seconds"]
    device = pick_device(cfg.device)
    result.validation = _split_metrics(run.task, device)
    if run.test is not None:
        result.test = _split_metrics(run.task.with_evaluation(run.test), device)
    return result
