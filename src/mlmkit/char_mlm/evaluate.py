"""`mlmkit eval` for character models: masked-character accuracy, bits per character, perplexity
and span exact match (spans filled greedily by the head), on the engine's evaluation loop.

The names: by default the held-out names of the model's training data (the hash split); any other
data is scored whole (every valid name). At most `max_samples` names (default
`data.max_eval_samples`). The masks are keyed by a fixed evaluation key and each name's place in
the evaluation set, so every call, model and batch size scores the same masked positions.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any, Optional

import torch

from ..config import from_dict, shown, to_dict
from ..engine.evaluation import evaluate
from ..errors import ConfigError, DataError
from .config import CharDataConfig, CharMaskingConfig
from .data import DomainFilter, DomainSource
from .model import CharMLM, bundle_of
from .stream import NameStream
from .task import SpanTask


def _names(bundle: CharMLM, specs: list[str], data: CharDataConfig, split: str, limit: Optional[int]):
    """(names, invalid rows by reason) to score."""
    same = specs == list(bundle.data.train or [])
    mode = split if split != "auto" else ("valid" if same else "all")
    if mode == "valid":
        dcfg = dataclasses.replace(data, train=specs, max_samples=None, max_eval_samples=limit, alphabet=None)
        stream = NameStream(dcfg, alphabet=bundle.alphabet)  # (the scan alone: its held-out names)
        return stream.eval_names, stream.invalid_counts()
    src = DomainSource(specs, data if same else dataclasses.replace(data, format="auto", hf_data_files=None))
    ctx = src.ctx()
    names: list[str] = []
    for dom in DomainFilter(data.idn, data.max_length).filter(src.iter_records(ctx), ctx):
        names.append(dom)
        if limit is not None and len(names) >= limit:
            break
    return names, Counter(ctx.stats.bad_counts())


def _settings(bundle: CharMLM, overrides: dict) -> tuple[CharDataConfig, CharMaskingConfig]:
    """The model's data and masking sections with `eval --set` overrides on top; any other section
    is an error (it would otherwise be ignored without a word)."""
    bad = [f"{section}.{next(iter(keys), '')}" if isinstance(keys, dict) else section
           for section, keys in overrides.items() if section not in ("data", "masking")]
    if bad:
        raise ConfigError(f"mlmkit eval of a character model takes no config key '{shown(bad[0]).rstrip('.')}' "
                          "(it takes data.*, masking.*)")
    data = from_dict(CharDataConfig, dict(to_dict(bundle.data), **overrides.get("data", {})), "data.")
    masking = from_dict(CharMaskingConfig, dict(to_dict(bundle.masking), **overrides.get("masking", {})), "masking.")
    return data, masking


@torch.no_grad()
def evaluate_char_model(model, data=None, *, overrides: dict | None = None, batch_size: int = 256,
                        max_samples: Optional[int] = None, split: str = "auto",
                        decode: bool = True) -> dict[str, Any]:
    """Metrics of a character model (folder, run folder or loaded `CharMLM`) on `data` (specs;
    default: the training data's held-out names). `split`: valid (hash-held-out names only) |
    all (every valid name) | auto (valid for the training data, all for any other)."""
    bundle = bundle_of(model)
    if split not in ("valid", "all", "auto"):
        raise ConfigError(f"split must be valid|all|auto, got {split!r}")
    specs = [str(data)] if isinstance(data, (str, bytes)) or hasattr(data, "__fspath__") else list(data or [])
    specs = specs or list(bundle.data.train or [])
    data_cfg, masking = _settings(bundle, overrides or {})
    limit = max_samples or data_cfg.max_eval_samples
    names, invalid = _names(bundle, specs, data_cfg, split, limit)
    if not names:
        raise DataError("no evaluation names (the held-out split is empty; try split='all')", ", ".join(specs))
    task = SpanTask(bundle.model, bundle.alphabet, data_cfg, bundle.model_cfg, masking, eval_domains=names,
                    eval_batch_size=batch_size, decode_eval=decode)
    device = next(bundle.model.parameters()).device
    result = evaluate(task, bundle.model, device, "fp32")
    return {**result, "eval_names": len(names), "invalid_rows": dict(sorted(invalid.items()))}
