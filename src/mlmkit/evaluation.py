"""`mlmkit eval`: token-weighted perplexity and masked-token accuracy of a saved model.

The validation text is masked once with a fixed seed (see `TokenMLMTask`), so two models, two
checkpoints or two batch sizes are scored on exactly the same masked positions.
"""

from __future__ import annotations

from pathlib import Path

from .config import DataConfig, MaskingConfig
from .training import evaluate, pick_device, pick_precision


def resolve_model_dir(path: str | Path) -> str:
    """A run folder holds its final model in `model/`; accept either, or a hub name."""
    p = Path(path)
    if (p / "model").is_dir() and not (p / "config.json").is_file():
        return str(p / "model")
    return str(path)


def is_char_model(path: str | Path) -> bool:
    """Character models are saved by `char_task` with their own marker file."""
    try:
        from .char_task import is_char_model as _is_char
    except ImportError:
        return False
    return _is_char(path)


def evaluate_token_model(model_path: str, data: list[str], *, data_cfg: DataConfig | None = None,
                         masking: MaskingConfig | None = None, batch_size: int = 32,
                         device: str = "auto", precision: str = "auto", trust_remote_code: bool = False,
                         log=print, progress: bool = True) -> dict:
    from .data.preprocessing import tokenize
    from .data.tokenizers import load_tokenizer
    from .models import load_model
    from .token_task import TokenMLMTask, load_texts, make_masker, subset

    data_cfg = data_cfg or DataConfig()
    masking = masking or MaskingConfig()
    path = resolve_model_dir(model_path)
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    model = load_model(path, trust_remote_code=trust_remote_code)
    texts = load_texts(data_cfg, data, max_samples=data_cfg.max_samples, log=log)
    seqs = tokenize(texts, tokenizer, data_cfg.mode, data_cfg.max_length, word_ids=masking.whole_word,
                    progress=progress)
    if data_cfg.max_eval_samples is not None and len(seqs) > data_cfg.max_eval_samples:
        seqs = subset(seqs, range(data_cfg.max_eval_samples))
    task = TokenMLMTask(model, tokenizer, None, seqs, make_masker(tokenizer, masking),
                        eval_batch_size=batch_size)
    dev = pick_device(device)
    model.to(dev)
    result = evaluate(task, model, dev, pick_precision(precision, dev))
    result["eval_sequences"] = len(seqs)
    return result
