"""AdamW with parameter groups, SparseAdam for sparse-gradient tables, clipping, LR schedules."""

from __future__ import annotations

import math
from typing import Iterable

import torch

from ..errors import MlmkitError
from .config import OptimConfig
from .task import ParamGroup


class SplitOptimizer:
    """AdamW for the dense parameters and SparseAdam for sparse-gradient embedding tables,
    stepped, zeroed, scheduled and checkpointed as one optimiser.

    Why: with dense gradients every step zero-fills and AdamW-updates every row of a large
    hashed table (42M parameters in the `domains-tiny` preset), though a batch touches a few
    thousand rows; the fill alone was 22% of the step. SparseAdam updates the touched rows only
    ("lazy" Adam: a row's moments move only when its context occurs; no weight decay)."""

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
                              "dense tables (resume with the run's model settings)")
        self.dense.load_state_dict(sd["dense"])
        self.sparse.load_state_dict(sd["sparse"])


class RowAdam(torch.optim.SparseAdam):
    """SparseAdam's update ("lazy" Adam: only the rows in the gradient move, their moments decay
    only when they are touched), computed with row gathers and scatters: read the touched rows of
    the moments, update them, write them back, add the step to the weights. `torch.optim.SparseAdam`
    builds sparse tensors for each moment and adds them to the dense ones, which took 53 ms where
    this takes 24 ms (15,000 rows of 128, one thread, idle machine; `bench/sparse_adam.py`). Same state
    (step, exp_avg, exp_avg_sq), so checkpoints of either load in the other; results agree to
    rounding."""

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise ValueError("RowAdam takes no closure")
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            if group.get("maximize", False):
                raise ValueError("RowAdam does not maximise")
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not p.grad.is_sparse:
                    raise RuntimeError("RowAdam takes sparse gradients only (an embedding with sparse=True)")
                state = self.state[p]
                if not state:
                    state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                state["step"] += 1
                grad = p.grad.coalesce()  # each row once: the scatters below must not collide
                rows, g = grad.indices()[0], grad.values()
                m = state["exp_avg"].index_select(0, rows).lerp_(g, 1 - beta1)
                v = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(g, g, value=1 - beta2)
                state["exp_avg"].index_copy_(0, rows, m)
                state["exp_avg_sq"].index_copy_(0, rows, v)
                t = state["step"]
                step_size = float(group["lr"]) * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
                p.index_add_(0, rows, m.div_(v.sqrt_().add_(group["eps"])).mul_(-step_size))


def sparse_parameters(model: torch.nn.Module) -> set[int]:
    """ids of the weights of embedding tables that produce sparse gradients."""
    return {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.sparse}


def make_optimizer(model: torch.nn.Module, cfg: OptimConfig, device: torch.device,
                   groups: Iterable[ParamGroup] = ()):
    """AdamW over `model`'s trainable parameters: weight decay on matrices, none on biases and
    norms (as in BERT and nanoGPT); `groups` (declared by the task) get their own LR multiplier
    and weight decay; parameters of sparse embedding tables go to SparseAdam."""
    special = {id(p): g for g in groups for p in g.params}
    sparse_ids = sparse_parameters(model)
    decay, no_decay, sparse = [], [], []
    own: dict[int, list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in sparse_ids:
            sparse.append(p)
        elif id(p) in special:
            own.setdefault(id(special[id(p)]), []).append(p)
        else:
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    param_groups = [{"params": decay, "weight_decay": cfg.weight_decay},
                    {"params": no_decay, "weight_decay": 0.0}]
    for g in groups:
        if own.get(id(g)):
            wd = cfg.weight_decay if g.weight_decay is None else g.weight_decay
            param_groups.append({"params": own[id(g)], "weight_decay": wd, "lr": cfg.lr * g.lr_scale,
                                 "lr_scale": g.lr_scale})
    # Fused AdamW (one kernel over all parameters) on CUDA and, since torch 2.4, on CPU, where it
    # is ~2x faster than foreach (bench/: ~15 vs ~35 ms a step for a 5M-parameter BERT). foreach
    # elsewhere, and for FSDP's sharded (DTensor) parameters.
    sharded = any(hasattr(p, "device_mesh") for g in param_groups for p in g["params"])
    extra = {"fused": True} if device.type in ("cuda", "cpu") and not sharded else {"foreach": True}
    dense = torch.optim.AdamW(param_groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, **extra)
    if not sparse:
        return dense
    scale = next((g.lr_scale for g in groups for p in g.params if id(p) in sparse_ids), 1.0)
    lazy = RowAdam(sparse, lr=cfg.lr * scale, betas=tuple(cfg.betas), eps=cfg.eps)
    lazy.param_groups[0]["lr_scale"] = scale
    return SplitOptimizer(dense, lazy)


def drop_zero_rows(parameters) -> None:
    """Keep in each sparse gradient only the rows with a non-zero gradient. A looked-up row whose
    gradient is exactly zero (e.g. a padded step of a span, which the loss ignores) would still
    move under SparseAdam (its moments decay and it steps), and which rows those are depends on
    the batch's padding -- so a rank's shard of a batch would update other rows than the batch."""
    for p in parameters:
        g = p.grad
        if g is not None and g.is_sparse:
            g = g.coalesce()
            keep = g.values().reshape(g.values().shape[0], -1).abs().sum(1) != 0
            p.grad = torch.sparse_coo_tensor(g.indices()[:, keep], g.values()[keep], g.shape,
                                             check_invariants=False, is_coalesced=True)


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


def lr_factor(progress: float, warmup: float, schedule: str, min_ratio: float, *,
              decay_ratio: float = 0.2, decay_shape: str = "1-sqrt") -> float:
    """Multiplier of the peak LR at `progress` in [0, 1] of the run; `warmup` is a fraction.
    `decay_ratio` and `decay_shape` shape the `wsd` schedule only."""
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, 1e-3)
    if schedule == "constant":
        return 1.0
    if schedule == "wsd":
        return _wsd(progress, warmup, min_ratio, decay_ratio, decay_shape)
    rest = min(1.0, (progress - warmup) / max(1e-9, 1.0 - warmup))
    if schedule == "cosine":
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * rest))
    return min_ratio + (1 - min_ratio) * (1 - rest)


def _wsd(progress: float, warmup: float, min_ratio: float, decay_ratio: float, shape: str) -> float:
    """Warmup-stable-decay after the warmup: the peak LR until the last `decay_ratio` of the run,
    then down to `min_ratio`. Why: the stable phase does not depend on where the run ends, so a
    run can be continued or cut (a time budget) and only the short decay is planned from the end;
    at the same compute it matches cosine (Hu et al. 2024, MiniCPM; Hagele et al. 2024), and
    "1-sqrt", which stays high longer and drops at the end, did best in the latter (ModernBERT
    decays that way). A decay longer than what the warmup leaves starts when the warmup ends."""
    start = max(warmup, 1.0 - decay_ratio)
    if progress < start:
        return 1.0
    done = min(1.0, (progress - start) / max(1e-9, 1.0 - start))
    drop = math.sqrt(done) if shape == "1-sqrt" else done
    return min_ratio + (1 - min_ratio) * (1 - drop)
