"""mlmkit: masked-language-model pre-training, token-level and character-level.

Python API (the CLI is a thin layer over it):

    import mlmkit
    summary = mlmkit.train(preset="scratch-tiny", data=["corpus.txt"], output_dir="runs/mine",
                           overrides=["train.max_steps=200"])      # exactly `mlmkit train`

    from mlmkit import resolve_config, build_task, train        # or step by step
    cfg = resolve_config(preset="scratch-tiny", overrides=["data.train=corpus.txt"])
    summary = train(build_task(cfg), cfg.train, cfg.optim)

Any encoder module can be pre-trained with `EncoderForMaskedLM` and `TokenMLMTask`.

The names above are imported on first use (PEP 562 `__getattr__`), not when `mlmkit` is: most
of them import torch (~1-2 s), and every `mlmkit` command -- `--help` and tab completion
included -- imports this package first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it (relative to this package)
_EXPORTS: dict[str, str] = {
    "resolve_config": ".families", "build_config": ".families", "build_task": ".families",
    "train": ".api", "train_run": ".api",
    "evaluate": ".engine.evaluation", "LossOutput": ".engine.task", "Task": ".engine.task",
    "TaskBase": ".engine.task", "OptimConfig": ".engine.config", "TrainConfig": ".engine.config",
    "TokenConfig": ".token_mlm.config", "CharConfig": ".char_mlm.config",
    "EncoderForMaskedLM": ".token_mlm.heads", "MaskedLMHead": ".token_mlm.heads",
    "MaskedBatch": ".token_mlm.masking", "TokenMasker": ".token_mlm.masking",
    "build_model": ".token_mlm.model", "load_model": ".token_mlm.model", "masked_logits": ".token_mlm.model",
    "TokenMLMTask": ".token_mlm.task", "build_token_task": ".token_mlm.build",
    "CharMLMTask": ".char_mlm.task",
}

__all__ = [
    "resolve_config", "build_config", "build_task", "train", "train_run", "evaluate", "TokenConfig", "CharConfig",
    "TrainConfig", "OptimConfig", "Task", "TaskBase", "LossOutput", "MaskedBatch", "TokenMasker",
    "EncoderForMaskedLM", "MaskedLMHead", "build_model", "load_model", "masked_logits", "TokenMLMTask",
    "build_token_task", "CharMLMTask",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mlmkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .api import train, train_run
    from .char_mlm.config import CharConfig
    from .char_mlm.task import CharMLMTask
    from .engine.config import OptimConfig, TrainConfig
    from .engine.evaluation import evaluate
    from .engine.task import LossOutput, Task, TaskBase
    from .families import build_config, build_task, resolve_config
    from .token_mlm.config import TokenConfig
    from .token_mlm.heads import EncoderForMaskedLM, MaskedLMHead
    from .token_mlm.masking import MaskedBatch, TokenMasker
    from .token_mlm.model import build_model, load_model, masked_logits
    from .token_mlm.build import build_token_task
    from .token_mlm.task import TokenMLMTask
