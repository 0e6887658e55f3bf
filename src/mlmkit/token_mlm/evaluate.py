"""`mlmkit eval` for token models: token-weighted perplexity and masked-token accuracy of a saved
model.

The evaluation text is masked once with a fixed seed (see `TokenMLMTask`), so two models, two
checkpoints or two batch sizes are scored on exactly the same masked positions. The text is cut
as the run that trained the model cut it (`data.mode`, `data.max_length`, `data.text_column`,
`masking.*` from the run's config.yaml, when the model is a run folder), unless overridden.
"""

from __future__ import annotations

from ..config import deep_merge, from_dict
from ..engine.device import pick_device, pick_precision
from ..engine.evaluation import evaluate
from ..runs import read_run_config, resolve_model_dir, run_dir_of
from .config import TokenDataConfig, TokenMaskingConfig
from .data import load_texts, subset, tokenize
from .model import load_model
from .task import TokenMLMTask, make_masker
from .tokenizers import load_tokenizer

# What evaluation takes from the run's data section: how text is read and cut, not which text.
_RUN_DATA_KEYS = ("text_column", "format", "hf_config", "hf_split", "mode", "max_length", "on_bad_record")


def eval_settings(model: str, overrides: dict) -> tuple[TokenDataConfig, TokenMaskingConfig]:
    run = read_run_config(run_dir_of(model))
    data = {k: v for k, v in (run.get("data") or {}).items() if k in _RUN_DATA_KEYS}
    raw = deep_merge({"data": {**data, "max_eval_samples": None}, "masking": run.get("masking") or {}},
                     overrides)
    return (from_dict(TokenDataConfig, raw.get("data"), "data."),
            from_dict(TokenMaskingConfig, raw.get("masking"), "masking."))


def evaluate_token_model(model: str, data: list[str], *, overrides: dict | None = None, batch_size: int = 32,
                         max_samples: int | None = None, device: str = "auto", precision: str = "auto",
                         trust_remote_code: bool = False, log=print, progress: bool = True) -> dict:
    data_cfg, masking = eval_settings(model, overrides or {})
    path = resolve_model_dir(model)
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    mlm = load_model(path, trust_remote_code=trust_remote_code)
    texts = load_texts(data_cfg, data, max_samples=max_samples or data_cfg.max_samples, log=log)
    seqs = tokenize(texts, tokenizer, data_cfg.mode, data_cfg.max_length, word_ids=masking.whole_word,
                    progress=progress)
    if data_cfg.max_eval_samples is not None and len(seqs) > data_cfg.max_eval_samples:
        seqs = subset(seqs, range(data_cfg.max_eval_samples))
    task = TokenMLMTask(mlm, tokenizer, None, seqs, make_masker(tokenizer, masking), eval_batch_size=batch_size)
    dev = pick_device(device)
    mlm.to(dev)
    result = evaluate(task, mlm, dev, pick_precision(precision, dev))
    result["eval_sequences"] = len(seqs)
    return result
