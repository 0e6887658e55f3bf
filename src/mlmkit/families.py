"""The registry of model families (what a family is: `family_protocol.py`), and what is decided
through it: which config class a run's `task` key selects, which family a saved model folder
belongs to, and a run's start (`build_task`, `prepare_data`). Commands ask here and never branch
on the family themselves."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .char_mlm import FAMILY as CHAR
from .config import from_dict, merge_sources, shown
from .errors import ConfigError, MlmkitError
from .family_protocol import Family
from .folders import MODEL_MARKERS
from .runs import CHECKPOINTS_DIR, resolve_model_dir
from .token_mlm import FAMILY as TOKEN

# Asked in this order for a model folder: the token family takes anything the others do not claim.
FAMILIES: dict[str, Family] = {f.name: f for f in (CHAR, TOKEN)}
DEFAULT = TOKEN.name


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise ConfigError(f"config key 'task': {shown(name)!r} is not one of {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def family_of_model(path: str | Path) -> Family:
    """The family whose model folder `path` is (a transformers folder or hub name: token)."""
    for fam in FAMILIES.values():
        if fam.owns_model_dir(Path(path)):
            return fam
    return FAMILIES[DEFAULT]


def open_model_dir(path: str | Path) -> tuple[str, Family]:
    """The model folder that `path` names, checked, and its family: a run folder's `model/`, a
    model folder, a checkpoint folder (verified against its manifest), or a hub name. A run
    folder without `model/` (a killed run) is one line pointing at its checkpoints."""
    from .engine.checkpoint import check_model_folder, latest_valid

    p = Path(path)
    resolved = resolve_model_dir(path)
    if p.is_dir() and resolved == str(path) and (p / CHECKPOINTS_DIR).is_dir() \
            and not any((p / m).is_file() for m in MODEL_MARKERS):
        newest = latest_valid(p / CHECKPOINTS_DIR, log=lambda s: None)
        hint = f"use a checkpoint folder such as {newest}, or " if newest else ""
        raise MlmkitError(f"{p} is a run folder without a final model/ (killed, or still training?): {hint}"
                          "continue it with mlmkit train --resume")
    check_model_folder(Path(resolved))
    return resolved, family_of_model(resolved)


def build_config(raw: dict[str, Any]):
    """Validate a merged raw mapping into the run config of its family (`task` key)."""
    raw = dict(raw)
    raw.pop("description", None)  # presets describe themselves
    task = raw.get("task", DEFAULT)
    fam = family(task if isinstance(task, str) else str(task))
    if os.environ.get(DOCS_TINY_ENV) == "1":
        raw = docs_tiny(raw, fam.name)
    return from_dict(fam.config_class, raw)


def resolve_config(preset: str | None = None, config_file: str | None = None,
                   overrides: list[str] | None = None, extra: dict | None = None):
    """defaults <- preset <- config file <- `--set` overrides <- `extra` (the CLI's own flags)."""
    return build_config(merge_sources(preset, config_file, overrides, extra))


def build_task(cfg, *, log=print, progress: bool = True, resume: bool = False):
    """The engine `Task` of a run config, built by its family (a checkpoint folder given as
    `model.init_from` verified first). The run's entry: every rank joins the process group and
    seeds the model's initialisation here, once (`engine.distributed.start_run`), and the family
    builds on the ranks it is handed."""
    from .engine.checkpoint import check_model_folder
    from .engine.distributed import start_run

    if cfg.model.init_from:
        check_model_folder(Path(cfg.model.init_from))
    dist_info = start_run(cfg.train)
    return family(cfg.task).build_task(cfg, dist_info, log=log, progress=progress, resume=resume)


def prepare_data(cfg, *, log=print, progress: bool = True) -> str:
    """`mlmkit prepare`: the run's one-off data preparation, by its family, on the ranks the run
    will train on (the same start as `build_task`; preparing draws nothing from the seed)."""
    from .engine.distributed import start_run

    return family(cfg.task).prepare(cfg, start_run(cfg.train), log=log, progress=progress)


# Test hook, not a user setting: tests/test_docs.py runs every command of the README and the docs
# with MLMKIT_DOCS_TINY=1, which shrinks every run after all other sources (preset, file, --set,
# flags) so that a documented command runs in seconds: the smallest model, a few records, no
# time budget, no compiling, and 2 steps (or the run's own max_steps when it asks for at most 60,
# so that a documented checkpoint such as --step 30 exists); evaluation, saving and logging within them.
DOCS_TINY_ENV = "MLMKIT_DOCS_TINY"
_TINY_TOKEN_MODEL = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
_TINY_CHAR_MODEL = {"size": "tiny", "hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
                    "head_size": 32}


def docs_tiny(raw: dict[str, Any], task: str) -> dict[str, Any]:
    """`raw` with the docs test's tiny settings on top (see DOCS_TINY_ENV)."""
    sec = {k: dict(raw.get(k) or {}) for k in ("train", "data", "model", "tokenizer")}
    t = sec["train"]
    asked = t.get("max_steps")
    steps = asked if isinstance(asked, int) and 1 <= asked <= 60 else 2
    t.update(max_steps=steps, max_minutes=None, progress=False, show_samples=min(_int(t.get("show_samples"), 4), 1),
             compile=False, precision="auto", data_workers=0,
             eval_every=min(_int(t.get("eval_every"), 200), steps), log_every=min(_int(t.get("log_every"), 10), steps),
             save_every=min(_int(t.get("save_every"), 500), steps))
    sec["data"].update(max_samples=64, max_eval_samples=16)
    m = sec["model"]
    if task == "char":
        sec["data"].update(alphabet_sample=64, shuffle_buffer=64)
        if m.get("arch", "scratch") != "canine":
            m.update(_TINY_CHAR_MODEL)
            for key in ("ngram_buckets", "head_ngram_buckets", "head_ngram_count_buckets"):
                if m.get(key):
                    m[key] = min(_int(m[key], 0), 256)
            m["head_ngram_dim"] = min(_int(m.get("head_ngram_dim"), 0), 16)
    else:
        sec["data"].update(max_length=32, prepare_workers=1)
        if not m.get("init_from"):
            m["overrides"] = {**(m.get("overrides") or {}), **_TINY_TOKEN_MODEL}
            if not sec["tokenizer"].get("name_or_path"):
                sec["tokenizer"].update(vocab_size=400, train_samples=2000)
    out = dict(raw)
    out.update({k: v for k, v in sec.items() if v or k in raw})
    return out


def _int(value: Any, default: int) -> int:
    """An integer setting as given, or `default` when it is absent or not a number (the config's
    own checks report a bad value)."""
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default
