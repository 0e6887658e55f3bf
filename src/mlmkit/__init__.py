"""mlmkit: masked-language-model pre-training, token-level and character-level.

Python API (the CLI is a thin layer over it):

    from mlmkit import resolve_config, build_token_task, train
    cfg = resolve_config(preset="scratch-tiny", overrides=["data.train=corpus.txt"])
    summary = train(build_token_task(cfg), cfg.train, cfg.optim)

Any encoder module can be pre-trained with `EncoderForMaskedLM` and `TokenMLMTask`.
"""

from .config import Config, resolve_config
from .masking import MaskedBatch, TokenMasker
from .models import EncoderForMaskedLM, MaskedLMHead, build_model, load_model, masked_logits
from .token_task import TokenMLMTask, build_token_task
from .training import evaluate, train

__version__ = "0.1.0"

__all__ = [
    "Config", "resolve_config", "MaskedBatch", "TokenMasker", "EncoderForMaskedLM", "MaskedLMHead",
    "build_model", "load_model", "masked_logits", "TokenMLMTask", "build_token_task", "evaluate", "train",
]
