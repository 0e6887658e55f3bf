"""torchrun: joining the process group (and seeding a run's start, `start_run`), collectives the
loop and the tasks need, FSDP2 sharding, and the module under the wrappers (DDP, torch.compile)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F


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


def init_distributed(strategy: str = "auto", timeout_minutes: float = 60.0) -> Dist:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE,
    MASTER_ADDR, ...); NCCL on CUDA, gloo on CPU. A single process ignores `strategy`, except
    "fsdp" when torchrun started it: FSDP over one rank runs the code it runs over many (sharding,
    the gathered checkpoints), which is how a one-GPU machine smoke-tests a multi-GPU run.
    `timeout_minutes`: how long a collective may wait (rank 0 preparing data, say)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    launched = all(k in os.environ for k in ("RANK", "MASTER_ADDR", "MASTER_PORT"))
    if world <= 1 and not (strategy == "fsdp" and launched):
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        import datetime

        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    local = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    return Dist(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local,
                strategy="fsdp" if strategy == "fsdp" else "ddp")


def leave_process_group() -> bool:
    """Leave the process group at the end of a command that succeeded; whether there was one.
    Every rank first waits for the others (rank 0 may still be writing the model), so that no rank
    tears down its gloo connections while a peer still works with them, then destroys the group:
    a rank that exits with its group up can abort in gloo's teardown ("terminate called without an
    active exception"), which torchrun reports as a failed run. Not after an error: a rank that
    destroys its group while another still waits in a collective can deadlock it. A peer that
    is gone (it failed: torchrun reports it) fails the barrier; this rank still leaves."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return False
    try:
        dist.barrier()
    except RuntimeError:
        pass
    dist.destroy_process_group()
    return True


def start_run(cfg) -> Dist:
    """What every rank does first for a run built from a config (`cfg`: its `TrainConfig`), once,
    before anything of the run is built: join the process group torchrun describes, then seed
    torch's generator with `train.seed`. The model's initialisation is drawn from that generator,
    so a run is reproducible from its config and every rank builds the same model (FSDP shards
    each rank's own copy without broadcasting it). The run's entry calls it
    (`families.build_task`, `families.prepare_data`) and hands the `Dist` to the family."""
    dist_info = init_distributed(cfg.strategy, cfg.dist_timeout_minutes)
    torch.manual_seed(cfg.seed)
    return dist_info


def barrier(dist_info: Dist) -> None:
    if dist_info.enabled:
        import torch.distributed as dist

        dist.barrier()


def all_reduce_sum(values: list[float], device: torch.device, dist_info: Dist) -> list[float]:
    if not dist_info.enabled:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_reduce_sum_(tensor: torch.Tensor, dist_info: Dist) -> torch.Tensor:
    """Sum `tensor` over the ranks, in place, and return it (itself in one process). NCCL reduces
    CUDA tensors only: a CPU tensor (say, a table filled before the model moved to its device)
    makes the round trip through the GPU."""
    if not dist_info.enabled:
        return tensor
    import torch.distributed as dist

    buf = tensor.cuda() if dist.get_backend() == "nccl" else tensor
    dist.all_reduce(buf)
    if buf is not tensor:
        tensor.copy_(buf.cpu())
    return tensor


def all_gather_objects(obj, dist_info: Dist) -> list:
    """`obj` of every rank, in rank order ([obj] in one process)."""
    if not dist_info.enabled:
        return [obj]
    import torch.distributed as dist

    out = [None] * dist_info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, dist_info: Dist):
    """Rank 0's `obj` on every rank."""
    if not dist_info.enabled:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


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
        # Own storage for each tensor: gathered ones may be views into one buffer, which
        # safetensors refuses to save (the character model's embeddings did).
        model.load_state_dict({k: v.clone() for k, v in state.items()}, assign=True, strict=False)
        inner = getattr(model, "model", model)
        if hasattr(inner, "tie_weights"):  # HF: restore the embedding/decoder tie
            inner.tie_weights()
    return model


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module under DDP (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while True:
        if hasattr(module, "_orig_mod") and isinstance(module._orig_mod, torch.nn.Module):
            module = module._orig_mod
        elif type(module).__name__ == "DistributedDataParallel":
            module = module.module
        else:
            return module


def sync_sparse_grads(params: list[torch.nn.Parameter], dist_info: Dist) -> None:
    """Average the sparse gradients of `params` over the ranks by exchanging only the rows each
    rank touched (DDP would all-reduce every row of every table, dense). Every rank ends with the
    same coalesced sparse gradient: the sum over ranks divided by their number, as DDP averages.

    All tables travel together: one all-gather of the row counts, one of the row indices and one
    of the values (flattened), padded to the largest rank's. Each collective is a point where the
    ranks wait for the slowest, so three per step rather than three per table."""
    import torch.distributed as dist

    W = dist_info.world_size
    if not params:
        return
    grads = [_coalesced(p) for p in params]
    widths = [math.prod(p.shape[1:]) for p in params]
    n = torch.tensor([g.indices().shape[1] for g in grads], device=params[0].device)
    sizes = [torch.zeros_like(n) for _ in range(W)]
    dist.all_gather(sizes, n)
    counts = torch.stack(sizes).tolist()  # (W, tables)
    n_idx = max(sum(c) for c in counts)
    n_val = max(sum(k * w for k, w in zip(c, widths)) for c in counts)
    flat_idx = torch.cat([g.indices()[0] for g in grads])
    flat_val = torch.cat([g.values().reshape(-1) for g in grads])
    all_idx = [flat_idx.new_zeros(n_idx) for _ in range(W)]
    all_val = [flat_val.new_zeros(n_val) for _ in range(W)]
    # all-gather needs one size on every rank: pad with zeros to the largest
    dist.all_gather(all_idx, F.pad(flat_idx, (0, n_idx - flat_idx.numel())))
    dist.all_gather(all_val, F.pad(flat_val, (0, n_val - flat_val.numel())))
    idx_parts: list[list] = [[] for _ in params]
    val_parts: list[list] = [[] for _ in params]
    for r in range(W):
        i_off = v_off = 0
        for t, (k, w) in enumerate(zip(counts[r], widths)):
            idx_parts[t].append(all_idx[r][i_off: i_off + k])
            val_parts[t].append(all_val[r][v_off: v_off + k * w])
            i_off, v_off = i_off + k, v_off + k * w
    for t, p in enumerate(params):
        idx, val = torch.cat(idx_parts[t]), torch.cat(val_parts[t]).reshape(-1, *p.shape[1:]).to(p.dtype)
        p.grad = torch.sparse_coo_tensor(idx[None], val.div_(W), p.shape, check_invariants=False).coalesce()


def _coalesced(p: torch.nn.Parameter) -> torch.Tensor:
    """`p`'s sparse gradient, coalesced (an empty one if the rank did not touch the table)."""
    if p.grad is not None:
        return p.grad.coalesce()
    return torch.sparse_coo_tensor(torch.zeros((1, 0), dtype=torch.long, device=p.device),
                                   p.new_zeros((0, *p.shape[1:])), p.shape, check_invariants=False)

