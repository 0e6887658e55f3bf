"""mlmkit: masked-language-model pre-training, token-level and character-level.

Python API (the CLI is a thin layer over it):

    import mlmkit
    summary = mlmkit.train(preset="scratch-tiny", data=["corpus.txt"], output_dir="runs/mine",
                           overrides=["train.max_steps=200"])      # exactly `mlmkit train`

    from mlmkit import resolve_config, build_task, train        # or step by step
    cfg = resolve_config(preset="scratch-tiny", overrides=["data.train=corpus.txt"])
    summary = train(build_task(cfg), cfg.train, cfg.optim)

Any encoder module can be pre-trained with `EncoderForMaskedLM` and `TokenMLMTask`.
"""

from .char_mlm.task import CharMLMTask
from .api import train, train_run
from .engine import LossOutput, OptimConfig, Task, TaskBase, TrainConfig, evaluate
from .families import build_config, build_task, resolve_config
from .token_mlm.config import TokenConfig
from .token_mlm.heads import EncoderForMaskedLM, MaskedLMHead
from .token_mlm.masking import MaskedBatch, TokenMasker
from .token_mlm.model import build_model, load_model, masked_logits
from .token_mlm.task import TokenMLMTask, build_token_task
from .char_mlm.config import CharConfig

__version__ = "0.1.0"

__all__ = [
    "resolve_config", "build_config", "build_task", "train", "train_run", "evaluate", "TokenConfig", "CharConfig",
    "TrainConfig", "OptimConfig", "Task", "TaskBase", "LossOutput", "MaskedBatch", "TokenMasker",
    "EncoderForMaskedLM", "MaskedLMHead", "build_model", "load_model", "masked_logits", "TokenMLMTask",
    "build_token_task", "CharMLMTask",
]
