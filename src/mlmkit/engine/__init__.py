"""The engine: trains any `Task` and knows no model family (nothing here imports `token_mlm`,
`char_mlm` or `finetune`).

    config.py      the `train` and `optim` sections
    task.py        the contract with a task (batches, loss, target counts, parameter groups)
    device.py      device, precision, autocast
    distributed.py torchrun, collectives, FSDP2 sharding
    optim.py       AdamW + SparseAdam, clipping, LR schedules
    evaluation.py  the evaluation loop
    checkpoint.py  atomic, checksummed checkpoints
    metrics.py     metrics.jsonl
    compiling.py   regional torch.compile
    loop.py        the training loop (`train`)
"""

from .config import OptimConfig, TrainConfig

# The rest import torch: loaded on first use (PEP 562), so that reading a config section
# (`mlmkit config`, `--help`) does not pay torch's import time.
_LAZY = {"evaluate": ".evaluation", "Trainer": ".loop", "train": ".loop", "Batch": ".task",
         "LossOutput": ".task", "ParamGroup": ".task", "Task": ".task", "TaskBase": ".task"}


def __getattr__(name: str):
    import importlib

    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = globals()[name] = getattr(importlib.import_module(_LAZY[name], __name__), name)
    return value


__all__ = ["OptimConfig", "TrainConfig", "evaluate", "Trainer", "train", "Batch", "LossOutput",
           "ParamGroup", "Task", "TaskBase"]
