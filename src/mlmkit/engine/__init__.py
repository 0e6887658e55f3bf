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
from .evaluation import evaluate
from .loop import Trainer, train
from .task import Batch, LossOutput, ParamGroup, Task, TaskBase

__all__ = ["OptimConfig", "TrainConfig", "evaluate", "Trainer", "train", "Batch", "LossOutput",
           "ParamGroup", "Task", "TaskBase"]
