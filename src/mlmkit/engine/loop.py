"""The training loop, cut into named steps (after nanoGPT's train.py, readable in one sitting).

It drives any `Task` (token MLM, character MLM, classification): AdamW with warmup then
linear/cosine/warmup-stable-decay schedules, gradient accumulation (token-weighted across
micro-batches and ranks), gradient checkpointing, clipping, mixed precision chosen per device,
periodic evaluation with early stopping and an optional best checkpoint, atomic checkpoints with
exact resume, NaN/inf skipping, SIGTERM/SIGINT save-and-exit, and DDP/FSDP when launched by
torchrun.

    set-up:      devices, model placement (FSDP sharding), optimiser, resume, wrappers, plan
    micro-batch: forward + backward of one micro-batch, scaled by the step's target count
    step:        finite check, unscale, clip, optimiser step, counters, logging
    evaluation:  metrics, samples, best/early stopping
    checkpoint:  periodic, on a signal, at the end
    finish:      final evaluation, model folder, summary.json
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import ConfigError, MlmkitError
from ..util import one_line
from ..folders import claim, held
from ..report.loggers import SAMPLES_FILE, build_loggers
from ..report.progress import budgeted_total, progress_bar, write as progress_write
from ..runs import METRICS_FILE, MODEL_DIR, SUMMARY_FILE
from . import checkpoint as ckpt_io
from .config import OptimConfig, TrainConfig
from .device import autocast, pick_device, pick_precision, to_device
from .distributed import (all_gather_objects, all_reduce_sum, any_rank, broadcast_object, full_copy,
                          init_distributed, shard_model, sync_sparse_grads)
from .evaluation import evaluate
from .loader import epoch_batches
from .metrics import MetricsFile, truncate_metrics
from .optim import clip_grad_norm, drop_zero_rows, lr_factor, make_optimizer, sparse_parameters
from .task import DATA_STATE, Task


@dataclass
class TrainState:
    step: int = 0  # optimiser steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # next batch to read in `epoch`
    tokens: int = 0
    targets: int = 0
    elapsed: float = 0.0  # training seconds before this process (for time budgets across resumes)
    best_eval: float | None = None  # best value of train.best_metric so far
    best_step: int = 0
    evals_without_improvement: int = 0
    bad_steps_total: int = 0
    world_size: int = 1  # ranks that wrote the checkpoint
    global_batch: int = 0  # train.batch_size x ranks: the data order depends on it
    data_state: list | None = None  # every rank's last `DATA_STATE` (tasks whose data position is saved)

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class StepResult:
    """What the micro-batches of one optimiser step added up to (this rank's share)."""

    loss_sum: float = 0.0
    targets: int = 0
    tokens: int = 0
    global_targets: float | None = None  # all ranks (distributed runs only)
    global_tokens: float | None = None


@dataclass
class _Window:
    """Training loss and throughput since the last log line."""

    t: float = field(default_factory=time.perf_counter)
    loss_sum: float = 0.0
    targets: int = 0
    tokens: int = 0


class GracefulExit:
    """SIGTERM/SIGINT set a flag; the loop saves a checkpoint at the next step boundary (a
    second Ctrl-C stops at once)."""

    def __init__(self):
        self.requested: str | None = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.requested is not None and signum == signal.SIGINT:
            # A second Ctrl-C: stop now, without the checkpoint (saving is atomic, so at worst
            # the save in progress is lost and the previous checkpoint remains).
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """`train.gradient_checkpointing`: the model's own `gradient_checkpointing_enable()` (the name
    transformers gives it; mlmkit's models have one too), since only the model knows its layers."""
    enable = getattr(model, "gradient_checkpointing_enable", None)
    if enable is None:
        raise ConfigError(f"config key 'train.gradient_checkpointing': {type(model).__name__} cannot recompute "
                          "its activations (it has no gradient_checkpointing_enable() method)")
    enable()


def batches_forever(task: Task, state: TrainState, workers: int = 0, pin_memory: bool = False):
    """Yield (epoch, index, batch) from the saved position on, across epochs."""
    epoch, start = state.epoch, state.batch_in_epoch
    while True:
        got = False
        for i, batch in enumerate(epoch_batches(task, epoch, start, workers, pin_memory), start=start):
            got = True
            yield epoch, i, batch
        if not got and start == 0:
            raise MlmkitError("the training data produced no batches (is it empty?)")
        epoch, start = epoch + 1, 0


class Trainer:
    """One training run of `task.model`: checkpoints, metrics.jsonl and the final model go to
    `cfg.output_dir`. `train()` below is the one-call form."""

    def __init__(self, task: Task, cfg: TrainConfig, optim_cfg: OptimConfig, *, resume: bool | str = False,
                 save_final: bool = True, log: Callable[[str], None] = print,
                 on_eval: Callable[[dict], None] | None = None):
        self.task, self.cfg, self.optim_cfg = task, cfg, optim_cfg
        self.resume, self.save_final, self.on_eval = resume, save_final, on_eval
        self.log = log
        self.stop_reason = "finished"
        self.interrupted: str | None = None  # the signal that stopped the run (on any rank)
        self.last_eval: dict = {}
        self._sample_error = False
        self.run_lock = None  # the run folder's lock, when this trainer took it

    # ------------------------------------------------------------------------ set-up
    def setup(self) -> None:
        cfg = self.cfg
        if cfg.threads:
            # Small models on a small, busy CPU: fewer threads than cores can be several times
            # faster (spinning OpenMP threads fight over the cores).
            torch.set_num_threads(cfg.threads)
        # A run built from a config joined the process group at its entry (`start_run`), and this
        # only describes it; a task built by hand joins it here.
        self.dist = init_distributed(cfg.strategy, cfg.dist_timeout_minutes)
        self.device = pick_device(cfg.device)
        self.precision = pick_precision(cfg.precision, self.device)
        self.out_dir = Path(cfg.output_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.main = self.dist.is_main
        # The Python API's own path (a task built by hand, then `train`) obeys the run-folder rules
        # of `mlmkit train`; a command that claimed the folder already (train, finetune) holds it.
        if self.main and not held(self.out_dir):
            if self.resume and not self.out_dir.exists():  # a mistyped folder: say so, create nothing
                ckpt_io.check_resumable(self.out_dir, self.resume)
            self.run_lock = claim(self.out_dir, "train", resume=bool(self.resume), log=self.log)
        # Training's own draws (dropout) from here on: one stream per rank, so the ranks do not drop
        # the same units. (The model's initialisation, alike on every rank, was seeded before it was
        # built: `start_run` for a run from a config, the caller for a task built by hand.)
        torch.manual_seed(cfg.seed + self.dist.rank)
        self.model = self._place_model()
        self.submodule = self.task.saved_submodule
        # (getattr: a task that does not subclass TaskBase and predates the codec needs none)
        self.codec = getattr(self.task, "weights_codec", None)
        self.optimizer = make_optimizer(self.model, self.optim_cfg, self.device, self.task.param_groups(self.model))
        self.sparse_params = [p for p in self.model.parameters() if id(p) in sparse_parameters(self.model)]
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None
        self.state = self._restore() if self.resume else TrainState()
        self.data_state = self._restore_data_state()
        self.state.world_size = self.dist.world_size
        self.state.global_batch = self._global_batch()
        self.train_model = self._wrap_model()
        self._plan()
        resumed = self.resume and self.state.step > 0
        self.loggers = build_loggers(cfg, self.out_dir, enabled=self.main,
                                     resume_step=self.state.step if resumed else None)
        self.metrics = MetricsFile(self.out_dir / METRICS_FILE, self.loggers, enabled=self.main)
        self.saved_step = self.state.step if self.resume and self.state.step else -1
        # Early stopping ends `patience` evaluations past the best: keep the best weights and end on them.
        self.keep_best = cfg.restore_best or cfg.early_stopping_patience is not None

    def _place_model(self) -> torch.nn.Module:
        model = self.task.model.to(self.device)
        model.train()
        if self.cfg.gradient_checkpointing:  # before sharding and compiling, which wrap the layers
            enable_gradient_checkpointing(model)
        self.skeleton = None  # FSDP: an unsharded meta-device copy, to save the final model from
        if self.dist.fsdp:
            import copy

            self.skeleton = copy.deepcopy(model).to("meta") if self.main else None
            shard_model(model, self.device, self.dist)  # before the optimiser: it must see the shards
        self.sparse_synced: list = []  # DDP: sparse tables whose touched rows the loop exchanges itself
        tables = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Embedding) and m.sparse]
        if self.dist.fsdp and tables:
            for _, table in tables:  # FSDP shards and reduces dense gradients
                table.sparse = False
            self._log("FSDP: the sparse-gradient embedding tables use dense gradients and AdamW")
        elif self.dist.enabled and tables:
            # DDP would all-reduce every row of these tables, dense, each step (42M parameters in
            # domains-tiny, of which a step touches a few thousand rows): leave them to the loop,
            # which exchanges only the touched rows (`sync_sparse_grads`).
            from torch.nn.parallel import DistributedDataParallel as DDP

            DDP._set_params_and_buffers_to_ignore_for_model(model, [f"{n}.weight" for n, _ in tables])
            self.sparse_synced = [m.weight for _, m in tables]
        return model

    def _restore(self) -> TrainState:
        """The state of the newest checkpoint that verifies *and* loads (any failure while loading
        falls back to the previous one). None left: an error, and nothing is deleted -- unless
        resuming is "auto" (resume if there is anything to resume), which starts a new run."""
        candidates = self._candidates() if self.main else iter(())
        while True:
            found = broadcast_object(str(next(candidates, "")), self.dist)  # rank 0 picks, all load
            if not found:
                return self._nothing_to_resume()
            error = ""
            try:
                saved = ckpt_io.load_checkpoint(Path(found), self.model, self.optimizer, self.scaler,
                                                sharded=self.dist.fsdp, submodule=self.submodule, codec=self.codec)
            except Exception as e:  # a file that verified but does not load (wrong shapes, ...)
                error = f"{type(e).__name__}: {one_line(e)}"
            if self._finite(math.nan if error else 0.0):  # (all ranks loaded it)
                break
            self.log(f"checkpoint {Path(found).name} could not be loaded ({error or 'on another rank'}); "
                     "falling back to the previous one")
        state = TrainState(**{k: v for k, v in saved.items() if k in TrainState.__dataclass_fields__})
        self._check_elastic(state)
        self.log(f"resumed from {Path(found).name} (step {state.step}, epoch {state.epoch}, "
                 f"batch {state.batch_in_epoch})")
        if self.main:
            for name in (METRICS_FILE, SAMPLES_FILE):  # the steps after the checkpoint are done again
                truncate_metrics(self.out_dir / name, state.step)
        return state

    def _restore_data_state(self):
        """Hand the saved data positions to the task; this rank's is kept until the next batch."""
        states = self.state.data_state
        if not states:
            return None
        self.task.load_data_state(states)
        return states[self.dist.rank] if self.dist.rank < len(states) else None

    def _candidates(self):
        """Checkpoints to try, newest first; `resume` may name one checkpoint folder."""
        if isinstance(self.resume, (str, Path)) and self.resume != "auto":
            ckpt = Path(self.resume)
            problem = ckpt_io.verify(ckpt) if ckpt.is_dir() else "no such checkpoint folder"
            if problem:
                raise MlmkitError(f"cannot resume from {ckpt}: {problem}")
            return iter([ckpt])
        return ckpt_io.iter_valid(self.ckpt_dir, log=self.log)

    def _nothing_to_resume(self) -> TrainState:
        """No checkpoint verified and loaded: an error that deletes nothing -- for "auto" too when
        there were checkpoints (a scheduler's requeue must not throw a run away). Only "auto" in
        a folder without any checkpoint starts a new run."""
        existing = ckpt_io.list_checkpoints(self.ckpt_dir)
        if self.resume != "auto" or existing:
            flag = "--auto-resume" if self.resume == "auto" else "--resume"
            raise MlmkitError(ckpt_io.nothing_to_resume(self.ckpt_dir, len(existing), flag))
        self.log(f"no checkpoint in {self.ckpt_dir}: starting a new run")
        if self.main:
            for name in (METRICS_FILE, SAMPLES_FILE):
                truncate_metrics(self.out_dir / name, 0)
        return TrainState()

    def _global_batch(self) -> int:
        """Rows of one step over all ranks (the task's per-rank batch size, else train.batch_size)."""
        per_rank = self.cfg.batch_size if self.task.batch_size is None else self.task.batch_size
        return per_rank * self.dist.world_size

    def _check_elastic(self, state: TrainState) -> None:
        """Resuming on another number of ranks continues the same sample order (and masks) if the
        global batch is the same; otherwise the order would silently change, so refuse."""
        W = self.dist.world_size
        b = self._global_batch() // W
        saved = state.global_batch or state.world_size * b  # (older checkpoints: assume the same batch_size)
        if saved != b * W:
            raise MlmkitError(f"the checkpoint was trained with a global batch of {saved} ({state.world_size} "
                              f"rank(s)); this run's is {b * W} ({W} x train.batch_size {b}): the data order "
                              f"would change; resume with train.batch_size={saved // W}" if saved % W == 0 else
                              f"the checkpoint was trained with a global batch of {saved}, which {W} ranks "
                              "cannot split evenly: resume on a number of ranks that divides it")
        if state.world_size != W:
            self.log(f"elastic resume: {state.world_size} -> {W} rank(s), the same global batch of {saved}: "
                     "the same order of samples continues")

    def _wrap_model(self) -> torch.nn.Module:
        if self.dist.enabled and self.task.world_size != self.dist.world_size:
            # A task shards its data by rank itself (rank/world_size); one that does not would
            # have every rank train on the same batches -- correct but wasted.
            self.log(f"warning: {type(self.task).__name__} does not split its batches over the "
                     f"{self.dist.world_size} ranks: every rank trains on the same data")
        train_model = self.model
        if self.dist.enabled and not self.dist.fsdp:
            from torch.nn.parallel import DistributedDataParallel as DDP

            train_model = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.cfg.compile:
            from .compiling import compile_for_training

            # Regional: the repeated encoder layers, in place (most of the speed-up, a fraction
            # of the compile time of the whole model; see compiling.py and bench/throughput.py).
            train_model = compile_for_training(train_model)
        return train_model

    def _plan(self) -> None:
        cfg, optim = self.cfg, self.optim_cfg
        per_epoch = self.task.num_batches(0)
        self.total_steps = cfg.max_steps
        if self.total_steps is None and per_epoch and not cfg.max_minutes:
            self.total_steps = max(1, int(math.ceil(per_epoch * cfg.epochs / cfg.grad_accum)))
        self.budget_s = cfg.max_minutes * 60 if cfg.max_minutes else None
        if self.total_steps is None and self.budget_s is None:
            raise MlmkitError("set train.max_steps or train.max_minutes for a streaming dataset")
        if optim.warmup_steps is not None and self.total_steps:
            self.warmup = min(1.0, optim.warmup_steps / self.total_steps)
        else:
            self.warmup = optim.warmup_ratio

    def _log(self, message: str) -> None:
        if self.main:
            self.log(message)

    # ------------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        try:
            return self._run()
        finally:
            if self.run_lock is not None:
                self.run_lock.release()

    def _run(self) -> dict[str, Any]:
        self.setup()
        self.stream = batches_forever(self.task, self.state, self.cfg.data_workers,
                                      pin_memory=self.device.type == "cuda")
        self.t_start = time.perf_counter()
        self.window = _Window()
        self.consecutive_bad = 0
        self.bar = progress_bar(total=self.total_steps, initial=self.state.step, unit="step", desc="training",
                                disable=not (self.cfg.progress and self.main))
        # From the first evaluation to the last write: a SIGTERM/SIGINT in an evaluation or while the
        # run finishes is noted, not fatal (the loop saves and stops; finishing completes the run).
        with GracefulExit() as graceful:
            self.eval_seconds = 0.0  # what the last evaluation took (the bar's total pays for those to come)
            if self.state.step == 0 and self.cfg.eval_at_start:
                t0 = time.perf_counter()
                self._evaluate_start()
                self.eval_seconds = time.perf_counter() - t0
            self.t_start = time.perf_counter()
            self.first_step = self.state.step
            self.train_seconds, self.step_clock = 0.0, self.t_start  # training time only: see _count
            try:
                while not self._out_of_budget():
                    if not self._train_step():
                        continue
                    if self.state.step % self.cfg.eval_every == 0 and self._evaluate():
                        break
                    # torchrun forwards SIGTERM to every rank, but not necessarily at the same step.
                    if any_rank(graceful.requested is not None, self.device, self.dist):
                        self.interrupted = graceful.requested or "a stop signal on another rank"
                        self.stop_reason = f"received {self.interrupted}"
                        break
                    if self.cfg.save_every and self.state.step % self.cfg.save_every == 0:
                        self._checkpoint()
            finally:
                self.bar.close()
            return self._finish()

    def _elapsed(self) -> float:
        return self.state.elapsed + time.perf_counter() - self.t_start

    def _out_of_budget(self) -> bool:
        if self.total_steps is not None and self.state.step >= self.total_steps:
            return True
        if self.budget_s is not None and any_rank(self._elapsed() >= self.budget_s, self.device, self.dist):
            self.stop_reason = "time budget reached"
            return True
        return False

    def _progress(self, elapsed: float | None = None) -> float:
        p = 0.0
        if self.total_steps:
            p = max(p, self.state.step / self.total_steps)
        if self.budget_s:
            p = max(p, (self._elapsed() if elapsed is None else elapsed) / self.budget_s)
        return min(p, 1.0)

    # ------------------------------------------------------------------------ one step
    def _train_step(self) -> bool:
        """Gather, forward and backward the micro-batches of one optimiser step, then step;
        False if the step was skipped (NaN/inf loss)."""
        micro = []
        for _ in range(self.cfg.grad_accum):
            epoch, index, batch = next(self.stream)
            self.data_state = batch.pop(DATA_STATE, self.data_state)
            micro.append(batch)
            self.state.epoch, self.state.batch_in_epoch = epoch, index + 1
        denom, result, elapsed = self._loss_divisor(micro)
        o = self.optim_cfg
        lr = o.lr * lr_factor(self._progress(elapsed), self.warmup, o.schedule, o.min_lr_ratio,
                              decay_ratio=o.decay_ratio, decay_shape=o.decay_shape)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        for j, batch in enumerate(micro):
            self._micro_batch(to_device(batch, self.device), denom, last=j == len(micro) - 1, result=result)
        if self.sparse_params:  # before the exchange: the zero rows of padding need not travel
            drop_zero_rows(self.sparse_params)
        if self.sparse_synced:
            sync_sparse_grads(self.sparse_synced, self.dist)
        if not self._finite(result.loss_sum):
            self._skip_bad_step(f"loss is {result.loss_sum}")
            return False
        norm = self._unscale_and_clip()
        # With fp16 the grad scaler skips steps with inf gradients itself (and lowers its scale).
        # The norm needs no vote: it is taken over gradients already reduced (DDP, the sparse
        # exchange) or reduced by the norm itself (FSDP), so every rank holds the same number,
        # and one rank's NaN is in everyone's sum.
        if self.scaler is None and not math.isfinite(norm):
            self._skip_bad_step(f"gradient norm is {norm}")
            return False
        self.consecutive_bad = 0
        self._optimizer_step()
        self._count(result, lr)
        return True

    def _loss_divisor(self, micro: list) -> tuple[float, StepResult, float | None]:
        """The step's loss is the mean over *all* its real targets, on all ranks. DDP and FSDP
        average gradients over the W ranks, so rank r back-propagates W * loss_sum_r / n_global:
        the average of those is sum_r loss_sum_r / n_global, the token-weighted mean, even when
        ranks hold different numbers of targets (a plain mean of per-rank means would weight a
        rank's targets by 1/n_r). The task counts the targets: padding never does."""
        counts = [self.task.counts(b) for b in micro]
        n_targets = sum(c[0] for c in counts)
        result = StepResult()
        if not self.dist.enabled:
            return max(n_targets, 1), result, None
        # (+ rank 0's clock: with a time budget the LR follows elapsed time, and ranks reading
        # their own clocks would step with different LRs and drift.)
        mine = self._elapsed() if self.main else 0.0
        n_global, tokens_global, elapsed = all_reduce_sum([n_targets, sum(c[1] for c in counts), mine],
                                                          self.device, self.dist)
        result.global_targets, result.global_tokens = n_global, tokens_global
        return max(n_global, 1.0) / self.dist.world_size, result, elapsed

    def _micro_batch(self, batch: dict, denom: float, *, last: bool, result: StepResult) -> None:
        """Forward and backward one micro-batch; gradients are synchronised on the last one."""
        sync = contextlib.nullcontext()
        if self.dist.fsdp:  # reduce-scatter gradients on the last micro-batch only
            self.model.set_requires_gradient_sync(last)
        elif self.dist.enabled and not last:
            sync = self.train_model.no_sync()
        with sync:
            with autocast(self.device, self.precision):
                out = self.task.forward(self.train_model, batch)
            # Token-weighted over the micro-batches: each target counts once.
            loss = out.loss * int(out.n_targets)
            loss = loss / denom
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
            else:
                loss.backward()
        result.loss_sum += float(out.loss_sum)
        result.targets += int(out.n_targets)
        result.tokens += int(out.n_tokens)

    def _finite(self, loss_sum: float) -> bool:
        """The loss is per rank: all ranks vote, so that all skip the step or none does."""
        finite = math.isfinite(loss_sum)
        if self.dist.enabled:
            finite = all_reduce_sum([0.0 if finite else 1.0], self.device, self.dist)[0] == 0
        return finite

    def _skip_bad_step(self, what: str) -> None:
        """A NaN/inf loss or gradient norm: the step is skipped (nothing reaches the weights)."""
        state = self.state
        self.optimizer.zero_grad(set_to_none=True)
        self.consecutive_bad += 1
        state.bad_steps_total += 1
        self.log(f"step {state.step + 1}: {what} (NaN/inf); step skipped "
                 f"({self.consecutive_bad} in a row, {state.bad_steps_total} in total)")
        self.metrics.write({"step": state.step + 1, "event": "nonfinite_step_skipped"})
        if self.consecutive_bad >= self.cfg.max_bad_steps:
            self._save()
            raise MlmkitError(f"stopped after {self.consecutive_bad} consecutive NaN/inf steps at step "
                              f"{state.step}; checkpoint saved in {self.ckpt_dir} (try a lower optim.lr)")

    def _unscale_and_clip(self) -> float:
        """The gradients' total norm (all ranks), after clipping to optim.grad_clip if set."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        clip = self.optim_cfg.grad_clip if self.optim_cfg.grad_clip and self.optim_cfg.grad_clip > 0 else math.inf
        return float(clip_grad_norm(self.model.parameters(), clip))

    def _optimizer_step(self) -> None:
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _count(self, result: StepResult, lr: float) -> None:
        """Advance the counters, the progress bar and, every `log_every` steps, metrics.jsonl."""
        state, w = self.state, self.window
        state.step += 1
        distributed = result.global_tokens is not None
        state.tokens += int(result.global_tokens) if distributed else result.tokens
        state.targets += int(result.global_targets) if distributed else result.targets
        # Training time: since the end of the last step, evaluation or checkpoint (each of those
        # moves step_clock on). The rate over wall time since t_start was wrong both ways: it
        # counted evaluations as training, and t_start is reset at every checkpoint while the
        # steps were counted from the start (a 10-minute run that ended at step 1,033 showed a
        # total of 2,505 after its checkpoint at step 500).
        now = time.perf_counter()
        self.train_seconds, self.step_clock = self.train_seconds + now - self.step_clock, now
        if self.budget_s is not None:  # a time budget: the bar's total is where it will end
            total = budgeted_total(state.step, state.step - self.first_step, self.train_seconds,
                                   self.budget_s - self._elapsed(), self.total_steps,
                                   eval_every=self.cfg.eval_every, eval_seconds=self.eval_seconds)
            if total != self.bar.total:
                self.bar.total = total
        self.bar.update(1)
        w.loss_sum += result.loss_sum
        w.targets += result.targets
        w.tokens += result.tokens
        if state.step % self.cfg.log_every == 0 or state.step == 1:
            now = time.perf_counter()
            tot = all_reduce_sum([w.loss_sum, w.targets, w.tokens], self.device, self.dist)
            avg = tot[0] / max(tot[1], 1)
            tps = tot[2] / max(now - w.t, 1e-9)
            self.metrics.write({"step": state.step, "epoch": state.epoch, "loss": avg, "lr": lr,
                                "tokens_per_s": tps, "tokens": state.tokens,
                                "time_s": state.elapsed + now - self.t_start})
            self.bar.set_postfix(loss=f"{avg:.3f}", lr=f"{lr:.2e}", tok_s=f"{tps:,.0f}")
            self.window = _Window(t=now)

    # ------------------------------------------------------------------------ evaluation
    def _evaluate_start(self) -> None:
        """The starting point, so every run reports how far it moved."""
        first = evaluate(self.task, self.model, self.device, self.precision, self.dist)
        if first:
            self.metrics.write({**first, "step": 0, "time_s": 0.0})
            self._log(f"step 0: {_eval_line(first)}")
            self.last_eval = first
            self._track_best(first)  # training may only make it worse: the start is a candidate

    def _evaluate(self) -> bool:
        """Evaluate, log, track the best; True if early stopping ends the run. Timed: the time
        budget pays for evaluations too, and the bar's total for those still to come."""
        t0 = time.perf_counter()
        try:
            return self._evaluate_and_track()
        finally:
            self.step_clock = time.perf_counter()
            self.eval_seconds = self.step_clock - t0

    def _evaluate_and_track(self) -> bool:
        state = self.state
        self.last_eval = evaluate(self.task, self.model, self.device, self.precision, self.dist)
        if not self.last_eval:
            return False
        self.last_eval.update(step=state.step, time_s=self._elapsed())
        self.metrics.write(self.last_eval)
        self._log_samples()
        if self.on_eval:
            self.on_eval(self.last_eval)
        if self.main:
            progress_write(f"step {state.step}: {_eval_line(self.last_eval)}", file=sys.stderr)
        if not self._track_best(self.last_eval):
            state.evals_without_improvement += 1
        patience = self.cfg.early_stopping_patience
        if patience is not None and state.evals_without_improvement >= patience:
            self.stop_reason = f"early stopping (no improvement in {patience} evaluations)"
            return True
        return False

    def _track_best(self, metrics: dict) -> bool:
        """Record an evaluation that beats the best so far (and keep its weights when asked)."""
        state = self.state
        if not self._improved(metrics.get(self.cfg.best_metric)):
            return False
        state.best_eval, state.best_step = metrics[self.cfg.best_metric], state.step
        state.evals_without_improvement = 0
        if self.keep_best:
            self._check_finite_weights("checkpoints/best")
            ckpt_io.save_checkpoint(self.ckpt_dir, state.step, self.model, None, None, state.to_json(),
                                    sharded=self.dist.fsdp, best=True, model_files=self._model_files,
                                    submodule=self.submodule, codec=self.codec)
        return True

    def _improved(self, value: float | None) -> bool:
        if value is None:
            raise MlmkitError(f"train.best_metric: the evaluation has no {self.cfg.best_metric!r} "
                              f"(it reports {', '.join(k for k in self.last_eval if k.startswith('eval_'))})")
        if not math.isfinite(value):  # a NaN evaluation is never the best one
            return False
        best = self.state.best_eval
        if best is None:
            return True
        return value < best - 1e-4 if self.cfg.lower_is_better else value > best + 1e-4

    def _log_samples(self) -> None:
        """Original / Masked / Predicted for a few fixed validation examples (the same ones at
        every evaluation, so the text shows the model learning). rank 0 alone cannot run an
        FSDP-sharded model, so not then."""
        if not (self.main and self.cfg.show_samples > 0 and not self.dist.fsdp):
            return
        try:
            text = self.task.sample_text(self.model, self.cfg.show_samples)
        except Exception as e:  # a display aid must never stop a long run; say so once
            if not self._sample_error:
                warnings.warn(f"could not log prediction samples: {type(e).__name__}: {e}", stacklevel=2)
            self._sample_error = True
            return
        if text:
            self.loggers.log_text("samples", text, self.state.step)

    # ------------------------------------------------------------------------ checkpoints
    def _checkpoint(self) -> None:
        """A periodic checkpoint; the time spent saving does not count against the budget."""
        self.state.elapsed += time.perf_counter() - self.t_start
        self.t_start = time.perf_counter()
        self._save()
        self.step_clock = time.perf_counter()  # nor as training time (see _count)

    def _save(self) -> None:
        if self.saved_step == self.state.step:  # e.g. a periodic save of this very step
            return
        self._check_finite_weights(f"checkpoint step {self.state.step}")
        states = all_gather_objects(self.data_state, self.dist)
        self.state.data_state = states if any(s is not None for s in states) else None
        # Collective under DDP/FSDP (every rank calls it; rank 0 writes); a write error is
        # raised on every rank as one MlmkitError.
        ckpt_io.save_checkpoint(self.ckpt_dir, self.state.step, self.model, self.optimizer, self.scaler,
                                self.state.to_json(), keep=self.cfg.keep_checkpoints, sharded=self.dist.fsdp,
                                model_files=self._model_files, submodule=self.submodule, codec=self.codec)
        self.saved_step = self.state.step

    def _check_finite_weights(self, what: str) -> None:
        """Every save goes through here: a non-finite weight is never written (all ranks: each
        checks its shards)."""
        finite = all(bool(torch.isfinite(p.detach()).all()) for p in self.model.parameters())
        if not self._finite(0.0 if finite else math.nan):
            raise MlmkitError(f"the weights at step {self.state.step} are not finite: not saved (as {what}); "
                              f"the newest checkpoint in {self.ckpt_dir} is from before (try a lower optim.lr)")

    def _model_files(self, folder: Path) -> None:
        self.task.model_files(self.model, folder)

    # ------------------------------------------------------------------------ finish
    def _finish(self) -> dict[str, Any]:
        state = self.state
        self._checkpoint()
        if self.interrupted:
            self._log(f"{self.stop_reason}: checkpoint saved at step {state.step} in {self.ckpt_dir}; "
                      "continue with --resume")
            self.loggers.close()
            return {"stopped": self.stop_reason, "step": state.step}
        best = self.ckpt_dir / ckpt_io.BEST
        if self.keep_best and state.best_eval is not None and state.best_step != state.step and best.is_dir():
            ckpt_io.load_weights(best, self.model, sharded=self.dist.fsdp, submodule=self.submodule,
                                 codec=self.codec)
            self._log(f"restored the weights of step {state.best_step} (best {self.cfg.best_metric})")
        final_eval = evaluate(self.task, self.model, self.device, self.precision, self.dist)
        if final_eval:
            final_eval.update(step=state.step, time_s=state.elapsed, final=True)
            self.metrics.write(final_eval)
        summary = {"stopped": self.stop_reason, "step": state.step, "tokens": state.tokens,
                   "train_seconds": round(state.elapsed, 1), "precision": self.precision,
                   "device": str(self.device), "bad_steps_skipped": state.bad_steps_total, **final_eval}
        if self.keep_best:
            summary["best_step"] = state.best_step
        if self.save_final:
            final = full_copy(self.skeleton, self.model) if self.dist.fsdp else self.model  # (collective)
            if self.main:
                self.task.save_pretrained(final, self.out_dir / MODEL_DIR)
            summary["model_dir"] = str(self.out_dir / MODEL_DIR)
        if self.main:
            (self.out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
        self.loggers.close()
        return summary


_SHORT = {"eval_loss": ("loss", ".4f"), "eval_perplexity": ("ppl", ".2f"), "eval_accuracy": ("acc", ".3f")}


def _eval_line(metrics: dict) -> str:
    """`eval loss 2.1879 ppl 8.92 acc 0.405` and any further metric the task reports."""
    parts = [f"{name} {metrics[k]:{fmt}}" for k, (name, fmt) in _SHORT.items() if k in metrics]
    parts += [f"{k[len('eval_'):]} {v:.4f}" for k, v in metrics.items()
              if k.startswith("eval_") and k not in _SHORT and isinstance(v, float)]
    return "eval " + " ".join(parts)


def train(task: Task, cfg: TrainConfig, optim_cfg: OptimConfig, *, resume: bool | str = False,
          save_final: bool = True, log: Callable[[str], None] = print,
          on_eval: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Train `task.model`; writes checkpoints, metrics.jsonl and the final model to cfg.output_dir.
    `resume`: True continues from the newest good checkpoint (an error if there is none), "auto"
    continues if there is one and starts a new run otherwise, a path continues from that checkpoint."""
    return Trainer(task, cfg, optim_cfg, resume=resume, save_final=save_final, log=log, on_eval=on_eval).run()
