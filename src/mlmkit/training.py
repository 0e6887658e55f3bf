"""The training loop: one function, readable in one sitting (after nanoGPT's train.py).

It drives any `Task` (token or character MLM): AdamW with warmup then linear/cosine decay,
gradient accumulation (token-weighted across micro-batches), clipping, mixed precision chosen
per device, periodic evaluation with early stopping, atomic checkpoints with exact resume,
NaN/inf skipping, SIGTERM/SIGINT save-and-exit, and DDP when launched by torchrun.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from .progress import progress_bar, write as progress_write

from . import checkpoint as ckpt_io
from .config import OptimConfig, TrainConfig
from .errors import MlmkitError
from .models.char_encoder import ngram_tables
from .task import Task


# ------------------------------------------------------------------------------ devices
def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        return torch.device("cuda", local)
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_precision(precision: str, device: torch.device) -> str:
    """fp32 on CPUs (bf16 autocast is several times slower without AMX), bf16 on GPUs that
    support it, fp16 with a grad scaler on older GPUs."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


# ------------------------------------------------------------------------------ optimiser
class SplitOptimizer:
    """AdamW for the dense parameters and SparseAdam for sparse-gradient tables (`model.sparse_ngram`),
    stepped, zeroed, scheduled and checkpointed as one optimiser.

    Why: with dense gradients every step zero-fills and AdamW-updates every row of the hashed
    n-gram tables (42M parameters in `domains-tiny`), though a batch touches a few thousand rows;
    the fill alone was 22% of the step. SparseAdam updates the touched rows only ("lazy" Adam: a
    row's moments move only when its context occurs; no weight decay)."""

    def __init__(self, dense, sparse):
        self.dense, self.sparse = dense, sparse

    @property
    def param_groups(self):
        return self.dense.param_groups + self.sparse.param_groups

    def step(self, closure=None):
        self.dense.step()
        self.sparse.step()

    def zero_grad(self, set_to_none: bool = True):
        self.dense.zero_grad(set_to_none=set_to_none)
        self.sparse.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return {"dense": self.dense.state_dict(), "sparse": self.sparse.state_dict()}

    def load_state_dict(self, sd):
        if set(sd) != {"dense", "sparse"}:
            raise MlmkitError("the checkpoint's optimiser state has no sparse part: it was written with "
                              "dense n-gram tables (resume with the run's model.sparse_ngram)")
        self.dense.load_state_dict(sd["dense"])
        self.sparse.load_state_dict(sd["sparse"])


def make_optimizer(model: torch.nn.Module, cfg: OptimConfig, device: torch.device):
    # Hashed n-gram tables (char models) are memories, not features: a row is touched only when
    # its context occurs, so it gets its own LR multiplier and no weight decay (which would erase
    # rare contexts between their occurrences).
    tables = {id(m.weight): m.sparse for m in ngram_tables(model)}
    decay, no_decay, memory, sparse = [], [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in tables:
            (sparse if tables[id(p)] else memory).append(p)
            continue
        # Biases and norm weights are not decayed (as in BERT and nanoGPT).
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if memory:
        groups.append({"params": memory, "weight_decay": 0.0, "lr": cfg.lr * cfg.ngram_lr_scale,
                       "lr_scale": cfg.ngram_lr_scale})
    # Fused AdamW (one kernel over all parameters) on CUDA and, since torch 2.4, on CPU, where it
    # is ~2x faster than foreach (bench/: ~15 vs ~35 ms a step for a 5M-parameter BERT). foreach
    # elsewhere, and for FSDP's sharded (DTensor) parameters.
    sharded = any(hasattr(p, "device_mesh") for g in groups for p in g["params"])
    extra = {"fused": True} if device.type in ("cuda", "cpu") and not sharded else {"foreach": True}
    dense = torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, **extra)
    if not sparse:
        return dense
    lazy = torch.optim.SparseAdam(sparse, lr=cfg.lr * cfg.ngram_lr_scale, betas=tuple(cfg.betas), eps=cfg.eps)
    lazy.param_groups[0]["lr_scale"] = cfg.ngram_lr_scale
    return SplitOptimizer(dense, lazy)


def clip_grad_norm(parameters, max_norm: float):
    """`torch.nn.utils.clip_grad_norm_` that also takes sparse gradients (it cannot: no sparse
    vector norm). Sparse gradients are coalesced in place first, so a row looked up several times
    counts once, with its summed gradient."""
    params = [p for p in parameters if p.grad is not None]
    if not any(p.grad.is_sparse for p in params):
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    norms = []
    for p in params:
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            norms.append(p.grad.values().float().norm())
        else:
            norms.append(p.grad.float().norm())
    total = torch.stack(norms).norm()
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for p in params:
        (p.grad.values() if p.grad.is_sparse else p.grad).mul_(coef)
    return total


def lr_factor(progress: float, warmup: float, schedule: str, min_ratio: float) -> float:
    """Multiplier of the peak LR at `progress` in [0, 1] of the run; `warmup` is a fraction."""
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, 1e-3)
    if schedule == "constant":
        return 1.0
    rest = min(1.0, (progress - warmup) / max(1e-9, 1.0 - warmup))
    if schedule == "cosine":
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * rest))
    return min_ratio + (1 - min_ratio) * (1 - rest)


# ------------------------------------------------------------------------------ distributed
@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    strategy: str = "none"  # "none" (one process), "ddp" or "fsdp"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def fsdp(self) -> bool:
        return self.strategy == "fsdp"


def init_distributed(strategy: str = "auto") -> Dist:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE,
    MASTER_ADDR, ...); NCCL on CUDA, gloo on CPU. A single process ignores `strategy`."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    local = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    return Dist(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local,
                strategy="fsdp" if strategy == "fsdp" else "ddp")


def any_rank(flag: bool, device: torch.device, dist_info: Dist) -> bool:
    """True if `flag` is true on any rank. Decisions that end the loop (a signal, the time
    budget) must be taken by all ranks together, or the others wait forever in a collective."""
    if not dist_info.enabled:
        return flag
    return all_reduce_sum([1.0 if flag else 0.0], device, dist_info)[0] > 0


def shard_model(model: torch.nn.Module, device: torch.device, dist_info: Dist) -> None:
    """FSDP2, in place: each transformer layer (the items of every top-level ModuleList) is its
    own unit, gathered just for its forward/backward; the rest (embeddings, tied head) is the
    root unit. Tied weights must stay in one unit, hence the embeddings are not split out."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (dist_info.world_size,))
    done: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and not any(name.startswith(d + ".") for d in done):
            for i, layer in enumerate(module):
                fully_shard(layer, mesh=mesh)
                done.append(f"{name}.{i}")
    fully_shard(model, mesh=mesh)


def full_copy(model: torch.nn.Module, sharded_like: torch.nn.Module) -> torch.nn.Module:
    """An unsharded CPU copy of FSDP model `sharded_like` for saving, built on the structure
    `model` (a copy on the meta device taken before sharding). Collective: every rank calls it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(sharded_like, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if state:  # rank 0
        model.load_state_dict(state, assign=True, strict=False)
        inner = getattr(model, "model", model)
        if hasattr(inner, "tie_weights"):  # HF: restore the embedding/decoder tie
            inner.tie_weights()
    return model


def all_reduce_sum(values: list[float], device: torch.device, dist_info: Dist) -> list[float]:
    if not dist_info.enabled:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


# ------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate(task: Task, model: torch.nn.Module, device: torch.device, precision: str,
             dist_info: Dist | None = None) -> dict[str, float]:
    """Token-weighted loss over every masked target of the validation set (not a mean of batch
    means), so the number does not depend on the batch size."""
    was_training = model.training
    model.eval()
    loss_sum, n, correct = 0.0, 0, 0
    # DDP: rank r scores batches r, r+W, ... and the sums are reduced (exact, token-weighted).
    # FSDP: every forward is a collective, so all ranks score every batch and nothing is reduced.
    split = dist_info is not None and dist_info.enabled and not dist_info.fsdp
    for idx, batch in enumerate(task.eval_batches()):
        if split and idx % dist_info.world_size != dist_info.rank:
            continue
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast(device, precision):
            out = task.forward(model, batch)
        loss_sum += float(out.loss_sum)
        n += int(out.n_targets)
        correct += int(out.n_correct)
    if split:
        loss_sum, n, correct = all_reduce_sum([loss_sum, n, correct], device, dist_info)
    model.train(was_training)
    if n == 0:
        return {}
    loss = loss_sum / n
    return {"eval_loss": loss, "eval_perplexity": math.exp(min(loss, 50.0)),
            "eval_accuracy": correct / n, "eval_targets": int(n)}


# ------------------------------------------------------------------------------ the loop
@dataclass
class TrainState:
    step: int = 0  # optimiser steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # next batch to read in `epoch`
    tokens: int = 0
    targets: int = 0
    elapsed: float = 0.0  # training seconds before this process (for time budgets across resumes)
    best_eval_loss: float | None = None
    evals_without_improvement: int = 0
    bad_steps_total: int = 0
    world_size: int = 1  # ranks that wrote the checkpoint (the global batch depends on it)

    def to_json(self) -> dict:
        return dict(self.__dict__)


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


def _batches_forever(task: Task, state: TrainState):
    """Yield (epoch, index, batch) from the saved position on, across epochs."""
    epoch, start = state.epoch, state.batch_in_epoch
    while True:
        got = False
        for i, batch in enumerate(task.train_batches(epoch, start), start=start):
            got = True
            yield epoch, i, batch
        if not got and start == 0:
            raise MlmkitError("the training data produced no batches (is it empty?)")
        epoch, start = epoch + 1, 0


def _pick_checkpoint(ckpt_dir: Path, dist_info: Dist, log) -> Path | None:
    """The newest checkpoint that verifies, chosen by rank 0 and sent to all ranks (so they all
    load the same one, and the checksums are read once)."""
    found = ckpt_io.latest_valid(ckpt_dir, log=log) if dist_info.is_main else None
    if dist_info.enabled:
        import torch.distributed as dist

        box = [None if found is None else str(found)]
        dist.broadcast_object_list(box, src=0)
        found = None if box[0] is None else Path(box[0])
    return found


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop the metric records of steps after the checkpoint (written before a
    crash, e.g. `kill -9`): the resumed run writes those steps again, so metrics.jsonl reads
    as one uninterrupted run. A torn last line (killed mid-write) is dropped too. With no
    checkpoint (step 0) everything goes: the run starts over."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and step > 0 and record.get("step", 0) <= step:
            kept.append(line + "\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, path)  # atomic: a crash here leaves the old file or the new one


def train(task: Task, cfg: TrainConfig, optim_cfg: OptimConfig, *, resume: bool = False,
          save_final: bool = True, log: Callable[[str], None] = print,
          on_eval: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Train `task.model`; writes checkpoints, metrics.jsonl and the final model to cfg.output_dir."""
    if cfg.threads:
        # Small models on a small, busy CPU: fewer threads than cores can be several times faster
        # (spinning OpenMP threads fight over the cores).
        torch.set_num_threads(cfg.threads)
    dist_info = init_distributed(cfg.strategy)
    device = pick_device(cfg.device)
    precision = pick_precision(cfg.precision, device)
    out_dir = Path(cfg.output_dir)
    ckpt_dir = out_dir / "checkpoints"
    main = dist_info.is_main
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed + dist_info.rank)

    model = task.model.to(device)
    model.train()
    skeleton = None  # FSDP: an unsharded meta-device copy, to save the final model from
    if dist_info.fsdp:
        import copy

        skeleton = copy.deepcopy(model).to("meta") if main else None
        shard_model(model, device, dist_info)  # before the optimiser: it must see the shards
    sparse_tables = [m for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.sparse]
    if dist_info.enabled and sparse_tables:
        for table in sparse_tables:  # DDP/FSDP reduce dense gradients
            table.sparse = False
        if main:
            log("distributed run: the sparse-gradient n-gram tables use dense gradients and AdamW")
    optimizer = make_optimizer(model, optim_cfg, device)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    state = TrainState()
    if resume:
        found = _pick_checkpoint(ckpt_dir, dist_info, log if main else (lambda s: None))
        if found is None:
            log(f"no checkpoint in {ckpt_dir}; starting from scratch")
        else:
            saved = ckpt_io.load_checkpoint(found, model, optimizer, scaler, sharded=dist_info.fsdp)
            state = TrainState(**{k: v for k, v in saved.items() if k in TrainState.__dataclass_fields__})
            log(f"resumed from {found.name} (step {state.step}, epoch {state.epoch}, batch {state.batch_in_epoch})")
            if state.world_size != dist_info.world_size:
                log(f"warning: the checkpoint was written by {state.world_size} rank(s), this run has "
                    f"{dist_info.world_size}: the global batch (batch_size x ranks), hence the data order "
                    "of the current epoch, changes; the resumed run is not the one that was stopped")
        state.world_size = dist_info.world_size
        if main:
            _truncate_metrics(out_dir / "metrics.jsonl", state.step)

    if dist_info.enabled and getattr(task, "world_size", 1) != dist_info.world_size:
        # A task shards its data by rank itself (TokenMLMTask: rank/world_size); one that does
        # not would have every rank train on the same batches -- correct but wasted.
        log(f"warning: {type(task).__name__} does not split its batches over the {dist_info.world_size} "
            "ranks: every rank trains on the same data")
    train_model = model
    if dist_info.enabled and not dist_info.fsdp:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        from .compiling import compile_for_training

        # Regional: the repeated encoder layers, in place (most of the speed-up, a fraction of
        # the compile time of the whole model; see compiling.py and bench/throughput.py).
        train_model = compile_for_training(train_model)

    per_epoch = task.num_batches(0)
    total_steps = cfg.max_steps
    if total_steps is None and per_epoch and not cfg.max_minutes:
        total_steps = max(1, int(math.ceil(per_epoch * cfg.epochs / cfg.grad_accum)))
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes else None
    if total_steps is None and budget_s is None:
        raise MlmkitError("set train.max_steps or train.max_minutes for a streaming dataset")
    if optim_cfg.warmup_steps is not None and total_steps:
        warmup = min(1.0, optim_cfg.warmup_steps / total_steps)
    else:
        warmup = optim_cfg.warmup_ratio

    metrics_path = out_dir / "metrics.jsonl"
    from .loggers import build_loggers

    loggers = build_loggers(cfg, out_dir, enabled=main)  # TensorBoard / wandb mirrors (loggers.py)

    def write_metrics(record: dict) -> None:
        if main:
            try:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
            except OSError as e:  # disk full, folder gone: one line, not a traceback
                raise MlmkitError(f"could not write {metrics_path}: {e.strerror or e}") from None
            loggers.log(record)

    def progress_now(step: int, elapsed: float | None = None) -> float:
        p = 0.0
        if total_steps:
            p = max(p, step / total_steps)
        if budget_s:
            if elapsed is None:
                elapsed = state.elapsed + time.perf_counter() - t_start
            p = max(p, elapsed / budget_s)
        return min(p, 1.0)

    saved_step = [state.step if resume and state.step else -1]

    def save(reason: str) -> None:
        if saved_step[0] == state.step:  # e.g. a periodic save of this very step
            return
        # Collective under DDP/FSDP (every rank calls it; rank 0 writes); a write error is
        # raised on every rank as one MlmkitError.
        ckpt_io.save_checkpoint(ckpt_dir, state.step, model, optimizer, scaler, state.to_json(),
                                keep=cfg.keep_checkpoints, sharded=dist_info.fsdp)
        saved_step[0] = state.step

    stream = _batches_forever(task, state)
    t_start = time.perf_counter()
    t_log, tokens_log, loss_log, n_log = time.perf_counter(), 0, 0.0, 0
    consecutive_bad = 0
    stop_reason = "finished"
    interrupted = None  # the signal that stopped the run (on any rank)
    bar = progress_bar(total=total_steps, initial=state.step, disable=not (cfg.progress and main),
                       unit="step", desc="training")
    last_eval: dict = {}
    if state.step == 0 and cfg.eval_at_start:
        # The starting point, so every run reports how far it moved.
        first = evaluate(task, model, device, precision, dist_info)
        if first:
            write_metrics({**first, "step": 0, "time_s": 0.0})
            log(f"step 0: eval loss {first['eval_loss']:.4f} ppl {first['eval_perplexity']:.2f} "
                f"acc {first['eval_accuracy']:.3f}")
    t_start = time.perf_counter()
    with GracefulExit() as graceful:
        try:
            while True:
                if total_steps is not None and state.step >= total_steps:
                    break
                if budget_s is not None and any_rank(
                        state.elapsed + time.perf_counter() - t_start >= budget_s, device, dist_info):
                    stop_reason = "time budget reached"
                    break
                # ---- gather the micro-batches of one optimiser step
                micro = []
                for _ in range(cfg.grad_accum):
                    epoch, index, batch = next(stream)
                    micro.append(batch)
                    state.epoch, state.batch_in_epoch = epoch, index + 1
                n_targets = sum(int(b["targets"].numel()) if "targets" in b else 1 for b in micro)
                # The step's loss is the mean over *all* its targets, on all ranks. DDP and FSDP
                # average gradients over the W ranks, so rank r back-propagates
                # W * loss_sum_r / n_global: the average of those is sum_r loss_sum_r / n_global,
                # the token-weighted mean, even when ranks hold different numbers of targets
                # (a plain mean of per-rank means would weight a rank's targets by 1/n_r).
                denom, tokens_global, elapsed = max(n_targets, 1), None, None
                if dist_info.enabled:
                    local_tokens = sum(int(b["attention_mask"].sum()) if "attention_mask" in b else 0
                                       for b in micro)
                    # (+ rank 0's clock: with a time budget the LR follows elapsed time, and
                    # ranks reading their own clocks would step with different LRs and drift.)
                    mine = state.elapsed + time.perf_counter() - t_start if main else 0.0
                    n_global, tokens_global, elapsed = all_reduce_sum([n_targets, local_tokens, mine],
                                                                      device, dist_info)
                    denom = max(n_global, 1.0) / dist_info.world_size
                lr = optim_cfg.lr * lr_factor(progress_now(state.step, elapsed), warmup, optim_cfg.schedule,
                                              optim_cfg.min_lr_ratio)
                for group in optimizer.param_groups:
                    group["lr"] = lr * group.get("lr_scale", 1.0)
                step_loss, step_n, step_tokens = 0.0, 0, 0
                for j, batch in enumerate(micro):
                    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                    sync = contextlib.nullcontext()
                    if dist_info.fsdp:  # reduce-scatter gradients on the last micro-batch only
                        model.set_requires_gradient_sync(j == len(micro) - 1)
                    elif dist_info.enabled and j < len(micro) - 1:
                        sync = train_model.no_sync()
                    with sync:
                        with autocast(device, precision):
                            out = task.forward(train_model, batch)
                        # Token-weighted over the micro-batches: each target counts once.
                        loss = out.loss * int(out.n_targets)
                        loss = loss / denom
                        if scaler is not None:
                            scaler.scale(loss).backward()
                        else:
                            loss.backward()
                    step_loss += float(out.loss_sum)
                    step_n += int(out.n_targets)
                    step_tokens += int(out.n_tokens)
                finite = math.isfinite(step_loss)
                if dist_info.enabled:
                    finite = all_reduce_sum([0.0 if finite else 1.0], device, dist_info)[0] == 0
                if not finite:
                    optimizer.zero_grad(set_to_none=True)
                    consecutive_bad += 1
                    state.bad_steps_total += 1
                    log(f"step {state.step + 1}: loss is {step_loss} (NaN/inf); step skipped "
                        f"({consecutive_bad} in a row, {state.bad_steps_total} in total)")
                    write_metrics({"step": state.step + 1, "event": "nonfinite_loss_skipped"})
                    if consecutive_bad >= cfg.max_bad_steps:
                        save("nonfinite")
                        raise MlmkitError(
                            f"stopped after {consecutive_bad} consecutive NaN/inf losses at step "
                            f"{state.step}; checkpoint saved in {ckpt_dir} (try a lower optim.lr)")
                    continue
                consecutive_bad = 0
                if scaler is not None:
                    scaler.unscale_(optimizer)
                if optim_cfg.grad_clip and optim_cfg.grad_clip > 0:
                    clip_grad_norm(model.parameters(), optim_cfg.grad_clip)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                state.tokens += step_tokens if tokens_global is None else int(tokens_global)
                state.targets += step_n if tokens_global is None else int(n_global)
                bar.update(1)
                loss_log += step_loss
                n_log += step_n
                tokens_log += step_tokens

                if state.step % cfg.log_every == 0 or state.step == 1:
                    now = time.perf_counter()
                    tot = all_reduce_sum([loss_log, n_log, tokens_log], device, dist_info)
                    avg = tot[0] / max(tot[1], 1)
                    tps = tot[2] / max(now - t_log, 1e-9)
                    record = {"step": state.step, "epoch": state.epoch, "loss": avg, "lr": lr,
                              "tokens_per_s": tps, "tokens": state.tokens,
                              "time_s": state.elapsed + now - t_start}
                    write_metrics(record)
                    bar.set_postfix(loss=f"{avg:.3f}", lr=f"{lr:.2e}", tok_s=f"{tps:,.0f}")
                    t_log, tokens_log, loss_log, n_log = now, 0, 0.0, 0

                if state.step % cfg.eval_every == 0:
                    last_eval = evaluate(task, model, device, precision, dist_info)
                    if last_eval:
                        last_eval.update(step=state.step, time_s=state.elapsed + time.perf_counter() - t_start)
                        write_metrics(last_eval)
                        if not dist_info.fsdp:  # (rank 0 alone cannot run a sharded model)
                            loggers.log_samples(task, model, state.step)  # Original/Masked/Predicted
                        if on_eval:
                            on_eval(last_eval)
                        msg = (f"step {state.step}: eval loss {last_eval['eval_loss']:.4f} "
                               f"ppl {last_eval['eval_perplexity']:.2f} acc {last_eval['eval_accuracy']:.3f}")
                        if main:
                            progress_write(msg, file=sys.stderr)
                        best = state.best_eval_loss
                        if best is None or last_eval["eval_loss"] < best - 1e-4:
                            state.best_eval_loss = last_eval["eval_loss"]
                            state.evals_without_improvement = 0
                        else:
                            state.evals_without_improvement += 1
                        patience = cfg.early_stopping_patience
                        if patience is not None and state.evals_without_improvement >= patience:
                            stop_reason = f"early stopping (no improvement in {patience} evaluations)"
                            break

                # torchrun forwards SIGTERM to every rank, but not necessarily at the same step.
                if any_rank(graceful.requested is not None, device, dist_info):
                    interrupted = graceful.requested or "a stop signal on another rank"
                    stop_reason = f"received {interrupted}"
                    break
                if cfg.save_every and state.step % cfg.save_every == 0:
                    state.elapsed += time.perf_counter() - t_start
                    t_start = time.perf_counter()
                    save("periodic")
        finally:
            bar.close()
    state.elapsed += time.perf_counter() - t_start
    t_start = time.perf_counter()
    save(stop_reason)
    if interrupted:
        log(f"{stop_reason}: checkpoint saved at step {state.step} in {ckpt_dir}; "
            "continue with --resume")
        loggers.close()
        return {"stopped": stop_reason, "step": state.step}

    final_eval = evaluate(task, model, device, precision, dist_info)
    if final_eval:
        final_eval.update(step=state.step, time_s=state.elapsed, final=True)
        write_metrics(final_eval)
    if save_final:
        final = full_copy(skeleton, model) if dist_info.fsdp else model  # (collective under FSDP)
        if main:
            task.save_pretrained(final, out_dir / "model")
    summary = {"stopped": stop_reason, "step": state.step, "tokens": state.tokens,
               "train_seconds": round(state.elapsed, 1), "precision": precision,
               "device": str(device), "bad_steps_skipped": state.bad_steps_total, **final_eval}
    if save_final:
        summary["model_dir"] = str(out_dir / "model")
    if main:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    loggers.close()
    return summary
