"""`mlmkit eval` for token models: token-weighted perplexity and masked-token accuracy of a saved
model.

The evaluation text is masked once with a fixed seed (see `TokenMLMTask`), so two models, two
checkpoints or two batch sizes are scored on exactly the same masked positions. The text is cut
as the run that trained the model cut it (`data.mode`, `data.max_length`, `data.text_column`,
`masking.*` from the run's config.yaml, when the model is a run folder), unless overridden.

With no data given, a run (its folder, its model/ or one of its checkpoints) is scored on its own
held-out data: the run's prepared data (the same hash split, the same packing, cut to
`data.max_eval_samples`, via `build.run_splits`), so the numbers are those of the run's own
evaluations. Masks depend on the sequences and `masking.*` only, so `eval RUN` on the final
model reproduces the run's final `eval_loss`.
"""

from __future__ import annotations

from pathlib import Path

from ..config import deep_merge, from_dict, shown
from ..engine.device import pick_device, pick_precision
from ..engine.evaluation import evaluate
from ..errors import ConfigError, MlmkitError
from ..runs import CHECKPOINTS_DIR, CONFIG_FILE, read_run_config, resolve_model_dir, run_dir_of
from .build import make_masker, run_splits
from .config import TokenDataConfig, TokenMaskingConfig, TokenModelConfig
from .data import load_texts, subset, tokenize
from .model import load_model
from .prepare import prepare
from .task import TokenMLMTask
from .tokenizers import load_tokenizer

# What evaluation takes from the run's data section: how text is read and cut, not which text.
_RUN_DATA_KEYS = ("text_column", "format", "hf_config", "hf_split", "mode", "max_length", "on_bad_record")
# The model keys `eval --set` takes: how the model is loaded.
_MODEL_KEYS = ("allow_pickle", "trust_remote_code")


def _run_of(model: str) -> Path | None:
    """The run folder of a run folder, its model/ folder or one of its checkpoints (None else)."""
    run = run_dir_of(model)
    p = Path(model)
    if run is None and p.parent.name == CHECKPOINTS_DIR and (p.parent.parent / CONFIG_FILE).is_file():
        run = p.parent.parent
    return run


def eval_settings(model: str, overrides: dict, *, held_out: bool = False) -> tuple[TokenDataConfig, TokenMaskingConfig]:
    """The data and masking sections for evaluating `model`: the run's (for other data, only how
    text is read and cut; for its `held_out` data, the whole section: which records, split and
    cap), with `overrides` on top."""
    run = read_run_config(_run_of(model))
    data = dict(run.get("data") or {})
    if not held_out:
        data = {k: v for k, v in data.items() if k in _RUN_DATA_KEYS}
        data["max_eval_samples"] = None  # data given for evaluation is scored whole
    raw = deep_merge({"data": data, "masking": run.get("masking") or {}}, overrides)
    return (from_dict(TokenDataConfig, raw.get("data"), "data."),
            from_dict(TokenMaskingConfig, raw.get("masking"), "masking."))


def _split_overrides(overrides: dict | None) -> tuple[dict, TokenModelConfig]:
    """(the data/masking overrides, the model options) of `eval --set`; any other key is an error
    (it would otherwise be ignored without a word)."""
    rest = dict(overrides or {})
    options = rest.pop("model", None) or {}
    bad = [f"model.{k}" for k in (options if isinstance(options, dict) else {"": 0}) if k not in _MODEL_KEYS]
    bad += [section for section in rest if section not in ("data", "masking")]
    if bad:
        raise ConfigError(f"mlmkit eval takes no config key '{shown(bad[0]).rstrip('.')}' (it takes data.*, masking.*, "
                          f"{', '.join('model.' + k for k in _MODEL_KEYS)})")
    return rest, from_dict(TokenModelConfig, options, "model.")


def _sequences(model: str, data: list[str], data_cfg, masking, tokenizer, *, max_samples, log, progress):
    """The sequences to score: `data`, or the run's own held-out sequences."""
    if data:
        texts = load_texts(data_cfg, data, max_samples=max_samples or data_cfg.max_samples, log=log)
        return tokenize(texts, tokenizer, data_cfg.mode, data_cfg.max_length, word_ids=masking.whole_word,
                        progress=progress)
    if not data_cfg.train:
        raise MlmkitError(f"no evaluation data: give --data FILE ({model} is not a run folder, so its held-out "
                          "data is not known)")
    log(f"evaluating on the run's held-out data ({', '.join(data_cfg.train)}"
        f"{'; validation: ' + ', '.join(data_cfg.validation) if data_cfg.validation else ''})")
    prepared = prepare(data_cfg, tokenizer, word_ids=masking.whole_word, log=log, progress=progress)
    _, seqs = run_splits(prepared, data_cfg, log=log)
    if max_samples is not None and len(seqs) > max_samples:
        seqs = seqs.head(max_samples)
    return seqs


def evaluate_token_model(model: str, data: list[str], *, overrides: dict | None = None, batch_size: int = 32,
                         max_samples: int | None = None, device: str = "auto", precision: str = "auto",
                         trust_remote_code: bool = False, log=print, progress: bool = True) -> dict:
    data = list(data or [])
    overrides, options = _split_overrides(overrides)
    data_cfg, masking = eval_settings(model, overrides, held_out=not data)
    trust = trust_remote_code or options.trust_remote_code
    path = resolve_model_dir(model)
    tokenizer = load_tokenizer(path, trust_remote_code=trust)
    mlm = load_model(path, trust_remote_code=trust, allow_pickle=options.allow_pickle)
    seqs = _sequences(model, data, data_cfg, masking, tokenizer, max_samples=max_samples, log=log, progress=progress)
    if data_cfg.max_eval_samples is not None and len(seqs) > data_cfg.max_eval_samples:
        seqs = subset(seqs, range(data_cfg.max_eval_samples))
    task = TokenMLMTask(mlm, tokenizer, None, seqs, make_masker(tokenizer, masking), eval_batch_size=batch_size)
    dev = pick_device(device)
    mlm.to(dev)
    result = evaluate(task, mlm, dev, pick_precision(precision, dev))
    result["eval_sequences"] = len(seqs)
    return result
