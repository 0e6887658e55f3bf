"""The token family's config sections (`task: token`), on the shared vocabulary of `mlmkit.config`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from ..config import DataSection, MaskingSection, ModelSection, check, check_choices
from ..engine.config import OptimConfig, TrainConfig


@dataclass
class TokenDataConfig(DataSection):
    mode: Literal["line_by_line", "group_texts"] = "group_texts"  # see token_mlm/data.py
    cache_dir: Optional[str] = None  # prepared data (token_mlm/prepare.py); None: $MLMKIT_CACHE or ~/.cache/mlmkit
    prepare_workers: Optional[int] = None  # processes that tokenise; None: the CPU count (at most 8)

    def __post_init__(self):
        super().__post_init__()
        check(self.max_length >= 8, "data.max_length", "must be >= 8")
        check(self.prepare_workers is None or self.prepare_workers >= 1, "data.prepare_workers", "must be >= 1")


@dataclass
class TokenizerConfig:
    name_or_path: Optional[str] = None  # None: train one (from scratch) or use the init_from checkpoint's
    kind: Literal["wordpiece", "bpe"] = "wordpiece"  # algorithm of a tokenizer trained for the run
    vocab_size: int = 8192  # vocabulary of a trained tokenizer (special tokens included)
    min_frequency: int = 2  # a trained tokenizer merges only pairs seen at least this often
    lowercase: bool = True  # a trained tokenizer lowercases the text (uncased model)
    train_samples: int = 1_000_000  # records the tokenizer is trained on (streamed; the first ones)
    # tokenizers.tokenizer_digest of the tokenizer the run uses, filled in by the run; when set, a
    # run whose tokenizer (trained, cached, loaded) has another digest stops before preparing data
    fingerprint: Optional[str] = None

    def __post_init__(self):
        check_choices(self, "tokenizer")
        check(self.vocab_size >= 100, "tokenizer.vocab_size", "must be >= 100")
        check(self.min_frequency >= 1, "tokenizer.min_frequency", "must be >= 1")
        check(self.train_samples >= 1, "tokenizer.train_samples", "must be >= 1")


@dataclass
class TokenModelConfig(ModelSection):
    arch: str = "bert"  # any transformers masked-LM model type: bert, roberta, distilbert, modernbert, ...
    size: Literal["tiny", "mini", "small", "base"] = "tiny"
    trust_remote_code: bool = False  # run a hub model's own Python code (init_from): only for repositories you trust
    # pickled weights (*.bin) load through torch's weights-only loader, which refuses code; true:
    # also what that loader refuses (objects beyond tensors; a pickle can run code): only for files you trust
    allow_pickle: bool = False
    sparse_prediction: bool = True  # vocabulary projection only on masked positions
    # transformers' attention kernel, for a new model and for init_from: sdpa (PyTorch's fused
    # attention), eager (plain matmuls), flash_attention_2 (the flash-attn package, CUDA only);
    # auto: sdpa where the architecture has it, else eager
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = "auto"


@dataclass
class TokenMaskingConfig(MaskingSection):
    mask_fraction: float = 0.8  # of selected tokens: replaced by [MASK]
    random_fraction: float = 0.1  # replaced by a random non-special token; the rest stay unchanged
    whole_word: bool = False  # mask every sub-token of a selected word together (whole-word masking)

    def __post_init__(self):
        super().__post_init__()
        check(0.0 < self.rate < 1.0, "masking.rate", "must be in (0, 1)")
        check(0.0 <= self.mask_fraction <= 1.0, "masking.mask_fraction", "must be in [0, 1]")
        check(0.0 <= self.random_fraction <= 1.0, "masking.random_fraction", "must be in [0, 1]")
        check(self.mask_fraction + self.random_fraction <= 1.0 + 1e-9, "masking.random_fraction",
              "mask_fraction + random_fraction must be <= 1")


@dataclass
class TokenConfig:
    task: Literal["token"] = "token"
    data: TokenDataConfig = field(default_factory=TokenDataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: TokenModelConfig = field(default_factory=TokenModelConfig)
    masking: TokenMaskingConfig = field(default_factory=TokenMaskingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
