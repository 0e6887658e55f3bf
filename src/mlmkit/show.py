"""`mlmkit show MODEL [--data FILE] -n 8`: Original / Masked / Predicted for sampled texts,
coloured in a terminal. Without --data the texts are the held-out part of the run's own data
(from its config.yaml), so a run folder can be inspected on text it did not train on."""

from __future__ import annotations

import random

from .config import deep_merge
from .data.base import ReadStats
from .data.records import read_texts
from .errors import MlmkitError
from .families import build_config, family_of_model
from .report.masked_examples import MaskedExample, print_examples
from .runs import read_run_config, resolve_model_dir, run_dir_of


def _texts(model_arg: str, data: list[str] | None, *, text_column: str, log) -> list[str]:
    if data:
        stats = ReadStats()
        texts = read_texts(data, text_column=text_column, on_bad="skip", stats=stats)
        log(f"data {', '.join(map(str, data))}: {stats.summary()}")
        return texts
    raw = read_run_config(run_dir_of(model_arg))
    if not raw:
        raise MlmkitError("no --data given and no config.yaml in the model folder to find the run's data")
    if not (raw.get("data") or {}).get("train"):
        raise MlmkitError("the run's config.yaml names no training data; pass --data")
    cfg = build_config(deep_merge(raw, {"data": {"on_bad_record": "skip"}}))
    return family_of_model(resolve_model_dir(model_arg)).held_out_texts(cfg, log=log)


def show(model_arg: str, data: list[str] | None = None, *, n: int = 8, seed: int = 0, rate: float = 0.15,
         max_tokens: int = 64, text_column: str = "text", color: bool | None = None, log=print,
         file=None) -> list[MaskedExample]:
    """Sample `n` texts, mask them, print Original / Masked / Predicted; returns the examples."""
    path = resolve_model_dir(model_arg)
    texts = [t for t in _texts(model_arg, data, text_column=text_column, log=log) if t.strip()]
    if not texts:
        raise MlmkitError("no non-empty texts to show")
    picked = random.Random(seed).sample(texts, min(n, len(texts)))
    examples = family_of_model(path).show_examples(path, picked, seed=seed, rate=rate, max_tokens=max_tokens)
    print_examples(examples, color=color, file=file)
    return examples
